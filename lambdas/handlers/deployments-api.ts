import { randomUUID } from 'node:crypto';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { IoTDataPlaneClient } from '@aws-sdk/client-iot-data-plane';
import type { KMSClient } from '@aws-sdk/client-kms';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { S3Client } from '@aws-sdk/client-s3';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { makeArtifactStore } from '../adapters/artifact-store.ts';
import { makeDeploymentStore } from '../adapters/deployment-store.ts';
import { documentClient } from '../adapters/dynamodb.ts';
import { makeExecutionStore } from '../adapters/execution-store.ts';
import { makeFleetStore } from '../adapters/fleet-store.ts';
import { type FunctionInvoker, makeLambdaFunctionInvoker } from '../adapters/function-invoker.ts';
import { makeShadowWriter, shadowWriterClient } from '../adapters/shadow-writer.ts';
import { makeTargetPages } from '../adapters/target-pages.ts';
import { makeUpdateStore } from '../adapters/update-store.ts';
import { env } from '../definitions/environment.ts';
import { updatesTable } from '../definitions/tables.ts';
import type { Result } from '../domain/result.ts';
import { maxBodyBytes, parseJsonBody } from '../http/body.ts';
import type { Problem } from '../http/problem.ts';
import { type HttpResponse, jsonResponse, problemResponse } from '../http/response.ts';
import { makeObservedRouter } from '../http/router.ts';
import { type Observability, powertools } from '../observability.ts';
import { type Environment, fromEnv } from './config.ts';
import { cancelDeployment, cancelDevice, retryDeployment, retryDevice } from './deployments/control.ts';
import { createDeployment } from './deployments/create-deployment.ts';
import { type DeploymentsDeps, type DeploymentsTuning, defaultTuning } from './deployments/deps.ts';
import { idempotencyOf } from './deployments/idempotency.ts';
import { getDeployment, getDevice, listDeploymentDevices, listDeployments } from './deployments/queries.ts';
import { makeSigner, type SignerConfig, updatesApiConfigFromEnv } from './updates-api.ts';

export type { DeploymentsDeps } from './deployments/deps.ts';

export interface DeploymentsApiOptions extends Omit<DeploymentsDeps, 'observability' | 'tuning'> {
  readonly observability?: Observability;
  readonly tuning?: Partial<DeploymentsTuning>;
  /** Epoch ms. @default Date.now */
  readonly now?: () => number;
  readonly newDeploymentId?: () => string;
  readonly maxBodyBytes?: number;
}

export type DeploymentsApiHandler = (event: APIGatewayProxyEventV2) => Promise<HttpResponse>;

/** Path parameters; API Gateway guarantees the ones a route names. */
const param = (event: APIGatewayProxyEventV2, name: string): string => event.pathParameters?.[name] ?? '';
const queryOf = (event: APIGatewayProxyEventV2) => event.queryStringParameters ?? {};

function respond(result: Result<Record<string, unknown>, Problem>, status = 200): HttpResponse {
  return result.ok ? jsonResponse(status, result.value) : problemResponse(result.error);
}

/** 200 when the command finished; 202 when part of it was left to the fan-out worker or a repeat. */
function respondCommand(
  result: Result<{ readonly complete: boolean; readonly body: Record<string, unknown> }, Problem>,
): HttpResponse {
  return result.ok
    ? jsonResponse(result.value.complete ? 200 : 202, result.value.body)
    : problemResponse(result.error);
}

/**
 * The operator API for deployments and devices, built from explicit dependencies: the Lambda
 * builds it from the environment below, tests and the local cloud from local clients.
 */
export function makeDeploymentsApi(options: DeploymentsApiOptions): DeploymentsApiHandler {
  const now = options.now ?? Date.now;
  const newId = options.newDeploymentId ?? randomUUID;
  const deps: DeploymentsDeps = {
    ...options,
    observability: options.observability ?? powertools,
    tuning: { ...defaultTuning, ...options.tuning },
  };
  const obs = deps.observability;

  return makeObservedRouter(
    {
      'POST /deployments': async (event) => {
        const body = parseJsonBody(event, options.maxBodyBytes ?? maxBodyBytes);
        if (!body.ok) return problemResponse(body.error);
        const idempotency = idempotencyOf(event.headers, body.value);
        if (!idempotency.ok) return problemResponse(idempotency.error);
        const key = idempotency.value;
        const created = await createDeployment(deps, body.value, {
          deploymentId: key?.deploymentId ?? newId(),
          now: now(),
          ...(key ? { requestHash: key.requestHash } : {}),
        });
        if (!created.ok) {
          obs.logger.info('deployment refused', { code: created.error.code });
          return problemResponse(created.error);
        }
        // A replay answers as the first request did (201 and Location), and says it is one.
        const response = jsonResponse(201, created.value.view);
        return {
          ...response,
          headers: {
            ...response.headers,
            location: `/deployments/${created.value.deploymentId}`,
            ...(created.value.replayed ? { 'idempotent-replayed': 'true' } : {}),
          },
        };
      },
      'GET /deployments': async (event) => respond(await listDeployments(deps, queryOf(event))),
      'GET /deployments/{deploymentId}': async (event) =>
        respond(await getDeployment(deps, param(event, 'deploymentId'))),
      'GET /deployments/{deploymentId}/devices': async (event) =>
        respond(await listDeploymentDevices(deps, param(event, 'deploymentId'), queryOf(event))),
      'POST /deployments/{deploymentId}/cancel': async (event) =>
        respondCommand(await cancelDeployment(deps, param(event, 'deploymentId'), now())),
      'POST /deployments/{deploymentId}/retry': async (event) =>
        respondCommand(await retryDeployment(deps, param(event, 'deploymentId'), now())),
      'POST /deployments/{deploymentId}/devices/{thingName}/cancel': async (event) =>
        respond(await cancelDevice(deps, param(event, 'deploymentId'), param(event, 'thingName'), now())),
      'POST /deployments/{deploymentId}/devices/{thingName}/retry': async (event) =>
        respond(await retryDevice(deps, param(event, 'deploymentId'), param(event, 'thingName'), now())),
      'GET /devices/{thingName}': async (event) =>
        respond(await getDevice(deps, param(event, 'thingName'), queryOf(event))),
    },
    obs,
  );
}

export interface DeploymentsApiConfig {
  readonly updatesTable: string;
  readonly deploymentsTable: string;
  readonly executionsTable: string;
  readonly fleetTable: string;
  readonly artifactBucket: string;
  readonly signer: SignerConfig;
  /** Name or ARN of the fan-out worker function. */
  readonly fanoutWorkerFunction: string;
  /** The IoT data-plane endpoint; the SDK's default when absent. */
  readonly iotDataEndpoint?: string;
}

/** Reads the configuration once; throws one error naming every missing variable. */
export function deploymentsApiConfigFromEnv(environment: Environment): DeploymentsApiConfig {
  const updates = updatesApiConfigFromEnv(environment);
  const values = fromEnv({
    deploymentsTable: env.deploymentsTable,
    executionsTable: env.executionsTable,
    fleetTable: env.fleetTable,
    fanoutWorkerFunction: env.fanoutWorkerFunction,
  })(environment);
  const iotDataEndpoint = environment[env.iotDataEndpoint];
  return {
    updatesTable: updates.updatesTable,
    artifactBucket: updates.artifactBucket,
    signer: updates.signer,
    ...values,
    ...(iotDataEndpoint ? { iotDataEndpoint } : {}),
  };
}

export interface DeploymentsApiClients {
  readonly dynamodb?: DynamoDBClient;
  readonly s3?: S3Client;
  readonly kms?: KMSClient;
  readonly iotData?: IoTDataPlaneClient;
  /** Starts the fan-out worker; Lambda `Invoke` (Event) when absent. The local cloud passes its registry. */
  readonly invoker?: FunctionInvoker;
}

/** Builds the API from configuration; clients default to AWS's, the local cloud passes local ones. */
export function makeDeploymentsApiFromConfig(
  config: DeploymentsApiConfig,
  clients: DeploymentsApiClients = {},
  observability?: Observability,
): DeploymentsApiHandler {
  const db = documentClient(clients.dynamodb);
  const signer = makeSigner(config.signer, clients.kms);
  const iotData = clients.iotData ?? shadowWriterClient(config.iotDataEndpoint);
  return makeDeploymentsApi({
    deployments: makeDeploymentStore({
      db,
      tableName: config.deploymentsTable,
      updatesTableName: config.updatesTable,
    }),
    executions: makeExecutionStore({ db, tableName: config.executionsTable }),
    targets: makeTargetPages({ db, tableName: config.deploymentsTable }),
    fleet: makeFleetStore({ db, tableName: config.fleetTable }),
    updates: makeUpdateStore({
      db,
      tableName: config.updatesTable,
      byStateIndex: updatesTable.globalIndexes[0]?.indexName,
    }),
    artifacts: makeArtifactStore({ s3: clients.s3 ?? new S3Client({}), bucket: config.artifactBucket }),
    signer,
    shadows: makeShadowWriter({ iotData }),
    invoker:
      clients.invoker ??
      makeLambdaFunctionInvoker({
        lambda: new LambdaClient({}),
        functionNames: { fanoutWorker: config.fanoutWorkerFunction },
      }),
    ...(observability ? { observability } : {}),
  });
}

let built: DeploymentsApiHandler | undefined;

/** The Lambda entry point: configuration is read on the first invocation, once. */
export const handler = (event: APIGatewayProxyEventV2): Promise<HttpResponse> => {
  built ??= makeDeploymentsApiFromConfig(deploymentsApiConfigFromEnv(process.env));
  return built(event);
};
