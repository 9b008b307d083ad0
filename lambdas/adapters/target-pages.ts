/**
 * A deployment's target list as the expansion read it (ADR 0040, "Target pages"): one item per
 * page of the target, in the deployments table, holding the page's thing names by fan-out lane.
 * A targeted device waits here until its first execution write (notified, canceled or
 * superseded), so each execution row is written once before its end.
 */
import { type DynamoDBDocumentClient, GetCommand } from '@aws-sdk/lib-dynamodb';
import { transactWrite } from './dynamodb.ts';

export interface TargetPages {
  /**
   * Writes page `seq` and adds its things to the deployment's `queued` counter, once: a page
   * written before (an expansion resumed after a crash) is left as it was, uncounted again.
   * Returns whether this call wrote it.
   */
  put(deploymentId: string, seq: number, lanes: ReadonlyMap<number, readonly string[]>): Promise<boolean>;
  /** Lane `lane`'s things on page `seq` ([] when it has none); undefined when there is no such page. */
  readLane(deploymentId: string, seq: number, lane: number): Promise<readonly string[] | undefined>;
}

export interface TargetPagesOptions {
  readonly db: Pick<DynamoDBDocumentClient, 'send'>;
  /** The deployments table. */
  readonly tableName: string;
}

/** Wide enough for any page count a deployment can reach; fixed width keeps pages in order. */
const SEQ_WIDTH = 7;

/** The page item's key: apart from deployment items (`#` cannot start a deployment id). */
export function targetPageKey(deploymentId: string, seq: number): { readonly deploymentId: string } {
  return { deploymentId: `#targets#${deploymentId}#${String(seq).padStart(SEQ_WIDTH, '0')}` };
}

export function makeTargetPages(options: TargetPagesOptions): TargetPages {
  const { db, tableName } = options;

  async function put(
    deploymentId: string,
    seq: number,
    lanes: ReadonlyMap<number, readonly string[]>,
  ): Promise<boolean> {
    const byLane = Object.fromEntries([...lanes].filter(([, things]) => things.length > 0));
    const count = Object.values(byLane).reduce((sum, things) => sum + things.length, 0);
    const written = await transactWrite(db, {
      TransactItems: [
        {
          Put: {
            TableName: tableName,
            Item: { ...targetPageKey(deploymentId, seq), lanes: byLane, things: count },
            ConditionExpression: 'attribute_not_exists(deploymentId)',
          },
        },
        {
          Update: {
            TableName: tableName,
            Key: { deploymentId },
            UpdateExpression: 'SET counters.#queued = if_not_exists(counters.#queued, :zero) + :count',
            ConditionExpression: 'attribute_exists(deploymentId)',
            ExpressionAttributeNames: { '#queued': 'queued' },
            ExpressionAttributeValues: { ':zero': 0, ':count': count },
          },
        },
      ],
    });
    if (written.ok) return true;
    if (written.error.includes(0)) return false;
    throw new Error(`target page ${seq} of ${deploymentId}: the deployment does not exist`);
  }

  async function readLane(
    deploymentId: string,
    seq: number,
    lane: number,
  ): Promise<readonly string[] | undefined> {
    const { Item } = await db.send(
      new GetCommand({
        TableName: tableName,
        Key: targetPageKey(deploymentId, seq),
        // Only this lane's names cross the wire (the read is billed by the whole item anyway).
        ProjectionExpression: 'deploymentId, lanes.#lane',
        ExpressionAttributeNames: { '#lane': String(lane) },
        ConsistentRead: true,
      }),
    );
    if (!Item) return undefined;
    const lanes = (Item.lanes ?? {}) as Record<string, unknown>;
    const things = lanes[String(lane)];
    return Array.isArray(things) ? things.map(String) : [];
  }

  return { put, readLane };
}
