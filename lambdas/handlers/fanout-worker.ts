import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { IoTClient } from '@aws-sdk/client-iot';
import type { IoTDataPlaneClient } from '@aws-sdk/client-iot-data-plane';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { S3Client } from '@aws-sdk/client-s3';
import type { Context } from 'aws-lambda';
import { DEFAULT_ACCOUNT_SHADOW_RATE_CAP, makeAccountRateLimiter } from '../adapters/account-rate-limiter.ts';
import { makeDeploymentStore } from '../adapters/deployment-store.ts';
import { makeGetPresigner } from '../adapters/download-credentials.ts';
import { makeExecutionStore } from '../adapters/execution-store.ts';
import { makeFanoutReads } from '../adapters/fanout-reads.ts';
import { fastDocumentClient, fastDocumentClientOnce } from '../adapters/fast-document-client.ts';
import { fastIotData } from '../adapters/fast-iot-data.ts';
import { makeFleetStore } from '../adapters/fleet-store.ts';
import { type FunctionInvoker, makeLambdaFunctionInvoker } from '../adapters/function-invoker.ts';
import { makeIotPublisher } from '../adapters/iot-publisher.ts';
import { makeShadowWriter, type ShadowWriterOptions, shadowWriterClient } from '../adapters/shadow-writer.ts';
import { makeTargetPages } from '../adapters/target-pages.ts';
import { makeThingRegistry } from '../adapters/thing-registry.ts';
import { makeUpdateStore } from '../adapters/update-store.ts';
import { env } from '../definitions/environment.ts';
import { type Observability, powertools } from '../observability.ts';
import { type Environment, fromEnv, positiveIntegerFromEnv } from './config.ts';
import { defaultTuning, type FanoutDeps, type FanoutTuning, type TimeBudget } from './fanout/deps.ts';
import { makeGrantPusher } from './fanout/push-grant.ts';
import { parseFanoutEvent, runFanoutWorker, type WorkerOutcome } from './fanout/worker.ts';

export type { FanoutDeps, FanoutEvent, FanoutTuning } from './fanout/deps.ts';
export type { WorkerOutcome } from './fanout/worker.ts';

export type FanoutWorkerHandler = (event: unknown, context: TimeBudget) => Promise<WorkerOutcome>;

/** The worker from explicit dependencies: the Lambda builds them from the environment, tests from local clients. */
export function makeFanoutWorker(deps: FanoutDeps): FanoutWorkerHandler {
  return async (input, context) => {
    const event = parseFanoutEvent(input);
    if (!event) {
      deps.observability.logger.error('fan-out event refused', { event: input });
      return { kind: 'skipped', reason: 'BAD_EVENT' };
    }
    try {
      return await runFanoutWorker(deps, event, context);
    } finally {
      deps.observability.flush();
    }
  };
}

export interface FanoutConfig {
  readonly deploymentsTable: string;
  readonly executionsTable: string;
  readonly fleetTable: string;
  readonly updatesTable: string;
  readonly fanoutWorkerFunction: string;
  readonly accountShadowRateCap: number;
  /** Absent: the SDK's default endpoint for the region. */
  readonly iotDataEndpoint?: string;
  /** The artifact bucket: with it, devices get their download grant with their notification. */
  readonly artifactBucket?: string;
}

export function fanoutConfigFromEnv(environment: Environment): FanoutConfig {
  const required = fromEnv({
    deploymentsTable: env.deploymentsTable,
    executionsTable: env.executionsTable,
    fleetTable: env.fleetTable,
    updatesTable: env.updatesTable,
    fanoutWorkerFunction: env.fanoutWorkerFunction,
  })(environment);
  const endpoint = environment[env.iotDataEndpoint];
  const bucket = environment[env.artifactBucket];
  return {
    ...required,
    ...(bucket ? { artifactBucket: bucket } : {}),
    accountShadowRateCap: positiveIntegerFromEnv(
      environment,
      env.accountShadowRateCap,
      DEFAULT_ACCOUNT_SHADOW_RATE_CAP,
    ),
    ...(endpoint ? { iotDataEndpoint: endpoint } : {}),
  };
}

export interface FanoutClients {
  readonly dynamodb?: DynamoDBClient;
  readonly iot?: IoTClient;
  readonly iotData?: IoTDataPlaneClient;
  /** Presigns the pushed download grants (the local cloud's S3); in AWS, the function role's. */
  readonly s3?: S3Client;
  /** The local cloud passes its function registry; in AWS, Lambda `Invoke` (Event). */
  readonly invoker?: FunctionInvoker;
}

export interface FanoutOverrides {
  readonly observability?: Observability;
  readonly tuning?: Partial<FanoutTuning>;
  readonly now?: () => number;
  /** The worker's in-process waits. @default a timer */
  readonly sleep?: (ms: number) => Promise<void>;
  readonly shadowWriter?: Partial<Omit<ShadowWriterOptions, 'iotData'>>;
}

/** Every dependency of the worker (and the scheduler) from configuration and clients. */
export function fanoutDepsFromConfig(
  config: FanoutConfig,
  clients: FanoutClients = {},
  overrides: FanoutOverrides = {},
): FanoutDeps {
  // The per-device path: lean signed requests on the SDK clients' configuration (aws-http.ts).
  const dynamodb = clients.dynamodb ?? new DynamoDBClient({});
  const db = fastDocumentClient(dynamodb);
  const iotData = fastIotData(clients.iotData ?? shadowWriterClient(config.iotDataEndpoint));
  return {
    deployments: makeDeploymentStore({
      db,
      tableName: config.deploymentsTable,
      updatesTableName: config.updatesTable,
    }),
    executions: makeExecutionStore({ db, tableName: config.executionsTable }),
    targets: makeTargetPages({ db, tableName: config.deploymentsTable }),
    reads: makeFanoutReads({ db, fleetTable: config.fleetTable }),
    fleet: makeFleetStore({ db, tableName: config.fleetTable }),
    registry: makeThingRegistry({ iot: clients.iot ?? new IoTClient({}) }),
    shadows: makeShadowWriter({ iotData, ...overrides.shadowWriter }),
    ...(config.artifactBucket
      ? {
          grants: makeGrantPusher({
            updates: makeUpdateStore({ db, tableName: config.updatesTable }),
            credentials: makeGetPresigner({
              s3: clients.s3 ?? new S3Client({}),
              bucket: config.artifactBucket,
            }),
            publisher: makeIotPublisher({ iotData }),
            observability: overrides.observability ?? powertools,
            now: overrides.now ?? Date.now,
          }),
        }
      : {}),
    accountLimiter: makeAccountRateLimiter({
      db: fastDocumentClientOnce(dynamodb),
      tableName: config.deploymentsTable,
      capPerSecond: config.accountShadowRateCap,
    }),
    invoker:
      clients.invoker ??
      makeLambdaFunctionInvoker({
        lambda: new LambdaClient({}),
        functionNames: { fanoutWorker: config.fanoutWorkerFunction },
      }),
    observability: overrides.observability ?? powertools,
    now: overrides.now ?? Date.now,
    sleep: overrides.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms))),
    tuning: { ...defaultTuning, ...overrides.tuning },
  };
}

let built: FanoutWorkerHandler | undefined;

/** The Lambda entry point: `{ deploymentId, lane? }` from the API, the scheduler or itself. */
export const handler = (event: unknown, context: Context): Promise<WorkerOutcome> => {
  built ??= makeFanoutWorker(fanoutDepsFromConfig(fanoutConfigFromEnv(process.env)));
  return built(event, context);
};
