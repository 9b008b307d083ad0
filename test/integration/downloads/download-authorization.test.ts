/**
 * Download authorization end to end over real connections: a scripted device publishes its request
 * on MQTT, the local IoT Core's rule invokes the real authorizer, which checks DynamoDB Local and
 * answers through the data-plane Publish; the device then downloads from the local S3 gateway,
 * which enforces SigV4, expiry and the STS session policy the way AWS does.
 */
import {
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { STSClient } from '@aws-sdk/client-sts';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  downloadSessionPolicy,
  makeDownloadCredentials,
} from '../../../lambdas/adapters/download-credentials.ts';
import { type CompactPresignedUrls, presignedUrlOf } from '../../../lambdas/domain/downloads/presigned.ts';
import { localS3Credentials } from '../../../local/s3.ts';
import {
  connectDevice,
  type DownloadWorld,
  downloadRoleArn,
  region,
  type SeededUpdate,
  seedDeployment,
  seededManifestText,
  seedReadyUpdate,
  startDownloadWorld,
  type TestDevice,
} from './support.ts';

let world: DownloadWorld;
let toasterV1: SeededUpdate;
let toasterV2: SeededUpdate;
/** thing-a and thing-b are targeted (queued); thing-x's compatibility did not match. */
let presignedDeployment: string;
/** thing-b only, STS mode. */
let stsDeployment: string;
const devices = new Map<string, TestDevice>();

const thing = (name: string): TestDevice => {
  const device = devices.get(name);
  if (!device) throw new Error(`no device ${name}`);
  return device;
};

let tokens = 0;
const token = (): string => `tok-${++tokens}`;

async function statusAndText(url: string, init?: RequestInit): Promise<{ status: number; text: string }> {
  const response = await fetch(url, init);
  return { status: response.status, text: await response.text() };
}

/** Every file's URL of a presigned answer, as the agent puts them together. */
function presignedUrls(body: Record<string, unknown>): Record<string, string> {
  const compact = body as unknown as CompactPresignedUrls;
  return Object.fromEntries(
    Object.keys(compact.files).map((fileId) => [fileId, presignedUrlOf(compact, fileId) ?? '']),
  );
}

function errorCode(text: string): string | undefined {
  return /<Code>([^<]+)<\/Code>/.exec(text)?.[1];
}

beforeAll(async () => {
  world = await startDownloadWorld(inject('ddbEndpoint'));
  toasterV1 = await seedReadyUpdate(
    world,
    { provider: 'Contoso', name: 'Toaster', version: '1.0' },
    { 'firmware.bin': 'toaster firmware one: 0123456789', 'config.json': '{"heat":3}' },
  );
  toasterV2 = await seedReadyUpdate(
    world,
    { provider: 'Contoso', name: 'Toaster', version: '2.0' },
    { 'firmware.bin': 'toaster firmware TWO, not for you' },
  );
  presignedDeployment = await seedDeployment(
    world,
    toasterV1,
    { queued: ['thing-a', 'thing-b'], incompatible: ['thing-x'] },
    { mode: 'presigned', credentialLifetimeSeconds: 60 },
  );
  stsDeployment = await seedDeployment(
    world,
    toasterV2,
    { queued: ['thing-b'] },
    { mode: 'sts', credentialLifetimeSeconds: 900 },
  );
  for (const name of ['thing-a', 'thing-b', 'thing-c', 'thing-x'])
    devices.set(name, await connectDevice(world, name));
});

afterAll(async () => {
  await Promise.all([...devices.values()].map((d) => d.close()));
  await world?.stop();
});

describe('presigned downloads', () => {
  it('gives a targeted device one URL per file of its update, and the URLs download the right bytes', async () => {
    const before = Date.now();
    const answer = await thing('thing-a').requestDownload({
      deploymentId: presignedDeployment,
      clientToken: token(),
    });

    expect(answer.outcome).toBe('accepted');
    expect(answer.body).toMatchObject({
      deploymentId: presignedDeployment,
      mode: 'presigned',
      attempt: 1,
      // The deployment's signed manifest travels with the authorization, not in the shadow.
      manifest: seededManifestText(toasterV1.updateId),
      signature: `header.payload.${presignedDeployment}`,
    });
    const files = presignedUrls(answer.body);
    const firmware = toasterV1.files['firmware.bin'];
    const config = toasterV1.files['config.json'];
    expect(Object.keys(files).sort()).toEqual(
      [firmware?.fileId, config?.fileId, toasterV1.manifest.fileId].sort(),
    );
    expect(await statusAndText(files[firmware?.fileId ?? ''] ?? '')).toEqual({
      status: 200,
      text: firmware?.bytes.toString(),
    });
    expect((await statusAndText(files[toasterV1.manifest.fileId] ?? '')).text).toBe(
      toasterV1.manifest.bytes.toString(),
    );
    const expiresAt = Date.parse(String(answer.body.expiresAt));
    // Signed at the second: the lifetime counts from its start.
    expect(expiresAt).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000 + 60_000);
    expect(expiresAt).toBeLessThan(Date.now() + 61_000);
  });

  it('answers only the files asked for', async () => {
    const firmware = toasterV1.files['firmware.bin']?.fileId ?? '';
    const answer = await thing('thing-b').requestDownload({
      deploymentId: presignedDeployment,
      clientToken: token(),
      files: [firmware],
    });
    expect(answer.outcome).toBe('accepted');
    expect(Object.keys(presignedUrls(answer.body))).toEqual([firmware]);
  });

  it('serves Range requests through the gateway (206) so a download can resume', async () => {
    const firmware = toasterV1.files['firmware.bin'];
    const answer = await thing('thing-a').requestDownload({
      deploymentId: presignedDeployment,
      clientToken: token(),
    });
    const url = presignedUrls(answer.body)[firmware?.fileId ?? ''] ?? '';

    const response = await fetch(url, { headers: { range: 'bytes=9-16' } });
    expect(response.status).toBe(206);
    expect(response.headers.get('content-range')).toBe(`bytes 9-16/${firmware?.bytes.byteLength}`);
    expect(await response.text()).toBe(firmware?.bytes.subarray(9, 17).toString());
  });

  it('a URL minted for one update does not open another update’s object', async () => {
    const answer = await thing('thing-a').requestDownload({
      deploymentId: presignedDeployment,
      clientToken: token(),
    });
    const url = new URL(presignedUrls(answer.body)[toasterV1.files['firmware.bin']?.fileId ?? ''] ?? '');
    const otherKey = toasterV2.files['firmware.bin']?.objectKey ?? '';
    url.pathname = `/${world.bucket}/${otherKey}`;

    const { status, text } = await statusAndText(url.toString());
    expect(status).toBe(403);
    expect(errorCode(text)).toBe('SignatureDoesNotMatch');
    expect(text).not.toContain('TWO');
  });

  it('refuses a tampered URL (signature or lifetime changed) with 403 SignatureDoesNotMatch', async () => {
    const answer = await thing('thing-a').requestDownload({
      deploymentId: presignedDeployment,
      clientToken: token(),
    });
    const url = new URL(presignedUrls(answer.body)[toasterV1.files['firmware.bin']?.fileId ?? ''] ?? '');
    const signature = url.searchParams.get('X-Amz-Signature') ?? '';
    const flipped = new URL(url);
    flipped.searchParams.set(
      'X-Amz-Signature',
      `${signature.slice(0, -1)}${signature.endsWith('0') ? '1' : '0'}`,
    );
    const longer = new URL(url);
    longer.searchParams.set('X-Amz-Expires', '604800');

    for (const tampered of [flipped, longer]) {
      const { status, text } = await statusAndText(tampered.toString());
      expect(status).toBe(403);
      expect(errorCode(text)).toBe('SignatureDoesNotMatch');
    }
  });

  it('refuses an expired URL with 403 AccessDenied', async () => {
    const answer = await thing('thing-a').requestDownload({
      deploymentId: presignedDeployment,
      clientToken: token(),
    });
    const url = presignedUrls(answer.body)[toasterV1.files['firmware.bin']?.fileId ?? ''] ?? '';
    expect((await statusAndText(url)).status).toBe(200);

    world.clocks.s3OffsetMs = 61_000;
    try {
      const { status, text } = await statusAndText(url);
      expect(status).toBe(403);
      expect(errorCode(text)).toBe('AccessDenied');
      expect(text).toContain('Request has expired');
    } finally {
      world.clocks.s3OffsetMs = 0;
    }
  });

  it('refuses an unsigned request with 403 AccessDenied in S3’s XML shape', async () => {
    const key = toasterV1.files['firmware.bin']?.objectKey ?? '';
    const response = await fetch(`${world.s3.endpoint}/${world.bucket}/${key}`);
    expect(response.status).toBe(403);
    expect(response.headers.get('content-type')).toBe('application/xml');
    expect(await response.text()).toMatch(
      /^<\?xml version="1.0" encoding="UTF-8"\?>\n<Error><Code>AccessDenied<\/Code>/,
    );
  });
});

describe("the request as the device's progress", () => {
  /** A deployment whose one device the fan-out notified. */
  async function notifiedDevice(name: string): Promise<string> {
    const deploymentId = await seedDeployment(
      world,
      toasterV1,
      { queued: [name] },
      { mode: 'presigned', credentialLifetimeSeconds: 60 },
    );
    const queued = await world.executions.get(deploymentId, name);
    if (!queued) throw new Error('not seeded');
    const notifiedAt = Date.now() - 5_000;
    const notified = await world.executions.transition(
      queued,
      { ...queued, state: 'notified', notifiedAt },
      { at: notifiedAt, reason: 'notified' },
    );
    if (!notified.ok) throw new Error('notify failed');
    return deploymentId;
  }

  it('records a notified device as downloading, heard from now, and leaves it so when it asks again', async () => {
    const deploymentId = await notifiedDevice('thing-c');
    const before = Date.now();
    const first = await thing('thing-c').requestDownload({ deploymentId, clientToken: token() });
    expect(first.outcome).toBe('accepted');
    const downloading = await world.executions.get(deploymentId, 'thing-c');
    expect(downloading).toMatchObject({ state: 'downloading', reason: 'download_authorized' });
    expect(downloading?.reportedAt).toBeGreaterThanOrEqual(before);

    const again = await thing('thing-c').requestDownload({ deploymentId, clientToken: token() });
    expect(again.outcome).toBe('accepted');
    expect(await world.executions.get(deploymentId, 'thing-c')).toEqual(downloading);
  });

  it('records nothing for a request of another attempt, and refuses it', async () => {
    const deploymentId = await notifiedDevice('thing-b');
    const before = await world.executions.get(deploymentId, 'thing-b');
    const answer = await thing('thing-b').requestDownload({ deploymentId, attempt: 2, clientToken: token() });
    expect(answer.body.code).toBe('NO_ACTIVE_EXECUTION');
    expect(await world.executions.get(deploymentId, 'thing-b')).toEqual(before);
    const own = await thing('thing-b').requestDownload({ deploymentId, attempt: 1, clientToken: token() });
    expect(own.outcome).toBe('accepted');
  });

  it('records nothing for a device with a cancel pending, and refuses it', async () => {
    const deploymentId = await notifiedDevice('thing-a');
    const notified = await world.executions.get(deploymentId, 'thing-a');
    if (!notified) throw new Error('not seeded');
    const canceling = await world.executions.transition(
      notified,
      { ...notified, cancelReason: 'canceled_by_operator' },
      { at: Date.now() },
    );
    if (!canceling.ok) throw new Error('cancel failed');
    const answer = await thing('thing-a').requestDownload({ deploymentId, clientToken: token() });
    expect(answer.body.code).toBe('NO_ACTIVE_EXECUTION');
    expect(await world.executions.get(deploymentId, 'thing-a')).toEqual(canceling.value);
  });
});

describe('refused requests', () => {
  it('refuses a device that is not part of the deployment', async () => {
    const clientToken = token();
    const answer = await thing('thing-c').requestDownload({ deploymentId: presignedDeployment, clientToken });
    expect(answer).toEqual({
      outcome: 'rejected',
      body: expect.objectContaining({ clientToken, code: 'NO_ACTIVE_EXECUTION' }),
    });
  });

  it('refuses a device asking for another device’s deployment', async () => {
    // thing-a is not in the STS deployment, which targets thing-b only.
    const answer = await thing('thing-a').requestDownload({
      deploymentId: stsDeployment,
      clientToken: token(),
    });
    expect(answer.outcome).toBe('rejected');
    expect(answer.body.code).toBe('NO_ACTIVE_EXECUTION');
    expect(answer.body).not.toHaveProperty('credentials');
  });

  it('refuses a device whose execution is terminal (incompatible)', async () => {
    const answer = await thing('thing-x').requestDownload({
      deploymentId: presignedDeployment,
      clientToken: token(),
    });
    expect(answer.body.code).toBe('NO_ACTIVE_EXECUTION');
  });

  it('refuses a deployment that does not exist', async () => {
    const answer = await thing('thing-a').requestDownload({ deploymentId: 'dep-nope', clientToken: token() });
    expect(answer.body.code).toBe('NO_ACTIVE_EXECUTION');
  });

  it('refuses a file id that is not part of the update, naming it', async () => {
    const otherFile = toasterV2.files['firmware.bin']?.fileId ?? '';
    const answer = await thing('thing-a').requestDownload({
      deploymentId: presignedDeployment,
      clientToken: token(),
      files: [otherFile],
    });
    expect(answer.body.code).toBe('UNKNOWN_FILE');
    expect(answer.body.message).toContain(otherFile);
  });

  it('answers a malformed request with BAD_REQUEST and the path of every fault', async () => {
    const clientToken = token();
    const answer = await thing('thing-a').requestDownload({ clientToken, files: 'all' });
    expect(answer.outcome).toBe('rejected');
    expect(answer.body).toMatchObject({ clientToken, code: 'BAD_REQUEST' });
    expect((answer.body.faults as { path: string }[]).map((f) => f.path).sort()).toEqual([
      '/deploymentId',
      '/files',
    ]);
  });

  it('a device cannot even publish on another thing’s request topic (the device policy disconnects it)', async () => {
    const intruder = thing('thing-c').client;
    const closed = new Promise<void>((resolve) => intruder.once('close', () => resolve()));
    intruder.publish(
      'ota/things/thing-b/downloads/request',
      JSON.stringify({ deploymentId: stsDeployment, clientToken: 'x' }),
    );
    await closed;
    expect(intruder.connected).toBe(false);
  });
});

describe('STS downloads', () => {
  let answer: Record<string, unknown>;
  let s3: S3Client;

  beforeAll(async () => {
    answer = (await thing('thing-b').requestDownload({ deploymentId: stsDeployment, clientToken: token() }))
      .body;
    const credentials = answer.credentials as {
      accessKeyId: string;
      secretAccessKey: string;
      sessionToken: string;
    };
    s3 = new S3Client({
      endpoint: world.s3.endpoint,
      region,
      forcePathStyle: true,
      credentials,
      maxAttempts: 1,
    });
  });

  afterAll(() => s3?.destroy());

  const denied = async (send: () => Promise<unknown>): Promise<string> => {
    const error = await send().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(S3ServiceException);
    return (error as S3ServiceException).name;
  };

  it('answers credentials, the bucket and the object key of each file', () => {
    const firmware = toasterV2.files['firmware.bin'];
    expect(answer).toMatchObject({
      mode: 'sts',
      bucket: world.bucket,
      region,
      deploymentId: stsDeployment,
      manifest: seededManifestText(toasterV2.updateId),
      signature: `header.payload.${stsDeployment}`,
    });
    expect((answer.credentials as { accessKeyId: string }).accessKeyId).toMatch(/^ASIA/);
    expect(answer.files).toEqual({
      [firmware?.fileId ?? '']: firmware?.objectKey,
      [toasterV2.manifest.fileId]: toasterV2.manifest.objectKey,
    });
    const expiresAt = Date.parse(String(answer.expiresAt));
    expect(expiresAt - Date.now()).toBeGreaterThan(890_000);
  });

  it('can GetObject its own update’s objects, whole and by range', async () => {
    const firmware = toasterV2.files['firmware.bin'];
    const whole = await s3.send(new GetObjectCommand({ Bucket: world.bucket, Key: firmware?.objectKey }));
    expect(await whole.Body?.transformToString()).toBe(firmware?.bytes.toString());
    const part = await s3.send(
      new GetObjectCommand({ Bucket: world.bucket, Key: firmware?.objectKey, Range: 'bytes=8-15' }),
    );
    expect(part.$metadata.httpStatusCode).toBe(206);
    expect(await part.Body?.transformToString()).toBe(firmware?.bytes.subarray(8, 16).toString());
  });

  it('gets 403 on another update’s object, on PutObject and on ListObjects', async () => {
    const own = toasterV2.files['firmware.bin']?.objectKey;
    const other = toasterV1.files['firmware.bin']?.objectKey;
    expect(await denied(() => s3.send(new GetObjectCommand({ Bucket: world.bucket, Key: other })))).toBe(
      'AccessDenied',
    );
    expect(
      await denied(() => s3.send(new PutObjectCommand({ Bucket: world.bucket, Key: own, Body: 'evil' }))),
    ).toBe('AccessDenied');
    expect(await denied(() => s3.send(new ListObjectsV2Command({ Bucket: world.bucket })))).toBe(
      'AccessDenied',
    );
    // The object was not replaced.
    const still = await world.adminS3.send(new GetObjectCommand({ Bucket: world.bucket, Key: own }));
    expect(await still.Body?.transformToString()).toBe(toasterV2.files['firmware.bin']?.bytes.toString());
  });

  it('gets 403, not 404, for a missing key in its scope: object names cannot be probed', async () => {
    const missing = `${toasterV2.files['firmware.bin']?.objectKey}.missing`;
    expect(await denied(() => s3.send(new GetObjectCommand({ Bucket: world.bucket, Key: missing })))).toBe(
      'AccessDenied',
    );
  });

  it('stops working once the credentials expire (ExpiredToken)', async () => {
    // Credentials issued by an STS clock 899 s behind expire one second after they are issued.
    world.clocks.stsOffsetMs = -899_000;
    let shortLived: S3Client | undefined;
    try {
      const body = (
        await thing('thing-b').requestDownload({ deploymentId: stsDeployment, clientToken: token() })
      ).body;
      shortLived = new S3Client({
        endpoint: world.s3.endpoint,
        region,
        forcePathStyle: true,
        credentials: body.credentials as {
          accessKeyId: string;
          secretAccessKey: string;
          sessionToken: string;
        },
        maxAttempts: 1,
      });
      const key = toasterV2.files['firmware.bin']?.objectKey;
      const expiresAt = Date.parse(String(body.expiresAt));
      expect(expiresAt - Date.now()).toBeLessThan(1_500);
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, expiresAt - Date.now()) + 100));
      const client = shortLived;
      expect(await denied(() => client.send(new GetObjectCommand({ Bucket: world.bucket, Key: key })))).toBe(
        'ExpiredToken',
      );
    } finally {
      world.clocks.stsOffsetMs = 0;
      shortLived?.destroy();
    }
  });
});

describe('session policies for updates with many files', () => {
  it('falls back to the update’s prefix when the object list passes 2,048 characters, and stays inside it', async () => {
    const manyKeys = Array.from(
      { length: 40 },
      (_, i) => `${toasterV2.files['firmware.bin']?.objectKey}-${i}`,
    );
    const prefix = toasterV2.files['firmware.bin']?.objectKey.replace(/files\/.*$/, '') ?? '';
    const policy = downloadSessionPolicy(world.bucket, manyKeys, [prefix]);
    expect(JSON.stringify(manyKeys).length).toBeGreaterThan(2048);
    expect(JSON.parse(policy).Statement[0].Resource).toEqual([`arn:aws:s3:::${world.bucket}/${prefix}*`]);

    const sts = new STSClient({ endpoint: world.sts.endpoint, region, credentials: localS3Credentials });
    const session = await makeDownloadCredentials({
      s3: world.adminS3,
      sts,
      bucket: world.bucket,
      downloadRoleArn,
    }).assumeDownloadRole({
      sessionName: 'thing:many',
      objectKeys: manyKeys,
      prefixes: [prefix],
      durationSeconds: 900,
    });
    sts.destroy();
    const s3 = new S3Client({
      endpoint: world.s3.endpoint,
      region,
      forcePathStyle: true,
      credentials: session,
      maxAttempts: 1,
    });
    const inside = await s3.send(
      new GetObjectCommand({ Bucket: world.bucket, Key: toasterV2.files['firmware.bin']?.objectKey }),
    );
    expect(await inside.Body?.transformToString()).toBe(toasterV2.files['firmware.bin']?.bytes.toString());
    const outside = await s3
      .send(new GetObjectCommand({ Bucket: world.bucket, Key: toasterV1.files['firmware.bin']?.objectKey }))
      .catch((e: unknown) => e);
    expect((outside as S3ServiceException).name).toBe('AccessDenied');
    s3.destroy();
  });
});
