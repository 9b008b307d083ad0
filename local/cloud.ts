import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { loadOrCreateLocalSigningKey } from '../lambdas/adapters/local-key-signer.ts';
import { env } from '../lambdas/definitions/environment.ts';
import { updatesTable } from '../lambdas/definitions/tables.ts';
import type { TrustedKey } from '../lambdas/domain/signing/index.ts';
import { makeUpdatesApiFromConfig, updatesApiConfigFromEnv } from '../lambdas/handlers/updates-api.ts';
import type { Observability } from '../lambdas/observability.ts';
import { startApiServer } from './api-server.ts';
import { startDynamoDbLocal } from './dynamodb.ts';
import { type FunctionRegistry, makeFunctionRegistry } from './functions.ts';
import { type DeadLetter, type LambdaFailure, type LocalIotCore, startLocalIotCore } from './iot/index.ts';
import { endpointsFileOf, iotDirOf } from './layout.ts';
import type { LocalCloudOptions } from './options.ts';
import { localS3Credentials, startS3Server } from './s3.ts';
import { ensureTable, localTableName } from './tables.ts';
import { type LocalAcknowledgements, wireAcknowledgements } from './wiring/acknowledgements.ts';
import {
  deploymentsEnvironment,
  ensureDeploymentTables,
  wireDeploymentsApi,
} from './wiring/deployments-api.ts';
import { makeLocalCredentials, startLocalDownloads } from './wiring/downloads.ts';
import { type LocalFanout, wireFanout } from './wiring/fanout.ts';
import { keepFailedInvocations, logDeadLetter } from './wiring/rule-failures.ts';

export const localRegion = 'us-east-1';
export const localBucketName = 'shadow-ota-artifacts';

/**
 * What scripts and tools read from `<data dir>/endpoints.json`. Endpoints are top-level strings;
 * later services (the local IoT Core) add their own keys beside them.
 */
export interface LocalCloudEndpoints {
  readonly api: string;
  readonly s3: string;
  /** Local STS (`@aws-sdk/client-sts`): AssumeRole for download credentials the S3 endpoint enforces. */
  readonly sts: string;
  readonly dynamodb: string;
  /** `mqtt://host:port`: plain TCP for development, the MQTT client id is the thing name. */
  readonly mqtt: string;
  /** `mqtts://host:port`: TLS with client certificates (CA in `resources.iotCaFile`). */
  readonly mqtts: string;
  /** IoT data-plane HTTP endpoint (`@aws-sdk/client-iot-data-plane`). */
  readonly iotData: string;
  /** IoT registry HTTP endpoint (`@aws-sdk/client-iot`). */
  readonly iot: string;
  readonly [service: string]: string;
}

export interface LocalCloud {
  readonly endpoints: LocalCloudEndpoints;
  /** Where the services keep their data (a temporary directory when ephemeral). */
  readonly stateDir: string;
  readonly endpointsFile: string;
  readonly region: string;
  readonly resources: {
    readonly artifactBucket: string;
    readonly updatesTable: string;
    readonly deploymentsTable: string;
    readonly executionsTable: string;
    readonly fleetTable: string;
    readonly signingKeyFile: string;
    readonly signingPublicKey: TrustedKey;
    readonly iotCaFile: string;
  };
  /** The local AWS IoT Core, for what runs in the same process (the main job, tests). */
  readonly iot: LocalIotCore;
  /** The local Lambda: every function by its logical name (rules, timers and handlers invoke through it). */
  readonly functions: FunctionRegistry;
  /** The fan-out worker and scheduler; `fanout.tick()` runs the scheduler now. */
  readonly fanout: LocalFanout;
  /** Acknowledgements and counters (the stream poller); `countersCaughtUp()` waits for the counters. */
  readonly acknowledgements: LocalAcknowledgements;
  /**
   * Events a rule's Lambda action invoked (the download rule's) that failed every attempt: the
   * local on-failure destination (logged and kept).
   */
  readonly failedInvocations: readonly LambdaFailure[];
  /** Queue messages (device reports for `acknowledge`) that failed their last delivery (logged and kept). */
  deadLetters(): readonly DeadLetter[];
  /** Clients for the local endpoints, for whatever runs in the same process (the main job, tests). */
  readonly clients: { readonly dynamodb: DynamoDBClient; readonly s3: S3Client };
  /** Stops every service in reverse order; safe to call twice. */
  stop(): Promise<void>;
}

/** Undo actions in reverse order of the starts they undo, so a half-started cloud cleans up too. */
class Teardown {
  readonly #steps: (() => Promise<void>)[] = [];
  #done: Promise<void> | undefined;

  push(step: () => Promise<void> | void): void {
    this.#steps.push(async () => step());
  }

  run(): Promise<void> {
    this.#done ??= (async () => {
      const errors: unknown[] = [];
      for (const step of this.#steps.reverse()) {
        try {
          await step();
        } catch (error) {
          errors.push(error);
        }
      }
      if (errors.length > 0) throw new AggregateError(errors, 'The local cloud did not stop cleanly');
    })();
    return this.#done;
  }
}

/**
 * Refuses to run two clouds on one data directory (DynamoDB Local's file and the S3 directory
 * would be shared). A lock left by a process that is gone is taken over.
 */
async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  const lockFile = join(dataDir, 'cloud.pid');
  try {
    await writeFile(lockFile, String(process.pid), { flag: 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    const owner = Number(await readFile(lockFile, 'utf8').catch(() => ''));
    if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && isAlive(owner)) {
      throw new Error(
        `Another local cloud (pid ${owner}) is using ${dataDir}; stop it or pass another --data-dir.`,
      );
    }
    await writeFile(lockFile, String(process.pid));
  }
  return () => rm(lockFile, { force: true });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Logs warnings and errors to stderr, metrics nowhere: the local cloud's stand-in for CloudWatch. */
export const consoleObservability: Observability = {
  logger: {
    debug: () => {},
    info: () => {},
    warn: (...args: unknown[]) => console.warn('[api]', ...args),
    error: (...args: unknown[]) => console.error('[api]', ...args),
  },
  count: () => {},
  flush: () => {},
};

/**
 * Starts the local cloud: DynamoDB Local, the S3 server, the tables and bucket from the shared
 * definitions, a local signing key, and the operator API invoking the same handler as the Lambda.
 */
export async function startLocalCloud(
  options: LocalCloudOptions,
  observability: Observability = consoleObservability,
): Promise<LocalCloud> {
  const teardown = new Teardown();
  try {
    await mkdir(options.dataDir, { recursive: true });
    teardown.push(await lockDataDir(options.dataDir));
    const stateDir = options.ephemeral ? await mkdtemp(join(tmpdir(), 'shadow-ota-cloud-')) : options.dataDir;
    if (options.ephemeral) teardown.push(() => rm(stateDir, { recursive: true, force: true }));

    const ddbDir = join(stateDir, 'dynamodb');
    if (!options.ephemeral) await mkdir(ddbDir, { recursive: true });
    const ddb = await startDynamoDbLocal({
      port: options.ports.dynamodb,
      ...(options.ephemeral ? {} : { dataDir: ddbDir }),
      ownProcessGroup: options.ownProcessGroupForDatabase ?? false,
    });
    teardown.push(() => ddb.stop());

    const s3Dir = join(stateDir, 's3');
    await mkdir(s3Dir, { recursive: true });
    // One credential store: the STS issues sessions into it and the S3 gateway enforces them.
    const credentials = makeLocalCredentials();
    const s3 = await startS3Server({
      host: options.host,
      port: options.ports.s3,
      directory: s3Dir,
      buckets: [localBucketName],
      region: localRegion,
      credentials,
    });
    teardown.push(() => s3.stop());
    const downloads = await startLocalDownloads({
      host: options.host,
      region: localRegion,
      bucket: localBucketName,
      credentials,
    });
    teardown.push(() => downloads.stop());

    const dynamodb = new DynamoDBClient({
      endpoint: ddb.endpoint,
      region: localRegion,
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    });
    const s3Client = new S3Client({
      endpoint: s3.endpoint,
      region: localRegion,
      forcePathStyle: true,
      credentials: localS3Credentials,
    });
    teardown.push(() => {
      dynamodb.destroy();
      s3Client.destroy();
    });

    const updatesTableName = localTableName(updatesTable);
    await ensureTable(dynamodb, updatesTable, updatesTableName);
    const deploymentTables = await ensureDeploymentTables(dynamodb);
    const functions = makeFunctionRegistry({
      onAsyncFailure: (failure) =>
        observability.logger.error('async invocation failed every attempt', {
          functionName: failure.name,
          attempts: failure.attempts,
          error: failure.error as Error,
        }),
    });

    const signingKeyFile = join(stateDir, 'keys', 'signing-key.pem');
    const signingKey = await loadOrCreateLocalSigningKey(signingKeyFile);

    const failedInvocations = keepFailedInvocations(observability);
    const iot = await startLocalIotCore({
      host: options.host,
      ports: {
        mqtt: options.ports.mqtt,
        mqtts: options.ports.mqtts,
        iotData: options.ports.iotData,
        iot: options.ports.iot,
      },
      region: localRegion,
      resolveLambda: (name) => functions.resolve(name),
      onLambdaFailure: failedInvocations.onLambdaFailure,
      onDeadLetter: logDeadLetter(observability),
      ...(options.queues ? { queueOptions: options.queues } : {}),
      ...(options.ephemeral ? {} : { dataDir: iotDirOf(stateDir) }),
    });
    teardown.push(() => iot.stop());
    const iotCaFile = join(stateDir, 'iot-ca.pem');
    await writeFile(iotCaFile, iot.caCertificate);

    // The handler reads the same variables as in Lambda; only the clients point at local endpoints.
    const lambdaEnvironment = {
      [env.updatesTable]: updatesTableName,
      [env.artifactBucket]: localBucketName,
      [env.signerKind]: 'local',
      [env.localSigningKeyFile]: signingKeyFile,
      ...deploymentsEnvironment(deploymentTables, iot.endpoints.iotData),
      ...downloads.environment,
    };
    downloads.register({ environment: lambdaEnvironment, dynamodb, s3: s3Client, functions, observability });
    const updatesApi = makeUpdatesApiFromConfig(
      updatesApiConfigFromEnv(lambdaEnvironment),
      { dynamodb, s3: s3Client },
      observability,
    );
    const deploymentsApi = wireDeploymentsApi({
      environment: lambdaEnvironment,
      dynamodb,
      s3: s3Client,
      functions,
      region: localRegion,
      observability,
    });
    teardown.push(deploymentsApi.close);
    const acknowledgements = await wireAcknowledgements({
      environment: lambdaEnvironment,
      dynamodb,
      dynamodbEndpoint: ddb.endpoint,
      functions,
      region: localRegion,
      observability,
    });
    teardown.push(acknowledgements.stop);
    const fanout = wireFanout({
      environment: lambdaEnvironment,
      dynamodb,
      s3: s3Client,
      functions,
      region: localRegion,
      iotEndpoint: iot.endpoints.iot,
      observability,
      reconcile: acknowledgements.reconcile,
      ...(options.schedulerIntervalMs !== undefined
        ? { schedulerIntervalMs: options.schedulerIntervalMs }
        : {}),
    });
    teardown.push(fanout.stop);
    const api = await startApiServer({
      host: options.host,
      port: options.ports.api,
      functions: { updatesApi, deploymentsApi: deploymentsApi.handler },
    });
    teardown.push(() => api.stop());

    const endpoints: LocalCloudEndpoints = {
      api: api.endpoint,
      s3: s3.endpoint,
      sts: downloads.sts.endpoint,
      dynamodb: ddb.endpoint,
      ...iot.endpoints,
    };
    const resources = {
      artifactBucket: localBucketName,
      updatesTable: updatesTableName,
      deploymentsTable: deploymentTables.deployments,
      executionsTable: deploymentTables.executions,
      fleetTable: deploymentTables.fleet,
      signingKeyFile,
      signingPublicKey: signingKey.publicJwk,
      iotCaFile,
    };
    const endpointsFile = endpointsFileOf(options.dataDir);
    await writeFile(
      endpointsFile,
      `${JSON.stringify({ ...endpoints, region: localRegion, pid: process.pid, ephemeral: options.ephemeral, resources }, null, 2)}\n`,
    );
    // Stale endpoints would send scripts to ports nobody listens on.
    teardown.push(() => rm(endpointsFile, { force: true }));

    return {
      endpoints,
      stateDir,
      endpointsFile,
      region: localRegion,
      resources,
      clients: { dynamodb, s3: s3Client },
      iot,
      functions,
      fanout,
      acknowledgements,
      failedInvocations: failedInvocations.kept,
      deadLetters: () => [...iot.queues.values()].flatMap((queue) => queue.deadLetters()),
      stop: () => teardown.run(),
    };
  } catch (error) {
    await teardown.run().catch(() => {});
    throw error;
  }
}
