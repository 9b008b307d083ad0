/** Shared by the fan-out tests: the worker built on DynamoDB Local and a local IoT Core, and a deployment to run. */
import { randomUUID } from 'node:crypto';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  AddThingToThingGroupCommand,
  CreateThingCommand,
  CreateThingGroupCommand,
  IoTClient,
} from '@aws-sdk/client-iot';
import { IoTDataPlaneClient } from '@aws-sdk/client-iot-data-plane';
import { type DynamoDBDocumentClient, GetCommand, PutCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { type DeploymentRecord, makeDeploymentStore } from '../../../lambdas/adapters/deployment-store.ts';
import { type ExecutionRecord, executionFromItem } from '../../../lambdas/adapters/execution-store.ts';
import type { FunctionInvoker, InvocableFunction } from '../../../lambdas/adapters/function-invoker.ts';
import { targetPageKey } from '../../../lambdas/adapters/target-pages.ts';
import { makeThingRegistry } from '../../../lambdas/adapters/thing-registry.ts';
import { parseDeploymentRequest } from '../../../lambdas/domain/deployment/index.ts';
import {
  canonicalJson,
  deriveUpdateManifest,
  parseImportManifest,
} from '../../../lambdas/domain/manifest/index.ts';
import type { FanoutDeps, FanoutTuning } from '../../../lambdas/handlers/fanout/deps.ts';
import { shardCountFor } from '../../../lambdas/handlers/fanout/sharding.ts';
import { fanoutDepsFromConfig } from '../../../lambdas/handlers/fanout-worker.ts';
import { recordingObservability } from '../../../lambdas/observability.ts';
import type { LocalIotCore } from '../../../local/iot/index.ts';
import { importManifest, uid } from '../import/fixtures.ts';
import { type DeploymentTables, putUpdate } from './api-support.ts';

export const dummyAws = {
  region: 'us-east-1',
  credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
};

/** Records the invocations a worker asks for instead of running them: each test decides what runs when. */
export function recordingInvoker(): FunctionInvoker & {
  readonly calls: { name: InvocableFunction; payload: unknown }[];
} {
  const calls: { name: InvocableFunction; payload: unknown }[] = [];
  return {
    calls,
    async invoke(name, payload) {
      calls.push({ name, payload });
    },
  };
}

/** A Lambda context whose time runs out `ms` after it is made. */
export function budget(ms: number, now: () => number = Date.now): { getRemainingTimeInMillis(): number } {
  const end = now() + ms;
  return { getRemainingTimeInMillis: () => Math.max(0, end - now()) };
}

export interface FanoutRig {
  readonly deps: FanoutDeps;
  readonly invoker: ReturnType<typeof recordingInvoker>;
  readonly iotClient: IoTClient;
  readonly iotData: IoTDataPlaneClient;
  destroy(): void;
}

export function fanoutRig(
  db: DynamoDBClient,
  tables: DeploymentTables,
  iot: LocalIotCore,
  options: {
    readonly cap?: number;
    readonly tuning?: Partial<FanoutTuning>;
    readonly groupPageSize?: number;
  } = {},
): FanoutRig {
  const invoker = recordingInvoker();
  const iotClient = new IoTClient({ ...dummyAws, endpoint: iot.endpoints.iot });
  const iotData = new IoTDataPlaneClient({ ...dummyAws, endpoint: iot.endpoints.iotData, maxAttempts: 1 });
  const deps = fanoutDepsFromConfig(
    {
      deploymentsTable: tables.deployments,
      executionsTable: tables.executions,
      fleetTable: tables.fleet,
      updatesTable: tables.updates,
      fanoutWorkerFunction: 'fanoutWorker',
      accountShadowRateCap: options.cap ?? 4000,
    },
    { dynamodb: db, iot: iotClient, iotData, invoker },
    {
      observability: recordingObservability(),
      tuning: { stopBeforeEndMs: 0, maxInProcessWaitMs: 2000, checkpointEveryMs: 0, ...options.tuning },
      shadowWriter: { backoff: { maxAttempts: 8, baseDelayMs: 50, maxDelayMs: 400 } },
    },
  );
  const withRegistry: FanoutDeps = options.groupPageSize
    ? { ...deps, registry: makeThingRegistry({ iot: iotClient, pageSize: options.groupPageSize }) }
    : deps;
  return {
    deps: withRegistry,
    invoker,
    iotClient,
    iotData,
    destroy() {
      iotClient.destroy();
      iotData.destroy();
    },
  };
}

export const updateId = uid('Toaster', '2.0');

/** The update manifest text a deployment carries (as the deployments API stores it). */
export function manifestText(): string {
  const parsed = parseImportManifest(
    importManifest(updateId, [{ name: 'fw.bin', content: Buffer.from('fw') }]),
  );
  if (!parsed.ok) throw new Error('fixture manifest invalid');
  const derived = deriveUpdateManifest(parsed.value);
  if (!derived.ok) throw new Error('fixture manifest not derivable');
  return canonicalJson(derived.value);
}

/** Creates a deployment through the deployment store, as `POST /deployments` does. */
export async function createDeployment(
  doc: DynamoDBDocumentClient,
  tables: DeploymentTables,
  request: { readonly target: Record<string, unknown>; readonly policy?: Record<string, unknown> },
  now = Date.now(),
): Promise<DeploymentRecord> {
  await putUpdate(doc, tables.updates, updateId);
  const parsed = parseDeploymentRequest({ update: updateId, ...request }, now);
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.error.faults));
  const store = makeDeploymentStore({
    db: doc,
    tableName: tables.deployments,
    updatesTableName: tables.updates,
  });
  const created = await store.create(
    {
      deploymentId: `dep-${randomUUID().slice(0, 8)}`,
      updateId,
      target: parsed.value.target,
      policy: parsed.value.policy,
      manifest: {
        inline: manifestText(),
        signature: 'eyJhbGciOiJFUzI1NiJ9.e30.c2ln',
        keyId: 'test',
        expiresAt: new Date(now + 86_400_000).toISOString(),
      },
      shards: shardCountFor(parsed.value.policy.rollout.ratePerMinute),
    },
    now,
  );
  if (!created.ok) throw new Error(JSON.stringify(created.error));
  return created.value;
}

export async function executionsOf(
  doc: DynamoDBDocumentClient,
  tables: DeploymentTables,
  deploymentId: string,
): Promise<ExecutionRecord[]> {
  const items: ExecutionRecord[] = [];
  let start: Record<string, unknown> | undefined;
  do {
    const out = await doc.send(
      new QueryCommand({
        TableName: tables.executions,
        KeyConditionExpression: 'deploymentId = :d',
        ExpressionAttributeValues: { ':d': deploymentId },
        ConsistentRead: true,
        ...(start ? { ExclusiveStartKey: start } : {}),
      }),
    );
    items.push(...(out.Items ?? []).map(executionFromItem));
    start = out.LastEvaluatedKey;
  } while (start);
  return items;
}

export async function putFleetCompatibility(
  doc: DynamoDBDocumentClient,
  tables: DeploymentTables,
  thingName: string,
  compatibility: Record<string, string>,
): Promise<void> {
  await doc.send(new PutCommand({ TableName: tables.fleet, Item: { thingName, compatibility } }));
}

/** Registers things (and a group holding them) in the local registry, over its HTTP API. */
export async function registerGroup(iot: IoTClient, group: string, things: readonly string[]): Promise<void> {
  await iot.send(new CreateThingGroupCommand({ thingGroupName: group }));
  for (const thingName of things) {
    await iot.send(new CreateThingCommand({ thingName }));
    await iot.send(new AddThingToThingGroupCommand({ thingGroupName: group, thingName }));
  }
}

export const things = (prefix: string, count: number): string[] =>
  Array.from({ length: count }, (_, i) => `${prefix}-${String(i).padStart(4, '0')}`);

/** The things on a deployment's target pages, page by page, every lane's (ADR 0040, "Target pages"). */
export async function targetPagesOf(
  doc: DynamoDBDocumentClient,
  tables: DeploymentTables,
  deploymentId: string,
): Promise<string[][]> {
  const pages: string[][] = [];
  for (let seq = 0; ; seq++) {
    const { Item } = await doc.send(
      new GetCommand({
        TableName: tables.deployments,
        Key: targetPageKey(deploymentId, seq),
        ConsistentRead: true,
      }),
    );
    if (!Item) return pages;
    pages.push(Object.values(Item.lanes as Record<string, string[]>).flat());
  }
}
