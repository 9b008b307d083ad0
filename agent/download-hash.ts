/**
 * The SHA-256 of a download as its batches fill: on the receiving thread for small files, on a
 * thread of its own for large ones.
 *
 * Why a thread: on the receiving thread, every byte costs the socket's copy into the batch and
 * then the hash, one after the other. Measured on the 2-core benchmark machine (ADR 0060), that
 * thread was 72 % SHA-256 and 24 % socket copy, and could not go beyond about 0.71 of the
 * machine's SHA-256 speed. With the hash on a second thread reading the same shared batches, the
 * copy of the next megabyte overlaps the hash of the last one.
 *
 * Protocol (both sides): a batch is used in turn by sequence numbers `seq` (batch `seq % count`).
 * The receiver opens a seq before filling it, publishes how far it is filled, and closes it with its
 * final length; it reuses the batch for `seq + count` only once `seq` is hashed (and written).
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Worker } from 'node:worker_threads';

/**
 * SHA-256 and size of a file (of its first `bytes` only, when given), streamed: memory stays
 * bounded whatever its size.
 */
export async function hashFile(
  path: string,
  into: Hash = createHash('sha256'),
  bytes?: number,
): Promise<{ size: number; hash: Hash }> {
  let size = 0;
  const range = bytes === undefined ? {} : { end: bytes - 1 };
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20, ...range })) {
    const bytes = chunk as Buffer;
    into.update(bytes);
    size += bytes.length;
  }
  return { size, hash: into };
}

export interface DownloadHash {
  /** True when the hashing runs on a thread of its own. */
  readonly onThread: boolean;
  /** The receiver starts filling `seq` (batch `seq % count`) from its first byte. */
  open(seq: number): void;
  /** The first `filled` bytes of the open batch are final. */
  publish(filled: number): void;
  /** The open batch is complete at `filled` bytes; nothing more comes for this seq. */
  close(filled: number): void;
  /** True once every byte of `seq` and before is hashed (always, below 0). */
  isHashed(seq: number): boolean;
  /** Resolves once `isHashed(seq)`; rejects when the hashing failed. */
  hashed(seq: number): Promise<void>;
  /** SHA-256 (base64) of every byte closed so far, and of the prefix it started from. Ends the hash. */
  digest(): Promise<string>;
  /** Releases the thread, if any. Safe to call more than once. */
  dispose(): Promise<void>;
}

/** The bytes the hash starts from: a partial file left by an earlier attempt or run. */
export interface HashPrefix {
  readonly path: string;
  readonly bytes: number;
}

/** Hashes on the receiving thread, each published piece as it arrives (still in the CPU's cache). */
class InThreadHash implements DownloadHash {
  readonly onThread = false;
  readonly #hash: Hash;
  readonly #batches: readonly Buffer[];
  #open = -1;
  #hashedTo = 0;

  constructor(batches: readonly Buffer[], hash: Hash) {
    this.#batches = batches;
    this.#hash = hash;
  }

  open(seq: number): void {
    this.#open = seq;
    this.#hashedTo = 0;
  }

  publish(filled: number): void {
    const batch = this.#batches[this.#open % this.#batches.length] as Buffer;
    this.#hash.update(batch.subarray(this.#hashedTo, filled));
    this.#hashedTo = filled;
  }

  close(filled: number): void {
    this.publish(filled);
  }

  isHashed(): boolean {
    return true;
  }

  async hashed(): Promise<void> {}

  async digest(): Promise<string> {
    return this.#hash.digest('base64');
  }

  async dispose(): Promise<void> {}
}

// Slots of the shared control array (Int32).
const OPEN = 0; // the seq being filled
const CLOSED = 1; // the highest seq closed
const HASHED = 2; // the highest seq hashed
const TICK = 3; // bumped on every change the hashing thread waits for
const FINISH = 4; // 1: no seq after CLOSED will come
const READY = 5; // 1: the digest is in the digest bytes; 2: the hashing failed
const STARTED = 6; // 1: the prefix is hashed, batches are followed from now on
const FILL = 7; // first of `count` slots: how far each batch is filled
/**
 * The hashing thread. Plain JavaScript evaluated in the worker (no loader: under tsx a worker
 * would otherwise load tsx too, about 30 MB). It hashes the prefix file first, then follows the
 * control slots; it blocks in `Atomics.wait` when it has caught up with the receiver.
 */
const hashingThreadSource = `
const { workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { openSync, readSync, closeSync } = require('node:fs');
const { memory, control, digest, count, bytes, prefix } = workerData;
const c = new Int32Array(control);
const hash = createHash('sha256');
try {
  if (prefix) {
    const fd = openSync(prefix.path, 'r');
    const piece = Buffer.allocUnsafe(1 << 20);
    try {
      for (let done = 0; done < prefix.bytes; ) {
        const n = readSync(fd, piece, 0, Math.min(piece.length, prefix.bytes - done), done);
        if (n === 0) throw new Error('the partial file is shorter than it was');
        hash.update(piece.subarray(0, n));
        done += n;
      }
    } finally {
      closeSync(fd);
    }
  }
  Atomics.store(c, ${STARTED}, 1);
  Atomics.notify(c, ${STARTED});
  const batches = [];
  for (let i = 0; i < count; i += 1) batches.push(Buffer.from(memory, i * bytes, bytes));
  let seq = 0;
  let hashedTo = 0;
  for (;;) {
    const tick = Atomics.load(c, ${TICK});
    // FINISH before CLOSED: the receiver closes its last seq before it sets FINISH, so a FINISH seen
    // here guarantees the CLOSED read next is final (read the other way, a stale CLOSED would end
    // the hash one batch early).
    const finish = Atomics.load(c, ${FINISH}) === 1;
    const closed = Atomics.load(c, ${CLOSED});
    if (finish && seq > closed) break;
    // A closed seq counts as opened, whatever OPEN says.
    if (seq <= Math.max(Atomics.load(c, ${OPEN}), closed)) {
      const filled = Atomics.load(c, ${FILL} + (seq % count));
      if (filled > hashedTo) {
        hash.update(batches[seq % count].subarray(hashedTo, filled));
        hashedTo = filled;
        continue;
      }
      if (seq <= closed) {
        Atomics.store(c, ${HASHED}, seq);
        Atomics.notify(c, ${HASHED});
        seq += 1;
        hashedTo = 0;
        continue;
      }
    }
    Atomics.wait(c, ${TICK}, tick);
  }
  Buffer.from(digest).set(hash.digest());
  Atomics.store(c, ${READY}, 1);
} catch {
  Atomics.store(c, ${READY}, 2);
}
Atomics.notify(c, ${READY});
Atomics.notify(c, ${STARTED});
`;

/** The receiver tells the hashing thread how far a batch is filled at most this often (bytes). */
const publishGrain = 1 << 20;

type WaitAsync = (
  array: Int32Array,
  index: number,
  value: number,
  timeoutMs: number,
) => { readonly async: boolean; readonly value: Promise<string> | string };
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

/** Hashes on a worker thread that reads the receiver's shared batches. */
class ThreadHash implements DownloadHash {
  readonly onThread = true;
  readonly #control = new Int32Array(new SharedArrayBuffer(4 * FILL + 4 * 64));
  readonly #digest = new SharedArrayBuffer(32);
  readonly #count: number;
  readonly #worker: Worker;
  /** Rejects when the thread dies before its digest: every wait races it. */
  readonly #died: Promise<never>;
  #open = -1;
  #published = 0;
  #disposed = false;
  #dead = false;

  constructor(memory: SharedArrayBuffer, count: number, bytes: number, prefix: HashPrefix | undefined) {
    if (count > 64) throw new Error('at most 64 batches');
    this.#count = count;
    Atomics.store(this.#control, OPEN, -1);
    Atomics.store(this.#control, CLOSED, -1);
    Atomics.store(this.#control, HASHED, -1);
    this.#worker = new Worker(hashingThreadSource, {
      eval: true,
      execArgv: [],
      workerData: { memory, control: this.#control.buffer, digest: this.#digest, count, bytes, prefix },
    });
    this.#died = new Promise<never>((_, reject) => {
      this.#worker.once('error', reject);
      this.#worker.once('exit', () => reject(new Error('the hashing thread stopped')));
    });
    this.#died.catch(() => {
      this.#dead = true;
    });
  }

  #tick(): void {
    Atomics.add(this.#control, TICK, 1);
    Atomics.notify(this.#control, TICK);
  }

  #fill(filled: number): void {
    this.#published = filled;
    Atomics.store(this.#control, FILL + (this.#open % this.#count), filled);
  }

  open(seq: number): void {
    this.#open = seq;
    this.#fill(0);
    Atomics.store(this.#control, OPEN, seq);
    this.#tick();
  }

  publish(filled: number): void {
    if (filled - this.#published < publishGrain) return;
    this.#fill(filled);
    this.#tick();
  }

  close(filled: number): void {
    this.#fill(filled);
    Atomics.store(this.#control, CLOSED, this.#open);
    this.#tick();
  }

  isHashed(seq: number): boolean {
    return Atomics.load(this.#control, HASHED) >= seq;
  }

  async hashed(seq: number): Promise<void> {
    // Already hashed: so even after the thread has ended (digest taken), this resolves.
    if (this.isHashed(seq)) return;
    // The shared state decides, not which of the two settled first: a thread may end right after
    // its last notify.
    await Promise.race([this.#until(() => this.isHashed(seq), HASHED), this.#died]).catch(() => undefined);
    if (!this.isHashed(seq)) throw new Error('the hashing thread stopped');
  }

  /** Resolves true once the thread has hashed the prefix and follows the batches; false if it failed. */
  async started(): Promise<boolean> {
    const settled = () =>
      Atomics.load(this.#control, STARTED) !== 0 || Atomics.load(this.#control, READY) !== 0;
    await Promise.race([this.#until(settled, STARTED), this.#died]).catch(() => undefined);
    return Atomics.load(this.#control, STARTED) === 1 && Atomics.load(this.#control, READY) === 0;
  }

  async digest(): Promise<string> {
    Atomics.store(this.#control, FINISH, 1);
    this.#tick();
    // The thread ends right after it notifies READY: its exit may be seen first; READY decides.
    await Promise.race([
      this.#until(() => Atomics.load(this.#control, READY) !== 0, READY),
      this.#died,
    ]).catch(() => undefined);
    if (Atomics.load(this.#control, READY) !== 1) throw new Error('the hashing thread failed');
    return Buffer.from(this.#digest).toString('base64');
  }

  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    // Wakes the thread if it waits, so it ends at once rather than when terminated mid-wait.
    Atomics.store(this.#control, FINISH, 1);
    this.#tick();
    await this.#worker.terminate();
  }

  /**
   * Waits without blocking the event loop until `done()` or the thread's death (the caller checks
   * which), woken by a notify on `slot`. Each wait is bounded, so a death is noticed.
   */
  async #until(done: () => boolean, slot: number): Promise<void> {
    while (!done() && !this.#dead) {
      const seen = Atomics.load(this.#control, slot);
      if (done()) return;
      const wait = waitAsync(this.#control, slot, seen, 1000);
      if (wait.async) await wait.value;
    }
  }
}

export interface DownloadHashOptions {
  /** The batches the receiver fills, in turn; must be views of `memory` when it is shared. */
  readonly batches: readonly Buffer[];
  /** The shared memory behind `batches`, each `batchBytes` long; undefined: hash on this thread. */
  readonly memory: SharedArrayBuffer | undefined;
  readonly batchBytes: number;
  readonly prefix: HashPrefix | undefined;
}

/**
 * A hash on its own thread when the batches are shared memory, else (or when no thread can be
 * started) on this one.
 */
export async function startDownloadHash(options: DownloadHashOptions): Promise<DownloadHash> {
  const { batches, memory, batchBytes, prefix } = options;
  if (memory !== undefined) {
    const thread = await startThread(memory, batches.length, batchBytes, prefix);
    if (thread !== undefined) return thread;
  }
  const hash = createHash('sha256');
  if (prefix !== undefined && prefix.bytes > 0) await hashFile(prefix.path, hash, prefix.bytes);
  return new InThreadHash(batches, hash);
}

/**
 * A hashing thread, or undefined when none could be had: one that cannot be created (a resource
 * limit), or, with a prefix, one that fails before it has hashed it (no memory for its isolate, a
 * prefix it cannot read). Hashing on the receiving thread is then slower, not wrong. With a prefix
 * the thread is waited for, so no request idles while it reads a long partial file; without one it
 * starts while the request goes out, and a thread that fails later fails the attempt like any
 * death (the downloader restarts the file hashed on the receiving thread).
 */
async function startThread(
  memory: SharedArrayBuffer,
  count: number,
  batchBytes: number,
  prefix: HashPrefix | undefined,
): Promise<ThreadHash | undefined> {
  let thread: ThreadHash;
  try {
    thread = new ThreadHash(memory, count, batchBytes, prefix);
  } catch {
    return undefined;
  }
  if (prefix === undefined || (await thread.started())) return thread;
  await thread.dispose();
  return undefined;
}
