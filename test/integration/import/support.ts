import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { updatesTable } from '../../../lambdas/definitions/tables.ts';
import { localS3Credentials, type RunningS3Server, startS3Server } from '../../../local/s3.ts';
import { ensureTable } from '../../../local/tables.ts';

const region = 'us-east-1';

export function dynamoDbClient(endpoint: string): DynamoDBClient {
  return new DynamoDBClient({
    endpoint,
    region,
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
}

export function documentClient(db: DynamoDBClient): DynamoDBDocumentClient {
  return DynamoDBDocumentClient.from(db, { marshallOptions: { removeUndefinedValues: true } });
}

/** A fresh updates table, named for this test file, from the shared definition. */
export async function createUpdatesTable(db: DynamoDBClient, label: string): Promise<string> {
  const name = `updates-${label}-${randomUUID().slice(0, 8)}`;
  await ensureTable(db, updatesTable, name);
  return name;
}

export interface TestS3 {
  readonly server: RunningS3Server;
  readonly client: S3Client;
  readonly bucket: string;
  stop(): Promise<void>;
}

/** The SigV4-checking S3 server on a free port, with one bucket, in a throw-away directory. */
export async function startTestS3(bucket = 'artifacts-test'): Promise<TestS3> {
  const directory = await mkdtemp(join(tmpdir(), 'shadow-ota-s3-'));
  const server = await startS3Server({ host: '127.0.0.1', port: 0, directory, buckets: [bucket] });
  const client = s3Client(server.endpoint);
  return {
    server,
    client,
    bucket,
    async stop() {
      client.destroy();
      await server.stop();
      await rm(directory, { recursive: true, force: true });
    },
  };
}

export function s3Client(endpoint: string): S3Client {
  return new S3Client({ endpoint, region, forcePathStyle: true, credentials: localS3Credentials });
}
