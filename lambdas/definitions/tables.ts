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
  /** Attributes projected besides the keys; all of them when absent. */
  readonly nonKeyAttributes?: readonly string[];
}

export interface TableDefinition {
  /** Construct id in the stack and the table name's suffix in the local cloud. */
  readonly id: string;
  readonly partitionKey: KeyAttribute;
  readonly sortKey?: KeyAttribute;
  readonly globalIndexes: readonly GlobalIndexDefinition[];
  readonly timeToLiveAttribute?: string;
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

export const allTables: readonly TableDefinition[] = [updatesTable];
