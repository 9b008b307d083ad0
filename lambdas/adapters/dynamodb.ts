import { DynamoDBClient, TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import {
  BatchGetCommand,
  DynamoDBDocumentClient,
  TransactWriteCommand,
  type TransactWriteCommandInput,
} from '@aws-sdk/lib-dynamodb';
import { err, ok, type Result } from '../domain/result.ts';
import { withoutSdkRequestLog } from './sdk-clients.ts';

/**
 * The document client every handler uses: undefined attributes are dropped rather than refused,
 * since optional fields of our records are often absent. AWS's client when none is given.
 */
export function documentClient(client?: DynamoDBClient): DynamoDBDocumentClient {
  // The document client runs on the given client's middleware stack.
  return DynamoDBDocumentClient.from(withoutSdkRequestLog(client ?? new DynamoDBClient({})), {
    marshallOptions: { removeUndefinedValues: true },
  });
}

/** Which items of a canceled transaction failed their condition, by position. */
function failedConditions(error: TransactionCanceledException): number[] {
  return (error.CancellationReasons ?? []).flatMap((reason, i) =>
    reason.Code === 'ConditionalCheckFailed' ? [i] : [],
  );
}

/** True when a canceled transaction failed only on another transaction at work on one of its items. */
function conflictedOnly(error: TransactionCanceledException): boolean {
  const codes = (error.CancellationReasons ?? []).map((reason) => reason.Code ?? 'None');
  return (
    codes.includes('TransactionConflict') && codes.every((c) => c === 'TransactionConflict' || c === 'None')
  );
}

/**
 * Pauses before running a transaction again that collided with another on the same item (the SDK
 * does not retry those); full jitter, so the two do not collide again.
 */
const CONFLICT_RETRY_DELAYS_MS = [20, 50, 100, 200, 400];

/**
 * Runs a transaction; a failed condition is an expected outcome (the positions of the items whose
 * condition failed), a collision with another transaction is retried, anything else is thrown.
 */
export async function transactWrite(
  db: Pick<DynamoDBDocumentClient, 'send'>,
  input: TransactWriteCommandInput,
  retryDelaysMs: readonly number[] = CONFLICT_RETRY_DELAYS_MS,
): Promise<Result<void, number[]>> {
  for (let attempt = 0; ; attempt++) {
    try {
      await db.send(new TransactWriteCommand(input));
      return ok(undefined);
    } catch (error) {
      if (!(error instanceof TransactionCanceledException)) throw error;
      const failed = failedConditions(error);
      if (failed.length > 0) return err(failed);
      const delay = retryDelaysMs[attempt];
      if (!conflictedOnly(error) || delay === undefined) throw error;
      await new Promise((resolve) => setTimeout(resolve, Math.random() * delay));
    }
  }
}

/** BatchGetItem's limit on keys per request. */
const BATCH_GET_MAX = 100;

export interface BatchGetOptions {
  /** Strongly consistent reads (an index lags its table; a checked read must not). */
  readonly consistent?: boolean;
  readonly projection?: string;
  /** Pauses before retrying unprocessed keys, with full jitter; when they run out, it throws. */
  readonly retryDelaysMs?: readonly number[];
}

/**
 * Reads the items at `keys` with BatchGetItem, 100 keys per request, retrying the keys DynamoDB
 * leaves unprocessed (it asks for backoff) until none is left. Missing items are simply absent;
 * the order is DynamoDB's, not the keys'.
 */
export async function batchGetItems(
  db: Pick<DynamoDBDocumentClient, 'send'>,
  tableName: string,
  keys: readonly Record<string, unknown>[],
  options: BatchGetOptions = {},
): Promise<Record<string, unknown>[]> {
  const delays = options.retryDelaysMs ?? [50, 100, 200, 400, 800, 1600, 3200];
  const found: Record<string, unknown>[] = [];
  for (let i = 0; i < keys.length; i += BATCH_GET_MAX) {
    let pending = keys.slice(i, i + BATCH_GET_MAX);
    for (let attempt = 0; pending.length > 0; attempt++) {
      const out = await db.send(
        new BatchGetCommand({
          RequestItems: {
            [tableName]: {
              Keys: [...pending],
              ...(options.consistent ? { ConsistentRead: true } : {}),
              ...(options.projection ? { ProjectionExpression: options.projection } : {}),
            },
          },
        }),
      );
      found.push(...(out.Responses?.[tableName] ?? []));
      pending = (out.UnprocessedKeys?.[tableName]?.Keys ?? []) as Record<string, unknown>[];
      if (pending.length === 0) break;
      const delay = delays[attempt];
      if (delay === undefined)
        throw new Error(`BatchGetItem left ${pending.length} key(s) unprocessed after ${attempt + 1} tries`);
      await new Promise((resolve) => setTimeout(resolve, Math.random() * delay));
    }
  }
  return found;
}
