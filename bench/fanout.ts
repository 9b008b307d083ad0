/**
 * Fan-out benchmark (issue 4): one deployment to 10,000 devices (members of one thing group) on
 * the local stack: DynamoDB Local (its own JVM) and the local IoT Core with the acknowledgement
 * rule (a child process, bench/ack-broker.ts), with the service's handlers run in this process
 * exactly as Lambda would run them.
 *
 * Two phases, both measured: the fan-out (expansion, then one worker per shard, following their
 * re-invocations) and the acknowledgement side (every device reads its shadow and reports
 * `downloading`, then `succeeded`; the rule invokes the real acknowledge handler, which trims;
 * the executions stream feeds the real counters-stream handler). Per phase: handler CPU per device
 * (process.cpuUsage of this process, which runs only the handlers and their SDK clients), AWS
 * requests per device by kind (a counting middleware on every client, and the invoker), shadow
 * operations, messages and rule triggers counted in the IoT Core process, and the cost per
 * million device updates at us-east-1 list prices.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBStreamsClient } from '@aws-sdk/client-dynamodb-streams';
import {
  AddThingToThingGroupCommand,
  CreateThingCommand,
  CreateThingGroupCommand,
  IoTClient,
} from '@aws-sdk/client-iot';
import { IoTDataPlaneClient } from '@aws-sdk/client-iot-data-plane';
import { BatchWriteCommand, DynamoDBDocumentClient, PutCommand } from '@aws-sdk/lib-dynamodb';
import { makeDeploymentStore } from '../lambdas/adapters/deployment-store.ts';
import type { FunctionInvoker } from '../lambdas/adapters/function-invoker.ts';
import { updateItemKey } from '../lambdas/adapters/update-store.ts';
import {
  type BackgroundFunctionId,
  backgroundFunctions,
  countersStreamEventSource,
  type FunctionDefinition,
} from '../lambdas/definitions/api.ts';
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
import { acknowledgeDepsFromConfig, makeAcknowledge } from '../lambdas/handlers/acknowledge.ts';
import { makeCountersStreamFromConfig } from '../lambdas/handlers/counters-stream.ts';
import { shardCountFor } from '../lambdas/handlers/fanout/sharding.ts';
import { fanoutDepsFromConfig, makeFanoutWorker } from '../lambdas/handlers/fanout-worker.ts';
import { recordingObservability } from '../lambdas/observability.ts';
import { startDynamoDbLocal } from '../local/dynamodb.ts';
import type { LocalIotCoreEndpoints } from '../local/iot/index.ts';
import { startStreamPoller } from '../local/streams.ts';
import { ensureTable } from '../local/tables.ts';
import type { BrokerRequest, DeviceSideCounts } from './ack-broker.ts';
import type { Benchmark, BenchmarkOutcome } from './benchmark.ts';

const settings = {
  devices: 10_000,
  ratePerMinute: 240_000,
  accountCapPerSecond: 4000,
  registryConcurrency: 64,
  /** Concurrent acknowledge invocations (its reserved concurrency, in AWS). */
  acknowledgeConcurrency: 16,
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
} as const;

type BrokerMessage =
  | { type: 'ready'; endpoints: LocalIotCoreEndpoints }
  | { type: 'invoke'; id: number; event: unknown }
  | { type: 'reported' }
  | { type: 'settled' }
  | { type: 'counts'; counts: DeviceSideCounts };

/** The local IoT Core with the acknowledgement rule, in bench/ack-broker.ts's own process. */
class IotProcess {
  #replies: ((message: BrokerMessage) => void)[] = [];

  private constructor(
    readonly child: ChildProcess,
    readonly endpoints: LocalIotCoreEndpoints,
  ) {
    child.on('message', (message: BrokerMessage) => {
      if (message.type === 'invoke')
        void this.onInvoke(message.event).then(
          () => child.send({ type: 'invoked', id: message.id }),
          (error: unknown) => child.send({ type: 'invoked', id: message.id, error: String(error) }),
        );
      else this.#replies.shift()?.(message);
    });
  }

  /** The rule's Lambda action: set by the benchmark before any rule can fire. */
  onInvoke: (event: unknown) => Promise<unknown> = () => Promise.resolve();

  static async start(): Promise<IotProcess> {
    const child = fork(join(dirname(fileURLToPath(import.meta.url)), 'ack-broker.ts'), [], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const endpoints = await new Promise<LocalIotCoreEndpoints>((resolve, reject) => {
      child.once('message', (message: { endpoints: LocalIotCoreEndpoints }) => resolve(message.endpoints));
      child.once('exit', (code) => reject(new Error(`IoT Core exited with ${code}`)));
    });
    return new IotProcess(child, endpoints);
  }

  /** Requests are answered in order, one reply each. */
  #ask(request: BrokerRequest): Promise<BrokerMessage> {
    const reply = new Promise<BrokerMessage>((resolve) => this.#replies.push(resolve));
    this.child.send(request);
    return reply;
  }

  async report(things: string[], stage: 'downloading' | 'succeeded'): Promise<void> {
    await this.#ask({ type: 'report', things, stage });
  }

  async settle(): Promise<void> {
    await this.#ask({ type: 'settle' });
  }

  async counts(): Promise<DeviceSideCounts> {
    const reply = await this.#ask({ type: 'counts' });
    if (reply.type !== 'counts') throw new Error(`expected counts, got ${reply.type}`);
    return reply.counts;
  }

  async stop(): Promise<void> {
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.send({ type: 'stop' });
    await exited;
  }
}

/** A function's memory as deployed (lambdas/definitions/api.ts), in GB as Lambda bills it (1 GB = 1,024 MiB). */
function memoryGbOf(id: BackgroundFunctionId): number {
  const definition: FunctionDefinition = backgroundFunctions[id];
  return (definition.memoryMb ?? 1024) / 1024;
}
/** A function's CPU share: its memory over the 1,769 MB of one vCPU. */
function vcpuShareOf(id: BackgroundFunctionId): number {
  return Math.min(1, (memoryGbOf(id) * 1024) / 1769);
}

/**
 * What one awaited AWS request adds to an acknowledgement's billed duration in AWS, where
 * DynamoDB and the IoT data plane answer in-region in single-digit milliseconds: the upper end of
 * that is taken. An assumption, stated in the results' notes; the local stack's own latency is
 * not it (DynamoDB Local on a saturated 2-core machine is many times slower).
 */
const AWAITED_REQUEST_MS = 5;

interface PricedFigures {
  readonly shadowOps: number;
  readonly messages: number;
  readonly ruleTriggers: number;
  readonly ruleActions: number;
  readonly dynamoDbWriteUnits: number;
  readonly dynamoDbReadRequests: number;
  readonly lambdaInvocations: number;
  /** Billed duration × memory, per device: ms × GB. */
  readonly lambdaGbMs: number;
}

type CostByKind = Readonly<
  Record<'iot' | 'dynamoDbWrites' | 'dynamoDbReads' | 'lambdaRequests' | 'lambdaDuration', number>
>;

/** The cost per million device updates of per-device figures, by what it pays for (USD). */
function costOf(f: PricedFigures): CostByKind {
  return {
    iot:
      f.shadowOps * prices.shadowOpPerMillion +
      f.messages * prices.messagePerMillion +
      f.ruleTriggers * prices.ruleTriggerPerMillion +
      f.ruleActions * prices.ruleActionPerMillion,
    dynamoDbWrites: f.dynamoDbWriteUnits * prices.dynamoDbWritePerMillion,
    dynamoDbReads: f.dynamoDbReadRequests * prices.dynamoDbReadPerMillion,
    lambdaRequests: f.lambdaInvocations * prices.lambdaRequestPerMillion,
    lambdaDuration: (f.lambdaGbMs / 1000) * prices.lambdaGbSecond * 1e6,
  };
}

const totalCost = (cost: CostByKind): number => Object.values(cost).reduce((sum, usd) => sum + usd, 0);

/** Requests a phase sent (every command counted, not the derived `#` tallies). */
function requestTotal(counts: Counts): number {
  return [...counts.entries()].filter(([name]) => !name.startsWith('#')).reduce((sum, [, n]) => sum + n, 0);
}

if (memoryGbOf('acknowledge') !== memoryGbOf('countersStream'))
  throw new Error(
    'the acknowledgement side is priced at one memory size: keep acknowledge and countersStream equal',
  );

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
  const bump = (key: string, by: number) => counts.set(key, (counts.get(key) ?? 0) + by);
  add(
    (next, context) => async (args) => {
      const name = context.commandName ?? 'unknown';
      bump(name, 1);
      const writes = writeUnits(name, args.input);
      if (writes === 0) return next(args);
      bump('#dynamoDbWrites', writes);
      // What DynamoDB bills: 1 KB units by item size (transactions twice), as it reports them.
      args.input.ReturnConsumedCapacity = 'TOTAL';
      try {
        const result = (await next(args)) as { output?: { ConsumedCapacity?: unknown } };
        const units = capacityUnits(result.output?.ConsumedCapacity);
        bump('#dynamoDbWriteUnits', units);
        bump(`#dynamoDbWriteUnits ${name} ${tableOf(args.input)}`, units);
        return result;
      } catch (error) {
        // A refused condition is billed too, but its answer carries no capacity: one unit per item.
        bump('#dynamoDbWriteUnits', writes);
        throw error;
      }
    },
    { step: 'initialize', name: 'benchCountRequests' },
  );
}

/** The table a write goes to (the first one, for a batch or a transaction): where its units go. */
function tableOf(input: Record<string, unknown>): string {
  if (typeof input.TableName === 'string') return input.TableName;
  const batch = Object.keys((input.RequestItems ?? {}) as Record<string, unknown>);
  if (batch.length > 0) return batch.join('+');
  const first = (input.TransactItems as Record<string, { TableName?: string }>[] | undefined)?.[0];
  return Object.values(first ?? {})[0]?.TableName ?? 'unknown';
}

function capacityUnits(consumed: unknown): number {
  const entries = Array.isArray(consumed) ? consumed : consumed ? [consumed] : [];
  return entries.reduce<number>(
    (sum, entry) => sum + Number((entry as { CapacityUnits?: number }).CapacityUnits ?? 0),
    0,
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

/**
 * The fleet as an earlier update left it: each device known with version 1.0 installed and the
 * properties it reports (the steady state of a fleet that is updated again). A fleet's very first
 * update costs one more write per device, when the end of each execution records the device there.
 */
async function knownFleet(
  doc: DynamoDBDocumentClient,
  table: string,
  things: readonly string[],
): Promise<void> {
  const installedUpdateId = { provider: 'Contoso', name: 'Toaster', version: '1.0' };
  const compatibility = { manufacturer: 'contoso', model: 'toaster' };
  const lastReportAt = Date.now() - 86_400_000;
  const batches = Array.from({ length: Math.ceil(things.length / 25) }, (_, i) =>
    things.slice(i * 25, i * 25 + 25),
  );
  await inParallel(batches, 8, async (batch) => {
    let pending: Record<string, unknown>[] = batch.map((thingName) => ({
      PutRequest: { Item: { thingName, installedUpdateId, compatibility, lastReportAt } },
    }));
    while (pending.length > 0) {
      const out = await doc.send(new BatchWriteCommand({ RequestItems: { [table]: pending as never } }));
      pending = (out.UnprocessedItems?.[table] ?? []) as Record<string, unknown>[];
    }
  });
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

/** What the device side did between two snapshots. */
function subtractCounts(after: DeviceSideCounts, before: DeviceSideCounts): DeviceSideCounts {
  const keys = Object.keys(after) as (keyof DeviceSideCounts)[];
  return Object.fromEntries(
    keys.map((key) => [key, after[key] - before[key]]),
  ) as unknown as DeviceSideCounts;
}

/** Runs at most `limit` calls at once (the function's reserved concurrency), in arrival order. */
function limitConcurrency(limit: number): {
  run<T>(work: () => Promise<T>): Promise<T>;
  readonly busy: () => number;
} {
  let running = 0;
  const queue: (() => void)[] = [];
  return {
    async run(work) {
      if (running >= limit) await new Promise<void>((resolve) => queue.push(resolve));
      running++;
      try {
        return await work();
      } finally {
        running--;
        queue.shift()?.();
      }
    },
    busy: () => running + queue.length,
  };
}

/** Sends the devices' reports in chunks, no faster than the acknowledgements keep up. */
async function reportInChunks(
  iotCore: IotProcess,
  things: readonly string[],
  stage: 'downloading' | 'succeeded',
  busy: () => number,
): Promise<void> {
  const chunk = 200;
  for (let i = 0; i < things.length; i += chunk) {
    while (busy() > 4 * chunk) await new Promise((resolve) => setTimeout(resolve, 5));
    await iotCore.report(things.slice(i, i + chunk), stage);
  }
}

/** A trim's own documents start new rule actions: waits until none are left. */
async function settle(iotCore: IotProcess, invocations: () => number, busy: () => number): Promise<void> {
  let seen = -1;
  while (seen !== invocations() || busy() > 0) {
    seen = invocations();
    await iotCore.settle();
  }
}

/** A rule action that arrived while the fan-out was measured, run once the acknowledgement side starts. */
interface HeldInvocation {
  readonly event: unknown;
  readonly done: (outcome: Promise<unknown>) => void;
}

interface AcknowledgementRun {
  readonly wallMs: number;
  readonly cpuMs: number;
  /** Summed per-invocation wall time of both functions (what Lambda bills as duration). */
  readonly lambdaWallMs: number;
  readonly acknowledgeInvocations: number;
  readonly acknowledgeInvocationsForFanoutDocuments: number;
  readonly counterBatches: number;
  readonly outcomes: Record<string, number>;
  readonly counts: Counts;
  readonly deviceSide: DeviceSideCounts;
}

/**
 * The acknowledgement side: every device reports as the agent does (read, `downloading`,
 * `succeeded`), the rules engine invokes the real acknowledge handler (at most `concurrency` at
 * once), and a poller of the executions stream feeds the real counters-stream handler. Runs until
 * the rule actions are idle and the counters caught up.
 */
async function measureAcknowledgements(input: {
  readonly iotCore: IotProcess;
  readonly held: readonly HeldInvocation[];
  readonly things: readonly string[];
  readonly tables: { executions: string; fleet: string; deployments: string; updates: string };
  readonly aws: { region: string; credentials: { accessKeyId: string; secretAccessKey: string } };
  readonly ddbEndpoint: string;
  readonly concurrency: number;
}): Promise<AcknowledgementRun> {
  const { iotCore, aws, tables } = input;
  const counts: Counts = new Map();
  const dynamodb = new DynamoDBClient({ ...aws, endpoint: input.ddbEndpoint });
  const iotData = new IoTDataPlaneClient({ ...aws, endpoint: iotCore.endpoints.iotData, maxAttempts: 1 });
  // Lambda's event source mapping reads the stream at no request charge: not counted.
  const streams = new DynamoDBStreamsClient({ ...aws, endpoint: input.ddbEndpoint });
  countRequests(dynamodb as never, counts);
  countRequests(iotData as never, counts);
  const acknowledge = makeAcknowledge(
    acknowledgeDepsFromConfig(
      { executionsTable: tables.executions, fleetTable: tables.fleet },
      { dynamodb, iotData },
      recordingObservability(),
    ),
  );
  const countersStream = makeCountersStreamFromConfig(
    { deploymentsTable: tables.deployments, updatesTable: tables.updates },
    { dynamodb },
    recordingObservability(),
  );
  const slots = limitConcurrency(input.concurrency);
  const outcomes: Record<string, number> = {};
  let acknowledgeInvocations = 0;
  let counterBatches = 0;
  let lambdaWallMs = 0;
  const timed = async <T>(work: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    try {
      return await work();
    } finally {
      lambdaWallMs += performance.now() - started;
    }
  };
  const runAcknowledge = (event: unknown): Promise<unknown> =>
    slots.run(async () => {
      acknowledgeInvocations++;
      const result = await timed(() => acknowledge(event));
      outcomes[result.kind] = (outcomes[result.kind] ?? 0) + 1;
      return result;
    });

  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  iotCore.onInvoke = runAcknowledge;
  for (const invocation of input.held) invocation.done(runAcknowledge(invocation.event));
  const poller = await startStreamPoller({
    streams,
    tableName: tables.executions,
    region: aws.region,
    idleDelayMs: 50,
    // As the stack configures the event source: counters batches are what a busy stream makes.
    batchSize: countersStreamEventSource.batchSize,
    maxBatchingWindowMs: countersStreamEventSource.maxBatchingWindowSeconds * 1000,
    handler: (event) => {
      counterBatches++;
      return timed(() => countersStream(event));
    },
    onError: (error) => console.warn('  counters stream batch failed; retrying', error),
  });
  try {
    // Every device starts its download, then (the download takes minutes in the field) every one
    // reports its outcome: the acknowledgements of one device do not overlap.
    for (const stage of ['downloading', 'succeeded'] as const) {
      await reportInChunks(iotCore, input.things, stage, slots.busy);
      await settle(iotCore, () => acknowledgeInvocations, slots.busy);
    }
    await poller.caughtUp();
  } finally {
    await poller.stop();
  }
  const wallMs = performance.now() - started;
  const cpu = process.cpuUsage(cpuBefore);
  const deviceSide = await iotCore.counts();
  dynamodb.destroy();
  iotData.destroy();
  streams.destroy();
  return {
    wallMs,
    cpuMs: (cpu.user + cpu.system) / 1000,
    lambdaWallMs,
    acknowledgeInvocations,
    acknowledgeInvocationsForFanoutDocuments: input.held.length,
    counterBatches,
    outcomes,
    counts,
    deviceSide,
  };
}

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
    await knownFleet(doc, tables.fleet, things);
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

    // The acknowledgement rule fires on the fan-out's own documents; those actions wait, so the
    // fan-out's CPU is its own, and run first when the acknowledgement side is measured.
    const held: HeldInvocation[] = [];
    iotCore.onInvoke = (event) => new Promise((resolve) => held.push({ event, done: resolve }));

    console.log(`  fanning out to ${settings.devices} devices in ${created.value.shards} shards`);
    const cpuBefore = process.cpuUsage();
    const started = performance.now();
    invocations++;
    await worker.run({ deploymentId });
    while (pending.length > 0) await Promise.all(pending.splice(0));
    const wallMs = performance.now() - started;
    const cpu = process.cpuUsage(cpuBefore);

    const fanoutDeviceSide = await iotCore.counts();

    console.log(`  ${settings.devices} devices report downloading, then succeeded`);
    const ack = await measureAcknowledgements({
      iotCore,
      held,
      things,
      tables,
      aws,
      ddbEndpoint: ddb.endpoint,
      concurrency: settings.acknowledgeConcurrency,
    });

    const final = await store.get(deploymentId);
    const shadowUpdates = counts.get('UpdateThingShadowCommand') ?? 0;
    const notified = final ? Object.values(final.fanout).filter((lane) => lane.done).length : 0;
    const perDevice = (n: number): number => round(n / settings.devices);
    const cpuMsPerDevice = (cpu.user + cpu.system) / 1000 / settings.devices;
    const readRequests = (c: Counts): number =>
      ['GetItemCommand', 'QueryCommand', 'BatchGetItemCommand', 'ScanCommand'].reduce(
        (sum, command) => sum + (c.get(command) ?? 0),
        0,
      );

    // Messages as AWS meters them: every MQTT PUBLISH a device sends, every one delivered to a
    // device (get/update replies, deltas). A `documents` message goes to the rules engine only
    // (metered as a rule trigger, not a message); data-plane HTTP shadow calls are shadow ops.
    const fanout = {
      shadowOps: perDevice(shadowUpdates),
      messages: perDevice(fanoutDeviceSide.deltasToDevices),
      ruleTriggers: perDevice(fanoutDeviceSide.acknowledgementRuleTriggers),
      ruleActions: perDevice(fanoutDeviceSide.acknowledgementRuleActions),
      dynamoDbWrites: perDevice(counts.get('#dynamoDbWrites') ?? 0),
      dynamoDbWriteUnits: perDevice(counts.get('#dynamoDbWriteUnits') ?? 0),
      dynamoDbReadRequests: perDevice(readRequests(counts)),
      // The worker's invocations and the acknowledge invocations its own documents trigger.
      lambdaInvocations: perDevice(invocations + ack.acknowledgeInvocationsForFanoutDocuments),
      registryRequests: perDevice(counts.get('ListThingsInThingGroupCommand') ?? 0),
    };
    const deviceSide = subtractCounts(ack.deviceSide, fanoutDeviceSide);
    const serviceShadowOps =
      (ack.counts.get('UpdateThingShadowCommand') ?? 0) + (ack.counts.get('GetThingShadowCommand') ?? 0);
    const acknowledgement = {
      shadowOps: perDevice(deviceSide.deviceShadowGets + deviceSide.deviceShadowUpdates + serviceShadowOps),
      shadowOpsByKind: {
        agentShadowGets: perDevice(deviceSide.deviceShadowGets),
        deviceReports: perDevice(deviceSide.deviceShadowUpdates),
        trims: perDevice(ack.counts.get('UpdateThingShadowCommand') ?? 0),
        trimRereads: perDevice(ack.counts.get('GetThingShadowCommand') ?? 0),
      },
      messages: perDevice(
        deviceSide.messagesFromDevices + deviceSide.repliesToDevices + deviceSide.deltasToDevices,
      ),
      messagesByKind: {
        publishedByDevices: perDevice(deviceSide.messagesFromDevices),
        repliesDeliveredToDevices: perDevice(deviceSide.repliesToDevices),
        deltasDeliveredToDevices: perDevice(deviceSide.deltasToDevices),
      },
      ruleTriggers: perDevice(deviceSide.acknowledgementRuleTriggers),
      ruleActions: perDevice(deviceSide.acknowledgementRuleActions),
      dynamoDbWrites: perDevice(ack.counts.get('#dynamoDbWrites') ?? 0),
      dynamoDbWriteUnits: perDevice(ack.counts.get('#dynamoDbWriteUnits') ?? 0),
      dynamoDbReadRequests: perDevice(readRequests(ack.counts)),
      lambdaInvocations: perDevice(
        ack.acknowledgeInvocations - ack.acknowledgeInvocationsForFanoutDocuments + ack.counterBatches,
      ),
      lambdaInvocationsByFunction: {
        acknowledge: perDevice(ack.acknowledgeInvocations - ack.acknowledgeInvocationsForFanoutDocuments),
        countersStream: perDevice(ack.counterBatches),
      },
    };
    const lambdaDurationPerDeviceMs = handlerWallMs / settings.devices;
    const ackLambdaDurationPerDeviceMs = ack.lambdaWallMs / settings.devices;
    const ackCpuMsPerDevice = ack.cpuMs / settings.devices;
    // One worker per shard, each bound by its CPU: what the shards sustain in AWS (each its own
    // Lambda, whose CPU share is its memory over the 1,769 MB of one vCPU).
    const projectedPerSecond = Math.min(
      created.value.shards * vcpuShareOf('fanoutWorker') * (1000 / cpuMsPerDevice),
      settings.accountCapPerSecond,
    );
    // Billed duration in AWS. A worker runs its whole invocation at its lane's share of that rate
    // (sending, or waiting in process for the next batch), so a device costs shards / rate of
    // worker time. An acknowledgement is its CPU at the function's share plus its awaited requests.
    const billedMsPerDevice = {
      fanout: (created.value.shards / projectedPerSecond) * 1000,
      acknowledgement:
        ackCpuMsPerDevice / vcpuShareOf('acknowledge') +
        perDevice(requestTotal(ack.counts)) * AWAITED_REQUEST_MS,
    };
    const fanoutCosts = costOf({
      ...fanout,
      lambdaGbMs: billedMsPerDevice.fanout * memoryGbOf('fanoutWorker'),
    });
    // The acknowledge and counters-stream functions have the same memory size (checked at load).
    const acknowledgementCosts = costOf({
      ...acknowledgement,
      lambdaGbMs: billedMsPerDevice.acknowledgement * memoryGbOf('acknowledge'),
    });
    const fanoutCost = totalCost(fanoutCosts);
    const acknowledgementCost = totalCost(acknowledgementCosts);
    const costByKind = Object.fromEntries(
      Object.entries(fanoutCosts).map(([kind, usd]) => [
        kind,
        round(usd + acknowledgementCosts[kind as keyof CostByKind], 2),
      ]),
    );
    // The same at the local stack's wall time: an upper bound (workers queue for 2 shared cores).
    const localWallDurationExtra =
      costOf({ ...fanout, lambdaGbMs: lambdaDurationPerDeviceMs * memoryGbOf('fanoutWorker') })
        .lambdaDuration +
      costOf({ ...acknowledgement, lambdaGbMs: ackLambdaDurationPerDeviceMs * memoryGbOf('acknowledge') })
        .lambdaDuration -
      fanoutCosts.lambdaDuration -
      acknowledgementCosts.lambdaDuration;
    const total = {
      shadowOps: round(fanout.shadowOps + acknowledgement.shadowOps),
      messages: round(fanout.messages + acknowledgement.messages),
      ruleTriggers: round(fanout.ruleTriggers + acknowledgement.ruleTriggers),
      ruleActions: round(fanout.ruleActions + acknowledgement.ruleActions),
      dynamoDbWrites: round(fanout.dynamoDbWrites + acknowledgement.dynamoDbWrites),
      dynamoDbWriteUnits: round(fanout.dynamoDbWriteUnits + acknowledgement.dynamoDbWriteUnits),
      lambdaInvocations: round(fanout.lambdaInvocations + acknowledgement.lambdaInvocations),
      handlerCpuMs: round(cpuMsPerDevice + ackCpuMsPerDevice),
    };
    const notifiedPerSecond = settings.devices / (wallMs / 1000);
    const succeeded = final?.counters.succeeded ?? 0;
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
      acknowledgement: {
        devicesSucceededByCounters: succeeded,
        wallSeconds: round(ack.wallMs / 1000, 2),
        devicesAcknowledgedPerSecond: round(settings.devices / (ack.wallMs / 1000), 1),
        handlerCpuMsPerDevice: round(ackCpuMsPerDevice),
        lambdaWallMsPerDevice: round(ackLambdaDurationPerDeviceMs),
        acknowledgeOutcomes: Object.fromEntries(Object.entries(ack.outcomes).sort()),
        acknowledgeInvocationsForFanoutDocuments: ack.acknowledgeInvocationsForFanoutDocuments,
        counterBatches: ack.counterBatches,
        requestCountsByCommand: Object.fromEntries([...ack.counts.entries()].sort()),
        deviceSideCounts: deviceSide,
      },
      acknowledgementRequestsPerDevice: acknowledgement,
      totalPerDevice: total,
      lambdaBilledMsPerDevice: {
        fanout: round(billedMsPerDevice.fanout),
        acknowledgement: round(billedMsPerDevice.acknowledgement),
        awaitedRequestMsAssumed: AWAITED_REQUEST_MS,
      },
      costPerMillionDeviceUpdatesUsd: {
        fanoutMeasured: round(fanoutCost, 2),
        acknowledgementMeasured: round(acknowledgementCost, 2),
        total: round(fanoutCost + acknowledgementCost, 2),
        byKind: costByKind,
        totalWithLocalWallDuration: round(fanoutCost + acknowledgementCost + localWallDurationExtra, 2),
        awsIotJobsForComparison: 3000,
      },
      sustainableNotifiesPerSecond_projected: round(projectedPerSecond, 0),
      notes: [
        'Local stack: DynamoDB Local (one JVM) and the local IoT Core bound the measured rate; the projection assumes one Lambda per shard at its deployed memory (CPU share = memory / 1,769 MB), each limited by the handler CPU measured here, capped at the account quota.',
        'Everything is measured. Devices are simulated inside the local IoT Core process (bench/ack-broker.ts) through its in-process shadow service, not over 10,000 MQTT connections, doing what the agent does: the desired document taken from the delta (a GET only when the delta is not whole), a `downloading` report; once every device has reported that and the acknowledgements settled, `succeeded` with installedUpdateId and desired.ota cleared at the version it expects. Each report carries the next seq and goes to the rules engine as a device PUBLISH does.',
        "The real rules engine runs the acknowledgement rule (on the devices' own update topic); its Lambda action is forwarded to this process, where the real acknowledge handler runs (at most acknowledgeConcurrency at once); a poller of DynamoDB Local's executions stream feeds the real counters-stream handler. Stream reads are not counted (free for Lambda event source mappings).",
        'Messages as AWS meters them (per 5 KB; all of these are smaller): MQTT PUBLISH sent by devices and delivered to devices (deltas, GET answers, update/rejected). Devices subscribe at QoS 0 (no metered PUBACK) and not to update/accepted. Rule triggers: every message on the rule topic, WHERE or not. Data-plane HTTP shadow calls are counted as shadow operations only. Download authorization is not part of these figures.',
        'DynamoDB: dynamoDbWrites counts items written (a transaction item twice, a refused condition too); dynamoDbWriteUnits is what DynamoDB reports consuming (1 KB units by item size, each index item written included), and prices the writes.',
        'The fleet is known before the deployment (each device with version 1.0 and the properties it reports, as an earlier update leaves it): the steady state. A fleet never updated before costs one more write per device, once, when each execution ends and records the device in the fleet table.',
        'Handler CPU: process.cpuUsage of this process in each phase (it runs the handlers, their SDK clients, the stream poller and the IPC to the IoT Core process).',
        `Lambda duration, priced at each function's memory as deployed, is what AWS would bill at the projected rate: a fan-out worker runs its whole invocation at its lane's share of the rate (shards / rate per device); an acknowledgement is its measured CPU at the function's CPU share plus ${AWAITED_REQUEST_MS} ms per awaited request (an assumption: DynamoDB and the IoT data plane answer in-region in single-digit ms). lambdaWallMsPerDevice is the local wall time, inflated by 2 shared cores and DynamoDB Local; totalWithLocalWallDuration prices that instead, as an upper bound.`,
      ],
    };
    return {
      targets,
      measurements,
      targetsMet: {
        handlerCpuMsPerDevice: total.handlerCpuMs < targets.handlerCpuMsPerDevice,
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
