import { createHash } from 'node:crypto';
import { GetObjectCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ArtifactStore,
  fileObjectKey,
  makeArtifactStore,
} from '../../../lambdas/adapters/artifact-store.ts';
import { startTestS3, type TestS3 } from './support.ts';

let s3: TestS3;
let store: ArtifactStore;
const updateId = { provider: 'Contoso', name: 'Toaster', version: '1.0' };
const content = Buffer.from('firmware bytes, version 1.0\n');
const sha256 = createHash('sha256').update(content).digest('base64');

async function upload(key: string, body: Buffer): Promise<Response> {
  const url = await store.presignUpload(key, 60);
  return fetch(url, { method: 'PUT', body });
}

beforeAll(async () => {
  s3 = await startTestS3();
  store = makeArtifactStore({ s3: s3.client, bucket: s3.bucket });
});

afterAll(() => s3.stop());

describe('artifact store', () => {
  it('lays out objects per update under the canonical key', () => {
    expect(fileObjectKey(updateId, 'fw.bin')).toBe('updates/contoso/toaster/1.0/files/fw.bin');
  });

  it('hands out presigned PUT URLs the SigV4-checking server accepts, and refuses tampered ones', async () => {
    const key = fileObjectKey(updateId, 'signed.bin');
    expect((await upload(key, content)).status).toBe(200);
    const url = new URL(await store.presignUpload(key, 60));
    url.searchParams.set('X-Amz-Expires', '3600');
    expect((await fetch(url, { method: 'PUT', body: content })).status).toBe(403);
  });

  it('verifies an uploaded object by size and SHA-256', async () => {
    const key = fileObjectKey(updateId, 'good.bin');
    await upload(key, content);
    expect(await store.verifyObject(key, { sizeInBytes: content.length, sha256 })).toEqual({
      ok: true,
      value: undefined,
    });
  });

  it('reports a missing object', async () => {
    expect(
      await store.verifyObject(fileObjectKey(updateId, 'absent.bin'), { sizeInBytes: 1, sha256 }),
    ).toEqual({
      ok: false,
      error: { kind: 'missing' },
    });
  });

  it('reports a size mismatch with the actual size', async () => {
    const key = fileObjectKey(updateId, 'short.bin');
    await upload(key, content.subarray(0, 5));
    expect(await store.verifyObject(key, { sizeInBytes: content.length, sha256 })).toEqual({
      ok: false,
      error: { kind: 'size', actualSize: 5 },
    });
  });

  it('reports a hash mismatch with the actual hash', async () => {
    const key = fileObjectKey(updateId, 'tampered.bin');
    const tampered = Buffer.from(content);
    tampered[0] = 0x46;
    await upload(key, tampered);
    const actual = createHash('sha256').update(tampered).digest('base64');
    expect(await store.verifyObject(key, { sizeInBytes: content.length, sha256 })).toEqual({
      ok: false,
      error: { kind: 'hash', actualSha256: actual },
    });
  });

  it('hashes an object that arrives in many chunks', async () => {
    const big = Buffer.alloc(24 * 1024 * 1024, 7);
    const key = fileObjectKey(updateId, 'big.bin');
    await upload(key, big);
    const expected = { sizeInBytes: big.length, sha256: createHash('sha256').update(big).digest('base64') };
    expect((await store.verifyObject(key, expected)).ok).toBe(true);
  });

  it('writes the update manifest under a key that carries its hash', async () => {
    const body = '{"updateId":{"provider":"Contoso"}}';
    const written = await store.putUpdateManifest(updateId, body);
    const hex = createHash('sha256').update(body).digest('hex');
    expect(written.objectKey).toBe(`updates/contoso/toaster/1.0/updatemanifest-${hex.slice(0, 16)}.json`);
    expect(written).toMatchObject({
      sha256: createHash('sha256').update(body).digest('base64'),
      sizeInBytes: body.length,
    });
    const out = await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: written.objectKey }));
    expect(await out.Body?.transformToString()).toBe(body);
    expect(out.ContentType).toBe('application/json');
  });

  it('deletes objects, missing ones included', async () => {
    const key = fileObjectKey(updateId, 'doomed.bin');
    await upload(key, content);
    await store.deleteObjects([key, fileObjectKey(updateId, 'never-there.bin')]);
    await expect(
      s3.client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: key })),
    ).rejects.toMatchObject({
      name: 'NotFound',
    });
  });
});
