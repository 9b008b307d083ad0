import { ProvisionedThroughputExceededException } from '@aws-sdk/client-dynamodb';
import { GetObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { makeArtifactStore } from '../../../lambdas/adapters/artifact-store.ts';
import { generateLocalSigningKey, makeLocalKeySigner } from '../../../lambdas/adapters/local-key-signer.ts';
import { makeUpdateStore, type UpdateStore } from '../../../lambdas/adapters/update-store.ts';
import { apiRoutes } from '../../../lambdas/definitions/api.ts';
import { parseUpdateManifest } from '../../../lambdas/domain/manifest/update-manifest.ts';
import { verifyUpdateManifestSignature } from '../../../lambdas/domain/signing/index.ts';
import { makeUpdatesApi, type UpdatesApiHandler } from '../../../lambdas/handlers/updates-api.ts';
import { matchRoute } from '../../../lambdas/http/router.ts';
import { recordingObservability } from '../../../lambdas/observability.ts';
import { toHttpApiEvent } from '../../../local/http-api-event.ts';
import { type FixtureFile, file, importManifest, uid, updatePath } from './fixtures.ts';
import { createUpdatesTable, documentClient, dynamoDbClient, startTestS3, type TestS3 } from './support.ts';

const db = dynamoDbClient(inject('ddbEndpoint'));
const key = generateLocalSigningKey();
const now = new Date('2026-11-23T12:00:00Z');
let s3: TestS3;
let store: UpdateStore;
let api: UpdatesApiHandler;
const observability = recordingObservability();

interface Reply {
  readonly status: number;
  readonly body: Record<string, unknown> & {
    code?: string;
    errors?: { path: string; message: string }[];
    updates?: UpdateReply[];
    items?: UpdateReply[];
    nextToken?: string;
  };
}

interface UpdateReply {
  updateId: { provider: string; name: string; version: string };
  state: string;
  files: { filename: string; uploadUrl?: string; sizeInBytes: number }[];
  referencedBy: string[];
  updateManifest?: { objectKey: string; sha256: string; signature: string; keyId: string };
}

/** Sends one request as API Gateway would: matched route, payload 2.0 event, through the handler. */
async function call(
  method: string,
  url: string,
  body?: string | Buffer,
  headers: Record<string, string> = {},
): Promise<Reply> {
  const path = url.split('?')[0] ?? url;
  const route = matchRoute(apiRoutes, method, path) ?? { routeKey: '$default', pathParameters: {} };
  const rawHeaders = Object.entries({ 'content-type': 'application/json', ...headers }).flat();
  const event = toHttpApiEvent(
    { method, url, rawHeaders, body: Buffer.from(body ?? ''), sourceIp: '127.0.0.1', protocol: 'HTTP/1.1' },
    route,
    now,
  );
  const result = await api(event);
  return { status: result.statusCode, body: result.body ? (JSON.parse(result.body) as Reply['body']) : {} };
}

const post = (url: string, value: unknown): Promise<Reply> => call('POST', url, JSON.stringify(value));

async function uploadAll(update: UpdateReply, files: readonly FixtureFile[]): Promise<void> {
  for (const f of update.files) {
    const content = files.find((x) => x.name === f.filename)?.content;
    const res = await fetch(f.uploadUrl ?? 'missing-url', { method: 'PUT', body: content });
    expect(res.status).toBe(200);
  }
}

async function importAndUpload(
  manifest: Record<string, unknown>,
  files: readonly FixtureFile[],
): Promise<UpdateReply> {
  const imported = await post('/updates', manifest);
  expect(imported.status).toBe(201);
  const update = imported.body.updates?.[0] as UpdateReply;
  await uploadAll(update, files);
  return update;
}

async function readObject(objectKey: string): Promise<string> {
  const out = await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: objectKey }));
  return (await out.Body?.transformToString()) ?? '';
}

beforeAll(async () => {
  s3 = await startTestS3('artifacts-api');
  const tableName = await createUpdatesTable(db, 'api');
  store = makeUpdateStore({ db: documentClient(db), tableName });
  api = makeUpdatesApi({
    updates: store,
    artifacts: makeArtifactStore({ s3: s3.client, bucket: s3.bucket }),
    signer: makeLocalKeySigner({ privateKeyPem: key.privateKeyPem }),
    uploadUrlTtlSeconds: 300,
    signatureTtlSeconds: 3600,
    clock: () => now,
    observability,
    maxBodyBytes: 64 * 1024,
  });
});

afterAll(async () => {
  await s3.stop();
  db.destroy();
});

describe('import, upload, commit', () => {
  const files = [file('install.sh', '#!/bin/sh\necho install\n'), file('firmware.bin', 'firmware 1.0 bytes')];
  const id = uid('Toaster');

  it('imports an update as pending with one presigned PUT URL per file', async () => {
    const imported = await post('/updates', importManifest(id, files));
    expect(imported.status).toBe(201);
    const [update] = imported.body.updates ?? [];
    expect(update).toMatchObject({
      updateId: id,
      state: 'pending',
      links: { commit: `${updatePath(id)}/commit` },
    });
    expect(update?.files.map((f) => f.filename)).toEqual(['install.sh', 'firmware.bin']);
    expect(update?.files.every((f) => f.uploadUrl?.includes('X-Amz-Signature='))).toBe(true);
    await uploadAll(update as UpdateReply, files);
  });

  it('commits: every file verified, the signed update manifest written to S3, the update ready', async () => {
    const committed = await call('POST', `${updatePath(id)}/commit`);
    expect(committed.status).toBe(200);
    const [update] = committed.body.updates ?? [];
    expect(update?.state).toBe('ready');
    expect(update?.files.some((f) => f.uploadUrl)).toBe(false);

    const manifestText = await readObject(update?.updateManifest?.objectKey ?? '');
    const manifest = parseUpdateManifest(manifestText);
    expect(manifest.ok && manifest.value.updateId).toEqual(id);
    const verified = await verifyUpdateManifestSignature({
      jws: update?.updateManifest?.signature ?? '',
      manifest: manifestText,
      trustedKeys: [key.publicJwk],
      now,
      expectedUpdateId: id,
    });
    expect(verified.ok).toBe(true);
    expect(update?.updateManifest?.keyId).toBe(key.publicJwk.kid);

    const fetched = await call('GET', updatePath(id));
    expect(fetched.body).toMatchObject({ state: 'ready', updateManifest: update?.updateManifest });
  });

  it('answers a second commit of a ready update unchanged', async () => {
    const before = (await call('GET', updatePath(id))).body;
    const again = await call('POST', `${updatePath(id)}/commit`);
    expect(again.status).toBe(200);
    expect(again.body.updates?.[0]?.updateManifest).toEqual(before.updateManifest);
  });

  it('answers an identical re-import with the same update and no new write', async () => {
    const again = await post('/updates', importManifest(id, files));
    expect(again.status).toBe(200);
    expect(again.body.updates?.[0]).toMatchObject({ updateId: id, state: 'ready' });
  });

  it('hands out fresh upload URLs when an identical import is repeated while pending', async () => {
    const pendingId = uid('Toaster', '1.1');
    const first = await post('/updates', importManifest(pendingId, files));
    const second = await post('/updates', importManifest(pendingId, files));
    expect([first.status, second.status]).toEqual([201, 200]);
    expect(second.body.updates?.[0]?.state).toBe('pending');
    expect(second.body.updates?.[0]?.files.every((f) => f.uploadUrl)).toBe(true);
  });

  it('refuses a different manifest under an imported updateId, naming it', async () => {
    const changed = await post('/updates', importManifest(id, [file('install.sh', 'something else')]));
    expect(changed.status).toBe(409);
    expect(changed.body.code).toBe('UPDATE_CONFLICT');
    expect(changed.body.errors).toEqual([
      { path: '/updateId', message: expect.stringContaining('Contoso/Toaster/1.0') },
    ]);
  });
});

describe('concurrent requests', () => {
  const files = [file('race.sh', 'race')];

  it('two identical imports at once: one creates, the other answers the same update', async () => {
    const id = uid('Race');
    const replies = await Promise.all([
      post('/updates', importManifest(id, files)),
      post('/updates', importManifest(id, files)),
    ]);
    expect(replies.map((r) => r.status).sort()).toEqual([200, 201]);
    expect(replies.every((r) => r.body.updates?.[0]?.state === 'pending')).toBe(true);
  });

  it('two commits at once: both answer ready with the one manifest that was recorded', async () => {
    const id = uid('RaceCommit');
    await importAndUpload(importManifest(id, files), files);
    const replies = await Promise.all([
      call('POST', `${updatePath(id)}/commit`),
      call('POST', `${updatePath(id)}/commit`),
    ]);
    expect(replies.map((r) => r.status)).toEqual([200, 200]);
    const stored = (await call('GET', updatePath(id))).body.updateManifest;
    expect(replies.map((r) => r.body.updates?.[0]?.updateManifest?.objectKey)).toEqual([
      (stored as { objectKey: string }).objectKey,
      (stored as { objectKey: string }).objectKey,
    ]);
  });
});

describe('commit refuses files that do not match the manifest', () => {
  const files = [file('app.bin', 'the application, version 2'), file('data.bin', 'data for version 2')];

  it.each([
    ['hash', 'FILE_HASH_MISMATCH', Buffer.from('the application, version X'), /SHA-256/],
    ['size', 'FILE_SIZE_MISMATCH', Buffer.from('short'), /is 5 bytes, but the manifest declares 26/],
  ])(
    '%s mismatch: 409 naming the file, and the update stays pending',
    async (label, code, wrong, message) => {
      const id = uid(`Mismatch-${label}`);
      const update = await importAndUpload(importManifest(id, files), files);
      const appUrl = update.files.find((f) => f.filename === 'app.bin')?.uploadUrl ?? '';
      await fetch(appUrl, { method: 'PUT', body: wrong });

      const refused = await call('POST', `${updatePath(id)}/commit`);
      expect(refused.status).toBe(409);
      expect(refused.body.code).toBe(code);
      expect(refused.body.message).toContain('app.bin');
      expect(refused.body.errors).toEqual([{ path: '/files/0', message: expect.stringMatching(message) }]);
      expect((await call('GET', updatePath(id))).body.state).toBe('pending');
    },
  );

  it('a missing file: 409 FILE_MISSING naming it; after the upload the commit succeeds', async () => {
    const id = uid('Missing');
    const imported = await post('/updates', importManifest(id, files));
    const update = imported.body.updates?.[0] as UpdateReply;
    await uploadAll({ ...update, files: update.files.filter((f) => f.filename === 'app.bin') }, files);

    const refused = await call('POST', `${updatePath(id)}/commit`);
    expect(refused.status).toBe(409);
    expect(refused.body).toMatchObject({ code: 'FILE_MISSING', errors: [{ path: '/files/1' }] });
    expect(refused.body.errors?.[0]?.message).toContain('data.bin');

    await uploadAll({ ...update, files: update.files.filter((f) => f.filename === 'data.bin') }, files);
    expect((await call('POST', `${updatePath(id)}/commit`)).body.updates?.[0]?.state).toBe('ready');
  });

  it('reports every bad file at once', async () => {
    const id = uid('Both');
    const imported = await post('/updates', importManifest(id, files));
    const update = imported.body.updates?.[0] as UpdateReply;
    // app.bin too short, data.bin never uploaded.
    await fetch(update.files[0]?.uploadUrl ?? '', { method: 'PUT', body: Buffer.from('wrong') });
    const refused = await call('POST', `${updatePath(id)}/commit`);
    expect(refused.body.code).toBe('FILES_NOT_VERIFIED');
    expect(refused.body.errors?.map((e) => e.path)).toEqual(['/files/0', '/files/1']);
  });
});

describe('a parent and its children', () => {
  const childFiles = [file('pre.sh', 'pre-install'), file('camera.bin', 'camera firmware')];
  const parentFiles = [file('vacuum.sh', 'vacuum install')];
  const child = uid('Camera', '1.2');
  const parent = uid('Vacuum', '5.0');

  it('imports them in one request, commits them together, and the parent names the child manifest by hash', async () => {
    const imported = await post('/updates', {
      manifests: [
        importManifest(parent, parentFiles, { references: [child] }),
        importManifest(child, childFiles, { isDeployable: false }),
      ],
    });
    expect(imported.status).toBe(201);
    const [p, c] = imported.body.updates ?? [];
    expect([p?.updateId, c?.updateId]).toEqual([parent, child]);
    expect(c?.referencedBy).toEqual(['contoso/vacuum/5.0']);
    await uploadAll(p as UpdateReply, parentFiles);
    await uploadAll(c as UpdateReply, childFiles);

    const committed = await call('POST', `${updatePath(parent)}/commit`);
    expect(committed.status).toBe(200);
    const [cp, cc] = committed.body.updates ?? [];
    expect([cp?.state, cc?.state]).toEqual(['ready', 'ready']);

    const parentManifest = JSON.parse(await readObject(cp?.updateManifest?.objectKey ?? '')) as {
      instructions: { steps: { type?: string; detachedManifestFileId?: string }[] };
      files: Record<string, { sizeInBytes: number; hashes: { sha256: string } }>;
    };
    const reference = parentManifest.instructions.steps.find((s) => s.type === 'reference');
    const childFile = parentManifest.files[reference?.detachedManifestFileId ?? ''];
    expect(childFile?.hashes.sha256).toBe(cc?.updateManifest?.sha256);
  });

  it('deleting the parents frees the child for deletion', async () => {
    const solo = uid('Solo', '1.0');
    const soloChild = uid('SoloChild', '1.0');
    await post('/updates', {
      manifests: [
        importManifest(solo, parentFiles, { references: [soloChild] }),
        importManifest(soloChild, childFiles),
      ],
    });
    expect((await call('DELETE', updatePath(soloChild))).status).toBe(409);
    expect((await call('DELETE', updatePath(solo))).status).toBe(204);
    expect((await call('GET', updatePath(soloChild))).body.referencedBy).toEqual([]);
    expect((await call('DELETE', updatePath(soloChild))).status).toBe(204);
  });

  it('refuses a reference to a child that is neither sent nor imported, naming it', async () => {
    const refused = await post(
      '/updates',
      importManifest(uid('Orphan'), parentFiles, { references: [uid('Nobody', '9.9')] }),
    );
    expect(refused.status).toBe(400);
    expect(refused.body.code).toBe('MANIFEST_INVALID');
    expect(refused.body.errors).toEqual([
      { path: '/instructions/steps/1/updateId', message: expect.stringContaining('Contoso/Nobody/9.9') },
    ]);
    expect((await call('GET', updatePath(uid('Orphan')))).status).toBe(404);
  });

  it('lets a new parent reference a child imported earlier, which then cannot be deleted', async () => {
    const parent2 = uid('Vacuum', '5.1');
    const imported = await post('/updates', importManifest(parent2, parentFiles, { references: [child] }));
    expect(imported.status).toBe(201);
    const childNow = await call('GET', updatePath(child));
    expect(childNow.body.referencedBy).toEqual(['contoso/vacuum/5.0', 'contoso/vacuum/5.1']);
    const refused = await call('DELETE', updatePath(child));
    expect(refused.status).toBe(409);
    expect(refused.body.code).toBe('UPDATE_IN_USE');
  });
});

describe('bad requests are 4xx, never 500', () => {
  it('400 for a body that is not JSON', async () => {
    const reply = await call('POST', '/updates', '{"updateId": ');
    expect(reply.status).toBe(400);
    expect(reply.body).toMatchObject({ code: 'BAD_JSON', errors: [{ path: '' }] });
  });

  it('400 for an empty body', async () => {
    expect((await call('POST', '/updates')).body.code).toBe('BAD_JSON');
  });

  it('413 for a body above the limit', async () => {
    const reply = await call('POST', '/updates', `{"pad":"${'x'.repeat(70 * 1024)}"}`);
    expect(reply.status).toBe(413);
    expect(reply.body.code).toBe('PAYLOAD_TOO_LARGE');
  });

  it('400 naming every faulty field of an invalid manifest', async () => {
    const manifest = importManifest(uid('Broken'), [file('a.sh', 'a')]);
    const broken = {
      ...manifest,
      updateId: { provider: 'Contoso', name: 'Bro ken', version: 'one' },
      files: [{ filename: '../a.sh' }],
    };
    const reply = await post('/updates', broken);
    expect(reply.status).toBe(400);
    expect(reply.body.code).toBe('MANIFEST_INVALID');
    const paths = reply.body.errors?.map((e) => e.path) ?? [];
    expect(paths).toEqual(
      expect.arrayContaining([
        '/updateId/name',
        '/updateId/version',
        '/files/0/filename',
        '/files/0/sizeInBytes',
      ]),
    );
  });

  it('answers 4xx (never 500) to every field of a manifest replaced by a value of the wrong kind', async () => {
    const valid = importManifest(uid('Fuzz'), [file('a.sh', 'a')]);
    const wrongValues: unknown[] = [null, 0, -1, 1.5, '', 'one', '../x', true, [], [null], {}, { a: 1 }];
    const statuses = new Set<number>();
    for (const path of leafPaths(valid)) {
      for (const wrong of wrongValues) {
        const reply = await post('/updates', setAt(valid, path, wrong));
        statuses.add(reply.status);
        if (reply.status >= 500)
          throw new Error(`${reply.status} for ${path.join('/')} = ${JSON.stringify(wrong)}`);
      }
    }
    expect(statuses.has(400)).toBe(true);
  });

  it('accepts a manifest with a leading UTF-8 BOM, also base64-encoded by API Gateway', async () => {
    const id = uid('Bom');
    const body = Buffer.concat([
      Buffer.from([0xef, 0xbb, 0xbf]),
      Buffer.from(JSON.stringify(importManifest(id, [file('a.sh', 'a')]))),
    ]);
    const reply = await call('POST', '/updates', body, { 'content-type': 'application/octet-stream' });
    expect(reply.status).toBe(201);
  });

  it('404 for an unknown update and an unknown route', async () => {
    expect((await call('GET', updatePath(uid('Nothing')))).body.code).toBe('UPDATE_NOT_FOUND');
    expect((await call('POST', `${updatePath(uid('Nothing'))}/commit`)).status).toBe(404);
    expect((await call('GET', '/nowhere')).body.code).toBe('ROUTE_NOT_FOUND');
  });
});

describe('delete', () => {
  const files = [file('one.sh', 'one')];

  it('removes the update and its objects', async () => {
    const id = uid('Doomed');
    await importAndUpload(importManifest(id, files), files);
    const committed = await call('POST', `${updatePath(id)}/commit`);
    const manifestKey = committed.body.updates?.[0]?.updateManifest?.objectKey ?? '';
    expect((await call('DELETE', updatePath(id))).status).toBe(204);
    expect((await call('GET', updatePath(id))).status).toBe(404);
    for (const k of [manifestKey, 'updates/contoso/doomed/1.0/files/one.sh']) {
      await expect(
        s3.client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: k })),
      ).rejects.toMatchObject({
        name: 'NotFound',
      });
    }
    expect((await call('DELETE', updatePath(id))).status).toBe(404);
  });

  it('is refused (409) while a deployment uses the update', async () => {
    const id = uid('InUse');
    await importAndUpload(importManifest(id, files), files);
    await call('POST', `${updatePath(id)}/commit`);
    expect((await store.acquireForDeployment(id)).ok).toBe(true);
    const refused = await call('DELETE', updatePath(id));
    expect(refused.status).toBe(409);
    expect(refused.body).toMatchObject({
      code: 'UPDATE_IN_USE',
      message: expect.stringContaining('1 active deployment'),
    });
    expect((await call('GET', updatePath(id))).body.state).toBe('ready');
  });
});

describe('listing', () => {
  it('pages with nextToken until every update has been seen once', async () => {
    const all = new Set<string>();
    let url = '/updates?limit=3';
    for (let page = 0; page < 50; page++) {
      const reply = await call('GET', url);
      expect(reply.status).toBe(200);
      expect(reply.body.items?.length).toBeLessThanOrEqual(3);
      for (const item of reply.body.items ?? []) {
        const k = `${item.updateId.provider}/${item.updateId.name}/${item.updateId.version}`;
        expect(all.has(k)).toBe(false);
        all.add(k);
      }
      if (!reply.body.nextToken) break;
      url = `/updates?limit=3&nextToken=${encodeURIComponent(reply.body.nextToken)}`;
    }
    expect(all.has('Contoso/Toaster/1.0')).toBe(true);
    expect(all.size).toBeGreaterThan(6);
  });

  it('filters by state', async () => {
    const reply = await call('GET', '/updates?state=pending&limit=100');
    expect(reply.body.items?.length).toBeGreaterThan(0);
    expect(reply.body.items?.every((i) => i.state === 'pending')).toBe(true);
  });

  it.each([
    ['/updates?limit=0', '/limit'],
    ['/updates?limit=abc', '/limit'],
    ['/updates?state=gone', '/state'],
    ['/updates?nextToken=forged', '/nextToken'],
  ])('400 for %s, naming %s', async (url, path) => {
    const reply = await call('GET', url);
    expect(reply.status).toBe(400);
    expect(reply.body.errors?.[0]?.path).toBe(path);
  });
});

describe('outcomes and failures', () => {
  it('counts imports, commits and refusals', () => {
    expect(observability.counts.get('UpdateImported')).toBeGreaterThan(0);
    expect(observability.counts.get('UpdateCommitted')).toBeGreaterThan(0);
    expect(observability.counts.get('CommitRejected')).toBeGreaterThan(0);
  });

  it('answers 500 without internals when DynamoDB fails (throttled)', async () => {
    const mock = mockClient(DynamoDBDocumentClient);
    mock
      .onAnyCommand()
      .rejects(new ProvisionedThroughputExceededException({ message: 'slow down', $metadata: {} }));
    try {
      const reply = await call('GET', updatePath(uid('Toaster')));
      expect(reply.status).toBe(500);
      expect(reply.body).toEqual({ code: 'INTERNAL', message: expect.not.stringContaining('slow down') });
    } finally {
      mock.restore();
    }
  });
});

/** Paths of every member of a JSON value, containers included. */
function leafPaths(value: unknown, base: (string | number)[] = []): (string | number)[][] {
  if (typeof value !== 'object' || value === null) return [base];
  const entries: [string | number, unknown][] = Array.isArray(value)
    ? value.map((v, i) => [i, v])
    : Object.entries(value as Record<string, unknown>);
  return [base, ...entries.flatMap(([k, v]) => leafPaths(v, [...base, k]))].filter((p) => p.length > 0);
}

/** A deep copy of `value` with the member at `path` replaced. */
function setAt(value: unknown, path: readonly (string | number)[], replacement: unknown): unknown {
  const copy = structuredClone(value) as Record<string | number, unknown>;
  let target = copy;
  for (const segment of path.slice(0, -1)) target = target[segment] as Record<string | number, unknown>;
  target[path.at(-1) as string | number] = replacement;
  return copy;
}
