import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { IoTDataPlaneClient } from '@aws-sdk/client-iot-data-plane';
import { S3Client } from '@aws-sdk/client-s3';
import { STSClient } from '@aws-sdk/client-sts';
import { makeDeploymentStore } from '../adapters/deployment-store.ts';
import { type DownloadCredentials, makeDownloadCredentials } from '../adapters/download-credentials.ts';
import { makeExecutionStore } from '../adapters/execution-store.ts';
import { fastDocumentClient } from '../adapters/fast-document-client.ts';
import { fastIotData } from '../adapters/fast-iot-data.ts';
import { type IotPublisher, makeIotPublisher } from '../adapters/iot-publisher.ts';
import { makeUpdateStore } from '../adapters/update-store.ts';
import { env } from '../definitions/environment.ts';
import { downloadTopics } from '../definitions/rules.ts';
import { updatesTable } from '../definitions/tables.ts';
import { type Observability, outcome, powertools } from '../observability.ts';
import { type Environment, fromEnv } from './config.ts';
import {
  type AuthorizeDeps,
  authorizeDownload,
  type DownloadGrant,
  type DownloadRejection,
  grantMessage,
} from './downloads/authorize.ts';
import { parseDownloadRequest } from './downloads/request.ts';

/** AWS IoT's largest MQTT message; an answer above it could not be delivered. */
export const MAX_ANSWER_BYTES = 128 * 1024;

export interface DownloadAuthorizerDeps extends AuthorizeDeps {
  readonly publisher: IotPublisher;
  /** Epoch ms. @default Date.now */
  readonly clock?: () => number;
  readonly observability?: Observability;
}

/** What one invocation did (Lambda ignores it for async invocations; tests and the local cloud read it). */
export type DownloadAuthorizerResult =
  | { readonly answered: 'accepted'; readonly topic: string; readonly mode: DownloadGrant['mode'] }
  | { readonly answered: 'rejected'; readonly topic: string; readonly code: DownloadRejection['code'] }
  | { readonly answered: 'nobody'; readonly reason: string };

export type DownloadAuthorizerHandler = (event: unknown) => Promise<DownloadAuthorizerResult>;

/**
 * The download-authorization function behind the rule on `ota/things/+/downloads/request`: checks
 * the request, mints presigned URLs or scoped STS credentials, and answers on the thing's
 * `accepted` or `rejected` topic. Idempotent: a redelivered request gets a fresh, equally scoped
 * answer under the same clientToken. URLs and credentials are never logged.
 */
export function makeDownloadAuthorizer(deps: DownloadAuthorizerDeps): DownloadAuthorizerHandler {
  const clock = deps.clock ?? Date.now;
  const obs = deps.observability ?? powertools;

  async function answerRejected(
    thingName: string,
    clientToken: string | undefined,
    rejection: DownloadRejection & { readonly faults?: readonly unknown[] },
  ): Promise<DownloadAuthorizerResult> {
    const topic = downloadTopics.rejected(thingName);
    await deps.publisher.publish(topic, {
      ...(clientToken !== undefined ? { clientToken } : {}),
      code: rejection.code,
      message: rejection.message,
      ...(rejection.faults ? { faults: rejection.faults } : {}),
    });
    obs.count(outcome.downloadRejected);
    obs.logger.info('download request rejected', { thingName, code: rejection.code });
    return { answered: 'rejected', topic, code: rejection.code };
  }

  async function handle(event: unknown): Promise<DownloadAuthorizerResult> {
    const request = parseDownloadRequest(event);
    if (!request.ok) {
      const { thingName, clientToken } = request.error;
      if (thingName === undefined) {
        // Without a thing there is no topic to answer on: the rule itself is wrong.
        obs.logger.warn('download request without a thing name', { faults: request.error.faults });
        obs.count(outcome.downloadRejected);
        return { answered: 'nobody', reason: 'no thing name in the event' };
      }
      return answerRejected(thingName, clientToken, request.error);
    }
    const { thingName, clientToken, deploymentId } = request.value;
    const decision = await authorizeDownload(deps, request.value, clock());
    if (!decision.ok) return answerRejected(thingName, clientToken, decision.error);

    const message = grantMessage(decision.value, clientToken);
    if (Buffer.byteLength(JSON.stringify(message)) > MAX_ANSWER_BYTES) {
      return answerRejected(thingName, clientToken, {
        code: 'ANSWER_TOO_LARGE',
        message: 'the answer would exceed 128 KB: ask for fewer files per request (files: [...])',
      });
    }
    const topic = downloadTopics.accepted(thingName);
    await deps.publisher.publish(topic, message);
    obs.count(outcome.downloadAuthorized);
    obs.logger.info('download authorized', {
      thingName,
      deploymentId,
      mode: decision.value.mode,
      files: Object.keys(decision.value.files).length,
    });
    return { answered: 'accepted', topic, mode: decision.value.mode };
  }

  return async (event) => {
    try {
      return await handle(event);
    } finally {
      obs.flush();
    }
  };
}

export interface DownloadAuthorizerConfig {
  readonly deploymentsTable: string;
  readonly executionsTable: string;
  readonly updatesTable: string;
  readonly artifactBucket: string;
  readonly downloadRoleArn: string;
  readonly region: string;
  readonly iotDataEndpoint?: string;
}

/** Reads the configuration once; throws one error naming every missing variable. */
export function downloadAuthorizerConfigFromEnv(environment: Environment): DownloadAuthorizerConfig {
  const values = fromEnv({
    deploymentsTable: env.deploymentsTable,
    executionsTable: env.executionsTable,
    updatesTable: env.updatesTable,
    artifactBucket: env.artifactBucket,
    downloadRoleArn: env.downloadRoleArn,
    region: 'AWS_REGION',
  })(environment);
  const endpoint = environment[env.iotDataEndpoint];
  return { ...values, ...(endpoint ? { iotDataEndpoint: endpoint } : {}) };
}

export interface DownloadAuthorizerClients {
  readonly dynamodb?: DynamoDBClient;
  readonly s3?: S3Client;
  readonly sts?: STSClient;
  readonly iotData?: IoTDataPlaneClient;
}

/** Builds the function from configuration; the local cloud passes clients for its endpoints. */
export function makeDownloadAuthorizerFromConfig(
  config: DownloadAuthorizerConfig,
  clients: DownloadAuthorizerClients = {},
  observability?: Observability,
): DownloadAuthorizerHandler {
  // The per-device path: lean signed requests on the SDK clients' configuration (aws-http.ts).
  const db = fastDocumentClient(clients.dynamodb);
  const credentials: DownloadCredentials = makeDownloadCredentials({
    s3: clients.s3 ?? new S3Client({}),
    sts: clients.sts ?? new STSClient({}),
    bucket: config.artifactBucket,
    downloadRoleArn: config.downloadRoleArn,
  });
  const iotData = fastIotData(
    clients.iotData ??
      new IoTDataPlaneClient(config.iotDataEndpoint ? { endpoint: config.iotDataEndpoint } : {}),
  );
  return makeDownloadAuthorizer({
    executions: makeExecutionStore({ db, tableName: config.executionsTable }),
    deployments: makeDeploymentStore({
      db,
      tableName: config.deploymentsTable,
      updatesTableName: config.updatesTable,
    }),
    updates: makeUpdateStore({
      db,
      tableName: config.updatesTable,
      byStateIndex: updatesTable.globalIndexes[0]?.indexName,
    }),
    credentials,
    publisher: makeIotPublisher({ iotData }),
    bucket: config.artifactBucket,
    region: config.region,
    ...(observability ? { observability } : {}),
  });
}

let built: DownloadAuthorizerHandler | undefined;

/** The Lambda entry point (IoT rule action, asynchronous): configuration is read once. */
export const handler = (event: unknown): Promise<DownloadAuthorizerResult> => {
  built ??= makeDownloadAuthorizerFromConfig(downloadAuthorizerConfigFromEnv(process.env));
  return built(event);
};
