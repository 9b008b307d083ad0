/** Shared by the deployments API and store tests: tables from the shared definitions, a ready update. */
import { randomUUID } from 'node:crypto';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { type DynamoDBDocumentClient, GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { type UpdateIdentity, updateItemKey } from '../../../lambdas/adapters/update-store.ts';
import {
  deploymentsTable,
  executionsTable,
  fleetTable,
  updatesTable,
} from '../../../lambdas/definitions/tables.ts';
import { ensureTable } from '../../../local/tables.ts';

export interface DeploymentTables {
  readonly updates: string;
  readonly deployments: string;
  readonly executions: string;
  readonly fleet: string;
}

/** Fresh tables with a unique suffix, so test files sharing one DynamoDB Local never meet. */
export async function createDeploymentTables(db: DynamoDBClient, label: string): Promise<DeploymentTables> {
  const suffix = `${label}-${randomUUID().slice(0, 8)}`;
  const names: DeploymentTables = {
    updates: `updates-${suffix}`,
    deployments: `deployments-${suffix}`,
    executions: `executions-${suffix}`,
    fleet: `fleet-${suffix}`,
  };
  await Promise.all([
    ensureTable(db, updatesTable, names.updates),
    ensureTable(db, deploymentsTable, names.deployments),
    ensureTable(db, executionsTable, names.executions),
    ensureTable(db, fleetTable, names.fleet),
  ]);
  return names;
}

export function uniqueName(prefix: string): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

/** Puts an update item straight into the updates table, as the import API leaves a committed one. */
export async function putUpdate(
  db: Pick<DynamoDBDocumentClient, 'send'>,
  tableName: string,
  updateId: UpdateIdentity,
  state: 'ready' | 'pending' = 'ready',
): Promise<void> {
  await db.send(
    new PutCommand({
      TableName: tableName,
      Item: {
        ...updateItemKey(updateId),
        ...updateId,
        state,
        createdAt: new Date().toISOString(),
        importDigest: 'x',
        importManifest: '{}',
        isDeployable: true,
        files: [],
        children: [],
        activeDeployments: 0,
      },
    }),
  );
}

export async function activeDeploymentsOf(
  db: Pick<DynamoDBDocumentClient, 'send'>,
  tableName: string,
  updateId: UpdateIdentity,
): Promise<number> {
  const { Item } = await db.send(
    new GetCommand({ TableName: tableName, Key: updateItemKey(updateId), ConsistentRead: true }),
  );
  return Number(Item?.activeDeployments);
}
