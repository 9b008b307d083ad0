/**
 * Fan-out benchmark (issue 4): one deployment to 10,000 devices (members of one thing group) on
 * the local stack: DynamoDB Local (its own JVM) and the local IoT Core with the acknowledgement
 * rule (a child process, bench/ack-broker.ts), with the service's handlers run in this process
 * exactly as Lambda would run them.
 *
 * Two phases, both measured: the fan-out (expansion, then one worker per shard, following their
 * re-invocations) and the device side (every device takes its document from the delta and asks
 * for download authorization, which the real authorizer answers and records as `downloading`,
 * then reports `succeeded`; the rule's queue gives the real acknowledge handler its reports in
 * batches;
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
import {
  AddThingToThingGroupCommand,
  CreateThingCommand,
  CreateThingGroupCommand,
  IoTClient,
} from '@aws-sdk/client-iot';
import { IoTDataPlaneClient } from '@aws-sdk/client-iot-data-plane';
import { S3Client } from '@aws-sdk/client-s3';
import { BatchWriteCommand, DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { SQSEvent } from 'aws-lambda';
import { makeDeploymentStore } from '../lambdas/adapters/deployment-store.ts';
import { fastDocumentClientOf } from '../lambdas/adapters/fast-document-client.ts';
import { fastIotDataOf } from '../lambdas/adapters/fast-iot-data.ts';
import type { FunctionInvoker } from '../lambdas/adapters/function-invoker.ts';
import {
  type BackgroundFunctionId,
  backgroundFunctions,
  countersStreamEventSource,
  type FunctionDefinition,
} from '../lambdas/definitions/api.ts';
import { env } from '../lambdas/definitions/environment.ts';
import {
  deploymentsTable,
  executionsTable,
  fleetTable,
  updatesTable,
} from '../lambdas/definitions/tables.ts';
import { acknowledgeDepsFromConfig, makeAcknowledgeQueue } from '../lambdas/handlers/acknowledge.ts';
import type { Environment } from '../lambdas/handlers/config.ts';
import { makeCountersStreamFromConfig } from '../lambdas/handlers/counters-stream.ts';
import {
  downloadAuthorizerConfigFromEnv,
  makeDownloadAuthorizerFromConfig,
} from '../lambdas/handlers/download-authorizer.ts';
import { shardCountFor } from '../lambdas/handlers/fanout/sharding.ts';
import { fanoutDepsFromConfig, makeFanoutWorker } from '../lambdas/handlers/fanout-worker.ts';
import { recordingObservability } from '../lambdas/observability.ts';
import { sampleDeviceCompatibility } from '../local/demo/sample-update.ts';
import { startDynamoDbLocal } from '../local/dynamodb.ts';
import type { LocalIotCoreEndpoints } from '../local/iot/index.ts';
import { ensureTable } from '../local/tables.ts';
import type { BrokerRequest, DeviceSideCounts, StreamSource } from './ack-broker.ts';
import type { Benchmark, BenchmarkOutcome } from './benchmark.ts';
import { deploySampleUpdate } from './fanout-setup.ts';

const settings = {
  // A smaller fleet only to try the benchmark out; results are for 10,000.
  devices: Number(process.env.BENCH_FANOUT_DEVICES ?? 10_000),
  ratePerMinute: 240_000,
  accountCapPerSecond: 4000,
  registryConcurrency: 64,
  /** Concurrent acknowledge invocations (its reserved concurrency, in AWS). */
  acknowledgeConcurrency: 16,
  /**
   * Whole runs, each on a fresh stack; the median one by handler CPU is reported. CPU per device
   * varies by a quarter from run to run on this shared machine, the counts not at all (ADR 0060).
   */
  runs: Number(process.env.BENCH_FANOUT_RUNS ?? 3),
  /** A pause between runs: the last run's JVM and processes wind down before the next measures. */
  pauseBetweenRunsMs: 15_000,
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
  /** SQS standard queue requests (64 KB each), beyond the free tier. */
  sqsRequestPerMillion: 0.4,
  /** Per GB-second (x86 and arm64 differ slightly; the higher one). */
  lambdaGbSecond: 0.0000166667,
} as const;

/** The functions the IoT Core process's rules invoke (their actions are forwarded here). */
type RuleFunction = 'acknowledge' | 'downloadAuthorizer';

type BrokerMessage =
  | { type: 'ready'; endpoints: LocalIotCoreEndpoints }
  | { type: 'invoke'; id: number; function: RuleFunction | 'countersStream'; event: unknown }
  | { type: 'reported' }
  | { type: 'settled' }
  | { type: 'streamPolled' }
  | { type: 'streamCaughtUp' }
  | { type: 'streamStopped' }
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
        void this.#invoke(message.function, message.event).then(
          () => child.send({ type: 'invoked', id: message.id }),
          (error: unknown) => child.send({ type: 'invoked', id: message.id, error: String(error) }),
        );
      else this.#replies.shift()?.(message);
    });
  }

  /** A rule's Lambda action: set by the benchmark before any rule can fire. */
  onInvoke: (fn: RuleFunction, event: unknown) => Promise<unknown> = () => Promise.resolve();
  /** A batch of the executions stream, read in the IoT Core process as Lambda's event source mapping reads it. */
  onCountersBatch: (event: unknown) => Promise<unknown> = () => Promise.resolve();

  #invoke(fn: RuleFunction | 'countersStream', event: unknown): Promise<unknown> {
    return fn === 'countersStream' ? this.onCountersBatch(event) : this.onInvoke(fn, event);
  }

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

  async pollStream(source: StreamSource): Promise<void> {
    await this.#ask({ type: 'pollStream', source });
  }

  /** Resolves once everything written to the stream before the call was delivered. */
  async streamCaughtUp(): Promise<void> {
    await this.#ask({ type: 'streamCaughtUp' });
  }

  async stopStream(): Promise<void> {
    await this.#ask({ type: 'stopStream' });
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
  readonly sqsRequests: number;
  /** Billed duration × memory, per device: ms × GB. */
  readonly lambdaGbMs: number;
}

type CostByKind = Readonly<
  Record<'iot' | 'dynamoDbWrites' | 'dynamoDbReads' | 'sqs' | 'lambdaRequests' | 'lambdaDuration', number>
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
    sqs: f.sqsRequests * prices.sqsRequestPerMillion,
    lambdaRequests: f.lambdaInvocations * prices.lambdaRequestPerMillion,
    lambdaDuration: (f.lambdaGbMs / 1000) * prices.lambdaGbSecond * 1e6,
  };
}

const totalCost = (cost: CostByKind): number => Object.values(cost).reduce((sum, usd) => sum + usd, 0);

/** Requests a phase sent (every command counted, not the derived `#` tallies). */
function requestTotal(counts: Counts): number {
  return [...counts.entries()]
    .filter(([name]) => !name.startsWith('#') && !name.startsWith('!'))
    .reduce((sum, [, n]) => sum + n, 0);
}

if (
  memoryGbOf('acknowledge') !== memoryGbOf('countersStream') ||
  memoryGbOf('acknowledge') !== memoryGbOf('downloadAuthorizer')
)
  throw new Error(
    'the device side is priced at one memory size: keep acknowledge, countersStream and downloadAuthorizer equal',
  );

type Counts = Map<string, number>;

/**
 * Counts every command a client sends, and DynamoDB write units by the items they carry. Writes
 * to `streamMeteredTable` that land are metered from its stream instead (bench/write-units.ts), in
 * the IoT Core process: DynamoDB Local reports no capacity for PartiQL batches, and one source for
 * all of that table's writes keeps them from being counted twice. A refused write is billed too,
 * and leaves no stream record: one unit each.
 */
function countRequests(
  client: { middlewareStack: { add: (...args: never[]) => void } },
  counts: Counts,
  streamMeteredTable: string,
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
      meterIotRequest(name, args.input, bump);
      if (name === 'GetThingShadowCommand') {
        // A GET is metered by the document it returns.
        const result = (await next(args)) as { output?: { payload?: unknown } };
        bump('#shadowOpUnits', unitsOf(byteLengthOf(result.output?.payload), SHADOW_OP_UNIT_BYTES));
        return result;
      }
      const writes = writeUnits(name, args.input);
      if (writes === 0) return countingRefusals(name, bump, () => next(args));
      bump('#dynamoDbWrites', writes);
      if (name === 'BatchExecuteStatementCommand') return countingStatements(bump, () => next(args));
      const streamMetered = tableOf(args.input) === streamMeteredTable;
      // What DynamoDB bills: 1 KB units by item size (transactions twice), as it reports them.
      if (!streamMetered) args.input.ReturnConsumedCapacity = 'TOTAL';
      try {
        const result = (await countingRefusals(name, bump, () => next(args))) as {
          output?: { ConsumedCapacity?: unknown };
        };
        if (streamMetered) return result;
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

/**
 * A PartiQL batch: the statements that land are metered from the stream; each refused one is
 * counted as `!BatchExecuteStatementCommand <code>` and billed a unit.
 */
async function countingStatements(
  bump: (key: string, by: number) => void,
  send: () => Promise<unknown>,
): Promise<unknown> {
  const result = (await countingRefusals('BatchExecuteStatementCommand', bump, send)) as {
    output?: { Responses?: { Error?: { Code?: string } }[] };
  };
  for (const response of result.output?.Responses ?? []) {
    if (!response.Error) continue;
    bump(`!BatchExecuteStatementCommand ${response.Error.Code ?? 'unknown'}`, 1);
    bump('#dynamoDbWriteUnits', 1);
  }
  return result;
}

/** Runs a request, counting it as `!<command> <error>` when AWS refuses it. */
async function countingRefusals<T>(
  name: string,
  bump: (key: string, by: number) => void,
  send: () => Promise<T>,
): Promise<T> {
  try {
    return await send();
  } catch (error) {
    bump(`!${name} ${(error as Error).name}`, 1);
    throw error;
  }
}

/** Counts an SDK client's requests and those its lean twin sends for the per-device handlers. */
function countRequestsOfBoth(sdk: object, fast: object, counts: Counts, streamMeteredTable: string): void {
  countRequests(sdk as never, counts, streamMeteredTable);
  countRequests(fast as never, counts, streamMeteredTable);
}

/** AWS meters a shadow operation per 1 KB of its document, a message per 5 KB of payload and topic. */
const SHADOW_OP_UNIT_BYTES = 1024;
const MESSAGE_UNIT_BYTES = 5 * 1024;
const unitsOf = (bytes: number, unit: number): number => Math.max(1, Math.ceil(bytes / unit));
const byteLengthOf = (payload: unknown): number =>
  payload instanceof Uint8Array ? payload.length : Buffer.byteLength(String(payload ?? ''));

/**
 * The service's data-plane requests as AWS meters them: `#shadowOpUnits` (UpdateThingShadow by the
 * size of its document) and `#messageUnits` (Publish by payload and topic; delivering it to the
 * subscribed device is counted on the device side).
 */
function meterIotRequest(
  command: string,
  input: Record<string, unknown>,
  bump: (key: string, by: number) => void,
): void {
  if (command === 'UpdateThingShadowCommand')
    bump('#shadowOpUnits', unitsOf(byteLengthOf(input.payload), SHADOW_OP_UNIT_BYTES));
  if (command === 'PublishCommand')
    bump(
      '#messageUnits',
      unitsOf(byteLengthOf(input.payload) + byteLengthOf(input.topic), MESSAGE_UNIT_BYTES),
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
  // Our PartiQL batches are writes, a statement an item.
  if (command === 'BatchExecuteStatementCommand')
    return (input.Statements as unknown[] | undefined)?.length ?? 0;
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
  const installedUpdateId = { provider: 'Contoso', name: 'Demo-Gateway', version: '1.0' };
  const compatibility = sampleDeviceCompatibility;
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

/**
 * The S3 client the authorizer presigns with. In Lambda that is the function role's temporary
 * credentials, whose session token every presigned URL carries (X-Amz-Security-Token), so the
 * answer a device receives is as long as in AWS only with a token of that length. Presigning
 * sends no request: the key is never used against a server.
 */
function presigningS3(region: string): S3Client {
  return new S3Client({
    region,
    credentials: {
      accessKeyId: 'ASIABENCHAUTHORIZER0',
      secretAccessKey: 'bench-authorizer-secret-access-key-0000',
      sessionToken: 'T'.repeat(LAMBDA_SESSION_TOKEN_CHARS),
    },
  });
}

/** A Lambda role session token's length in characters (they run to about 1,000–1,300): an assumption. */
const LAMBDA_SESSION_TOKEN_CHARS = 1100;

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
  readonly authorizerInvocations: number;
  readonly authorizerAnswers: Record<string, number>;
  readonly counterBatches: number;
  readonly outcomes: Record<string, number>;
  readonly counts: Counts;
  readonly deviceSide: DeviceSideCounts;
}

/**
 * The device side: every device does what the agent does (takes its document, asks to download,
 * then reports `succeeded`), the rules engine invokes the real authorizer and acknowledge handler
 * (at most `concurrency` at once), and a poller of the executions stream feeds the real counters-stream handler. Runs until
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
  /** The functions' environment (tables, bucket, role) as the deployment was made with. */
  readonly environment: Environment;
}): Promise<AcknowledgementRun> {
  const { iotCore, aws, tables } = input;
  const counts: Counts = new Map();
  const dynamodb = new DynamoDBClient({ ...aws, endpoint: input.ddbEndpoint });
  const iotData = new IoTDataPlaneClient({ ...aws, endpoint: iotCore.endpoints.iotData, maxAttempts: 1 });
  countRequestsOfBoth(dynamodb, fastDocumentClientOf(dynamodb), counts, tables.executions);
  countRequestsOfBoth(iotData, fastIotDataOf(iotData), counts, tables.executions);
  const acknowledgeObservability = recordingObservability();
  const acknowledge = makeAcknowledgeQueue(
    acknowledgeDepsFromConfig(
      { executionsTable: tables.executions, fleetTable: tables.fleet },
      { dynamodb, iotData },
      acknowledgeObservability,
    ),
  );
  const authorize = makeDownloadAuthorizerFromConfig(
    downloadAuthorizerConfigFromEnv(input.environment),
    { dynamodb, iotData, s3: presigningS3(aws.region) },
    recordingObservability(),
  );
  const countersStream = makeCountersStreamFromConfig(
    { deploymentsTable: tables.deployments, updatesTable: tables.updates },
    { dynamodb },
    recordingObservability(),
  );
  const slots = limitConcurrency(input.concurrency);
  const outcomes: Record<string, number> = {};
  const authorizerAnswers: Record<string, number> = {};
  let acknowledgeInvocations = 0;
  let authorizerInvocations = 0;
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
      const result = await timed(() => acknowledge(event as SQSEvent));
      outcomes.batchItemFailures = (outcomes.batchItemFailures ?? 0) + result.batchItemFailures.length;
      return result;
    });
  const runAuthorizer = (event: unknown): Promise<unknown> =>
    slots.run(async () => {
      authorizerInvocations++;
      const result = await timed(() => authorize(event));
      const answer = result.answered === 'rejected' ? `rejected ${result.code}` : result.answered;
      authorizerAnswers[answer] = (authorizerAnswers[answer] ?? 0) + 1;
      return result;
    });

  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  iotCore.onInvoke = (fn, event) => (fn === 'acknowledge' ? runAcknowledge(event) : runAuthorizer(event));
  for (const invocation of input.held) invocation.done(runAcknowledge(invocation.event));
  iotCore.onCountersBatch = (event) => {
    counterBatches++;
    return timed(() => countersStream(event as never));
  };
  // As the stack configures the event source: counters batches are what a busy stream makes.
  await iotCore.pollStream({
    endpoint: input.ddbEndpoint,
    region: aws.region,
    credentials: aws.credentials,
    tableName: tables.executions,
    batchSize: countersStreamEventSource.batchSize,
    maxBatchingWindowMs: countersStreamEventSource.maxBatchingWindowSeconds * 1000,
  });
  try {
    // Every device starts its download, then (the download takes minutes in the field) every one
    // reports its outcome: the acknowledgements of one device do not overlap.
    for (const stage of ['downloading', 'succeeded'] as const) {
      await reportInChunks(iotCore, input.things, stage, slots.busy);
      await settle(iotCore, () => acknowledgeInvocations, slots.busy);
    }
    await iotCore.streamCaughtUp();
  } finally {
    await iotCore.stopStream();
  }
  const wallMs = performance.now() - started;
  const cpu = process.cpuUsage(cpuBefore);
  const deviceSide = await iotCore.counts();
  dynamodb.destroy();
  iotData.destroy();
  return {
    wallMs,
    cpuMs: (cpu.user + cpu.system) / 1000,
    lambdaWallMs,
    acknowledgeInvocations,
    acknowledgeInvocationsForFanoutDocuments: input.held.length,
    authorizerInvocations,
    authorizerAnswers,
    counterBatches,
    // What the handler counted of the reports it applied (DeviceSucceeded, ...), and the failures it answered.
    outcomes: { ...outcomes, ...Object.fromEntries(acknowledgeObservability.counts) },
    counts,
    deviceSide,
  };
}

/** Handler CPU per device of one run's outcome (fan-out and device side). */
function handlerCpuOf(outcome: BenchmarkOutcome): number {
  return (outcome.measurements.totalPerDevice as { handlerCpuMs: number }).handlerCpuMs;
}

/** `settings.runs` whole runs; the median one by handler CPU, with every run's CPU beside it. */
async function run(): Promise<BenchmarkOutcome> {
  const outcomes: BenchmarkOutcome[] = [];
  for (let i = 1; i <= settings.runs; i++) {
    if (i > 1) await new Promise((resolve) => setTimeout(resolve, settings.pauseBetweenRunsMs));
    console.log(`  run ${i} of ${settings.runs}`);
    outcomes.push(await runOnce());
  }
  const byCpu = [...outcomes].sort((a, b) => handlerCpuOf(a) - handlerCpuOf(b));
  const median = byCpu[Math.floor((byCpu.length - 1) / 2)];
  if (!median) throw new Error('bug: no run to report');
  return {
    ...median,
    measurements: {
      ...median.measurements,
      runs: outcomes.length,
      reportedRun: outcomes.indexOf(median) + 1,
      handlerCpuMsPerDeviceByRun: outcomes.map(handlerCpuOf),
    },
  };
}

async function runOnce(): Promise<BenchmarkOutcome> {
  const aws = { region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } };
  const ddb = await startDynamoDbLocal({ port: 0 });
  const iotCore = await IotProcess.start();
  const dynamodb = new DynamoDBClient({ ...aws, endpoint: ddb.endpoint });
  const iot = new IoTClient({ ...aws, endpoint: iotCore.endpoints.iot });
  const iotData = new IoTDataPlaneClient({ ...aws, endpoint: iotCore.endpoints.iotData, maxAttempts: 1 });
  let stopSetup = async (): Promise<void> => {};
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
    console.log('  importing the sample update and deploying it through the APIs');
    const deployment = await deploySampleUpdate({
      dynamodb,
      iotData,
      iotDataEndpoint: iotCore.endpoints.iotData,
      tables,
      region: aws.region,
      group,
      ratePerMinute: settings.ratePerMinute,
    });
    stopSetup = deployment.stop;
    const { deploymentId } = deployment;
    const shards = shardCountFor(settings.ratePerMinute);
    const store = makeDeploymentStore({
      db: doc,
      tableName: tables.deployments,
      updatesTableName: tables.updates,
    });

    // Counting starts here: everything below is the fan-out's own work.
    const counts: Counts = new Map();
    countRequestsOfBoth(dynamodb, fastDocumentClientOf(dynamodb), counts, tables.executions);
    countRequests(iot as never, counts, tables.executions);
    countRequestsOfBoth(iotData, fastIotDataOf(iotData), counts, tables.executions);
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
        artifactBucket: String(deployment.environment[env.artifactBucket]),
      },
      { dynamodb, iot, iotData, invoker, s3: presigningS3(aws.region) },
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

    console.log(`  fanning out to ${settings.devices} devices in ${shards} shards`);
    const cpuBefore = process.cpuUsage();
    const started = performance.now();
    invocations++;
    await worker.run(deployment.start);
    while (pending.length > 0) await Promise.all(pending.splice(0));
    const wallMs = performance.now() - started;
    const cpu = process.cpuUsage(cpuBefore);

    const fanoutDeviceSide = await iotCore.counts();

    console.log(`  ${settings.devices} devices ask to download, then report succeeded`);
    const ack = await measureAcknowledgements({
      iotCore,
      held,
      things,
      tables,
      aws,
      ddbEndpoint: ddb.endpoint,
      concurrency: settings.acknowledgeConcurrency,
      environment: deployment.environment,
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

    // Shadow operations and messages as AWS meters them, by size (ADR 0060): every MQTT PUBLISH a
    // device sends, every one delivered to a device (deltas, replies, download answers), every
    // data-plane Publish. A `documents` message goes to no subscriber; data-plane HTTP shadow
    // calls are shadow operations only.
    const fanout = {
      shadowOps: perDevice(counts.get('#shadowOpUnits') ?? 0),
      shadowOpRequests: perDevice(shadowUpdates),
      messages: perDevice(fanoutDeviceSide.messageUnits + (counts.get('#messageUnits') ?? 0)),
      messageCount: perDevice(
        fanoutDeviceSide.deltasToDevices +
          fanoutDeviceSide.downloadAnswersToDevices +
          (counts.get('PublishCommand') ?? 0),
      ),
      /** Download grants sent with the notification and delivered (devices then ask for none). */
      grantsPushed: perDevice(fanoutDeviceSide.grantsPushedToDevices),
      ruleTriggers: perDevice(fanoutDeviceSide.acknowledgementRuleTriggers),
      ruleActions: perDevice(fanoutDeviceSide.acknowledgementRuleActions),
      dynamoDbWrites: perDevice(counts.get('#dynamoDbWrites') ?? 0),
      dynamoDbWriteUnits: perDevice(
        (counts.get('#dynamoDbWriteUnits') ?? 0) + ack.deviceSide.executionWriteUnitsByFanout,
      ),
      dynamoDbReadRequests: perDevice(readRequests(counts)),
      sqsRequests: 0,
      // The worker's invocations and the acknowledge invocations its own documents trigger.
      lambdaInvocations: perDevice(invocations + ack.acknowledgeInvocationsForFanoutDocuments),
      registryRequests: perDevice(counts.get('ListThingsInThingGroupCommand') ?? 0),
    };
    const deviceSide = subtractCounts(ack.deviceSide, fanoutDeviceSide);
    const serviceShadowOps =
      (ack.counts.get('UpdateThingShadowCommand') ?? 0) + (ack.counts.get('GetThingShadowCommand') ?? 0);
    const authorizerPublishes = ack.counts.get('PublishCommand') ?? 0;
    const acknowledgement = {
      shadowOps: perDevice(deviceSide.deviceShadowOpUnits + (ack.counts.get('#shadowOpUnits') ?? 0)),
      shadowOpRequests: perDevice(
        deviceSide.deviceShadowGets + deviceSide.deviceShadowUpdates + serviceShadowOps,
      ),
      shadowOpsByKind: {
        agentShadowGets: perDevice(deviceSide.deviceShadowGets),
        deviceReports: perDevice(deviceSide.deviceShadowUpdates),
        trims: perDevice(ack.counts.get('UpdateThingShadowCommand') ?? 0),
        trimRereads: perDevice(ack.counts.get('GetThingShadowCommand') ?? 0),
      },
      messages: perDevice(deviceSide.messageUnits + (ack.counts.get('#messageUnits') ?? 0)),
      messageCount: perDevice(
        deviceSide.messagesFromDevices +
          deviceSide.repliesToDevices +
          deviceSide.deltasToDevices +
          deviceSide.downloadAnswersToDevices +
          authorizerPublishes,
      ),
      messagesByKind: {
        publishedByDevices: perDevice(deviceSide.messagesFromDevices),
        ofWhichDownloadRequests: perDevice(deviceSide.downloadRequests),
        repliesDeliveredToDevices: perDevice(deviceSide.repliesToDevices),
        deltasDeliveredToDevices: perDevice(deviceSide.deltasToDevices),
        downloadAnswersPublishedByTheAuthorizer: perDevice(authorizerPublishes),
        downloadAnswersDeliveredToDevices: perDevice(deviceSide.downloadAnswersToDevices),
      },
      ruleTriggers: perDevice(deviceSide.acknowledgementRuleTriggers + deviceSide.downloadRuleTriggers),
      ruleActions: perDevice(deviceSide.acknowledgementRuleActions + deviceSide.downloadRuleActions),
      dynamoDbWrites: perDevice(ack.counts.get('#dynamoDbWrites') ?? 0),
      dynamoDbWriteUnits: perDevice(
        (ack.counts.get('#dynamoDbWriteUnits') ?? 0) + ack.deviceSide.executionWriteUnitsByAcknowledgement,
      ),
      dynamoDbReadRequests: perDevice(readRequests(ack.counts)),
      // The rule's SendMessage per report; the event source mapping's ReceiveMessage and
      // DeleteMessageBatch, ten messages a request at most.
      sqsRequests: perDevice(
        deviceSide.sqsSendMessages + deviceSide.sqsReceiveRequests + deviceSide.sqsDeleteRequests,
      ),
      sqsRequestsByKind: {
        sendMessage: perDevice(deviceSide.sqsSendMessages),
        receiveMessage: perDevice(deviceSide.sqsReceiveRequests),
        deleteMessageBatch: perDevice(deviceSide.sqsDeleteRequests),
      },
      lambdaInvocations: perDevice(
        ack.acknowledgeInvocations -
          ack.acknowledgeInvocationsForFanoutDocuments +
          ack.counterBatches +
          ack.authorizerInvocations,
      ),
      lambdaInvocationsByFunction: {
        acknowledge: perDevice(ack.acknowledgeInvocations - ack.acknowledgeInvocationsForFanoutDocuments),
        countersStream: perDevice(ack.counterBatches),
        downloadAuthorizer: perDevice(ack.authorizerInvocations),
      },
    };
    const lambdaDurationPerDeviceMs = handlerWallMs / settings.devices;
    const ackLambdaDurationPerDeviceMs = ack.lambdaWallMs / settings.devices;
    const ackCpuMsPerDevice = ack.cpuMs / settings.devices;
    // One worker per shard, each bound by its CPU: what the shards sustain in AWS (each its own
    // Lambda, whose CPU share is its memory over the 1,769 MB of one vCPU).
    const projectedPerSecond = Math.min(
      shards * vcpuShareOf('fanoutWorker') * (1000 / cpuMsPerDevice),
      settings.accountCapPerSecond,
    );
    // Billed duration in AWS. A worker runs its whole invocation at its lane's share of that rate
    // (sending, or waiting in process for the next batch), so a device costs shards / rate of
    // worker time. An acknowledgement is its CPU at the function's share plus its awaited requests.
    const billedMsPerDevice = {
      fanout: (shards / projectedPerSecond) * 1000,
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
      shadowOpRequests: round(fanout.shadowOpRequests + acknowledgement.shadowOpRequests),
      messages: round(fanout.messages + acknowledgement.messages),
      messageCount: round(fanout.messageCount + acknowledgement.messageCount),
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
      shards: shards,
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
        downloadAuthorizerAnswers: Object.fromEntries(Object.entries(ack.authorizerAnswers).sort()),
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
        "The update is the main job's sample (local/demo/sample-update.ts: a parent with an inline step and a reference step to a child with three script steps, four files to download), imported, uploaded and committed through the real updates API and deployed through the real deployments API, which signs it with the deployment's claims: the documents devices receive are a real update's.",
        'Everything is measured. Devices are simulated inside the local IoT Core process (bench/ack-broker.ts) through its in-process shadow service, not over 10,000 MQTT connections, doing what the agent does: the desired document taken from the delta (a GET only when the delta is not whole), the grant the fan-out worker sent with the notification (or, without one, a download request answered by the real download authorizer through the rules engine and the data plane, which records `downloading`); once every device has done that and the functions settled, `succeeded` with installedUpdateId and desired.ota cleared at the version it expects. Each report carries the next seq and goes to the rules engine as a device PUBLISH does.',
        "The real rules engine runs the acknowledgement rule (on the devices' own update topic); its SQS action sends each report to the local acknowledgements queue, whose event source mapping (batch 100, 1 s window, as deployed) hands batches to this process, where the real acknowledge handler runs (at most acknowledgeConcurrency batches at once); a poller of DynamoDB Local's executions stream feeds the real counters-stream handler. Stream reads are not counted (free for Lambda event source mappings).",
        "SQS: the rule action's SendMessage per report (a message well under 64 KB is one request), and the event source mapping's ReceiveMessage and DeleteMessageBatch, ten messages a request at most, priced at $0.40 per million requests. The mapping's idle long polls (a few per minute per poller) are a fixed cost, not per device, and not counted.",
        `Metered by size, as AWS bills them: shadowOps in 1 KB units of each request's document (a GET by the document it returns), messages in 5 KB units of payload and topic; shadowOpRequests and messageCount are the plain counts. Messages: MQTT PUBLISH sent by devices (reports, download requests) and delivered to devices (deltas, GET answers, update/rejected, download answers), and the authorizer's data-plane Publish. Devices subscribe at QoS 0 (no metered PUBACK) and not to update/accepted. Rule triggers: every message on a rule's topic, WHERE or not. Data-plane HTTP shadow calls are shadow operations only. The authorizer presigns with temporary credentials whose session token is ${LAMBDA_SESSION_TOKEN_CHARS} characters (an assumption), as a Lambda role's are: each URL carries it.`,
        'DynamoDB: dynamoDbWrites counts items written (a transaction item twice, a PartiQL statement one, a refused condition too); dynamoDbWriteUnits prices the writes: what DynamoDB Local reports consuming (1 KB units by item size, each index item written included), except for the executions table, whose changes are metered from its stream by the rules AWS documents (bench/write-units.ts, checked against what DynamoDB Local reports for single writes): DynamoDB Local reports no capacity for a PartiQL BatchExecuteStatement, which AWS bills statement by statement as the same single-item write. A refused write (no stream record) counts one unit.',
        'The fleet is known before the deployment (each device with version 1.0 and the properties it reports, as an earlier update leaves it): the steady state. A fleet never updated before costs one more write per device, once, when each execution ends and records the device in the fleet table.',
        "Handler CPU: process.cpuUsage of this process in each phase. It runs the handlers with their clients, and the IPC with the IoT Core process that stands for Lambda taking each invocation and answering it. The executions stream is read in the IoT Core process, as Lambda's event source mapping reads it outside the function (session 7 read it here: about 0.2 ms of each device's CPU was that reading).",
        'Requests AWS refused are counted as `!<command> <error>` (a refused condition, a throttle).',
        `Runs: ${settings.runs} whole runs on fresh stacks, ${settings.pauseBetweenRunsMs / 1000} s apart; the figures are the median run's by handler CPU (handlerCpuMsPerDeviceByRun lists every run's). Counts and cost do not vary between runs; CPU does, on this shared machine.`,
        `Lambda duration, priced at each function's memory as deployed, is what AWS would bill at the projected rate: a fan-out worker runs its whole invocation at its lane's share of the rate (shards / rate per device); an acknowledgement batch is its measured CPU at the function's CPU share plus ${AWAITED_REQUEST_MS} ms per awaited request (an assumption: DynamoDB and the IoT data plane answer in-region in single-digit ms). lambdaWallMsPerDevice is the local wall time, inflated by 2 shared cores and DynamoDB Local; totalWithLocalWallDuration prices that instead, as an upper bound.`,
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
    await stopSetup();
    await iotCore.stop();
    await ddb.stop();
  }
}

export const fanoutBenchmark: Benchmark = {
  name: 'fanout',
  description: `Deployment fan-out to ${settings.devices.toLocaleString('en')} devices on the local stack: rate, CPU, requests and cost per device`,
  run,
};
