import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import {
  type DynamoDBDocumentClient,
  GetCommand,
  type TransactWriteCommandInput,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import { deploymentsTable } from '../definitions/tables.ts';
import {
  type CounterDeltas,
  type DeploymentPolicy,
  type DeploymentTarget,
  emptyCounters,
  executionStates,
  type RolloutBucket,
  type StateCounters,
} from '../domain/deployment/index.ts';
import { err, ok, type Result } from '../domain/result.ts';
import { transactWrite } from './dynamodb.ts';
import { listPartitions } from './partition-listing.ts';
import { type UpdateIdentity, updateItemKey } from './update-store.ts';

/**
 * A deployment's life (ADR 0040): `scheduled` → `expanding` → `rolling_out` → one of the ended
 * statuses. A retry reopens a `completed` or `aborted` deployment (`rolling_out` again).
 */
export const deploymentStatuses = [
  'scheduled',
  'expanding',
  'rolling_out',
  'completed',
  'aborted',
  'canceled',
] as const;
export type DeploymentStatus = (typeof deploymentStatuses)[number];
export const activeDeploymentStatuses = ['scheduled', 'expanding', 'rolling_out'] as const;
export type ActiveDeploymentStatus = (typeof activeDeploymentStatuses)[number];
export type EndedDeploymentStatus = Exclude<DeploymentStatus, ActiveDeploymentStatus>;

export function isActiveStatus(status: DeploymentStatus): status is ActiveDeploymentStatus {
  return (activeDeploymentStatuses as readonly string[]).includes(status);
}

/** The per-deployment signed manifest the fan-out puts in `desired.ota` (ADR 0010). */
export interface SignedDeploymentManifest {
  /** The update manifest's canonical text (inline form). */
  readonly inline: string;
  /** The mini manifest referencing the full one, used when the inline form does not fit the shadow. */
  readonly detached?: string;
  /** ES256 compact JWS with the deployment's claims (deploymentId, rollback) and expiry. */
  readonly signature: string;
  readonly keyId: string;
  /** ISO time the signature expires. */
  readonly expiresAt: string;
}

/**
 * One fan-out lane's checkpoint and lease (`fanout.<lane>`): lane `expand` walks the target,
 * lanes `0`..`shards-1` notify the devices of their shard. `cursor` is opaque to the store.
 */
export interface FanoutLane {
  readonly cursor?: string;
  readonly bucket?: RolloutBucket;
  /** True once the lane has nothing left (expansion finished, or the shard's queue was empty). */
  readonly done?: boolean;
  /** Epoch ms; the lease is free when it lies in the past. */
  readonly leaseUntil: number;
  readonly leaseOwner?: string;
}

export const EXPAND_LANE = 'expand';

export interface DeploymentRecord {
  readonly deploymentId: string;
  readonly updateId: UpdateIdentity;
  readonly target: DeploymentTarget;
  readonly policy: DeploymentPolicy;
  readonly status: DeploymentStatus;
  /** ISO; sorts the `byStatus` index. */
  readonly createdAt: string;
  readonly updatedAt: string;
  /** Epoch ms the rollout may start (the policy's start time, or creation). */
  readonly startAt: number;
  readonly startedAt?: string;
  readonly endedAt?: string;
  readonly abortReason?: string;
  readonly counters: StateCounters;
  readonly manifest: SignedDeploymentManifest;
  /** Number of notify lanes (shards); a thing's shard is `shardOf(thingName, shards)`. */
  readonly shards: number;
  readonly fanout: Readonly<Record<string, FanoutLane>>;
  /** True while the deployment counts in its update's `activeDeployments`. */
  readonly holdsUpdate: boolean;
  /** SHA-256 of the creating request, when it came with an idempotency key: a replay must match it. */
  readonly requestHash?: string;
  /** How far cancel has walked the table's queued first attempts (unindexed), once it started. */
  readonly cancelWalk?: CancelWalk;
}

/**
 * The cancel's walk of a deployment's queued first attempts, in thing-name order: the last
 * thing passed, and whether the walk reached the end. It is saved only once no expansion can add
 * rows (walkUnfinished's `rowsFinal`), so one forward walk meets each once.
 */
export interface CancelWalk {
  readonly cursor?: string;
  readonly done: boolean;
}

export interface NewDeployment {
  readonly deploymentId: string;
  readonly updateId: UpdateIdentity;
  readonly target: DeploymentTarget;
  readonly policy: DeploymentPolicy;
  readonly manifest: SignedDeploymentManifest;
  readonly shards: number;
  readonly requestHash?: string;
}

export type DeploymentStoreError =
  | { readonly code: 'DEPLOYMENT_EXISTS'; readonly deploymentId: string }
  | { readonly code: 'DEPLOYMENT_NOT_FOUND'; readonly deploymentId: string }
  /** The update is gone or not ready (it was deleted or changed between the check and the write). */
  | { readonly code: 'UPDATE_NOT_READY'; readonly updateId: UpdateIdentity }
  | {
      readonly code: 'DEPLOYMENT_STATUS_CONFLICT';
      readonly deploymentId: string;
      readonly status: DeploymentStatus | undefined;
      readonly message: string;
    }
  | {
      readonly code: 'LEASE_HELD';
      readonly deploymentId: string;
      readonly lane: string;
      readonly leaseOwner?: string;
      readonly leaseUntil?: number;
    }
  /** The counters batch (stream shard, sequence number) was applied before: a redelivery. */
  | { readonly code: 'BATCH_ALREADY_APPLIED'; readonly deploymentId: string; readonly shardId: string }
  | { readonly code: 'INVALID_NEXT_TOKEN' };

export interface DeploymentPage {
  readonly items: readonly DeploymentRecord[];
  readonly nextToken?: string;
}

export interface Lease {
  readonly owner: string;
  /** Epoch ms. */
  readonly now: number;
}

export interface DeploymentStore {
  /** Writes a new `scheduled` deployment and counts it in its update's `activeDeployments`, in one transaction. */
  create(deployment: NewDeployment, now: number): Promise<Result<DeploymentRecord, DeploymentStoreError>>;
  get(deploymentId: string): Promise<DeploymentRecord | undefined>;
  /** Replaces the signed manifest (a renewed signature); the fan-out sends it from then on. */
  replaceManifest(
    deploymentId: string,
    manifest: SignedDeploymentManifest,
    now: number,
  ): Promise<Result<DeploymentRecord, DeploymentStoreError>>;
  /** Newest first; without a status, active deployments first, then ended ones. */
  list(query: {
    readonly status?: DeploymentStatus;
    readonly limit: number;
    readonly nextToken?: string;
  }): Promise<Result<DeploymentPage, DeploymentStoreError>>;
  /** Moves an active deployment forward (`expanding`, `rolling_out`); `startedAt` is stamped once. */
  setStatus(
    deploymentId: string,
    status: 'expanding' | 'rolling_out',
    now: number,
  ): Promise<Result<DeploymentRecord, DeploymentStoreError>>;
  /**
   * Ends an active deployment and releases its update (`activeDeployments - 1`) in one
   * transaction, so the update is released exactly once whoever ends it (worker, scheduler, API).
   */
  end(
    deploymentId: string,
    outcome: { readonly status: EndedDeploymentStatus; readonly abortReason?: string },
    now: number,
  ): Promise<Result<DeploymentRecord, DeploymentStoreError>>;
  /** `end` with status `aborted` and the reason from `evaluateAbort`. */
  recordAbort(
    deploymentId: string,
    reason: string,
    now: number,
  ): Promise<Result<DeploymentRecord, DeploymentStoreError>>;
  /** For a retry: a `completed` or `aborted` deployment is `rolling_out` again and holds its update again. */
  reopen(deploymentId: string, now: number): Promise<Result<DeploymentRecord, DeploymentStoreError>>;
  /** Takes (or renews, same owner) the lease of a lane until `until` (epoch ms); only while the deployment is active. */
  acquireLease(
    deploymentId: string,
    lane: string,
    lease: Lease,
    until: number,
  ): Promise<Result<FanoutLane, DeploymentStoreError>>;
  releaseLease(deploymentId: string, lane: string, owner: string): Promise<void>;
  /** Saves a lane's progress, only while `lease.owner` still holds a live lease on it. */
  saveFanoutCheckpoint(
    deploymentId: string,
    lane: string,
    checkpoint: { readonly cursor?: string; readonly bucket?: RolloutBucket; readonly done?: boolean },
    lease: Lease & { readonly extendUntil?: number },
  ): Promise<Result<void, DeploymentStoreError>>;
  /** Moves the cancel's walk forward (never back: racing cancels may save out of order). */
  saveCancelWalk(deploymentId: string, walk: CancelWalk): Promise<void>;
  /** Adds a stream batch's counter deltas once per (stream shard, last sequence number). */
  addCounters(
    deploymentId: string,
    deltas: CounterDeltas,
    batch: { readonly shardId: string; readonly lastSequence: string },
  ): Promise<Result<void, DeploymentStoreError>>;
}

export interface DeploymentStoreOptions {
  readonly db: Pick<DynamoDBDocumentClient, 'send'>;
  readonly tableName: string;
  /** The updates table, whose items' `activeDeployments` a deployment holds (update-store). */
  readonly updatesTableName: string;
  /** @default 'byStatus' */
  readonly byStatusIndex?: string;
}

type Item = Record<string, unknown>;

/**
 * Stream sequence numbers are decimal strings of up to 40 digits; left-padded to one width they
 * compare as strings in numeric order, which a ConditionExpression can do (numbers that long would
 * not fit DynamoDB's 38 digits).
 */
export const SEQUENCE_WIDTH = 48;
export function paddedSequence(sequence: string): string {
  if (!/^\d{1,48}$/.test(sequence)) throw new Error(`bug: not a stream sequence number: "${sequence}"`);
  return sequence.padStart(SEQUENCE_WIDTH, '0');
}

/** Listing order without a status filter: what an operator looks for first. */
const LISTING_ORDER: readonly DeploymentStatus[] = [
  'rolling_out',
  'expanding',
  'scheduled',
  'completed',
  'aborted',
  'canceled',
];

/** Statuses each forward status may be reached from. */
const FORWARD_FROM: Readonly<Record<'expanding' | 'rolling_out', readonly DeploymentStatus[]>> = {
  expanding: ['scheduled'],
  rolling_out: ['scheduled', 'expanding'],
};

function deploymentFromItem(item: Item): DeploymentRecord {
  const record: Record<string, unknown> = {
    deploymentId: String(item.deploymentId),
    updateId: item.updateId as UpdateIdentity,
    target: item.target as DeploymentTarget,
    policy: item.policy as DeploymentPolicy,
    status: item.status as DeploymentStatus,
    createdAt: String(item.createdAt),
    updatedAt: String(item.updatedAt ?? item.createdAt),
    startAt: Number(item.startAt),
    startedAt: item.startedAt,
    endedAt: item.endedAt,
    abortReason: item.abortReason,
    counters: { ...emptyCounters(), ...((item.counters ?? {}) as Partial<StateCounters>) },
    manifest: item.manifest as SignedDeploymentManifest,
    shards: Number(item.shards ?? 1),
    fanout: (item.fanout ?? {}) as Record<string, FanoutLane>,
    holdsUpdate: item.holdsUpdate === true,
    requestHash: typeof item.requestHash === 'string' ? item.requestHash : undefined,
    cancelWalk:
      item.cancelWalked === true || typeof item.cancelCursor === 'string'
        ? {
            done: item.cancelWalked === true,
            ...(typeof item.cancelCursor === 'string' ? { cursor: item.cancelCursor } : {}),
          }
        : undefined,
  };
  for (const key of Object.keys(record)) if (record[key] === undefined) delete record[key];
  return record as unknown as DeploymentRecord;
}

function laneNames(shards: number): string[] {
  return [EXPAND_LANE, ...Array.from({ length: shards }, (_, i) => String(i))];
}

export function makeDeploymentStore(options: DeploymentStoreOptions): DeploymentStore {
  const { db, tableName, updatesTableName } = options;
  const byStatus = options.byStatusIndex ?? deploymentsTable.globalIndexes[0]?.indexName ?? 'byStatus';
  const key = (deploymentId: string) => ({ deploymentId });

  async function get(deploymentId: string): Promise<DeploymentRecord | undefined> {
    const { Item } = await db.send(
      new GetCommand({ TableName: tableName, Key: key(deploymentId), ConsistentRead: true }),
    );
    return Item ? deploymentFromItem(Item) : undefined;
  }

  async function mustGet(deploymentId: string): Promise<DeploymentRecord> {
    const record = await get(deploymentId);
    if (!record) throw new Error(`bug: deployment ${deploymentId} vanished after a successful write`);
    return record;
  }

  /** Why a status write did not apply, from the item as it is now. */
  async function statusConflict(deploymentId: string, wanted: string): Promise<DeploymentStoreError> {
    const current = await get(deploymentId);
    if (!current) return { code: 'DEPLOYMENT_NOT_FOUND', deploymentId };
    return {
      code: 'DEPLOYMENT_STATUS_CONFLICT',
      deploymentId,
      status: current.status,
      message: `the deployment is ${current.status}; it cannot become ${wanted}`,
    };
  }

  /**
   * The transaction item by which a live deployment holds its update. Invariant: only a ready
   * update is deployed, and while a deployment holds it the update cannot be deleted
   * (update-store's beginDelete checks the count); it may have been deleted since a deployment
   * ended, so a reopen checks again.
   */
  const holdUpdate = (updateId: DeploymentRecord['updateId']) => ({
    Update: {
      TableName: updatesTableName,
      Key: updateItemKey(updateId),
      UpdateExpression: 'ADD activeDeployments :one',
      ConditionExpression: '#state = :ready',
      ExpressionAttributeNames: { '#state': 'state' },
      ExpressionAttributeValues: { ':one': 1, ':ready': 'ready' },
    },
  });

  const transact = (input: TransactWriteCommandInput): Promise<Result<void, number[]>> =>
    transactWrite(db, input);

  async function create(
    deployment: NewDeployment,
    now: number,
  ): Promise<Result<DeploymentRecord, DeploymentStoreError>> {
    const at = new Date(now).toISOString();
    const item: Item = {
      deploymentId: deployment.deploymentId,
      updateId: deployment.updateId,
      target: deployment.target,
      policy: deployment.policy,
      status: 'scheduled',
      createdAt: at,
      updatedAt: at,
      startAt: deployment.policy.startAt ?? now,
      counters: emptyCounters(),
      seq: {},
      manifest: deployment.manifest,
      shards: deployment.shards,
      fanout: Object.fromEntries(laneNames(deployment.shards).map((lane) => [lane, { leaseUntil: 0 }])),
      holdsUpdate: true,
      ...(deployment.requestHash ? { requestHash: deployment.requestHash } : {}),
    };
    const result = await transact({
      TransactItems: [
        {
          Put: {
            TableName: tableName,
            Item: item,
            // Invariant: a deployment id names one deployment; a retried create never overwrites it.
            ConditionExpression: 'attribute_not_exists(deploymentId)',
          },
        },
        holdUpdate(deployment.updateId),
      ],
    });
    if (!result.ok) {
      return result.error.includes(0)
        ? err({ code: 'DEPLOYMENT_EXISTS', deploymentId: deployment.deploymentId })
        : err({ code: 'UPDATE_NOT_READY', updateId: deployment.updateId });
    }
    return ok(deploymentFromItem(item));
  }

  async function replaceManifest(
    deploymentId: string,
    manifest: SignedDeploymentManifest,
    now: number,
  ): Promise<Result<DeploymentRecord, DeploymentStoreError>> {
    try {
      const { Attributes } = await db.send(
        new UpdateCommand({
          TableName: tableName,
          Key: key(deploymentId),
          UpdateExpression: 'SET manifest = :manifest, updatedAt = :at',
          ConditionExpression: 'attribute_exists(deploymentId)',
          ExpressionAttributeValues: { ':manifest': manifest, ':at': new Date(now).toISOString() },
          ReturnValues: 'ALL_NEW',
        }),
      );
      return ok(deploymentFromItem(Attributes ?? {}));
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException)
        return err({ code: 'DEPLOYMENT_NOT_FOUND', deploymentId });
      throw error;
    }
  }

  async function list(query: {
    readonly status?: DeploymentStatus;
    readonly limit: number;
    readonly nextToken?: string;
  }): Promise<Result<DeploymentPage, DeploymentStoreError>> {
    const page = await listPartitions(db, {
      tableName,
      indexName: byStatus,
      partitionAttribute: 'status',
      partitions: query.status ? [query.status] : LISTING_ORDER,
      keyNames: ['deploymentId', 'status', 'createdAt'],
      limit: query.limit,
      ...(query.nextToken !== undefined ? { nextToken: query.nextToken } : {}),
    });
    if (!page) return err({ code: 'INVALID_NEXT_TOKEN' });
    const items = page.items.map(deploymentFromItem);
    return ok(page.nextToken ? { items, nextToken: page.nextToken } : { items });
  }

  async function setStatus(
    deploymentId: string,
    status: 'expanding' | 'rolling_out',
    now: number,
  ): Promise<Result<DeploymentRecord, DeploymentStoreError>> {
    const from = FORWARD_FROM[status];
    const at = new Date(now).toISOString();
    try {
      const { Attributes } = await db.send(
        new UpdateCommand({
          TableName: tableName,
          Key: key(deploymentId),
          UpdateExpression:
            'SET #status = :status, updatedAt = :at, startedAt = if_not_exists(startedAt, :at)',
          // Invariant: a deployment's status only moves forward; an ended deployment never
          // becomes active again this way (only `reopen`, which re-takes the update, does that).
          ConditionExpression: `#status IN (${from.map((_, i) => `:from${i}`).join(', ')})`,
          ExpressionAttributeNames: { '#status': 'status' },
          ExpressionAttributeValues: {
            ':status': status,
            ':at': at,
            ...Object.fromEntries(from.map((s, i) => [`:from${i}`, s])),
          },
          ReturnValues: 'ALL_NEW',
        }),
      );
      return ok(deploymentFromItem(Attributes ?? {}));
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
      const current = await get(deploymentId);
      // Already there: an idempotent repeat, not a conflict.
      if (current?.status === status) return ok(current);
      return err(await statusConflict(deploymentId, status));
    }
  }

  async function end(
    deploymentId: string,
    outcome: { readonly status: EndedDeploymentStatus; readonly abortReason?: string },
    now: number,
  ): Promise<Result<DeploymentRecord, DeploymentStoreError>> {
    const current = await get(deploymentId);
    if (!current) return err({ code: 'DEPLOYMENT_NOT_FOUND', deploymentId });
    if (!isActiveStatus(current.status)) return err(await statusConflict(deploymentId, outcome.status));
    const at = new Date(now).toISOString();
    const result = await transact({
      TransactItems: [
        {
          Update: {
            TableName: tableName,
            Key: key(deploymentId),
            UpdateExpression: `SET #status = :status, endedAt = :at, updatedAt = :at, holdsUpdate = :false${
              outcome.abortReason !== undefined ? ', abortReason = :reason' : ''
            }`,
            // Invariant: a deployment ends once, from an active status, and releases its update
            // exactly once (the hold and the status change in this one transaction).
            ConditionExpression: `#status IN (:s0, :s1, :s2) AND holdsUpdate = :true`,
            ExpressionAttributeNames: { '#status': 'status' },
            ExpressionAttributeValues: {
              ':status': outcome.status,
              ':at': at,
              ':false': false,
              ':true': true,
              ':s0': activeDeploymentStatuses[0],
              ':s1': activeDeploymentStatuses[1],
              ':s2': activeDeploymentStatuses[2],
              ...(outcome.abortReason !== undefined ? { ':reason': outcome.abortReason } : {}),
            },
          },
        },
        {
          Update: {
            TableName: updatesTableName,
            Key: updateItemKey(current.updateId),
            UpdateExpression: 'ADD activeDeployments :minusOne',
            // Invariant: the count never goes below zero.
            ConditionExpression: 'activeDeployments > :zero',
            ExpressionAttributeValues: { ':minusOne': -1, ':zero': 0 },
          },
        },
      ],
    });
    if (!result.ok) {
      if (result.error.includes(0)) return err(await statusConflict(deploymentId, outcome.status));
      throw new Error(`bug: update ${JSON.stringify(current.updateId)} is held but its count is zero`);
    }
    return ok(await mustGet(deploymentId));
  }

  async function reopen(
    deploymentId: string,
    now: number,
  ): Promise<Result<DeploymentRecord, DeploymentStoreError>> {
    const current = await get(deploymentId);
    if (!current) return err({ code: 'DEPLOYMENT_NOT_FOUND', deploymentId });
    if (current.status === 'rolling_out') return ok(current);
    if (current.status !== 'completed' && current.status !== 'aborted') {
      return err(await statusConflict(deploymentId, 'rolling_out'));
    }
    const at = new Date(now).toISOString();
    const result = await transact({
      TransactItems: [
        {
          Update: {
            TableName: tableName,
            Key: key(deploymentId),
            UpdateExpression:
              'SET #status = :rolling, updatedAt = :at, holdsUpdate = :true REMOVE endedAt, abortReason, cancelCursor, cancelWalked',
            // Invariant: only an ended deployment that released its update reopens, once, and it
            // takes the update again in the same transaction.
            ConditionExpression: '#status = :was AND holdsUpdate = :false',
            ExpressionAttributeNames: { '#status': 'status' },
            ExpressionAttributeValues: {
              ':rolling': 'rolling_out',
              ':at': at,
              ':true': true,
              ':false': false,
              ':was': current.status,
            },
          },
        },
        holdUpdate(current.updateId),
      ],
    });
    if (!result.ok) {
      return result.error.includes(0)
        ? err(await statusConflict(deploymentId, 'rolling_out'))
        : err({ code: 'UPDATE_NOT_READY', updateId: current.updateId });
    }
    return ok(await mustGet(deploymentId));
  }

  async function acquireLease(
    deploymentId: string,
    lane: string,
    lease: Lease,
    until: number,
  ): Promise<Result<FanoutLane, DeploymentStoreError>> {
    try {
      const { Attributes } = await db.send(
        new UpdateCommand({
          TableName: tableName,
          Key: key(deploymentId),
          UpdateExpression: 'SET fanout.#lane.leaseOwner = :owner, fanout.#lane.leaseUntil = :until',
          // Invariant: one worker at a time per lane of an active deployment: the lease is free
          // (expired) or already this owner's (a renewal).
          ConditionExpression:
            '#status IN (:s0, :s1, :s2) AND attribute_exists(fanout.#lane) AND ' +
            '(fanout.#lane.leaseUntil < :now OR fanout.#lane.leaseOwner = :owner)',
          ExpressionAttributeNames: { '#lane': lane, '#status': 'status' },
          ExpressionAttributeValues: {
            ':owner': lease.owner,
            ':until': until,
            ':now': lease.now,
            ':s0': activeDeploymentStatuses[0],
            ':s1': activeDeploymentStatuses[1],
            ':s2': activeDeploymentStatuses[2],
          },
          ReturnValues: 'ALL_NEW',
        }),
      );
      const fanout = (Attributes?.fanout ?? {}) as Record<string, FanoutLane>;
      return ok(fanout[lane] ?? { leaseUntil: until, leaseOwner: lease.owner });
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
      const current = await get(deploymentId);
      if (!current) return err({ code: 'DEPLOYMENT_NOT_FOUND', deploymentId });
      if (!isActiveStatus(current.status)) return err(await statusConflict(deploymentId, current.status));
      const held = current.fanout[lane];
      return err({
        code: 'LEASE_HELD',
        deploymentId,
        lane,
        ...(held?.leaseOwner !== undefined ? { leaseOwner: held.leaseOwner } : {}),
        ...(held ? { leaseUntil: held.leaseUntil } : {}),
      });
    }
  }

  async function releaseLease(deploymentId: string, lane: string, owner: string): Promise<void> {
    try {
      await db.send(
        new UpdateCommand({
          TableName: tableName,
          Key: key(deploymentId),
          UpdateExpression: 'SET fanout.#lane.leaseUntil = :zero REMOVE fanout.#lane.leaseOwner',
          // Invariant: only the holder frees a lease; a worker whose lease expired and was taken
          // over must not free the new holder's.
          ConditionExpression: 'fanout.#lane.leaseOwner = :owner',
          ExpressionAttributeNames: { '#lane': lane },
          ExpressionAttributeValues: { ':owner': owner, ':zero': 0 },
        }),
      );
    } catch (error) {
      // Not the holder any more: nothing of ours to release.
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
    }
  }

  async function saveFanoutCheckpoint(
    deploymentId: string,
    lane: string,
    checkpoint: { readonly cursor?: string; readonly bucket?: RolloutBucket; readonly done?: boolean },
    lease: Lease & { readonly extendUntil?: number },
  ): Promise<Result<void, DeploymentStoreError>> {
    const set: string[] = [];
    const values: Record<string, unknown> = { ':owner': lease.owner, ':now': lease.now };
    const names: Record<string, string> = { '#lane': lane };
    const field = (name: 'cursor' | 'bucket' | 'done' | 'leaseUntil', value: unknown): void => {
      // Placeholders for the field names too: `cursor` is a DynamoDB reserved word.
      set.push(`fanout.#lane.#f_${name} = :${name}`);
      names[`#f_${name}`] = name;
      values[`:${name}`] = value;
    };
    if (checkpoint.cursor !== undefined) field('cursor', checkpoint.cursor);
    if (checkpoint.bucket !== undefined) field('bucket', checkpoint.bucket);
    if (checkpoint.done !== undefined) field('done', checkpoint.done);
    if (lease.extendUntil !== undefined) field('leaseUntil', lease.extendUntil);
    if (set.length === 0) return ok(undefined);
    try {
      await db.send(
        new UpdateCommand({
          TableName: tableName,
          Key: key(deploymentId),
          UpdateExpression: `SET ${set.join(', ')}`,
          // Invariant: only the live lease holder moves a lane's checkpoint, so a worker that lost
          // its lease (paused past expiry) cannot move the cursor back under the new holder.
          ConditionExpression: 'fanout.#lane.leaseOwner = :owner AND fanout.#lane.leaseUntil >= :now',
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: values,
        }),
      );
      return ok(undefined);
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
      const current = await get(deploymentId);
      if (!current) return err({ code: 'DEPLOYMENT_NOT_FOUND', deploymentId });
      const held = current.fanout[lane];
      return err({
        code: 'LEASE_HELD',
        deploymentId,
        lane,
        ...(held?.leaseOwner !== undefined ? { leaseOwner: held.leaseOwner } : {}),
        ...(held ? { leaseUntil: held.leaseUntil } : {}),
      });
    }
  }

  async function saveCancelWalk(deploymentId: string, walk: CancelWalk): Promise<void> {
    if (walk.done) {
      await db
        .send(
          new UpdateCommand({
            TableName: tableName,
            Key: key(deploymentId),
            UpdateExpression: 'SET cancelWalked = :true',
            ConditionExpression: 'attribute_exists(deploymentId)',
            ExpressionAttributeValues: { ':true': true },
          }),
        )
        .catch(ignoreConditionFailure);
      return;
    }
    if (walk.cursor === undefined) return;
    await db
      .send(
        new UpdateCommand({
          TableName: tableName,
          Key: key(deploymentId),
          UpdateExpression: 'SET cancelCursor = :cursor',
          ConditionExpression:
            'attribute_exists(deploymentId) AND (attribute_not_exists(cancelCursor) OR cancelCursor < :cursor)',
          ExpressionAttributeValues: { ':cursor': walk.cursor },
        }),
      )
      .catch(ignoreConditionFailure);
  }

  async function addCounters(
    deploymentId: string,
    deltas: CounterDeltas,
    batch: { readonly shardId: string; readonly lastSequence: string },
  ): Promise<Result<void, DeploymentStoreError>> {
    const changed = executionStates.filter((state) => (deltas[state] ?? 0) !== 0);
    const names: Record<string, string> = { '#shard': batch.shardId };
    const values: Record<string, unknown> = { ':last': paddedSequence(batch.lastSequence), ':zero': 0 };
    const set = ['seq.#shard = :last'];
    changed.forEach((state, i) => {
      names[`#c${i}`] = state;
      values[`:d${i}`] = deltas[state];
      set.push(`counters.#c${i} = if_not_exists(counters.#c${i}, :zero) + :d${i}`);
    });
    try {
      await db.send(
        new UpdateCommand({
          TableName: tableName,
          Key: key(deploymentId),
          UpdateExpression: `SET ${set.join(', ')}`,
          // Invariant: each stream batch counts once: its last sequence number must be beyond the
          // last one applied from the same stream shard (sequence numbers grow within a shard), so a
          // redelivered batch is refused; and counters never create a deployment item.
          ConditionExpression:
            'attribute_exists(deploymentId) AND (attribute_not_exists(seq.#shard) OR seq.#shard < :last)',
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: values,
        }),
      );
      return ok(undefined);
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
      const exists = (await get(deploymentId)) !== undefined;
      return err(
        exists
          ? { code: 'BATCH_ALREADY_APPLIED', deploymentId, shardId: batch.shardId }
          : { code: 'DEPLOYMENT_NOT_FOUND', deploymentId },
      );
    }
  }

  return {
    create,
    get,
    replaceManifest,
    list,
    setStatus,
    end,
    recordAbort: (deploymentId, reason, now) =>
      end(deploymentId, { status: 'aborted', abortReason: reason }, now),
    reopen,
    acquireLease,
    releaseLease,
    saveFanoutCheckpoint,
    saveCancelWalk,
    addCounters,
  };
}

/** A refused condition is the answer "someone got there first": nothing to do. */
function ignoreConditionFailure(error: unknown): void {
  if (!(error instanceof ConditionalCheckFailedException)) throw error;
}
