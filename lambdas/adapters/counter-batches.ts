import type { DynamoDBDocumentClient, TransactWriteCommandInput } from '@aws-sdk/lib-dynamodb';
import { type CounterDeltas, executionStates } from '../domain/deployment/index.ts';
import { err, ok, type Result } from '../domain/result.ts';
import { transactWrite } from './dynamodb.ts';

/**
 * The counter projection's write (ADR 0040): one stream batch's deltas for one deployment, added
 * to the deployment item exactly once. Lambda's DynamoDB stream event does not name its shard,
 * and a hot deployment's executions can be spread over several shards read in parallel (DynamoDB
 * splits a busy item collection), so a "last sequence number" watermark could drop a batch. The
 * guard is instead a marker item named by the batch's content (its stream event ids), written in
 * the same transaction as the counters: a redelivered batch finds its marker and adds nothing.
 */
export interface CounterBatch {
  /** Names this deployment's records of one batch (stream-counters `batchKey`). */
  readonly key: string;
  /** Epoch seconds after which the marker may go (TTL): past the stream's 24-hour retention. */
  readonly expiresAt: number;
}

export type CounterBatchError =
  | { readonly code: 'BATCH_ALREADY_APPLIED'; readonly deploymentId: string }
  | { readonly code: 'DEPLOYMENT_NOT_FOUND'; readonly deploymentId: string };

export interface CounterBatches {
  add(
    deploymentId: string,
    deltas: CounterDeltas,
    batch: CounterBatch,
  ): Promise<Result<void, CounterBatchError>>;
}

export interface CounterBatchesOptions {
  readonly db: Pick<DynamoDBDocumentClient, 'send'>;
  /** The deployments table: markers live beside the deployment items, under their own keys. */
  readonly tableName: string;
  /**
   * Pauses before retrying a transaction that collided with another on the same deployment item
   * (two shards' batches at once). @default [20, 50, 100, 200]
   */
  readonly conflictRetryDelaysMs?: readonly number[];
}

/** The marker's key: it can never collide with a deployment id (those never start with `#`). */
export const counterBatchMarkerKey = (deploymentId: string, batchKey: string): string =>
  `#counted#${deploymentId}#${batchKey}`;

export function makeCounterBatches({
  db,
  tableName,
  conflictRetryDelaysMs,
}: CounterBatchesOptions): CounterBatches {
  const retryDelays = conflictRetryDelaysMs ?? [20, 50, 100, 200];
  async function add(
    deploymentId: string,
    deltas: CounterDeltas,
    batch: CounterBatch,
  ): Promise<Result<void, CounterBatchError>> {
    const changed = executionStates.filter((state) => (deltas[state] ?? 0) !== 0);
    if (changed.length === 0) return ok(undefined);
    const names: Record<string, string> = {};
    const values: Record<string, unknown> = { ':zero': 0 };
    const set = changed.map((state, i) => {
      names[`#c${i}`] = state;
      values[`:d${i}`] = deltas[state];
      return `counters.#c${i} = if_not_exists(counters.#c${i}, :zero) + :d${i}`;
    });
    const input: TransactWriteCommandInput = {
      TransactItems: [
        {
          Put: {
            TableName: tableName,
            Item: {
              deploymentId: counterBatchMarkerKey(deploymentId, batch.key),
              expiresAt: batch.expiresAt,
            },
            // Invariant: a batch's records count once; the marker exists iff they were counted.
            ConditionExpression: 'attribute_not_exists(deploymentId)',
          },
        },
        {
          Update: {
            TableName: tableName,
            Key: { deploymentId },
            UpdateExpression: `SET ${set.join(', ')}`,
            // Invariant: counters never create a deployment item.
            ConditionExpression: 'attribute_exists(deploymentId)',
            ExpressionAttributeNames: names,
            ExpressionAttributeValues: values,
          },
        },
      ],
    };
    const written = await transactWrite(db, input, retryDelays);
    if (written.ok) return written;
    if (written.error.includes(0)) return err({ code: 'BATCH_ALREADY_APPLIED', deploymentId });
    return err({ code: 'DEPLOYMENT_NOT_FOUND', deploymentId });
  }

  return { add };
}
