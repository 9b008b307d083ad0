import { type DynamoDBDocumentClient, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { decodePageToken, encodePageToken, type PageKey, type PagePosition } from './page-token.ts';

export interface PartitionListing {
  readonly tableName: string;
  readonly indexName: string;
  /** The index's partition attribute (e.g. `state`), walked over `partitions` in their order. */
  readonly partitionAttribute: string;
  readonly partitions: readonly string[];
  /** Attributes of the index's `LastEvaluatedKey`: what a token must hold to be one we issued. */
  readonly keyNames: readonly string[];
  readonly limit: number;
  readonly nextToken?: string;
}

/**
 * One page of a listing that walks several partitions of an index in a fixed order, newest first
 * in each (`ScanIndexForward: false`). The token remembers the partition and the key; a token we
 * did not issue is `undefined`, for the caller to refuse.
 */
export async function listPartitions(
  db: Pick<DynamoDBDocumentClient, 'send'>,
  listing: PartitionListing,
): Promise<{ items: Record<string, unknown>[]; nextToken?: string } | undefined> {
  const { partitions } = listing;
  let position: PagePosition = { part: 0 };
  if (listing.nextToken !== undefined) {
    const decoded = decodePageToken(listing.nextToken, listing.keyNames, partitions.length);
    if (!decoded) return undefined;
    position = decoded;
  }
  const items: Record<string, unknown>[] = [];
  while (position.part < partitions.length && items.length < listing.limit) {
    const out = await db.send(
      new QueryCommand({
        TableName: listing.tableName,
        IndexName: listing.indexName,
        KeyConditionExpression: '#partition = :partition',
        ExpressionAttributeNames: { '#partition': listing.partitionAttribute },
        ExpressionAttributeValues: { ':partition': partitions[position.part] },
        ScanIndexForward: false,
        Limit: listing.limit - items.length,
        ...(position.key ? { ExclusiveStartKey: position.key } : {}),
      }),
    );
    items.push(...(out.Items ?? []));
    position = out.LastEvaluatedKey
      ? { part: position.part, key: out.LastEvaluatedKey as PageKey }
      : { part: position.part + 1 };
  }
  return position.part < partitions.length ? { items, nextToken: encodePageToken(position) } : { items };
}
