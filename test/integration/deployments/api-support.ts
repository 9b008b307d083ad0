/** Shared by the deployments API and store tests: tables from the shared definitions, a ready update. */
import { randomUUID } from 'node:crypto';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { type DynamoDBDocumentClient, GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import type { ExecutionRecord, ExecutionStore } from '../../../lambdas/adapters/execution-store.ts';
import { type UpdateIdentity, updateItemKey } from '../../../lambdas/adapters/update-store.ts';
import {
  deploymentsTable,
  executionsTable,
  fleetTable,
  updatesTable,
} from '../../../lambdas/definitions/tables.ts';
import { notify } from '../../../lambdas/domain/deployment/index.ts';
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

/** The execution of `thingName` in `deploymentId`; throws when there is none. */
export async function mustGetExecution(
  executions: ExecutionStore,
  deploymentId: string,
  thingName: string,
): Promise<ExecutionRecord> {
  const record = await executions.get(deploymentId, thingName);
  if (!record) throw new Error(`no execution ${deploymentId}/${thingName}`);
  return record;
}

/** What the fan-out does to each of `things` before its shadow write: queued, then `notified`. */
export async function notifyExecutions(
  executions: ExecutionStore,
  deploymentId: string,
  things: readonly string[],
  updateId: UpdateIdentity,
): Promise<void> {
  await executions.batchPutQueued(
    deploymentId,
    things.map((thingName) => ({ thingName, updateId, state: 'queued' as const, shard: 0 })),
    Date.now(),
  );
  for (const thingName of things) {
    const queued = await mustGetExecution(executions, deploymentId, thingName);
    const next = notify(queued, Date.now());
    if (!next.ok) throw new Error(next.error.message);
    const written = await executions.transition(queued, next.value.next, {
      at: Date.now(),
      reason: 'notified',
    });
    if (!written.ok) throw new Error('notify conflict');
  }
}
