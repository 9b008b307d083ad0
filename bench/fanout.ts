/**
 * Fan-out benchmark (issue 4): one deployment to 10,000 devices (members of one thing group) on
 * the local stack: DynamoDB Local (its own JVM) and the local IoT Core (a child process,
 * bench/shadow-broker.ts), with the fan-out worker's handlers run in this process exactly as
 * Lambda would run them (expansion, then one worker per shard, following their re-invocations).
 *
 * Measured: devices notified per second, handler CPU per device (process.cpuUsage of this
 * process, which runs only the handlers and their SDK clients), AWS requests per device by kind
 * (a counting middleware on every client, and the invoker). Derived: messages and rule triggers
 * the shadow service produces per update (one `delta` to the device, one `documents` that
 * triggers the acknowledgement rule), and the cost per million device updates at us-east-1 list
 * prices. NOT measured here: the acknowledgement side (device reports, trims, counters); its
 * per-device figures are ADR 0040's budget and are listed separately as such.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  AddThingToThingGroupCommand,
  CreateThingCommand,
  CreateThingGroupCommand,
  IoTClient,
} from '@aws-sdk/client-iot';
import { IoTDataPlaneClient } from '@aws-sdk/client-iot-data-plane';
import { DynamoDBDocumentClient, PutCommand } from '@aws-sdk/lib-dynamodb';
import { makeDeploymentStore } from '../lambdas/adapters/deployment-store.ts';
import type { FunctionInvoker } from '../lambdas/adapters/function-invoker.ts';
import { updateItemKey } from '../lambdas/adapters/update-store.ts';
import {
  deploymentsTable,
  executionsTable,
  fleetTable,
  updatesTable,
} from '../lambdas/definitions/tables.ts';
import { parseDeploymentRequest } from '../lambdas/domain/deployment/index.ts';
import {
  canonicalJson,
  deriveUpdateManifest,
  parseImportManifest,
} from '../lambdas/domain/manifest/index.ts';
import { shardCountFor } from '../lambdas/handlers/fanout/sharding.ts';
import { fanoutDepsFromConfig, makeFanoutWorker } from '../lambdas/handlers/fanout-worker.ts';
import { recordingObservability } from '../lambdas/observability.ts';
import { startDynamoDbLocal } from '../local/dynamodb.ts';
import type { LocalIotCoreEndpoints } from '../local/iot/index.ts';
import { ensureTable } from '../local/tables.ts';
import type { Benchmark, BenchmarkOutcome } from './benchmark.ts';

const settings = {
  devices: 10_000,
  ratePerMinute: 240_000,
  accountCapPerSecond: 4000,
  registryConcurrency: 64,
} as const;

/** Issue 4's targets, per device unless named otherwise. */
const targets = {
  handlerCpuMsPerDevice: 1,
  shadowOpsPerDevice: 3,
  messagesPerDevice: 4,
  ruleTriggersPerDevice: 2,
  dynamoDbWritesPerDevice: 3,
  controlPlaneCostPerMillionUsd: 12,
  /** 90% of a 4,000/s account cap. */
  sustainableNotifiesPerSecond: 3600,
} as const;

/** us-east-1 list prices (issue 4), USD. */
const prices = {
  shadowOpPerMillion: 1.25,
  messagePerMillion: 1.0,
  ruleTriggerPerMillion: 0.15,
  ruleActionPerMillion: 0.15,
  dynamoDbWritePerMillion: 0.625,
  dynamoDbReadPerMillion: 0.125,
  lambdaRequestPerMillion: 0.2,
  /** Per GB-second (x86 and arm64 differ slightly; the higher one). */
  lambdaGbSecond: 0.0000166667,
  lambdaMemoryGb: 1,
} as const;

/**
 * The acknowledgement side per device, estimated (not measured here): the terminal report and the
 * trim (ADR 0040: 2 shadow ops), the report in and its documents out (2 messages), a documents
 * event each (2 rule triggers and actions, 2 acknowledgement Lambda invocations), the terminal
 * transition and the fleet item (2 writes).
 */
const acknowledgementBudget = {
  shadowOps: 2,
  messages: 2,
  ruleTriggers: 2,
  ruleActions: 2,
  dynamoDbWrites: 2,
  lambdaRequests: 2,
};

class IotProcess {
  private constructor(
    readonly child: ChildProcess,
    readonly endpoints: LocalIotCoreEndpoints,
  ) {}

  static async start(): Promise<IotProcess> {
    const child = fork(join(dirname(fileURLToPath(import.meta.url)), 'shadow-broker.ts'), [], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const endpoints = await new Promise<LocalIotCoreEndpoints>((resolve, reject) => {
      child.once('message', (message: { endpoints: LocalIotCoreEndpoints }) => resolve(message.endpoints));
      child.once('exit', (code) => reject(new Error(`IoT Core exited with ${code}`)));
    });
    return new IotProcess(child, endpoints);
  }

  async stop(): Promise<void> {
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.send({ type: 'stop' });
    await exited;
  }
}

type Counts = Map<string, number>;

/** Counts every command a client sends, and DynamoDB write units by the items they carry. */
function countRequests(
  client: { middlewareStack: { add: (...args: never[]) => void } },
  counts: Counts,
): void {
  const add = client.middlewareStack.add as unknown as (
    middleware: (
      next: (args: { input: Record<string, unknown> }) => Promise<unknown>,
      context: { commandName?: string },
    ) => (args: { input: Record<string, unknown> }) => Promise<unknown>,
    options: { step: 'initialize'; name: string },
  ) => void;
  add(
    (next, context) => async (args) => {
      const name = context.commandName ?? 'unknown';
      counts.set(name, (counts.get(name) ?? 0) + 1);
      const writes = writeUnits(name, args.input);
      if (writes > 0) counts.set('#dynamoDbWrites', (counts.get('#dynamoDbWrites') ?? 0) + writes);
      return next(args);
    },
    { step: 'initialize', name: 'benchCountRequests' },
  );
}

function writeUnits(command: string, input: Record<string, unknown>): number {
  if (command === 'PutItemCommand' || command === 'UpdateItemCommand' || command === 'DeleteItemCommand')
    return 1;
  if (command === 'BatchWriteItemCommand') {
    const tables = Object.values((input.RequestItems ?? {}) as Record<string, unknown[]>);
    return tables.reduce((sum, items) => sum + items.length, 0);
  }
  // Transactions cost two units per item.
  if (command === 'TransactWriteItemsCommand')
    return 2 * ((input.TransactItems as unknown[] | undefined)?.length ?? 0);
  return 0;
}

async function inParallel<T>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < items.length) await work(items[next++] as T);
    }),
  );
}

function manifestText(): string {
  const updateId = { provider: 'Contoso', name: 'Toaster', version: '2.0' };
  const parsed = parseImportManifest({
    updateId,
    isDeployable: true,
    compatibility: [{ manufacturer: 'contoso', model: 'toaster' }],
    instructions: {
      steps: [
        { handler: 'microsoft/script:1', files: ['fw.bin'], handlerProperties: { installedCriteria: '2.0' } },
      ],
    },
    files: [
      {
        filename: 'fw.bin',
        sizeInBytes: 2,
        hashes: { sha256: 'Z/2MmMvsXvYmXs/I3nbzNfUA8TCLoNoHuj0lG1ws9Pk=' },
      },
    ],
    createdDateTime: '2026-11-01T10:00:00Z',
    manifestVersion: '5.0',
  });
  if (!parsed.ok) throw new Error(`bench manifest invalid: ${JSON.stringify(parsed.error)}`);
  const derived = deriveUpdateManifest(parsed.value);
  if (!derived.ok) throw new Error('bench manifest not derivable');
  return canonicalJson(derived.value);
}

const round = (value: number, digits = 3): number => Number(value.toFixed(digits));

async function run(): Promise<BenchmarkOutcome> {
  const aws = { region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } };
  const ddb = await startDynamoDbLocal({ port: 0 });
  const iotCore = await IotProcess.start();
  const dynamodb = new DynamoDBClient({ ...aws, endpoint: ddb.endpoint });
  const iot = new IoTClient({ ...aws, endpoint: iotCore.endpoints.iot });
  const iotData = new IoTDataPlaneClient({ ...aws, endpoint: iotCore.endpoints.iotData, maxAttempts: 1 });
  try {
    const suffix = randomUUID().slice(0, 8);
    const tables = {
      updates: `bench-updates-${suffix}`,
      deployments: `bench-deployments-${suffix}`,
      executions: `bench-executions-${suffix}`,
      fleet: `bench-fleet-${suffix}`,
    };
    await ensureTable(dynamodb, updatesTable, tables.updates);
    await ensureTable(dynamodb, deploymentsTable, tables.deployments);
    await ensureTable(dynamodb, executionsTable, tables.executions);
    await ensureTable(dynamodb, fleetTable, tables.fleet);

    console.log(`  registering ${settings.devices} things in one group`);
    const group = 'bench-fleet';
    await iot.send(new CreateThingGroupCommand({ thingGroupName: group }));
    const things = Array.from({ length: settings.devices }, (_, i) => `bench-${String(i).padStart(6, '0')}`);
    await inParallel(things, settings.registryConcurrency, async (thingName) => {
      await iot.send(new CreateThingCommand({ thingName }));
      await iot.send(new AddThingToThingGroupCommand({ thingGroupName: group, thingName }));
    });

    const doc = DynamoDBDocumentClient.from(dynamodb, { marshallOptions: { removeUndefinedValues: true } });
    const updateId = { provider: 'Contoso', name: 'Toaster', version: '2.0' };
    await doc.send(
      new PutCommand({
        TableName: tables.updates,
        Item: {
          ...updateItemKey(updateId),
          ...updateId,
          state: 'ready',
          activeDeployments: 0,
          isDeployable: true,
        },
      }),
    );
    const now = Date.now();
    const request = parseDeploymentRequest(
      {
        update: updateId,
        target: { thingGroups: [group] },
        policy: { rollout: { ratePerMinute: settings.ratePerMinute } },
      },
      now,
    );
    if (!request.ok) throw new Error('bench deployment request invalid');
    const store = makeDeploymentStore({
      db: doc,
      tableName: tables.deployments,
      updatesTableName: tables.updates,
    });
    const deploymentId = `bench-${suffix}`;
    const created = await store.create(
      {
        deploymentId,
        updateId,
        target: request.value.target,
        policy: request.value.policy,
        manifest: {
          inline: manifestText(),
          signature: 'eyJhbGciOiJFUzI1NiJ9.e30.c2ln',
          keyId: 'bench',
          expiresAt: new Date(now + 86_400_000).toISOString(),
        },
        shards: shardCountFor(settings.ratePerMinute),
      },
      now,
    );
    if (!created.ok) throw new Error(`bench deployment not created: ${JSON.stringify(created.error)}`);

    // Counting starts here: everything below is the fan-out's own work.
    const counts: Counts = new Map();
    countRequests(dynamodb as never, counts);
    countRequests(iot as never, counts);
    countRequests(iotData as never, counts);
    const pending: Promise<unknown>[] = [];
    let invocations = 0;
    const worker = { run: (_event: unknown): Promise<unknown> => Promise.resolve() };
    const invoker: FunctionInvoker = {
      async invoke(_name, payload) {
        invocations++;
        pending.push(new Promise((resolve) => setImmediate(resolve)).then(() => worker.run(payload)));
      },
    };
    const deps = fanoutDepsFromConfig(
      {
        deploymentsTable: tables.deployments,
        executionsTable: tables.executions,
        fleetTable: tables.fleet,
        updatesTable: tables.updates,
        fanoutWorkerFunction: 'fanoutWorker',
        accountShadowRateCap: settings.accountCapPerSecond,
      },
      { dynamodb, iot, iotData, invoker },
      { observability: recordingObservability() },
    );
    const handler = makeFanoutWorker(deps);
    const lambdaBudget = { getRemainingTimeInMillis: () => 900_000 };
    let handlerWallMs = 0;
    worker.run = async (payload) => {
      const started = performance.now();
      await handler(payload, lambdaBudget);
      handlerWallMs += performance.now() - started;
    };

    console.log(`  fanning out to ${settings.devices} devices in ${created.value.shards} shards`);
    const cpuBefore = process.cpuUsage();
    const started = performance.now();
    invocations++;
    await worker.run({ deploymentId });
    while (pending.length > 0) await Promise.all(pending.splice(0));
    const wallMs = performance.now() - started;
    const cpu = process.cpuUsage(cpuBefore);

    const final = await store.get(deploymentId);
    const shadowUpdates = counts.get('UpdateThingShadowCommand') ?? 0;
    const notified = final ? Object.values(final.fanout).filter((lane) => lane.done).length : 0;
    const perDevice = (n: number): number => round(n / settings.devices);
    const cpuMsPerDevice = (cpu.user + cpu.system) / 1000 / settings.devices;

    const fanout = {
      shadowOps: perDevice(shadowUpdates),
      // Each accepted update: one `delta` to the device, one `documents` that triggers the ack rule.
      messages: perDevice(2 * shadowUpdates),
      ruleTriggers: perDevice(shadowUpdates),
      ruleActions: perDevice(shadowUpdates),
      dynamoDbWrites: perDevice(counts.get('#dynamoDbWrites') ?? 0),
      dynamoDbReadRequests: perDevice(
        ['GetItemCommand', 'QueryCommand', 'BatchGetItemCommand', 'ScanCommand'].reduce(
          (s, c) => s + (counts.get(c) ?? 0),
          0,
        ),
      ),
      lambdaInvocations: perDevice(invocations),
      registryRequests: perDevice(counts.get('ListThingsInThingGroupCommand') ?? 0),
    };
    const lambdaDurationPerDeviceMs = handlerWallMs / settings.devices;
    const costPerMillion = (figures: {
      shadowOps: number;
      messages: number;
      ruleTriggers: number;
      ruleActions: number;
      dynamoDbWrites: number;
      lambdaRequests: number;
    }): number =>
      figures.shadowOps * prices.shadowOpPerMillion +
      figures.messages * prices.messagePerMillion +
      figures.ruleTriggers * prices.ruleTriggerPerMillion +
      figures.ruleActions * prices.ruleActionPerMillion +
      figures.dynamoDbWrites * prices.dynamoDbWritePerMillion +
      figures.lambdaRequests * prices.lambdaRequestPerMillion;
    const fanoutCost =
      costPerMillion({ ...fanout, lambdaRequests: fanout.lambdaInvocations }) +
      fanout.dynamoDbReadRequests * prices.dynamoDbReadPerMillion +
      // Lambda duration: wall time (billed), at the assumed memory size.
      (lambdaDurationPerDeviceMs / 1000) * prices.lambdaMemoryGb * prices.lambdaGbSecond * 1e6;
    const acknowledgementCost = costPerMillion(acknowledgementBudget);
    const total = {
      shadowOps: fanout.shadowOps + acknowledgementBudget.shadowOps,
      messages: fanout.messages + acknowledgementBudget.messages,
      ruleTriggers: fanout.ruleTriggers + acknowledgementBudget.ruleTriggers,
      dynamoDbWrites: fanout.dynamoDbWrites + acknowledgementBudget.dynamoDbWrites,
    };
    const notifiedPerSecond = settings.devices / (wallMs / 1000);
    // One worker per shard, each bound by its CPU: what the shards sustain in AWS (each its own Lambda).
    const projectedPerSecond = Math.min(
      created.value.shards * (1000 / cpuMsPerDevice),
      settings.accountCapPerSecond,
    );
    const measurements = {
      devices: settings.devices,
      shards: created.value.shards,
      lanesDone: notified,
      wallSeconds: round(wallMs / 1000, 2),
      devicesNotifiedPerSecond: round(notifiedPerSecond, 1),
      handlerCpuMsPerDevice: round(cpuMsPerDevice),
      lambdaWallMsPerDevice: round(lambdaDurationPerDeviceMs),
      fanoutRequestsPerDevice: fanout,
      requestCountsByCommand: Object.fromEntries([...counts.entries()].sort()),
      acknowledgementBudgetPerDevice_notMeasured: acknowledgementBudget,
      totalPerDevice_fanoutMeasuredPlusAcknowledgementBudget: total,
      costPerMillionDeviceUpdatesUsd: {
        fanoutMeasured: round(fanoutCost, 2),
        acknowledgementBudget: round(acknowledgementCost, 2),
        total: round(fanoutCost + acknowledgementCost, 2),
        awsIotJobsForComparison: 3000,
      },
      sustainableNotifiesPerSecond_projected: round(projectedPerSecond, 0),
      notes: [
        'Local stack: DynamoDB Local (one JVM) and the local IoT Core bound the measured rate; the projection assumes one Lambda per shard, each limited by the handler CPU measured here.',
        'Messages and rule triggers of the fan-out are derived from accepted shadow updates (delta + documents), not counted at the broker.',
        'The acknowledgement side (device reports, trim, counters, fleet) is not exercised here; its per-device figures are ADR 0040 budget numbers.',
      ],
    };
    return {
      targets,
      measurements,
      targetsMet: {
        handlerCpuMsPerDevice: cpuMsPerDevice < targets.handlerCpuMsPerDevice,
        shadowOpsPerDevice: total.shadowOps <= targets.shadowOpsPerDevice,
        messagesPerDevice: total.messages <= targets.messagesPerDevice,
        ruleTriggersPerDevice: total.ruleTriggers <= targets.ruleTriggersPerDevice,
        dynamoDbWritesPerDevice: total.dynamoDbWrites <= targets.dynamoDbWritesPerDevice,
        controlPlaneCostPerMillionUsd:
          fanoutCost + acknowledgementCost < targets.controlPlaneCostPerMillionUsd,
        sustainableNotifiesPerSecond: projectedPerSecond >= targets.sustainableNotifiesPerSecond,
      },
    };
  } finally {
    dynamodb.destroy();
    iot.destroy();
    iotData.destroy();
    await iotCore.stop();
    await ddb.stop();
  }
}

export const fanoutBenchmark: Benchmark = {
  name: 'fanout',
  description: `Deployment fan-out to ${settings.devices.toLocaleString('en')} devices on the local stack: rate, CPU, requests and cost per device`,
  run,
};
