/**
 * The local S3 gateway and STS on their own: the SDK's calls keep working through the gateway
 * (bucket-level ones included), every way of presenting a bad signature is refused as S3 refuses
 * it, a body that does not match what was signed is never stored, and STS sessions are held to
 * the intersection of the role's policy and the session policy.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import {
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  type GetObjectCommandInput,
  type GetObjectCommandOutput,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
  S3ServiceException,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import {
  AssumeRoleCommand,
  GetCallerIdentityCommand,
  STSClient,
  STSServiceException,
} from '@aws-sdk/client-sts';
import { getSigningKey, SignatureV4 } from '@smithy/signature-v4';
import type { AwsCredentialIdentity } from '@smithy/types';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { localS3Credentials, type RunningS3Server, startS3Server } from '../../../local/s3.ts';
import {
  makeCredentialStore,
  parsePolicy,
  type RunningLocalSts,
  startLocalSts,
} from '../../../local/sts/index.ts';
import { chunkSignature, NodeSha256 } from '../../../local/sts/sigv4.ts';

const region = 'us-east-1';
const bucket = 'gateway-test';
const roleArn = 'arn:aws:iam::123456789012:role/readers';
let directory: string;
let s3Server: RunningS3Server;
let sts: RunningLocalSts;
let admin: S3Client;
let stsAdmin: STSClient;

const s3With = (credentials: AwsCredentialIdentity, extra: Partial<S3ClientConfig> = {}): S3Client =>
  new S3Client({
    endpoint: s3Server.endpoint,
    region,
    forcePathStyle: true,
    credentials,
    maxAttempts: 1,
    ...extra,
  });

async function failure(send: () => Promise<unknown>): Promise<{ name: string; status?: number }> {
  const error = await send().then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof S3ServiceException || error instanceof STSServiceException)) {
    throw new Error(`expected a service error, got ${String(error)}`);
  }
  return { name: error.name, status: error.$metadata.httpStatusCode };
}

async function exists(key: string): Promise<boolean> {
  return admin.send(new HeadObjectCommand({ Bucket: bucket, Key: key })).then(
    () => true,
    () => false,
  );
}

/** Sends a raw request signed by the SDK's own signer (for what no SDK call sends: bad bodies, signed chunks). */
async function rawRequest(input: {
  readonly method: string;
  readonly key: string;
  readonly headers: Record<string, string>;
  readonly body: Buffer;
}): Promise<{ status: number; text: string }> {
  const url = new URL(s3Server.endpoint);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        hostname: url.hostname,
        port: url.port,
        method: input.method,
        path: `/${bucket}/${input.key}`,
        headers: input.headers,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }));
      },
    );
    req.on('error', reject);
    req.end(input.body);
  });
}

const signer = new SignatureV4({
  service: 's3',
  region,
  credentials: localS3Credentials,
  sha256: NodeSha256,
  uriEscapePath: false,
});

async function signedHeaders(
  method: string,
  key: string,
  headers: Record<string, string>,
): Promise<Record<string, string>> {
  const url = new URL(s3Server.endpoint);
  const signed = await signer.sign({
    method,
    protocol: 'http:',
    hostname: url.hostname,
    port: Number(url.port),
    path: `/${bucket}/${key}`,
    query: {},
    headers: { host: url.host, ...headers },
  });
  return signed.headers;
}

beforeAll(async () => {
  directory = await mkdtemp(join(tmpdir(), 'shadow-ota-gateway-'));
  const credentials = makeCredentialStore([localS3Credentials]);
  s3Server = await startS3Server({ host: '127.0.0.1', port: 0, directory, buckets: [bucket], credentials });
  const readers = parsePolicy(
    JSON.stringify({
      Statement: [
        {
          Effect: 'Allow',
          Action: ['s3:GetObject', 's3:ListBucket'],
          Resource: [`arn:aws:s3:::${bucket}/public/*`, `arn:aws:s3:::${bucket}`],
        },
      ],
    }),
  );
  if (!readers.ok) throw new Error(readers.message);
  sts = await startLocalSts({
    host: '127.0.0.1',
    port: 0,
    region,
    accountId: '123456789012',
    credentials,
    roles: [{ roleArn, policy: readers.policy }],
  });
  admin = s3With(localS3Credentials);
  stsAdmin = new STSClient({
    endpoint: sts.endpoint,
    region,
    credentials: localS3Credentials,
    maxAttempts: 1,
  });
});

afterAll(async () => {
  admin?.destroy();
  stsAdmin?.destroy();
  await sts?.stop();
  await s3Server?.stop();
  await rm(directory, { recursive: true, force: true });
});

describe('the SDK through the gateway', () => {
  it('puts, gets, heads, lists and deletes objects, and creates buckets', async () => {
    await admin.send(new PutObjectCommand({ Bucket: bucket, Key: 'sdk/a b+c.txt', Body: 'plain body' }));
    await admin.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: 'sdk/stream.txt',
        Body: Readable.from([Buffer.from('str'), Buffer.from('eam')]),
        ContentLength: 6,
      }),
    );
    const got = await admin.send(new GetObjectCommand({ Bucket: bucket, Key: 'sdk/a b+c.txt' }));
    expect(await got.Body?.transformToString()).toBe('plain body');
    const streamed = await admin.send(new GetObjectCommand({ Bucket: bucket, Key: 'sdk/stream.txt' }));
    expect(await streamed.Body?.transformToString()).toBe('stream');
    const listed = await admin.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'sdk/' }));
    expect(listed.Contents?.map((o) => o.Key).sort()).toEqual(['sdk/a b+c.txt', 'sdk/stream.txt']);
    await admin.send(new CreateBucketCommand({ Bucket: 'another-bucket' }));
    await admin.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'sdk/stream.txt' }));
    expect(await exists('sdk/stream.txt')).toBe(false);
  });

  it('takes a multipart upload', async () => {
    const key = 'sdk/multipart.bin';
    const { UploadId } = await admin.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
    const one = await admin.send(
      new UploadPartCommand({
        Bucket: bucket,
        Key: key,
        UploadId,
        PartNumber: 1,
        Body: Buffer.alloc(5 * 1024 * 1024, 1),
      }),
    );
    const two = await admin.send(
      new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: 2, Body: 'tail' }),
    );
    await admin.send(
      new CompleteMultipartUploadCommand({
        Bucket: bucket,
        Key: key,
        UploadId,
        MultipartUpload: {
          Parts: [
            { PartNumber: 1, ETag: one.ETag },
            { PartNumber: 2, ETag: two.ETag },
          ],
        },
      }),
    );
    const head = await admin.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    expect(head.ContentLength).toBe(5 * 1024 * 1024 + 4);
  });
});

describe('GetObject served from the object file', () => {
  const key = 'fast/object.bin';
  const body = Buffer.from(Array.from({ length: 3000 }, (_, i) => i % 251));

  beforeAll(async () => {
    await admin.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: key,
        Body: body,
        ContentType: 'application/x-test',
        Metadata: { color: 'blue' },
      }),
    );
  });

  const get = (input: Partial<GetObjectCommandInput> = {}) =>
    admin.send(new GetObjectCommand({ Bucket: bucket, Key: key, ...input }));
  const bytesOf = async (got: GetObjectCommandOutput): Promise<Buffer> =>
    Buffer.from((await got.Body?.transformToByteArray()) ?? []);

  it('answers with the bytes and the headers s3rver answers HEAD with', async () => {
    const head = await admin.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    const got = await get();
    expect((await bytesOf(got)).equals(body)).toBe(true);
    expect(got).toMatchObject({
      ETag: head.ETag,
      ContentType: 'application/x-test',
      ContentLength: body.length,
      Metadata: { color: 'blue' },
      LastModified: head.LastModified,
      AcceptRanges: 'bytes',
    });
  });

  it('answers a range, bounded or open, with 206 and its Content-Range (end clipped to the last byte)', async () => {
    const bounded = await get({ Range: 'bytes=10-19' });
    expect((await bytesOf(bounded)).equals(body.subarray(10, 20))).toBe(true);
    expect(bounded.ContentRange).toBe(`bytes 10-19/${body.length}`);
    const open = await get({ Range: 'bytes=2990-' });
    expect((await bytesOf(open)).equals(body.subarray(2990))).toBe(true);
    const clipped = await get({ Range: 'bytes=2995-9999' });
    expect(clipped.ContentRange).toBe(`bytes 2995-2999/${body.length}`);
    expect(clipped.ContentLength).toBe(5);
  });

  it('leaves conditionals, overrides and unsatisfiable ranges to s3rver, which answers them as before', async () => {
    const { ETag } = await get();
    expect(await failure(() => get({ IfNoneMatch: ETag }))).toMatchObject({ status: 304 });
    expect(await failure(() => get({ Range: 'bytes=5000-' }))).toMatchObject({
      name: 'InvalidRange',
      status: 416,
    });
    const overridden = await get({ ResponseContentType: 'text/plain' });
    expect(overridden.ContentType).toBe('text/plain');
    expect((await bytesOf(overridden)).equals(body)).toBe(true);
    expect(await failure(() => get({ Key: 'fast/missing.bin' }))).toMatchObject({
      name: 'NoSuchKey',
      status: 404,
    });
  });
});

describe('signatures S3 refuses', () => {
  it('refuses a wrong secret, an unknown key and a request signed too long ago', async () => {
    const wrongSecret = s3With({ accessKeyId: localS3Credentials.accessKeyId, secretAccessKey: 'not-it' });
    const unknownKey = s3With({ accessKeyId: 'AKIANOBODY', secretAccessKey: 'x' });
    const late = s3With(localS3Credentials, { systemClockOffset: -20 * 60_000 });
    const get = (c: S3Client) => () => c.send(new GetObjectCommand({ Bucket: bucket, Key: 'sdk/a b+c.txt' }));

    expect(await failure(get(wrongSecret))).toEqual({ name: 'SignatureDoesNotMatch', status: 403 });
    expect(await failure(get(unknownKey))).toEqual({ name: 'InvalidAccessKeyId', status: 403 });
    expect(await failure(get(late))).toEqual({ name: 'RequestTimeTooSkewed', status: 403 });
    for (const c of [wrongSecret, unknownKey, late]) c.destroy();
  });

  it('does not store a body whose SHA-256 is not the one signed (XAmzContentSHA256Mismatch)', async () => {
    const signedBody = Buffer.from('the body that was signed');
    const sentBody = Buffer.from('a different body, same size');
    const hash = createHash('sha256').update(signedBody).digest('hex');
    const headers = await signedHeaders('PUT', 'bad/body.txt', {
      'x-amz-content-sha256': hash,
      'content-length': String(sentBody.byteLength),
    });

    const answer = await rawRequest({ method: 'PUT', key: 'bad/body.txt', headers, body: sentBody });
    expect(answer.status).toBe(400);
    expect(answer.text).toContain('<Code>XAmzContentSHA256Mismatch</Code>');
    expect(await exists('bad/body.txt')).toBe(false);
  });

  it('decodes a signed aws-chunked upload, and refuses (without storing) one whose chunk was altered', async () => {
    const chunks = [Buffer.from('first chunk of data|'), Buffer.from('second')];
    const total = chunks.reduce((n, c) => n + c.byteLength, 0);
    const upload = async (key: string, alter: boolean) => {
      const headers = await signer
        .sign(
          {
            method: 'PUT',
            protocol: 'http:',
            hostname: new URL(s3Server.endpoint).hostname,
            port: Number(new URL(s3Server.endpoint).port),
            path: `/${bucket}/${key}`,
            query: {},
            headers: {
              host: new URL(s3Server.endpoint).host,
              'x-amz-content-sha256': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD',
              'content-encoding': 'aws-chunked',
              'x-amz-decoded-content-length': String(total),
            },
          },
          { signingDate: new Date() },
        )
        .then((r) => r.headers);
      const seed = /Signature=([0-9a-f]+)/.exec(headers.authorization ?? '')?.[1] ?? '';
      const amzDate = headers['x-amz-date'] ?? '';
      const scope = `${amzDate.slice(0, 8)}/${region}/s3/aws4_request`;
      const signingKey = await getSigningKey(
        NodeSha256,
        localS3Credentials,
        amzDate.slice(0, 8),
        region,
        's3',
      );
      let previous = seed;
      const parts: Buffer[] = [];
      for (const data of [...chunks, Buffer.alloc(0)]) {
        const digest = createHash('sha256').update(data).digest('hex');
        previous = chunkSignature({ amzDate, scope, signingKey }, previous, digest);
        const sent = alter && data.byteLength > 0 ? Buffer.from(data.toString().toUpperCase()) : data;
        parts.push(
          Buffer.from(`${data.byteLength.toString(16)};chunk-signature=${previous}\r\n`),
          sent,
          Buffer.from('\r\n'),
        );
      }
      const body = Buffer.concat(parts);
      return rawRequest({
        method: 'PUT',
        key,
        headers: { ...headers, 'content-length': String(body.byteLength) },
        body,
      });
    };

    expect((await upload('chunked/good.txt', false)).status).toBe(200);
    const stored = await admin.send(new GetObjectCommand({ Bucket: bucket, Key: 'chunked/good.txt' }));
    expect(await stored.Body?.transformToString()).toBe('first chunk of data|second');

    const refused = await upload('chunked/altered.txt', true);
    expect(refused.status).toBe(403);
    expect(refused.text).toContain('<Code>SignatureDoesNotMatch</Code>');
    expect(await exists('chunked/altered.txt')).toBe(false);
  });
});

describe('STS sessions', () => {
  const assume = (input: { Policy?: string; DurationSeconds?: number; RoleArn?: string }) =>
    stsAdmin.send(
      new AssumeRoleCommand({ RoleArn: roleArn, RoleSessionName: 'tester', DurationSeconds: 900, ...input }),
    );

  it('refuses durations, policies and roles AWS refuses', async () => {
    expect(await failure(() => assume({ DurationSeconds: 899 }))).toMatchObject({
      name: 'ValidationError',
      status: 400,
    });
    expect(await failure(() => assume({ DurationSeconds: 3601 }))).toMatchObject({ name: 'ValidationError' });
    const huge = JSON.stringify({
      Statement: [
        {
          Effect: 'Allow',
          Action: 's3:GetObject',
          Resource: Array.from(
            { length: 60 },
            (_, i) => `arn:aws:s3:::${bucket}/public/${i}-${'x'.repeat(20)}`,
          ),
        },
      ],
    });
    expect(await failure(() => assume({ Policy: huge }))).toMatchObject({
      name: 'PackedPolicyTooLargeException',
      status: 400,
    });
    expect(await failure(() => assume({ Policy: '{"Statement":[{"Effect":"Maybe"}]}' }))).toMatchObject({
      name: 'MalformedPolicyDocumentException',
    });
    expect(await failure(() => assume({ RoleArn: 'arn:aws:iam::123456789012:role/nobody' }))).toMatchObject({
      name: 'AccessDenied',
      status: 403,
    });
  });

  it('holds a session to the role’s policy and the session policy together', async () => {
    await admin.send(new PutObjectCommand({ Bucket: bucket, Key: 'public/one.txt', Body: 'one' }));
    await admin.send(new PutObjectCommand({ Bucket: bucket, Key: 'public/two.txt', Body: 'two' }));
    await admin.send(new PutObjectCommand({ Bucket: bucket, Key: 'private/three.txt', Body: 'three' }));
    const session = await assume({
      Policy: JSON.stringify({
        Statement: [
          // GetObject on one public key; PutObject the role does not allow, so it stays denied.
          {
            Effect: 'Allow',
            Action: ['s3:GetObject', 's3:PutObject'],
            Resource: `arn:aws:s3:::${bucket}/public/one.txt`,
          },
          { Effect: 'Allow', Action: 's3:GetObject', Resource: `arn:aws:s3:::${bucket}/private/*` },
        ],
      }),
    });
    const c = session.Credentials;
    const client = s3With({
      accessKeyId: c?.AccessKeyId ?? '',
      secretAccessKey: c?.SecretAccessKey ?? '',
      sessionToken: c?.SessionToken ?? '',
    });
    const get = (key: string) => () => client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));

    expect(await (await get('public/one.txt')()).Body?.transformToString()).toBe('one');
    expect(await failure(get('public/two.txt'))).toMatchObject({ name: 'AccessDenied', status: 403 });
    expect(await failure(get('private/three.txt'))).toMatchObject({ name: 'AccessDenied' });
    expect(
      await failure(() =>
        client.send(new PutObjectCommand({ Bucket: bucket, Key: 'public/one.txt', Body: 'x' })),
      ),
    ).toMatchObject({ name: 'AccessDenied' });
    client.destroy();
  });

  it('refuses a session key without its token, and lets a session say who it is but not assume roles', async () => {
    const session = await assume({});
    const c = session.Credentials;
    const noToken = s3With({ accessKeyId: c?.AccessKeyId ?? '', secretAccessKey: c?.SecretAccessKey ?? '' });
    expect(
      await failure(() => noToken.send(new GetObjectCommand({ Bucket: bucket, Key: 'public/one.txt' }))),
    ).toMatchObject({
      name: 'InvalidToken',
      status: 403,
    });
    noToken.destroy();

    const asSession = new STSClient({
      endpoint: sts.endpoint,
      region,
      maxAttempts: 1,
      credentials: {
        accessKeyId: c?.AccessKeyId ?? '',
        secretAccessKey: c?.SecretAccessKey ?? '',
        sessionToken: c?.SessionToken ?? '',
      },
    });
    const identity = await asSession.send(new GetCallerIdentityCommand({}));
    expect(identity.Arn).toBe('arn:aws:sts::123456789012:assumed-role/readers/tester');
    expect(
      await failure(() =>
        asSession.send(new AssumeRoleCommand({ RoleArn: roleArn, RoleSessionName: 'chain' })),
      ),
    ).toMatchObject({ name: 'AccessDenied' });
    asSession.destroy();
  });
});
