import { type DynamoDBDocumentClient, QueryCommand } from '@aws-sdk/lib-dynamodb';
import type { DeviceProperties } from '../domain/deployment/index.ts';
import { batchGetItems } from './dynamodb.ts';
import { type ExecutionRecord, executionFromItem } from './execution-store.ts';

/**
 * The two reads the fan-out needs that the stores do not offer: the walk over a deployment's
 * queued executions of one shard in key order (base table, strongly consistent, so a device the
 * walk has just notified is never read as queued again), and the fleet's known compatibility of
 * many devices at once (BatchGetItem).
 */
export interface QueuedPage {
  readonly items: readonly ExecutionRecord[];
  /** The last thing name the read looked at, matching or not: where the next read starts. */
  readonly lastThingName?: string;
  /** True when the walk reached the end of the deployment's executions. */
  readonly exhausted: boolean;
}

export interface FanoutReads {
  /** Up to `scan` executions after `afterThingName`, keeping the queued ones of `shard`. */
  queuedAfter(
    deploymentId: string,
    shard: number,
    afterThingName: string | undefined,
    scan: number,
  ): Promise<QueuedPage>;
  /** Reported compatibility per thing, for the things the fleet table knows with one. */
  compatibilityOf(thingNames: readonly string[]): Promise<Map<string, DeviceProperties>>;
}

export interface FanoutReadsOptions {
  readonly db: Pick<DynamoDBDocumentClient, 'send'>;
  readonly executionsTable: string;
  readonly fleetTable: string;
}

export function makeFanoutReads(options: FanoutReadsOptions): FanoutReads {
  const { db } = options;

  async function queuedAfter(
    deploymentId: string,
    shard: number,
    afterThingName: string | undefined,
    scan: number,
  ): Promise<QueuedPage> {
    const out = await db.send(
      new QueryCommand({
        TableName: options.executionsTable,
        KeyConditionExpression: 'deploymentId = :d',
        FilterExpression: '#state = :queued AND #shard = :shard',
        ExpressionAttributeNames: { '#state': 'state', '#shard': 'shard' },
        ExpressionAttributeValues: { ':d': deploymentId, ':queued': 'queued', ':shard': shard },
        ConsistentRead: true,
        Limit: scan,
        ...(afterThingName ? { ExclusiveStartKey: { deploymentId, thingName: afterThingName } } : {}),
      }),
    );
    const items = (out.Items ?? []).map(executionFromItem);
    const last = out.LastEvaluatedKey?.thingName;
    return {
      items,
      exhausted: out.LastEvaluatedKey === undefined,
      ...(typeof last === 'string' ? { lastThingName: last } : {}),
    };
  }

  async function compatibilityOf(thingNames: readonly string[]): Promise<Map<string, DeviceProperties>> {
    const keys = [...new Set(thingNames)].map((thingName) => ({ thingName }));
    const items = await batchGetItems(db, options.fleetTable, keys, {
      projection: 'thingName, compatibility',
    });
    const result = new Map<string, DeviceProperties>();
    for (const item of items) {
      const compatibility = item.compatibility;
      if (typeof compatibility === 'object' && compatibility !== null) {
        result.set(String(item.thingName), compatibility as DeviceProperties);
      }
    }
    return result;
  }

  return { queuedAfter, compatibilityOf };
}
