import { InvokeCommand, type LambdaClient } from '@aws-sdk/client-lambda';
import type { ApiFunctionId, BackgroundFunctionId } from '../definitions/api.ts';

/** The functions one handler may start asynchronously (the fan-out worker, mostly). */
export type InvocableFunction = BackgroundFunctionId | ApiFunctionId;

/**
 * Starts another function without waiting for its result: Lambda `Invoke` with
 * `InvocationType: Event` in AWS (Lambda queues the event and retries it twice on error), an
 * in-process call in the local cloud (local/functions.ts). Resolves once the event is accepted.
 */
export interface FunctionInvoker {
  invoke(name: InvocableFunction, payload: unknown): Promise<void>;
}

export class FunctionNotConfiguredError extends Error {
  override readonly name = 'FunctionNotConfiguredError';
  constructor(readonly functionId: InvocableFunction) {
    super(`No function name or ARN is configured for ${functionId}`);
  }
}

export interface LambdaFunctionInvokerOptions {
  readonly lambda: Pick<LambdaClient, 'send'>;
  /** Function name or ARN per logical function, from the environment (e.g. FANOUT_WORKER_FUNCTION). */
  readonly functionNames: Readonly<Partial<Record<InvocableFunction, string>>>;
}

export function makeLambdaFunctionInvoker(options: LambdaFunctionInvokerOptions): FunctionInvoker {
  return {
    async invoke(name, payload) {
      const functionName = options.functionNames[name];
      if (!functionName) throw new FunctionNotConfiguredError(name);
      await options.lambda.send(
        new InvokeCommand({
          FunctionName: functionName,
          InvocationType: 'Event',
          Payload: new TextEncoder().encode(JSON.stringify(payload)),
        }),
      );
    },
  };
}
