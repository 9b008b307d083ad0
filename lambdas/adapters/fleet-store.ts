import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { type DynamoDBDocumentClient, GetCommand, ScanCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { type CompatibilitySet, type DeviceProperties, isCompatible } from '../domain/deployment/index.ts';
import type { UpdateId } from '../domain/manifest/index.ts';
import { err, ok, type Result } from '../domain/result.ts';
import { batchGetItems } from './dynamodb.ts';
import { decodePageToken, encodePageToken, type PageKey } from './page-token.ts';

/** What the service knows of one device (ADR 0040 fleet table). */
export interface FleetItem {
  readonly thingName: string;
  readonly installedUpdateId?: UpdateId;
  readonly compatibility?: DeviceProperties;
  /** Epoch ms of the device's latest report applied. */
  readonly lastReportAt?: number;
  readonly updatedAt?: string;
}

export interface DeviceReportFacts {
  /** Absent: the report did not say (the stored value is kept). */
  readonly installedUpdateId?: UpdateId;
  readonly compatibility?: DeviceProperties;
  /** Epoch ms of the report. */
  readonly lastReportAt: number;
}

export interface FleetPage {
  readonly items: readonly FleetItem[];
  /** Opaque; absent when the whole table has been read. */
  readonly nextToken?: string;
}

export interface FleetStore {
  get(thingName: string): Promise<FleetItem | undefined>;
  /** The items of these devices (strongly consistent, 100 to a request); a device unknown has none. */
  getMany(thingNames: readonly string[]): Promise<ReadonlyMap<string, FleetItem>>;
  /**
   * Records a device report (creating the item on a device's first report). An older report than
   * the one recorded changes nothing: `applied` is false.
   */
  upsertReport(thingName: string, facts: DeviceReportFacts): Promise<{ readonly applied: boolean }>;
  /**
   * One page of a Scan of the fleet, keeping the devices whose reported compatibility matches any
   * of `sets`. A page may hold fewer than `limit` matches (even none) and still have a `nextToken`.
   */
  scanCompatible(
    sets: readonly CompatibilitySet[],
    page: { readonly limit: number; readonly nextToken?: string },
  ): Promise<Result<FleetPage, { readonly code: 'INVALID_NEXT_TOKEN' }>>;
}

export interface FleetStoreOptions {
  readonly db: Pick<DynamoDBDocumentClient, 'send'>;
  readonly tableName: string;
}

type Item = Record<string, unknown>;

function fleetFromItem(item: Item): FleetItem {
  const record: Record<string, unknown> = {
    thingName: String(item.thingName),
    installedUpdateId: item.installedUpdateId,
    compatibility: item.compatibility,
    lastReportAt: typeof item.lastReportAt === 'number' ? item.lastReportAt : undefined,
    updatedAt: item.updatedAt,
  };
  for (const key of Object.keys(record)) if (record[key] === undefined) delete record[key];
  return record as unknown as FleetItem;
}

export function makeFleetStore({ db, tableName }: FleetStoreOptions): FleetStore {
  async function get(thingName: string): Promise<FleetItem | undefined> {
    const { Item } = await db.send(
      new GetCommand({ TableName: tableName, Key: { thingName }, ConsistentRead: true }),
    );
    return Item ? fleetFromItem(Item) : undefined;
  }

  async function getMany(thingNames: readonly string[]): Promise<ReadonlyMap<string, FleetItem>> {
    const keys = [...new Set(thingNames)].map((thingName) => ({ thingName }));
    const items = await batchGetItems(db, tableName, keys, { consistent: true });
    return new Map(items.map((item) => [String(item.thingName), fleetFromItem(item)]));
  }

  async function upsertReport(
    thingName: string,
    facts: DeviceReportFacts,
  ): Promise<{ readonly applied: boolean }> {
    const set = ['lastReportAt = :at', 'updatedAt = :updated'];
    const values: Record<string, unknown> = {
      ':at': facts.lastReportAt,
      ':updated': new Date(facts.lastReportAt).toISOString(),
    };
    if (facts.installedUpdateId) {
      const { provider, name, version } = facts.installedUpdateId;
      set.push('installedUpdateId = :installed');
      values[':installed'] = { provider, name, version };
    }
    if (facts.compatibility) {
      set.push('compatibility = :compatibility');
      values[':compatibility'] = facts.compatibility;
    }
    try {
      await db.send(
        new UpdateCommand({
          TableName: tableName,
          Key: { thingName },
          UpdateExpression: `SET ${set.join(', ')}`,
          // Invariant: the fleet item describes the device's newest report; a late, older report
          // (async rule delivery reorders) never overwrites a newer one.
          ConditionExpression: 'attribute_not_exists(lastReportAt) OR lastReportAt <= :at',
          ExpressionAttributeValues: values,
        }),
      );
      return { applied: true };
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return { applied: false };
      throw error;
    }
  }

  async function scanCompatible(
    sets: readonly CompatibilitySet[],
    page: { readonly limit: number; readonly nextToken?: string },
  ): Promise<Result<FleetPage, { readonly code: 'INVALID_NEXT_TOKEN' }>> {
    const start = page.nextToken === undefined ? undefined : decodePageToken(page.nextToken, ['thingName']);
    if (page.nextToken !== undefined && start?.key === undefined) return err({ code: 'INVALID_NEXT_TOKEN' });
    const out = await db.send(
      new ScanCommand({
        TableName: tableName,
        // Devices that never reported their compatibility cannot match a compatibility target.
        FilterExpression: 'attribute_exists(compatibility)',
        Limit: page.limit,
        ...(start?.key ? { ExclusiveStartKey: start.key } : {}),
      }),
    );
    // Matching is the domain's rule (exact, case-sensitive values), so it runs here, not in a filter.
    const items = (out.Items ?? [])
      .map(fleetFromItem)
      .filter((item) => sets.length > 0 && isCompatible(item.compatibility ?? {}, sets));
    return ok(
      out.LastEvaluatedKey
        ? { items, nextToken: encodePageToken({ part: 0, key: out.LastEvaluatedKey as PageKey }) }
        : { items },
    );
  }

  return { get, getMany, upsertReport, scanCompatible };
}
