import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import {
  type DynamoDBDocumentClient,
  GetCommand,
  type TransactWriteCommandInput,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import { updateIdKey } from '../domain/manifest/update-id.ts';
import { err, ok, type Result } from '../domain/result.ts';
import { batchGetItems, transactWrite } from './dynamodb.ts';
import { listPartitions } from './partition-listing.ts';

/** The identity ADU gives an update (structurally the domain's `UpdateId`). */
export interface UpdateIdentity {
  readonly provider: string;
  readonly name: string;
  readonly version: string;
}

/**
 * `pending`: reserved, files may still be uploading. `ready`: every file verified, the signed
 * update manifest written; deployable. `deleting`: a DELETE has begun removing the objects.
 */
export type UpdateState = 'pending' | 'ready' | 'deleting';
export const updateStates: readonly UpdateState[] = ['ready', 'pending', 'deleting'];

export interface StoredFile {
  readonly filename: string;
  readonly sizeInBytes: number;
  /** Base64 SHA-256, as the import manifest declares it. */
  readonly sha256: string;
  readonly objectKey: string;
  /** JSON pointer of the file in the import manifest, to name it in faults. */
  readonly manifestPath: string;
}

export interface StoredUpdateManifest {
  readonly objectKey: string;
  /** Base64 SHA-256 of the object's bytes, so a detached manifest can be referenced by hash. */
  readonly sha256: string;
  readonly sizeInBytes: number;
  /** ES256 compact JWS over the manifest's claims (signed at commit; deployments may sign anew). */
  readonly signature: string;
  /** `kid` of the key that made `signature`. */
  readonly keyId: string;
}

export interface UpdateRecord {
  readonly updateId: UpdateIdentity;
  readonly state: UpdateState;
  readonly createdAt: string;
  readonly committedAt?: string;
  /** Digest of the import manifest's canonical JSON: equal digests mean an identical re-import. */
  readonly importDigest: string;
  /** The import manifest as validated, JSON text. */
  readonly importManifest: string;
  readonly isDeployable: boolean;
  readonly files: readonly StoredFile[];
  /** Updates this one references through reference steps. */
  readonly children: readonly UpdateIdentity[];
  /** Keys (`provider/name/version`) of the parents that reference this update. */
  readonly referencedBy: readonly string[];
  /** Deployments currently using this update; DELETE is refused while it is above zero. */
  readonly activeDeployments: number;
  readonly updateManifest?: StoredUpdateManifest;
}

export type NewUpdate = Omit<
  UpdateRecord,
  'state' | 'createdAt' | 'committedAt' | 'activeDeployments' | 'updateManifest'
>;

export interface UpdatePage {
  readonly items: readonly UpdateRecord[];
  /** Opaque; absent on the last page. */
  readonly nextToken?: string;
}

export type StoreConflict =
  | { readonly code: 'UPDATE_CONFLICT'; readonly updateIds: readonly UpdateIdentity[] }
  | { readonly code: 'UPDATE_NOT_FOUND'; readonly updateId: UpdateIdentity }
  | { readonly code: 'UPDATE_IN_USE'; readonly updateId: UpdateIdentity; readonly reason: string }
  | { readonly code: 'UPDATE_NOT_PENDING'; readonly updateIds: readonly UpdateIdentity[] }
  | { readonly code: 'INVALID_NEXT_TOKEN' };

export interface UpdateStore {
  get(id: UpdateIdentity): Promise<UpdateRecord | undefined>;
  getMany(ids: readonly UpdateIdentity[]): Promise<Map<string, UpdateRecord>>;
  /** Writes new updates as `pending` and links existing children to their new parents, all or nothing. */
  reserve(
    updates: readonly NewUpdate[],
    links: readonly ChildLink[],
    now: Date,
  ): Promise<Result<void, StoreConflict>>;
  /** Moves pending updates to `ready` with their manifests, all or nothing. */
  markReady(commits: readonly ReadyCommit[], now: Date): Promise<Result<void, StoreConflict>>;
  beginDelete(id: UpdateIdentity): Promise<Result<UpdateRecord, StoreConflict>>;
  finishDelete(record: UpdateRecord): Promise<void>;
  list(query: {
    readonly state?: UpdateState;
    readonly limit: number;
    readonly nextToken?: string;
  }): Promise<Result<UpdatePage, StoreConflict>>;
  /** Counts a deployment that starts using a ready update (for the deployments feature). */
  acquireForDeployment(id: UpdateIdentity): Promise<Result<void, StoreConflict>>;
  releaseFromDeployment(id: UpdateIdentity): Promise<Result<void, StoreConflict>>;
}

export interface ChildLink {
  readonly child: UpdateIdentity;
  readonly parent: UpdateIdentity;
}

export interface ReadyCommit {
  readonly updateId: UpdateIdentity;
  readonly updateManifest: StoredUpdateManifest;
}

/** The canonical `provider/name/version` key (case-insensitive names, normalised version). */
export const updateKey = (id: UpdateIdentity): string => updateIdKey(id);

/**
 * pk `UPDATE#<provider>#<name>`, sk `<version>`, from the canonical key, so `Contoso/Toaster/1.0`
 * and `contoso/toaster/1.00` are one item. Neither part can contain `/` or `#` (ADU's character set).
 */
function primaryKey(id: UpdateIdentity): { pk: string; sk: string } {
  const [provider, name, version] = updateKey(id).split('/');
  return { pk: `UPDATE#${provider}#${name}`, sk: version ?? '' };
}

/** The item key of an update, for writes that join an update in a transaction (deployments hold and release it). */
export const updateItemKey = primaryKey;

type Item = Record<string, unknown>;

function toItem(update: NewUpdate, now: Date): Item {
  return {
    ...primaryKey(update.updateId),
    provider: update.updateId.provider,
    name: update.updateId.name,
    version: update.updateId.version,
    state: 'pending',
    createdAt: now.toISOString(),
    importDigest: update.importDigest,
    importManifest: update.importManifest,
    isDeployable: update.isDeployable,
    files: update.files,
    children: update.children,
    // A string set cannot be empty in DynamoDB: an absent attribute means "no parent".
    referencedBy: update.referencedBy.length > 0 ? new Set(update.referencedBy) : undefined,
    activeDeployments: 0,
  };
}

function fromItem(item: Item): UpdateRecord {
  const referencedBy = item.referencedBy instanceof Set ? [...(item.referencedBy as Set<string>)].sort() : [];
  return {
    updateId: { provider: String(item.provider), name: String(item.name), version: String(item.version) },
    state: item.state as UpdateState,
    createdAt: String(item.createdAt),
    ...(typeof item.committedAt === 'string' ? { committedAt: item.committedAt } : {}),
    importDigest: String(item.importDigest),
    importManifest: String(item.importManifest),
    isDeployable: item.isDeployable === true,
    files: (item.files ?? []) as StoredFile[],
    children: (item.children ?? []) as UpdateIdentity[],
    referencedBy,
    activeDeployments: Number(item.activeDeployments ?? 0),
    ...(item.updateManifest ? { updateManifest: item.updateManifest as StoredUpdateManifest } : {}),
  };
}

export interface UpdateStoreOptions {
  /** A document client (lib-dynamodb), so items are plain objects. */
  readonly db: Pick<DynamoDBDocumentClient, 'send'>;
  readonly tableName: string;
  /** Name of the index partitioned by state (tables.ts). */
  readonly byStateIndex?: string;
}

export function makeUpdateStore({
  db,
  tableName,
  byStateIndex = 'byState',
}: UpdateStoreOptions): UpdateStore {
  const names = { '#state': 'state' };

  async function get(id: UpdateIdentity): Promise<UpdateRecord | undefined> {
    const { Item } = await db.send(
      new GetCommand({ TableName: tableName, Key: primaryKey(id), ConsistentRead: true }),
    );
    return Item ? fromItem(Item) : undefined;
  }

  async function getMany(ids: readonly UpdateIdentity[]): Promise<Map<string, UpdateRecord>> {
    const unique = [...new Map(ids.map((id) => [updateKey(id), id])).values()];
    const items = await batchGetItems(db, tableName, unique.map(primaryKey), { consistent: true });
    return new Map(items.map(fromItem).map((record) => [updateKey(record.updateId), record]));
  }

  const transact = (input: TransactWriteCommandInput): Promise<Result<void, number[]>> =>
    transactWrite(db, input);

  async function reserve(
    updates: readonly NewUpdate[],
    links: readonly ChildLink[],
    now: Date,
  ): Promise<Result<void, StoreConflict>> {
    const puts = updates.map((update) => ({
      Put: {
        TableName: tableName,
        Item: toItem(update, now),
        // Invariant: an updateId is imported once; a second import never overwrites the first
        // (an identical one is answered from the stored item before we get here).
        ConditionExpression: 'attribute_not_exists(pk)',
      },
    }));
    const linkUpdates = links.map(({ child, parent }) => ({
      Update: {
        TableName: tableName,
        Key: primaryKey(child),
        UpdateExpression: 'ADD referencedBy :parent',
        // Invariant: a parent only references a child that exists, is not being deleted, and has no
        // reference steps itself (a child may not have children, as in ADU).
        ConditionExpression: 'attribute_exists(pk) AND #state <> :deleting AND size(children) = :none',
        ExpressionAttributeNames: names,
        ExpressionAttributeValues: {
          ':parent': new Set([updateKey(parent)]),
          ':deleting': 'deleting',
          ':none': 0,
        },
      },
    }));
    const result = await transact({ TransactItems: [...puts, ...linkUpdates] });
    if (result.ok) return result;
    const ids = result.error.map((i) =>
      i < puts.length ? updates[i]!.updateId : links[i - puts.length]!.child,
    );
    return err({ code: 'UPDATE_CONFLICT', updateIds: ids });
  }

  async function markReady(commits: readonly ReadyCommit[], now: Date): Promise<Result<void, StoreConflict>> {
    const result = await transact({
      TransactItems: commits.map(({ updateId, updateManifest }) => ({
        Update: {
          TableName: tableName,
          Key: primaryKey(updateId),
          UpdateExpression: 'SET #state = :ready, committedAt = :now, updateManifest = :manifest',
          // Invariant: only a pending update becomes ready, once; a deleting one never comes back,
          // and a concurrent commit that lost the race leaves the winner's manifest in place.
          ConditionExpression: '#state = :pending',
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: {
            ':ready': 'ready',
            ':pending': 'pending',
            ':now': now.toISOString(),
            ':manifest': updateManifest,
          },
        },
      })),
    });
    if (result.ok) return result;
    return err({ code: 'UPDATE_NOT_PENDING', updateIds: result.error.map((i) => commits[i]!.updateId) });
  }

  async function beginDelete(id: UpdateIdentity): Promise<Result<UpdateRecord, StoreConflict>> {
    try {
      const { Attributes } = await db.send(
        new UpdateCommand({
          TableName: tableName,
          Key: primaryKey(id),
          UpdateExpression: 'SET #state = :deleting',
          // Invariant: an update in use is never deleted: no deployment counts it and no parent
          // references it (deployments take it with a condition on `ready`, so none can start now).
          ConditionExpression:
            'attribute_exists(pk) AND activeDeployments = :zero AND attribute_not_exists(referencedBy)',
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: { ':deleting': 'deleting', ':zero': 0 },
          ReturnValues: 'ALL_NEW',
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
      return ok(fromItem(Attributes ?? {}));
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
      if (!error.Item) return err({ code: 'UPDATE_NOT_FOUND', updateId: id });
      return err({ code: 'UPDATE_IN_USE', updateId: id, reason: inUseReason(error.Item) });
    }
  }

  async function finishDelete(record: UpdateRecord): Promise<void> {
    const unlinks = record.children.map((child) => ({
      Update: {
        TableName: tableName,
        Key: primaryKey(child),
        UpdateExpression: 'DELETE referencedBy :parent',
        // Invariant: unlinking never creates an item (UpdateItem would, on a missing key).
        ConditionExpression: 'attribute_exists(pk)',
        ExpressionAttributeValues: { ':parent': new Set([updateKey(record.updateId)]) },
      },
    }));
    const result = await transact({
      TransactItems: [
        {
          Delete: {
            TableName: tableName,
            Key: primaryKey(record.updateId),
            // Invariant: only an update whose deletion began (and so was checked unused) is removed.
            ConditionExpression: '#state = :deleting',
            ExpressionAttributeNames: names,
            ExpressionAttributeValues: { ':deleting': 'deleting' },
          },
        },
        ...unlinks,
      ],
    });
    // A failed condition here means another DELETE finished first: the outcome is the same.
    if (!result.ok && !result.error.includes(0)) {
      throw new Error(`Deleting ${updateKey(record.updateId)}: a child to unlink is missing`);
    }
  }

  async function list(query: {
    readonly state?: UpdateState;
    readonly limit: number;
    readonly nextToken?: string;
  }): Promise<Result<UpdatePage, StoreConflict>> {
    const page = await listPartitions(db, {
      tableName,
      indexName: byStateIndex,
      partitionAttribute: 'state',
      partitions: query.state ? [query.state] : updateStates,
      keyNames: ['pk', 'sk', 'state', 'createdAt'],
      limit: query.limit,
      ...(query.nextToken !== undefined ? { nextToken: query.nextToken } : {}),
    });
    if (!page) return err({ code: 'INVALID_NEXT_TOKEN' });
    const items = page.items.map(fromItem);
    return ok(page.nextToken ? { items, nextToken: page.nextToken } : { items });
  }

  async function acquireForDeployment(id: UpdateIdentity): Promise<Result<void, StoreConflict>> {
    try {
      await db.send(
        new UpdateCommand({
          TableName: tableName,
          Key: primaryKey(id),
          UpdateExpression: 'ADD activeDeployments :one',
          // Invariant: only a ready update is deployed, and counting it blocks its deletion.
          ConditionExpression: '#state = :ready',
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: { ':one': 1, ':ready': 'ready' },
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
      return ok(undefined);
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
      if (!error.Item) return err({ code: 'UPDATE_NOT_FOUND', updateId: id });
      return err({ code: 'UPDATE_NOT_PENDING', updateIds: [id] });
    }
  }

  async function releaseFromDeployment(id: UpdateIdentity): Promise<Result<void, StoreConflict>> {
    try {
      await db.send(
        new UpdateCommand({
          TableName: tableName,
          Key: primaryKey(id),
          UpdateExpression: 'ADD activeDeployments :minusOne',
          // Invariant: the count never goes below zero (a release without an acquire is a bug upstream).
          ConditionExpression: 'activeDeployments > :zero',
          ExpressionAttributeValues: { ':minusOne': -1, ':zero': 0 },
        }),
      );
      return ok(undefined);
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
      return err({ code: 'UPDATE_NOT_FOUND', updateId: id });
    }
  }

  return {
    get,
    getMany,
    reserve,
    markReady,
    beginDelete,
    finishDelete,
    list,
    acquireForDeployment,
    releaseFromDeployment,
  };
}

function inUseReason(item: Record<string, unknown>): string {
  const deployments = Number((item.activeDeployments as { N?: string } | undefined)?.N ?? 0);
  const parents = (item.referencedBy as { SS?: string[] } | undefined)?.SS ?? [];
  const reasons: string[] = [];
  if (deployments > 0) reasons.push(`${deployments} active deployment(s) use it`);
  if (parents.length > 0) reasons.push(`referenced by ${parents.join(', ')}`);
  return reasons.join('; ') || 'in use';
}
