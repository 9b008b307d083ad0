import type { RemovalPolicy } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as iam from 'aws-cdk-lib/aws-iam';
import type { Construct } from 'constructs';
import {
  type GlobalIndexDefinition,
  type KeyAttribute,
  projectionOf,
  type TableDefinition,
} from '../lambdas/definitions/tables.ts';
import { acknowledgeOn } from './acknowledge.ts';

export interface TableSettings {
  readonly encryption: dynamodb.TableEncryptionV2;
  readonly removalPolicy: RemovalPolicy;
}

/**
 * A TableV2 with the keys, indexes, TTL and stream of a shared definition (the local cloud builds
 * its tables from the same one): on-demand, point-in-time recovery, deletion protection. The
 * construct id is the definition's `id`.
 */
export function tableFromDefinition(
  scope: Construct,
  definition: TableDefinition,
  settings: TableSettings,
): dynamodb.TableV2 {
  const table = new dynamodb.TableV2(scope, definition.id, {
    partitionKey: toAttribute(definition.partitionKey),
    ...(definition.sortKey && { sortKey: toAttribute(definition.sortKey) }),
    globalSecondaryIndexes: definition.globalIndexes.map(toGlobalIndex),
    ...(definition.timeToLiveAttribute && { timeToLiveAttribute: definition.timeToLiveAttribute }),
    ...(definition.stream && { dynamoStream: streamViewTypes[definition.stream] }),
    billing: dynamodb.Billing.onDemand(),
    pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
    deletionProtection: true,
    encryption: settings.encryption,
    removalPolicy: settings.removalPolicy,
  });
  definitionOf.set(table, definition);
  return table;
}

/** The definition each table was made from: its indexes decide what a grant must acknowledge. */
const definitionOf = new WeakMap<dynamodb.TableV2, TableDefinition>();

/**
 * Grants `grantee` read (or read and write) access to the items of `table` (made by
 * tableFromDefinition) and to its own indexes. The index wildcard is acknowledged on the grantee, but only when the table has
 * indexes: otherwise there is no such finding, and a stale acknowledgement fails the nag test.
 */
export function grantTableData(
  table: dynamodb.TableV2,
  grantee: iam.IGrantable,
  access: 'read' | 'readWrite',
): void {
  if (access === 'read') table.grants.readData(grantee);
  else table.grants.readWriteData(grantee);
  if (!definitionOf.get(table)?.globalIndexes.length) return;
  const cfnTable = table.node.defaultChild as dynamodb.CfnGlobalTable;
  acknowledgeOn(grantee, {
    [`AwsSolutions-IAM5[Resource::<${table.stack.resolve(cfnTable.logicalId)}.Arn>/index/*]`]:
      'Queries on the table’s own global secondary indexes, which the shared table definition declares; no other table is reachable.',
  });
}

const streamViewTypes = {
  NEW_AND_OLD_IMAGES: dynamodb.StreamViewType.NEW_AND_OLD_IMAGES,
  NEW_IMAGE: dynamodb.StreamViewType.NEW_IMAGE,
} as const;

const attributeTypes = {
  S: dynamodb.AttributeType.STRING,
  N: dynamodb.AttributeType.NUMBER,
  B: dynamodb.AttributeType.BINARY,
} as const;

function toAttribute(key: KeyAttribute): dynamodb.Attribute {
  return { name: key.name, type: attributeTypes[key.type] };
}

function projectionProps(
  index: GlobalIndexDefinition,
): Pick<dynamodb.GlobalSecondaryIndexPropsV2, 'projectionType' | 'nonKeyAttributes'> {
  const { ProjectionType, NonKeyAttributes } = projectionOf(index);
  return NonKeyAttributes
    ? { projectionType: dynamodb.ProjectionType.INCLUDE, nonKeyAttributes: NonKeyAttributes }
    : { projectionType: dynamodb.ProjectionType[ProjectionType] };
}

function toGlobalIndex(index: GlobalIndexDefinition): dynamodb.GlobalSecondaryIndexPropsV2 {
  return {
    indexName: index.indexName,
    partitionKey: toAttribute(index.partitionKey),
    ...(index.sortKey && { sortKey: toAttribute(index.sortKey) }),
    ...projectionProps(index),
  };
}
