import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  type DownloadRequest,
  downloadFile as downloadWithDefaults,
  type UrlSource,
} from '../../../agent/downloader.ts';
import { ok } from '../../../lambdas/domain/result.ts';
import { FileServer } from './file-server.ts';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('base64');
const noSleep = async (): Promise<void> => undefined;
const fixedUrl = (url: string): UrlSource => ({ url: async () => ok(url) });

let server: FileServer;
let dir: string;
/** Each case runs with the hash on the receiving thread and on a thread of its own. */
let hashOnThreadFromBytes: number | undefined;
const downloadFile = (request: DownloadRequest) =>
  downloadWithDefaults({ ...request, hashOnThreadFromBytes });

beforeAll(async () => {
  server = new FileServer();
  await server.start();
});
afterAll(() => server.stop());
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'agent-dl-'));
  server.requests.length = 0;
  server.validTokens.clear();
});
afterEach(() => rm(dir, { recursive: true, force: true }));

/** Downloads what the test server serves at `path`, expecting exactly `body`. */
function fetchServed(path: string, body: Buffer, destination: string) {
  return downloadFile({
    fileId: path.slice(1),
    expected: { sizeInBytes: body.length, sha256: sha(body) },
    destination,
    source: fixedUrl(server.url(path)),
    sleep: noSleep,
  });
}

describe.each([
  { where: 'on the receiving thread', from: Number.POSITIVE_INFINITY },
  { where: 'on a thread of its own', from: 0 },
])('downloadFile, hashing $where', ({ from }) => {
  beforeEach(() => {
    hashOnThreadFromBytes = from;
  });

  it('resumes with a Range request after the server cuts the connection halfway', async () => {
    const body = randomBytes(3 * 1024 * 1024);
    server.files.set('/half', { body, cutAfter: body.length / 2, cuts: 1 });
    const destination = join(dir, 'half.bin');
    const result = await fetchServed('/half', body, destination);
    expect(result).toEqual({ ok: true, value: { bytes: body.length, resumedFrom: 0, reused: false } });
    expect((await readFile(destination)).equals(body)).toBe(true);
    const ranges = server.requests.filter((r) => r.path === '/half').map((r) => r.range);
    expect(ranges[0]).toBeUndefined();
    expect(ranges[1]).toMatch(/^bytes=\d+-$/);
    expect(Number(ranges[1]?.slice(6, -1))).toBeGreaterThan(0);
    expect(existsSync(`${destination}.part`)).toBe(false);
  });

  it('continues a partial file left by an earlier run (hashing what is on disk first)', async () => {
    const body = randomBytes(100_000);
    server.files.set('/partial', { body });
    const destination = join(dir, 'p.bin');
    await writeFile(`${destination}.part`, body.subarray(0, 40_000));
    const result = await fetchServed('/partial', body, destination);
    expect(result.ok && result.value.resumedFrom).toBe(40_000);
    expect(server.requests.at(-1)?.range).toBe('bytes=40000-');
    expect((await readFile(destination)).equals(body)).toBe(true);
  });

  it('starts over once when a partial file left by an earlier run was torn (it was never fsynced)', async () => {
    const body = randomBytes(200_000);
    server.files.set('/torn-part', { body });
    const destination = join(dir, 'torn.bin');
    // What a power cut can leave of an unflushed file: the right length, zeros instead of the bytes.
    await writeFile(`${destination}.part`, Buffer.alloc(60_000));
    const result = await fetchServed('/torn-part', body, destination);
    expect(result).toEqual({ ok: true, value: { bytes: body.length, resumedFrom: 0, reused: false } });
    expect(server.requests.map((r) => r.range)).toEqual(['bytes=60000-', undefined]);
    expect((await readFile(destination)).equals(body)).toBe(true);
  });

  it('does not start over a second time: a file that never matches fails with HASH_MISMATCH', async () => {
    const body = randomBytes(50_000);
    server.files.set('/never', { body });
    const destination = join(dir, 'never.bin');
    await writeFile(`${destination}.part`, body.subarray(0, 20_000));
    const result = await downloadFile({
      fileId: 'f11',
      expected: { sizeInBytes: body.length, sha256: sha(randomBytes(10)) },
      destination,
      source: fixedUrl(server.url('/never')),
      sleep: noSleep,
    });
    expect(result).toMatchObject({ ok: false, error: { code: 'HASH_MISMATCH' } });
    expect(server.requests).toHaveLength(2);
    expect(existsSync(destination)).toBe(false);
  });

  it('downloads again a destination a crash left short or with other bytes, and never reuses it', async () => {
    const body = randomBytes(150_000);
    server.files.set('/torn-dest', { body });
    const destination = join(dir, 'dest.bin');
    for (const torn of [body.subarray(0, 70_000), Buffer.alloc(body.length)]) {
      await writeFile(destination, torn);
      const result = await fetchServed('/torn-dest', body, destination);
      expect(result).toEqual({ ok: true, value: { bytes: body.length, resumedFrom: 0, reused: false } });
      expect((await readFile(destination)).equals(body)).toBe(true);
    }
    expect(server.requests).toHaveLength(2);
  });

  it('writes a file of many batches in order, reporting progress after each write', async () => {
    // More than twice the batches in rotation (3 x 8 MiB on a hashing thread), so each is reused.
    const body = randomBytes(53 * 1024 * 1024 + 12_345);
    server.files.set('/many', { body });
    const destination = join(dir, 'many.bin');
    const progress: number[] = [];
    const result = await downloadFile({
      fileId: 'f13',
      expected: { sizeInBytes: body.length, sha256: sha(body) },
      destination,
      source: fixedUrl(server.url('/many')),
      sleep: noSleep,
      onProgress: (bytes) => progress.push(bytes),
    });
    expect(result.ok).toBe(true);
    expect((await readFile(destination)).equals(body)).toBe(true);
    expect(progress.length).toBeGreaterThanOrEqual(4);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
    expect(progress.at(-1)).toBe(body.length);
  });

  it('starts over when the server ignores the Range header', async () => {
    const body = randomBytes(50_000);
    server.files.set('/norange', { body, ignoreRange: true });
    const destination = join(dir, 'n.bin');
    await writeFile(`${destination}.part`, body.subarray(0, 10_000));
    const result = await fetchServed('/norange', body, destination);
    expect(result.ok).toBe(true);
    expect((await readFile(destination)).equals(body)).toBe(true);
    // One answer, taken from its first byte with a fresh hash: no second download was needed.
    expect(server.requests.map((r) => r.range)).toEqual(['bytes=10000-']);
  });

  it('refuses a file whose hash does not match and leaves nothing behind', async () => {
    const body = randomBytes(10_000);
    server.files.set('/bad', { body });
    const destination = join(dir, 'bad.bin');
    const result = await downloadFile({
      fileId: 'f4',
      expected: { sizeInBytes: body.length, sha256: sha(randomBytes(10)) },
      destination,
      source: fixedUrl(server.url('/bad')),
      sleep: noSleep,
    });
    expect(result).toMatchObject({ ok: false, error: { code: 'HASH_MISMATCH', retryable: false } });
    expect(existsSync(destination)).toBe(false);
    expect(existsSync(`${destination}.part`)).toBe(false);
  });

  it('stops a file longer than signed as soon as it passes the size', async () => {
    const body = randomBytes(20_000);
    server.files.set('/long', { body });
    const result = await downloadFile({
      fileId: 'f5',
      expected: { sizeInBytes: 1000, sha256: sha(body.subarray(0, 1000)) },
      destination: join(dir, 'long.bin'),
      source: fixedUrl(server.url('/long')),
      sleep: noSleep,
    });
    expect(result).toMatchObject({ ok: false, error: { code: 'SIZE_MISMATCH' } });
  });

  it('fails at once, not retryable, when the body ends as declared but shorter than signed', async () => {
    const body = randomBytes(20_000);
    server.files.set('/short', { body });
    const full = Buffer.concat([body, randomBytes(1000)]);
    const result = await downloadFile({
      fileId: 'f9',
      expected: { sizeInBytes: full.length, sha256: sha(full) },
      destination: join(dir, 'short.bin'),
      source: fixedUrl(server.url('/short')),
      sleep: noSleep,
    });
    expect(result).toMatchObject({ ok: false, error: { code: 'SIZE_MISMATCH', retryable: false } });
    expect(server.requests.filter((r) => r.path === '/short')).toHaveLength(1);
  });

  it('checks free disk space first and fails without fetching, not retryable', async () => {
    const body = randomBytes(5000);
    server.files.set('/big', { body });
    const result = await downloadFile({
      fileId: 'f6',
      expected: { sizeInBytes: body.length, sha256: sha(body) },
      destination: join(dir, 'big.bin'),
      source: fixedUrl(server.url('/big')),
      freeBytes: async () => 4000,
      reserveBytes: 0,
      sleep: noSleep,
    });
    expect(result).toMatchObject({ ok: false, error: { code: 'INSUFFICIENT_DISK_SPACE', retryable: false } });
    expect(server.requests).toHaveLength(0);
  });

  it('asks for a fresh URL when the old one is refused (expired)', async () => {
    const body = randomBytes(8000);
    server.files.set('/exp', { body });
    server.validTokens.add('fresh');
    const asked: boolean[] = [];
    const source: UrlSource = {
      url: async (_id, { refresh }) => {
        asked.push(refresh);
        return ok(server.url('/exp', refresh ? 'fresh' : 'stale'));
      },
    };
    const result = await downloadFile({
      fileId: 'f7',
      expected: { sizeInBytes: body.length, sha256: sha(body) },
      destination: join(dir, 'exp.bin'),
      source,
      sleep: noSleep,
    });
    expect(result.ok).toBe(true);
    expect(asked).toEqual([false, true]);
  });

  it('gives up after the retry budget with a code and no URL in the message', async () => {
    const result = await downloadFile({
      fileId: 'f8',
      expected: { sizeInBytes: 10, sha256: 'x' },
      destination: join(dir, 'none.bin'),
      source: fixedUrl('http://127.0.0.1:1/secret-path?X-Amz-Signature=abc'),
      retry: { attempts: 3, baseDelayMs: 1, maxDelayMs: 1 },
      sleep: noSleep,
    });
    expect(result).toMatchObject({ ok: false, error: { code: 'DOWNLOAD_FAILED' } });
    expect(JSON.stringify(result)).not.toContain('secret-path');
    expect(JSON.stringify(result)).not.toContain('X-Amz');
  });

  it('reuses a destination that already has the signed size and hash', async () => {
    const body = randomBytes(3000);
    const destination = join(dir, 'done.bin');
    await writeFile(destination, body);
    const result = await fetchServed('/nothing', body, destination);
    expect(result).toEqual({ ok: true, value: { bytes: 0, resumedFrom: 0, reused: true } });
    expect(server.requests).toHaveLength(0);
  });
});
