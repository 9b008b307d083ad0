/**
 * The downloader's hashing thread when things go wrong: a thread that dies mid-download, one that
 * cannot start, and every way a download ends leaving no thread behind. Worker is the real
 * node:worker_threads class, wrapped only to keep hold of each instance (failure injection).
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Worker as RealWorker, WorkerOptions } from 'node:worker_threads';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { type DownloadRequest, downloadFile } from '../../../agent/downloader.ts';
import { ok } from '../../../lambdas/domain/result.ts';
import { FileServer } from './file-server.ts';

const threads = vi.hoisted(() => ({
  started: [] as { worker: RealWorker; exited: boolean }[],
  /** Makes the next Worker constructor throw, as under a thread limit. */
  refuse: false,
}));

vi.mock('node:worker_threads', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:worker_threads')>();
  class RecordedWorker extends real.Worker {
    constructor(source: string | URL, options?: WorkerOptions) {
      if (threads.refuse) throw new Error('ERR_WORKER_INIT_FAILED (injected)');
      super(source, options);
      const entry = { worker: this as RealWorker, exited: false };
      this.once('exit', () => {
        entry.exited = true;
      });
      threads.started.push(entry);
    }
  }
  return { ...real, Worker: RecordedWorker };
});

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('base64');
const body = randomBytes(40 * 1024 * 1024 + 777);
let server: FileServer;
let dir: string;

beforeAll(async () => {
  server = new FileServer();
  await server.start();
  server.files.set('/big', { body });
});
afterAll(() => server.stop());
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'agent-dl-thread-'));
  server.requests.length = 0;
  threads.started.length = 0;
  threads.refuse = false;
});
afterEach(() => rm(dir, { recursive: true, force: true }));

function fetchBig(overrides: Partial<DownloadRequest> = {}) {
  return downloadFile({
    fileId: 'big',
    expected: { sizeInBytes: body.length, sha256: sha(body) },
    destination: join(dir, 'big.bin'),
    source: { url: async () => ok(server.url('/big')) },
    sleep: async () => undefined,
    hashOnThreadFromBytes: 0,
    ...overrides,
  });
}

const allExited = () => threads.started.every((thread) => thread.exited);

describe.runIf(availableParallelism() >= 2)('the downloader with a hashing thread', () => {
  it('hashes a large file on a thread of its own, and leaves no thread running', async () => {
    const result = await fetchBig();
    expect(result.ok).toBe(true);
    expect(threads.started).toHaveLength(1);
    expect(allExited()).toBe(true);
  });

  it('hashes on the receiving thread a file below the size that earns a thread', async () => {
    expect((await fetchBig({ hashOnThreadFromBytes: body.length + 1 })).ok).toBe(true);
    expect(threads.started).toHaveLength(0);
    const atThreshold = await fetchBig({
      hashOnThreadFromBytes: body.length,
      destination: join(dir, 'b.bin'),
    });
    expect(atThreshold.ok).toBe(true);
    expect(threads.started).toHaveLength(1);
  });

  it('still delivers a verified file when the thread dies mid-download: from zero, hashed here', async () => {
    let killed = false;
    const result = await fetchBig({
      onProgress: () => {
        if (killed) return;
        killed = true;
        void threads.started[0]?.worker.terminate();
      },
    });
    expect(result).toEqual({ ok: true, value: { bytes: body.length, resumedFrom: 0, reused: false } });
    expect((await readFile(join(dir, 'big.bin'))).equals(body)).toBe(true);
    // The attempt the death cut, then the whole file again, with no new thread.
    expect(server.requests.map((r) => r.range)).toEqual([undefined, undefined]);
    expect(threads.started).toHaveLength(1);
    expect(allExited()).toBe(true);
  });

  it('hashes on the receiving thread when no thread can be started', async () => {
    threads.refuse = true;
    const result = await fetchBig();
    expect(result.ok).toBe(true);
    expect(threads.started).toHaveLength(0);
    expect(server.requests).toHaveLength(1);
  });

  it('leaves no thread running when the download fails or is canceled', async () => {
    const missing = await fetchBig({ source: { url: async () => ok(server.url('/missing')) } });
    expect(missing).toMatchObject({ ok: false, error: { code: 'DOWNLOAD_FAILED' } });
    const abort = new AbortController();
    const canceled = await fetchBig({ signal: abort.signal, onProgress: () => abort.abort() });
    expect(canceled).toMatchObject({ ok: false, error: { code: 'CANCELED' } });
    expect(threads.started).toHaveLength(2);
    expect(allExited()).toBe(true);
  });
});
