/**
 * The world of the download tests: DynamoDB Local tables, the local S3 (gateway + store), the local
 * STS sharing its credentials, the local IoT Core whose download rule invokes the real authorizer,
 * and helpers to seed updates, deployments and executions, and to act as a device over MQTT.
 */
import { createHash, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IoTDataPlaneClient } from '@aws-sdk/client-iot-data-plane';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { STSClient } from '@aws-sdk/client-sts';
import { type DynamoDBDocumentClient, PutCommand } from '@aws-sdk/lib-dynamodb';
import mqtt, { type MqttClient } from 'mqtt';
import { fileObjectKey, updateManifestObjectKey } from '../../../lambdas/adapters/artifact-store.ts';
import { makeDeploymentStore } from '../../../lambdas/adapters/deployment-store.ts';
import { makeDownloadCredentials } from '../../../lambdas/adapters/download-credentials.ts';
import { makeExecutionStore } from '../../../lambdas/adapters/execution-store.ts';
import { makeIotPublisher } from '../../../lambdas/adapters/iot-publisher.ts';
import {
  makeUpdateStore,
  type UpdateIdentity,
  updateItemKey,
} from '../../../lambdas/adapters/update-store.ts';
import { downloadTopics } from '../../../lambdas/definitions/rules.ts';
import { parseDeploymentRequest } from '../../../lambdas/domain/deployment/index.ts';
import { fileIdFor, updateManifestFileName } from '../../../lambdas/domain/manifest/index.ts';
import { makeDownloadAuthorizer } from '../../../lambdas/handlers/download-authorizer.ts';
import { recordingObservability } from '../../../lambdas/observability.ts';
import { type LocalIotCore, startLocalIotCore } from '../../../local/iot/index.ts';
import { localS3Credentials, type RunningS3Server, startS3Server } from '../../../local/s3.ts';
import {
  makeCredentialStore,
  parsePolicy,
  type RunningLocalSts,
  startLocalSts,
} from '../../../local/sts/index.ts';
import { createDeploymentTables, type DeploymentTables } from '../deployments/api-support.ts';
import { documentClient, dynamoDbClient } from '../import/support.ts';

export const region = 'us-east-1';
export const accountId = '123456789012';
export const downloadRoleArn = `arn:aws:iam::${accountId}:role/shadow-ota-downloads`;

/** Clock offsets the tests move to see URLs and sessions expire without waiting. */
export interface Clocks {
  /** Added to the S3 gateway's clock. */
  s3OffsetMs: number;
  /** Added to the STS clock (credentials issued "earlier" expire sooner). */
  stsOffsetMs: number;
}

export interface DownloadWorld {
  readonly db: DynamoDBDocumentClient;
  readonly tables: DeploymentTables;
  readonly bucket: string;
  readonly s3: RunningS3Server;
  readonly sts: RunningLocalSts;
  readonly iot: LocalIotCore;
  /** The account's own S3 client (long-term key): seeds objects. */
  readonly adminS3: S3Client;
  readonly clocks: Clocks;
  readonly executions: ReturnType<typeof makeExecutionStore>;
  readonly deployments: ReturnType<typeof makeDeploymentStore>;
  stop(): Promise<void>;
}

export async function startDownloadWorld(ddbEndpoint: string): Promise<DownloadWorld> {
  const ddb = dynamoDbClient(ddbEndpoint);
  const db = documentClient(ddb);
  const tables = await createDeploymentTables(ddb, 'downloads');
  const bucket = 'artifacts-downloads';
  const clocks: Clocks = { s3OffsetMs: 0, stsOffsetMs: 0 };
  const directory = await mkdtemp(join(tmpdir(), 'shadow-ota-downloads-'));
  const credentials = makeCredentialStore([localS3Credentials]);
  const s3 = await startS3Server({
    host: '127.0.0.1',
    port: 0,
    directory,
    buckets: [bucket],
    credentials,
    now: () => Date.now() + clocks.s3OffsetMs,
  });
  const rolePolicy = parsePolicy(
    JSON.stringify({
      Version: '2012-10-17',
      Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: `arn:aws:s3:::${bucket}/*` }],
    }),
  );
  if (!rolePolicy.ok) throw new Error(rolePolicy.message);
  const sts = await startLocalSts({
    host: '127.0.0.1',
    port: 0,
    region,
    accountId,
    credentials,
    roles: [{ roleArn: downloadRoleArn, policy: rolePolicy.policy }],
    now: () => Date.now() + clocks.stsOffsetMs,
  });
  const adminS3 = new S3Client({
    endpoint: s3.endpoint,
    region,
    forcePathStyle: true,
    credentials: localS3Credentials,
  });
  const stsClient = new STSClient({ endpoint: sts.endpoint, region, credentials: localS3Credentials });

  const executions = makeExecutionStore({ db, tableName: tables.executions });
  const deployments = makeDeploymentStore({
    db,
    tableName: tables.deployments,
    updatesTableName: tables.updates,
  });
  let iotData: IoTDataPlaneClient | undefined;
  const authorizer = makeDownloadAuthorizer({
    executions,
    deployments,
    updates: makeUpdateStore({ db, tableName: tables.updates }),
    credentials: makeDownloadCredentials({ s3: adminS3, sts: stsClient, bucket, downloadRoleArn }),
    publisher: makeIotPublisher({
      iotData: { send: (command) => (iotData as IoTDataPlaneClient).send(command) },
    }),
    bucket,
    region,
    observability: recordingObservability(),
  });
  const iot = await startLocalIotCore({
    resolveLambda: (name) => (name === 'downloadAuthorizer' ? (event) => authorizer(event) : undefined),
    lambdaRetryDelaysMs: [10, 20],
  });
  iotData = new IoTDataPlaneClient({
    endpoint: iot.endpoints.iotData,
    region,
    credentials: localS3Credentials,
  });

  return {
    db,
    tables,
    bucket,
    s3,
    sts,
    iot,
    adminS3,
    clocks,
    executions,
    deployments,
    async stop() {
      await iot.stop();
      iotData?.destroy();
      adminS3.destroy();
      stsClient.destroy();
      ddb.destroy();
      await Promise.all([s3.stop(), sts.stop()]);
      await rm(directory, { recursive: true, force: true });
    },
  };
}

export interface SeededFile {
  readonly fileId: string;
  readonly objectKey: string;
  readonly bytes: Buffer;
}

export interface SeededUpdate {
  readonly updateId: UpdateIdentity;
  /** By file name. */
  readonly files: Readonly<Record<string, SeededFile>>;
  readonly manifest: SeededFile;
}

/** A ready update as a commit leaves it: its files and its update manifest stored in S3. */
export async function seedReadyUpdate(
  world: DownloadWorld,
  updateId: UpdateIdentity,
  files: Readonly<Record<string, string>>,
): Promise<SeededUpdate> {
  const { db } = world;
  const stored: Record<string, SeededFile> = {};
  for (const [filename, text] of Object.entries(files)) {
    const bytes = Buffer.from(text);
    const objectKey = fileObjectKey(updateId, filename);
    await world.adminS3.send(new PutObjectCommand({ Bucket: world.bucket, Key: objectKey, Body: bytes }));
    stored[filename] = { fileId: fileIdFor(updateId, filename), objectKey, bytes };
  }
  const manifestBytes = Buffer.from(seededManifestText(updateId));
  const manifestHex = createHash('sha256').update(manifestBytes).digest('hex');
  const manifestKey = updateManifestObjectKey(updateId, manifestHex);
  await world.adminS3.send(
    new PutObjectCommand({ Bucket: world.bucket, Key: manifestKey, Body: manifestBytes }),
  );
  await db.send(
    new PutCommand({
      TableName: world.tables.updates,
      Item: {
        ...updateItemKey(updateId),
        ...updateId,
        state: 'ready',
        createdAt: new Date().toISOString(),
        committedAt: new Date().toISOString(),
        importDigest: 'x',
        importManifest: '{}',
        isDeployable: true,
        files: Object.entries(stored).map(([filename, f], i) => ({
          filename,
          sizeInBytes: f.bytes.byteLength,
          sha256: createHash('sha256').update(f.bytes).digest('base64'),
          objectKey: f.objectKey,
          manifestPath: `/files/${i}`,
        })),
        children: [],
        activeDeployments: 0,
        updateManifest: {
          objectKey: manifestKey,
          sha256: createHash('sha256').update(manifestBytes).digest('base64'),
          sizeInBytes: manifestBytes.byteLength,
          signature: 'x.y.z',
          keyId: 'local',
        },
      },
    }),
  );
  return {
    updateId,
    files: stored,
    manifest: {
      fileId: fileIdFor(updateId, updateManifestFileName(updateId)),
      objectKey: manifestKey,
      bytes: manifestBytes,
    },
  };
}

/** A deployment of `update` to `things` (queued, or incompatible for `incompatible`), with a download policy. */
export async function seedDeployment(
  world: DownloadWorld,
  update: SeededUpdate,
  devices: { readonly queued: readonly string[]; readonly incompatible?: readonly string[] },
  download: { readonly mode: 'presigned' | 'sts'; readonly credentialLifetimeSeconds: number },
): Promise<string> {
  const deploymentId = `dep-${randomUUID()}`;
  const request = parseDeploymentRequest(
    {
      update: update.updateId,
      target: { things: [...devices.queued, ...(devices.incompatible ?? [])] },
      policy: { download },
    },
    Date.now(),
  );
  if (!request.ok) throw new Error(request.error.message);
  const created = await world.deployments.create(
    {
      deploymentId,
      updateId: update.updateId,
      target: request.value.target,
      policy: request.value.policy,
      manifest: {
        inline: seededManifestText(update.updateId),
        signature: `header.payload.${deploymentId}`,
        keyId: 'local',
        expiresAt: new Date(Date.now() + 3600_000).toISOString(),
      },
      shards: 1,
    },
    Date.now(),
  );
  if (!created.ok) throw new Error(created.error.code);
  await world.executions.batchPutQueued(
    deploymentId,
    [
      ...devices.queued.map((thingName) => ({
        thingName,
        updateId: update.updateId,
        state: 'queued' as const,
        shard: 0,
      })),
      ...(devices.incompatible ?? []).map((thingName) => ({
        thingName,
        updateId: update.updateId,
        state: 'incompatible' as const,
        shard: 0,
      })),
    ],
    Date.now(),
  );
  return deploymentId;
}

/** The manifest text a seeded deployment hands out (the same bytes its update stores in S3). */
export function seededManifestText(updateId: UpdateIdentity): string {
  return JSON.stringify({ updateId, manifestVersion: '4' });
}

/** A scripted device: MQTT.js on the plain port, client id = thing name, as the device policy wants. */
export interface TestDevice {
  readonly thingName: string;
  readonly client: MqttClient;
  /** Publishes a download request and resolves with the answer carrying the same clientToken. */
  requestDownload(payload: Record<string, unknown>): Promise<DownloadAnswer>;
  close(): Promise<void>;
}

export interface DownloadAnswer {
  readonly outcome: 'accepted' | 'rejected';
  readonly body: Record<string, unknown>;
}

export async function connectDevice(world: DownloadWorld, thingName: string): Promise<TestDevice> {
  const client = await mqtt.connectAsync(world.iot.endpoints.mqtt, {
    clientId: thingName,
    reconnectPeriod: 0,
  });
  await client.subscribeAsync([downloadTopics.accepted(thingName), downloadTopics.rejected(thingName)], {
    qos: 1,
  });
  return {
    thingName,
    client,
    requestDownload(payload) {
      const clientToken = typeof payload.clientToken === 'string' ? payload.clientToken : undefined;
      return new Promise<DownloadAnswer>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no download answer for ${thingName}`)), 10_000);
        const onMessage = (topic: string, message: Buffer): void => {
          const body = JSON.parse(message.toString('utf8')) as Record<string, unknown>;
          if (clientToken !== undefined && body.clientToken !== clientToken) return;
          clearTimeout(timer);
          client.off('message', onMessage);
          resolve({ outcome: topic.endsWith('/accepted') ? 'accepted' : 'rejected', body });
        };
        client.on('message', onMessage);
        client.publish(downloadTopics.request(thingName), JSON.stringify(payload), { qos: 1 });
      });
    },
    close: () => client.endAsync(),
  };
}
