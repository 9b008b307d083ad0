import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { DeviceProperties } from '../domain/deployment/index.ts';
import { batchGetItems } from './dynamodb.ts';

/**
 * The read the fan-out needs that the stores do not offer: the fleet's known compatibility of
 * many devices at once (BatchGetItem).
 */
export interface FanoutReads {
  /** Reported compatibility per thing, for the things the fleet table knows with one. */
  compatibilityOf(thingNames: readonly string[]): Promise<Map<string, DeviceProperties>>;
}

export interface FanoutReadsOptions {
  readonly db: Pick<DynamoDBDocumentClient, 'send'>;
  readonly fleetTable: string;
}

export function makeFanoutReads(options: FanoutReadsOptions): FanoutReads {
  const { db } = options;

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

  return { compatibilityOf };
}
