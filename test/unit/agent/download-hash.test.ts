import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { alignedBuffers } from '../../../agent/direct-io.ts';
import { type DownloadHash, type HashPrefix, startDownloadHash } from '../../../agent/download-hash.ts';

const batchBytes = 64 * 1024;
const sha = (...parts: Buffer[]): string => {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part);
  return hash.digest('base64');
};

let dir: string;
const started: DownloadHash[] = [];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'download-hash-'));
});
afterEach(async () => {
  await Promise.all(started.splice(0).map((hash) => hash.dispose()));
  await rm(dir, { recursive: true, force: true });
});

async function start(onThread: boolean, prefix?: HashPrefix) {
  const batches = alignedBuffers(3, batchBytes, onThread);
  const hash = await startDownloadHash({
    batches: batches.buffers,
    memory: batches.shared,
    batchBytes,
    prefix,
  });
  started.push(hash);
  return { hash, buffers: batches.buffers };
}

/**
 * Plays the receiver: fills `pieces` in turn, each in several published steps, reusing a batch only
 * once its previous use is hashed; returns every byte it filled.
 */
async function receive(hash: DownloadHash, buffers: Buffer[], pieces: number[]): Promise<Buffer[]> {
  const sent: Buffer[] = [];
  for (const [seq, length] of pieces.entries()) {
    await hash.hashed(seq - buffers.length);
    const batch = buffers[seq % buffers.length] as Buffer;
    hash.open(seq);
    const bytes = randomBytes(length);
    bytes.copy(batch);
    for (let filled = 0; filled < length; ) {
      filled = Math.min(length, filled + 20_000);
      hash.publish(filled);
    }
    hash.close(length);
    sent.push(bytes);
  }
  return sent;
}

describe.each([
  { where: 'on a thread of its own', onThread: true },
  { where: 'on the receiving thread', onThread: false },
])('the download hash, $where', ({ onThread }) => {
  it('hashes every byte closed, batch after batch, batches reused in turn', async () => {
    const { hash, buffers } = await start(onThread);
    expect(hash.onThread).toBe(onThread);
    // Ten uses of three batches: full, short and empty ones.
    const sent = await receive(hash, buffers, [
      batchBytes,
      1,
      batchBytes,
      40_000,
      0,
      batchBytes,
      7,
      65_000,
      3,
      9,
    ]);
    await hash.hashed(9);
    expect(hash.isHashed(9)).toBe(true);
    expect(await hash.digest()).toBe(sha(...sent));
  });

  it('starts from the prefix file a resumed download left', async () => {
    const prefix = randomBytes(3 * 1024 * 1024 + 5);
    await writeFile(join(dir, 'file.part'), prefix);
    const { hash, buffers } = await start(onThread, { path: join(dir, 'file.part'), bytes: prefix.length });
    const sent = await receive(hash, buffers, [batchBytes, 1234]);
    expect(await hash.digest()).toBe(sha(prefix, ...sent));
  });

  it('ignores a seq opened but never closed (an attempt cut before its first byte)', async () => {
    const { hash, buffers } = await start(onThread);
    const sent = await receive(hash, buffers, [batchBytes, 10]);
    hash.open(2);
    expect(await hash.digest()).toBe(sha(...sent));
  });
});

describe('the download hash on a thread of its own', () => {
  it('falls back to the receiving thread when the thread cannot hash the prefix file', async () => {
    const onDisk = randomBytes(1000);
    await writeFile(join(dir, 'short.part'), onDisk);
    // The partial file is shorter than the caller believes: the thread fails before any batch.
    const { hash, buffers } = await start(true, { path: join(dir, 'short.part'), bytes: 5000 });
    expect(hash.onThread).toBe(false);
    const sent = await receive(hash, buffers, [batchBytes, 10]);
    // What is on disk is hashed (a mismatch, later, restarts the download from zero).
    expect(await hash.digest()).toBe(sha(onDisk, ...sent));
  });

  it('hashes only the declared prefix of a longer partial file', async () => {
    const onDisk = randomBytes(3000);
    await writeFile(join(dir, 'long.part'), onDisk);
    const { hash, buffers } = await start(true, { path: join(dir, 'long.part'), bytes: 2000 });
    const sent = await receive(hash, buffers, [10]);
    expect(await hash.digest()).toBe(sha(onDisk.subarray(0, 2000), ...sent));
  });

  it('is released while it waits for bytes, at once and more than once', async () => {
    const { hash, buffers } = await start(true);
    await receive(hash, buffers, [batchBytes]);
    hash.open(1);
    const before = Date.now();
    await hash.dispose();
    await hash.dispose();
    expect(Date.now() - before).toBeLessThan(1000);
  });

  it('keeps a batch from reuse until it is hashed', async () => {
    const { hash, buffers } = await start(true);
    hash.open(0);
    (buffers[0] as Buffer).fill(7);
    // Closed but not yet hashed by the time this thread looks (the thread is still starting).
    hash.close(batchBytes);
    expect(hash.isHashed(0)).toBe(false);
    await hash.hashed(0);
    expect(hash.isHashed(0)).toBe(true);
    expect(await hash.digest()).toBe(sha(Buffer.alloc(batchBytes, 7)));
  });
});
