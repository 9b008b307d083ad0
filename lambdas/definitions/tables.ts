/**
 * Table shapes shared by the CDK stack (lib/) and the local cloud (local/), so a key or an index
 * is written once. Pure data: no AWS SDK, no CDK.
 */
export type AttributeType = 'S' | 'N' | 'B';

export interface KeyAttribute {
  readonly name: string;
  readonly type: AttributeType;
}

export interface GlobalIndexDefinition {
  readonly indexName: string;
  readonly partitionKey: KeyAttribute;
  readonly sortKey?: KeyAttribute;
  /**
   * What the index copies besides the keys: every attribute (`ALL`, the default), none
   * (`KEYS_ONLY`), or the attributes listed. Each projected attribute a write changes is an index
   * write DynamoDB bills, so an index copies only what its queries filter or act on.
   */
  readonly projection?: 'ALL' | 'KEYS_ONLY' | readonly string[];
}

/** The index's projection in CreateTable's terms (the stack maps the same three cases). */
export function projectionOf(index: GlobalIndexDefinition): {
  readonly ProjectionType: 'ALL' | 'KEYS_ONLY' | 'INCLUDE';
  readonly NonKeyAttributes?: string[];
} {
  const projection = index.projection ?? 'ALL';
  if (projection === 'ALL' || projection === 'KEYS_ONLY') return { ProjectionType: projection };
  return { ProjectionType: 'INCLUDE', NonKeyAttributes: [...projection] };
}

export interface TableDefinition {
  /** Construct id in the stack and the table name's suffix in the local cloud. */
  readonly id: string;
  readonly partitionKey: KeyAttribute;
  readonly sortKey?: KeyAttribute;
  readonly globalIndexes: readonly GlobalIndexDefinition[];
  readonly timeToLiveAttribute?: string;
  /** DynamoDB Streams view, when a consumer reads the table's changes. */
  readonly stream?: 'NEW_AND_OLD_IMAGES' | 'NEW_IMAGE';
}

/**
 * Imported updates, one item per updateId: pk `UPDATE#<provider>#<name>`, sk `<version>`.
 * Listing by provider/name is a Query; the whole catalogue is a paginated Query on the `byState`
 * index (partition = state), so no Scan is needed.
 */
export const updatesTable: TableDefinition = {
  id: 'Updates',
  partitionKey: { name: 'pk', type: 'S' },
  sortKey: { name: 'sk', type: 'S' },
  globalIndexes: [
    {
      indexName: 'byState',
      partitionKey: { name: 'state', type: 'S' },
      sortKey: { name: 'createdAt', type: 'S' },
    },
  ],
};

/**
 * Deployments, one item per deployment (pk `deploymentId`): request, status, counters, fan-out
 * checkpoints (ADR 0040). Also holds the account-wide shadow-rate limiter item (pk `#account-rate`),
 * the counter batches' markers (`#counted#...`) and each deployment's target pages
 * (`#targets#<id>#<seq>`, ADR 0040 "Target pages"); none has a status, so `byStatus` (which lists
 * deployments and finds the active ones for the scheduler) never holds them.
 */
export const deploymentsTable: TableDefinition = {
  id: 'Deployments',
  partitionKey: { name: 'deploymentId', type: 'S' },
  /** The counter projection's batch markers (`#counted#...`) expire once the stream cannot redeliver. */
  timeToLiveAttribute: 'expiresAt',
  globalIndexes: [
    {
      indexName: 'byStatus',
      partitionKey: { name: 'status', type: 'S' },
      sortKey: { name: 'createdAt', type: 'S' },
    },
  ],
};

/**
 * Executions, one item per (deployment, device): pk `deploymentId`, sk `thingName` (ADR 0040).
 * `byThing` (keys only) serves a device's history. `byDeploymentState` serves per-state listings,
 * the fan-out's re-queued devices and the sweeps: pk `<deploymentId>#<state>`, except that the
 * in-progress states share `<deploymentId>#active` and `succeeded` is not indexed (ADR 0040,
 * "Index writes"). It copies what sweeps and commands act on, not the device's results. The
 * stream feeds the counters.
 */
/** The execution fields `byDeploymentState` copies: everything but `lastResult` and `progress`. */
export const executionIndexAttributes = [
  'updateId',
  'createdAt',
  'state',
  'attempt',
  'shard',
  'updatedAt',
  'notifiedAt',
  'cancelReason',
  'reportOrder',
  'reportedAt',
  'reason',
  'deadline',
] as const;

export const executionsTable: TableDefinition = {
  id: 'Executions',
  partitionKey: { name: 'deploymentId', type: 'S' },
  sortKey: { name: 'thingName', type: 'S' },
  globalIndexes: [
    {
      indexName: 'byThing',
      partitionKey: { name: 'thingName', type: 'S' },
      sortKey: { name: 'createdAt', type: 'S' },
      projection: 'KEYS_ONLY',
    },
    {
      indexName: 'byDeploymentState',
      partitionKey: { name: 'deploymentState', type: 'S' },
      sortKey: { name: 'thingName', type: 'S' },
      projection: executionIndexAttributes,
    },
  ],
  stream: 'NEW_AND_OLD_IMAGES',
};

/** The fleet, one item per device (pk `thingName`): installed update, compatibility, current deployment. */
export const fleetTable: TableDefinition = {
  id: 'Fleet',
  partitionKey: { name: 'thingName', type: 'S' },
  globalIndexes: [],
};

export const allTables: readonly TableDefinition[] = [
  updatesTable,
  deploymentsTable,
  executionsTable,
  fleetTable,
];
