/**
 * What the fan-out benchmark deploys, made the way an operator makes it: the main job's sample
 * update (a parent with an inline step and a reference step to a child with three script steps,
 * local/demo/sample-update.ts) imported, uploaded to the local S3 and committed through the real
 * updates API, then deployed through the real deployments API, which signs the manifest with the
 * deployment's claims. So the desired document each device is sent, and the download answer it
 * gets, have the size they have for a real update (AWS meters both by size).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { IoTDataPlaneClient } from '@aws-sdk/client-iot-data-plane';
import { S3Client } from '@aws-sdk/client-s3';
import type { FunctionInvoker } from '../lambdas/adapters/function-invoker.ts';
import { loadOrCreateLocalSigningKey } from '../lambdas/adapters/local-key-signer.ts';
import { env } from '../lambdas/definitions/environment.ts';
import type { Environment } from '../lambdas/handlers/config.ts';
import {
  deploymentsApiConfigFromEnv,
  makeDeploymentsApiFromConfig,
} from '../lambdas/handlers/deployments-api.ts';
import { makeUpdatesApiFromConfig, updatesApiConfigFromEnv } from '../lambdas/handlers/updates-api.ts';
import { recordingObservability } from '../lambdas/observability.ts';
import { startApiServer } from '../local/api-server.ts';
import { createDeployment, importSampleUpdate } from '../local/demo/operator.ts';
import { sampleUpdate } from '../local/demo/sample-update.ts';
import { localS3Credentials, startS3Server } from '../local/s3.ts';

export interface BenchTables {
  readonly updates: string;
  readonly deployments: string;
  readonly executions: string;
  readonly fleet: string;
}

export interface SampleDeployment {
  readonly deploymentId: string;
  readonly updateId: { readonly provider: string; readonly name: string; readonly version: string };
  /** The fan-out worker's first invocation, as the API made it: the benchmark runs it when it measures. */
  readonly start: unknown;
  /** The Lambda environment every function of the benchmark reads (tables, bucket, endpoints). */
  readonly environment: Environment;
  /** A client of the local S3 as a function's role would sign with (the authorizer presigns with it). */
  readonly s3: S3Client;
  stop(): Promise<void>;
}

const bucket = 'bench-artifacts';
/** The version the fleet has installed before (bench/fanout.ts `knownFleet`) is 1.0. */
export const sampleVersion = '2.0';

/** Imports, commits and deploys the sample update to `group` at `ratePerMinute`. */
export async function deploySampleUpdate(input: {
  readonly dynamodb: DynamoDBClient;
  readonly iotData: IoTDataPlaneClient;
  readonly iotDataEndpoint: string;
  readonly tables: BenchTables;
  readonly region: string;
  readonly group: string;
  readonly ratePerMinute: number;
}): Promise<SampleDeployment> {
  const directory = await mkdtemp(join(tmpdir(), 'shadow-ota-bench-'));
  const s3Server = await startS3Server({ host: '127.0.0.1', port: 0, directory, buckets: [bucket] });
  const s3 = new S3Client({
    endpoint: s3Server.endpoint,
    region: input.region,
    forcePathStyle: true,
    credentials: localS3Credentials,
  });
  // What the stack sets for the functions, with the benchmark's names and endpoints.
  const environment: Environment = {
    [env.updatesTable]: input.tables.updates,
    [env.deploymentsTable]: input.tables.deployments,
    [env.executionsTable]: input.tables.executions,
    [env.fleetTable]: input.tables.fleet,
    [env.artifactBucket]: bucket,
    [env.signerKind]: 'local',
    [env.localSigningKeyFile]: join(directory, 'signing-key.pem'),
    [env.fanoutWorkerFunction]: 'fanoutWorker',
    [env.iotDataEndpoint]: input.iotDataEndpoint,
    [env.downloadRoleArn]: 'arn:aws:iam::000000000000:role/bench-downloads',
    AWS_REGION: input.region,
  };
  await loadOrCreateLocalSigningKey(join(directory, 'signing-key.pem'));

  const starts: unknown[] = [];
  const invoker: FunctionInvoker = {
    invoke: async (_name, payload) => void starts.push(payload),
  };
  const observability = recordingObservability();
  const api = await startApiServer({
    host: '127.0.0.1',
    port: 0,
    functions: {
      updatesApi: makeUpdatesApiFromConfig(
        updatesApiConfigFromEnv(environment),
        { dynamodb: input.dynamodb, s3 },
        observability,
      ),
      deploymentsApi: makeDeploymentsApiFromConfig(
        deploymentsApiConfigFromEnv(environment),
        { dynamodb: input.dynamodb, s3, iotData: input.iotData, invoker },
        observability,
      ),
    },
  });
  const stop = async (): Promise<void> => {
    await api.stop();
    s3.destroy();
    await s3Server.stop();
    await rm(directory, { recursive: true, force: true });
  };
  try {
    const sample = sampleUpdate(sampleVersion, new Date());
    await importSampleUpdate(api.endpoint, sample);
    const deployment = await createDeployment(api.endpoint, {
      update: sample.parentId,
      target: { thingGroups: [input.group] },
      policy: { rollout: { ratePerMinute: input.ratePerMinute } },
    });
    if (starts.length !== 1) throw new Error(`the API started the fan-out ${starts.length} times`);
    return {
      deploymentId: deployment.deploymentId,
      updateId: sample.parentId,
      start: starts[0],
      environment,
      s3,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
