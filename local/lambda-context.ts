/**
 * The `Context` a local invocation gets, as Lambda builds it: the function's ARN in the local
 * account, a fresh request id, and a remaining time counting down from the function's timeout.
 */
import { randomUUID } from 'node:crypto';
import type { Context } from 'aws-lambda';

export interface LambdaContextInput {
  readonly functionName: string;
  readonly region: string;
  readonly accountId: string;
  /** What `getRemainingTimeInMillis()` counts down from. @default 30_000 */
  readonly timeoutMs?: number;
  /** Epoch milliseconds. @default Date.now */
  readonly now?: () => number;
}

export function functionArn(
  input: Pick<LambdaContextInput, 'functionName' | 'region' | 'accountId'>,
): string {
  return `arn:aws:lambda:${input.region}:${input.accountId}:function:${input.functionName}`;
}

export function makeLambdaContext(input: LambdaContextInput): Context {
  const now = input.now ?? Date.now;
  const timeoutMs = input.timeoutMs ?? 30_000;
  const started = now();
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName: input.functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: functionArn(input),
    memoryLimitInMB: '128',
    awsRequestId: randomUUID(),
    logGroupName: `/aws/lambda/${input.functionName}`,
    logStreamName: 'local',
    getRemainingTimeInMillis: () => Math.max(0, timeoutMs - (now() - started)),
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}
