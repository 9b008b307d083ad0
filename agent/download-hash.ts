/**
 * The SHA-256 of a download as its batches fill: on the receiving thread for small files, on a
 * thread of its own for large ones.
 *
 * Why a thread: on the receiving thread, every byte costs the socket's copy into the batch and
 * then the hash, one after the other. Measured on the 2-core benchmark machine (ADR 0060), that
 * thread was 72 % SHA-256 and 24 % socket copy, and could not go beyond about 0.71 of the
 * machine's SHA-256 speed. With the hash on a second thread reading the same shared batches, the
 * copy of the next batch overlaps the hash of the last one.
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

/**
 * The hashing thread. Plain JavaScript evaluated in the worker (no loader: under tsx a worker
 * would otherwise load tsx too, about 30 MB). It hashes the prefix file first and says so; then
 * it hashes each batch posted to it, in the order posted, and answers with its seq; asked to
 * finish, it answers with the digest and ends. Any failure throws, which ends the thread.
 */
const hashingThreadSource = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { openSync, readSync, closeSync } = require('node:fs');
const { memory, count, bytes, prefix } = workerData;
const hash = createHash('sha256');
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
const batches = [];
for (let i = 0; i < count; i += 1) batches.push(Buffer.from(memory, i * bytes, bytes));
parentPort.postMessage({ started: true });
parentPort.on('message', (message) => {
  if (message.finish) {
    parentPort.postMessage({ digest: hash.digest('base64') });
    parentPort.close();
    return;
  }
  hash.update(batches[message.seq % count].subarray(0, message.bytes));
  parentPort.postMessage({ hashed: message.seq });
});
`;

/** What the hashing thread answers. */
interface ThreadAnswer {
  readonly started?: true;
  readonly hashed?: number;
  readonly digest?: string;
}

/**
 * Hashes on a worker thread that reads the receiver's shared batches: each batch is posted to it
 * when it closes. Following the fill within a batch (shared counters, which sessions 10 and 11
 * used) measured no faster with 8 MiB batches (ADR 0050), and this way the thread's whole state is
 * in its messages, which arrive in order.
 */
class ThreadHash implements DownloadHash {
  readonly onThread = true;
  readonly #worker: Worker;
  /** Rejects when the thread ends before its digest: every wait races it. */
  readonly #died: Promise<never>;
  #open = -1;
  #hashed = -1;
  #started = false;
  #digest: string | undefined;
  /** Resolves at the thread's next answer. */
  #answered!: Promise<void>;
  #wake!: () => void;
  #disposed = false;

  constructor(memory: SharedArrayBuffer, count: number, bytes: number, prefix: HashPrefix | undefined) {
    this.#expectAnswer();
    this.#worker = new Worker(hashingThreadSource, {
      eval: true,
      execArgv: [],
      workerData: { memory, count, bytes, prefix },
    });
    this.#worker.on('message', (answer: ThreadAnswer) => this.#onAnswer(answer));
    this.#died = new Promise<never>((_, reject) => {
      this.#worker.once('error', reject);
      this.#worker.once('exit', () => reject(new Error('the hashing thread stopped')));
    });
    this.#died.catch(() => undefined);
  }

  #expectAnswer(): void {
    this.#answered = new Promise((resolve) => {
      this.#wake = resolve;
    });
  }

  #onAnswer(answer: ThreadAnswer): void {
    if (answer.started) this.#started = true;
    if (answer.hashed !== undefined) this.#hashed = answer.hashed;
    if (answer.digest !== undefined) this.#digest = answer.digest;
    const wake = this.#wake;
    this.#expectAnswer();
    wake();
  }

  open(seq: number): void {
    this.#open = seq;
  }

  /** The thread hashes a batch when it closes. */
  publish(): void {}

  close(filled: number): void {
    this.#worker.postMessage({ seq: this.#open, bytes: filled });
  }

  isHashed(seq: number): boolean {
    return this.#hashed >= seq;
  }

  async hashed(seq: number): Promise<void> {
    if (!(await this.#until(() => this.isHashed(seq)))) throw new Error('the hashing thread stopped');
  }

  /** Resolves true once the thread has hashed the prefix and takes batches; false if it failed. */
  started(): Promise<boolean> {
    return this.#until(() => this.#started);
  }

  async digest(): Promise<string> {
    if (this.#digest === undefined) this.#worker.postMessage({ finish: true });
    if (!(await this.#until(() => this.#digest !== undefined))) throw new Error('the hashing thread failed');
    return this.#digest as string;
  }

  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    await this.#worker.terminate();
  }

  /**
   * Waits for the thread's answers until `done()`; false if the thread ended first. Node delivers
   * a thread's last messages before its exit, so state read after a death is final.
   */
  async #until(done: () => boolean): Promise<boolean> {
    while (!done()) {
      const died = await Promise.race([this.#answered.then(() => false), this.#died.catch(() => true)]);
      if (died) return done();
    }
    return true;
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
