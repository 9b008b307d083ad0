import { constants } from 'node:fs';
import { open, rename, stat, statfs, unlink } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { dirname } from 'node:path';
import { err, ok, type Result } from '../lambdas/domain/result.ts';
import { type AgentError, agentError } from './codes.ts';
import {
  type AlignedBuffers,
  alignedBuffers,
  closeDirect,
  directAlignment,
  openDirect,
  type WritableFile,
  writeAt,
} from './direct-io.ts';
import { type DownloadHash, type HashPrefix, hashFile, startDownloadHash } from './download-hash.ts';
import { type BodyEnd, type BodyTarget, type HttpResponse, httpGet, IdleTimeoutError } from './http-get.ts';

/** Size and SHA-256 (base64, ADU's format) a file must have: from the signed claims, never from a hint. */
export interface ExpectedFile {
  readonly sizeInBytes: number;
  readonly sha256: string;
}

/**
 * Where a file's URL comes from: the download authorization. `refresh` asks for a new one (the
 * previous one was refused, so it probably expired).
 */
export interface UrlSource {
  url(fileId: string, options: { readonly refresh: boolean }): Promise<Result<string, AgentError>>;
}

export interface RetryPolicy {
  /** Failed attempts in a row (without progress) before giving up. */
  readonly attempts: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
}

export const defaultRetry: RetryPolicy = { attempts: 6, baseDelayMs: 500, maxDelayMs: 30_000 };

export interface DownloadRequest {
  readonly fileId: string;
  readonly expected: ExpectedFile;
  /** Absolute path, already checked to be inside the work directory. */
  readonly destination: string;
  readonly source: UrlSource;
  readonly retry?: RetryPolicy;
  /** Abort an attempt that receives nothing for this long. @default 30000 */
  readonly idleTimeoutMs?: number;
  /** Free space to leave on the disk besides the file. @default 1 MiB */
  readonly reserveBytes?: number;
  readonly signal?: AbortSignal;
  readonly onProgress?: (bytes: number, total: number) => void;
  /**
   * Files of at least this many bytes are hashed on a thread of their own, where the machine has
   * more than one CPU (download-hash.ts). @default 256 MiB: below that, starting the thread costs
   * about what it saves.
   */
  readonly hashOnThreadFromBytes?: number;
  /** Free bytes on the filesystem holding `dir`. @default statfs */
  readonly freeBytes?: (dir: string) => Promise<number>;
  readonly sleep?: (ms: number) => Promise<void>;
  readonly random?: () => number;
}

export interface Downloaded {
  readonly bytes: number;
  /** Bytes that were already on disk from an interrupted download. */
  readonly resumedFrom: number;
  /** The destination was already there with the right size and hash: nothing was fetched. */
  readonly reused: boolean;
}

type AttemptOutcome =
  | { readonly kind: 'complete' }
  | { readonly kind: 'refresh' }
  | { readonly kind: 'restart'; readonly why: string }
  | { readonly kind: 'retry'; readonly why: string }
  | { readonly kind: 'fatal'; readonly error: AgentError };

/** The bytes written so far and their running hash: always exactly the partial file's content. */
interface PartialState {
  readonly file: WritableFile;
  /** The batches the body is received into, one download long (download-hash.ts's protocol). */
  readonly batches: AlignedBuffers;
  readonly batchBytes: number;
  hash: DownloadHash;
  /** The sequence number the next batch is filled under. */
  seq: number;
  offset: number;
}

const sleepFor = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export async function freeBytesOnDisk(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
}

/** True when `path` exists with exactly the expected size and hash. */
export async function fileMatches(path: string, expected: ExpectedFile): Promise<boolean> {
  const info = await stat(path).catch(() => undefined);
  if (!info?.isFile() || info.size !== expected.sizeInBytes) return false;
  const { hash } = await hashFile(path);
  return hash.digest('base64') === expected.sha256;
}

/**
 * Downloads one file to `destination`, verified: streams into `<destination>.part`, hashing as it
 * writes; resumes an interrupted download with an HTTP Range request (also across restarts: the
 * partial file is hashed again first); retries with exponential backoff and jitter; asks for a new
 * URL when the old one is refused (expired); checks free disk space before fetching anything. The
 * file reaches `destination` only when its size and SHA-256 match. Errors never carry the URL.
 *
 * Nothing is fsynced (ADR 0050, "Durability of downloads"): a flush of the whole file would hold
 * the download to the disk's write speed. Durability comes from verification instead: every use
 * of a downloaded file goes through this function first, which reuses a destination only after
 * hashing it again, so bytes a power cut lost or tore are noticed and fetched again, never run.
 */
export async function downloadFile(request: DownloadRequest): Promise<Result<Downloaded, AgentError>> {
  const { destination, expected } = request;
  if (await fileMatches(destination, expected)) return ok({ bytes: 0, resumedFrom: 0, reused: true });
  const partialPath = `${destination}.part`;
  const { file, offset: resumedFrom } = await openPartial(partialPath, expected.sizeInBytes);
  let state: PartialState | undefined;
  let verified: Result<void, AgentError>;
  try {
    state = await startPartial(file, partialPath, resumedFrom, onThread(request));
    const space = await checkDiskSpace(request, expected.sizeInBytes - state.offset);
    if (!space.ok) return space;
    const fetched = await fetchUntilComplete(request, state);
    if (!fetched.ok) return fetched;
    verified = await verifyDigest(state, partialPath, expected);
  } finally {
    // The thread first: a failing close must not leave it running (it would keep the process
    // alive), nor a failing release leave the files open.
    await (state?.hash.dispose() ?? Promise.resolve()).finally(() =>
      closeDirect(file).finally(() => file.handle.close()),
    );
  }
  if (!verified.ok) {
    await unlink(partialPath).catch(() => undefined);
    // A partial file from an earlier run may hold bytes a crash tore (it was never fsynced): the
    // mismatch may be its fault, so fetch the whole file once more. That call starts from zero.
    if (resumedFrom > 0) return downloadFile(request);
    return verified;
  }
  await rename(partialPath, destination);
  return ok({ bytes: expected.sizeInBytes, resumedFrom, reused: false });
}

/**
 * The batches a download is received into. With a hashing thread, three of 8 MiB: what each
 * batch costs (a direct write, a thread-pool round trip, the hashing thread's wake-up) is paid a
 * quarter as often as with 2 MiB, and in interleaved bench runs 3–4 batches of 4–12 MiB all beat
 * eight of 2 MiB by about a tenth, 3 × 8 MiB by the most (ADR 0060). Hashed on the receiving thread, three
 * of 4 MiB: two writes in flight while one fills, one thread-pool round trip per 4 MiB (the bench
 * measured 4 MiB a little faster than 1 and 2, and 8 MiB no faster).
 */
const batchShapes = {
  onThread: { count: 3, bytes: 8 << 20 },
  inThread: { count: 3, bytes: 4 << 20 },
} as const;

function onThread(request: DownloadRequest): boolean {
  // On one CPU a second thread only adds switching: the copy and the hash cannot overlap.
  if (availableParallelism() < 2) return false;
  return request.expected.sizeInBytes >= (request.hashOnThreadFromBytes ?? 256 << 20);
}

/** Opens the partial file; `offset` is where the download resumes (0 for a new one). */
async function openPartial(path: string, size: number): Promise<{ file: WritableFile; offset: number }> {
  // Not append mode: batches are written at their own positions, several at a time.
  const handle = await open(path, constants.O_RDWR | constants.O_CREAT, 0o600);
  try {
    const info = await handle.stat();
    // A partial file longer than the file itself is not a prefix of it: start again.
    if (info.size > size) await handle.truncate(0);
    return { file: { handle, direct: await openDirect(path) }, offset: info.size > size ? 0 : info.size };
  } catch (e) {
    await handle.close();
    throw e;
  }
}

/** The batches and the hash of the bytes already in the partial file. */
async function startPartial(
  file: WritableFile,
  path: string,
  offset: number,
  hashOnThread: boolean,
): Promise<PartialState> {
  const shape = hashOnThread ? batchShapes.onThread : batchShapes.inThread;
  const batches = alignedBuffers(shape.count, shape.bytes, hashOnThread);
  const prefix = offset > 0 ? { path, bytes: offset } : undefined;
  const hash = await startHash(batches, shape.bytes, prefix);
  return { file, batches, batchBytes: shape.bytes, hash, seq: 0, offset };
}

function startHash(batches: AlignedBuffers, batchBytes: number, prefix?: HashPrefix): Promise<DownloadHash> {
  return startDownloadHash({ batches: batches.buffers, memory: batches.shared, batchBytes, prefix });
}

async function checkDiskSpace(
  request: DownloadRequest,
  remaining: number,
): Promise<Result<void, AgentError>> {
  const reserve = request.reserveBytes ?? 1 << 20;
  const free = await (request.freeBytes ?? freeBytesOnDisk)(dirname(request.destination));
  if (free < remaining + reserve) {
    return err(
      agentError(
        'INSUFFICIENT_DISK_SPACE',
        `${request.fileId} needs ${remaining + reserve} bytes free, the disk has ${free}`,
        false,
      ),
    );
  }
  return ok(undefined);
}

async function verifyDigest(
  state: PartialState,
  path: string,
  expected: ExpectedFile,
): Promise<Result<void, AgentError>> {
  if (state.offset !== expected.sizeInBytes) {
    return err(
      agentError('SIZE_MISMATCH', `got ${state.offset} bytes, expected ${expected.sizeInBytes}`, false),
    );
  }
  // A hashing thread that failed at the very end leaves every byte written: hash them from disk.
  const digest = await state.hash
    .digest()
    .catch(async () => (await hashFile(path)).hash.digest('base64'))
    .catch(() => undefined);
  if (digest === undefined) return err(agentError('DOWNLOAD_FAILED', 'the file could not be hashed'));
  if (digest !== expected.sha256) {
    return err(
      agentError('HASH_MISMATCH', `SHA-256 is ${digest}, the signed hash is ${expected.sha256}`, false),
    );
  }
  return ok(undefined);
}

/** Empties the partial file and starts a new hash; on the receiving thread when `inThread`. */
async function restartFromZero(state: PartialState, inThread = false): Promise<void> {
  await state.file.handle.truncate(0);
  await state.hash.dispose();
  const { buffers, shared } = state.batches;
  state.hash = await startHash({ buffers, shared: inThread ? undefined : shared }, state.batchBytes);
  state.seq = 0;
  state.offset = 0;
}

async function fetchUntilComplete(
  request: DownloadRequest,
  state: PartialState,
): Promise<Result<void, AgentError>> {
  const retry = request.retry ?? defaultRetry;
  const sleep = request.sleep ?? sleepFor;
  const random = request.random ?? Math.random;
  let failures = 0;
  let refreshes = 0;
  let refresh = false;
  let lastWhy = '';
  while (state.offset < request.expected.sizeInBytes || state.offset === 0) {
    if (request.signal?.aborted) return err(agentError('CANCELED', 'the download was canceled', false));
    const url = await request.source.url(request.fileId, { refresh });
    if (!url.ok) return url;
    refresh = false;
    const before = state.offset;
    const outcome = await fetchOnce(request, state, url.value);
    if (outcome.kind === 'complete') return ok(undefined);
    if (outcome.kind === 'fatal') return err(outcome.error);
    if (outcome.kind === 'refresh') {
      // A refused URL is refreshed a few times in a row at most: a refusal that outlives fresh URLs is real.
      refreshes += 1;
      if (refreshes > 3) {
        return err(agentError('DOWNLOAD_FAILED', `${request.fileId}: access refused even with fresh URLs`));
      }
      refresh = true;
      continue;
    }
    if (outcome.kind === 'restart') await restartFromZero(state);
    lastWhy = outcome.why;
    // Progress resets the count: a slow, flaky link that keeps moving gets there.
    failures = state.offset > before ? 1 : failures + 1;
    refreshes = 0;
    if (failures >= retry.attempts) {
      return err(agentError('DOWNLOAD_FAILED', `${request.fileId}: ${lastWhy} (${failures} attempts)`));
    }
    const delay = Math.min(retry.maxDelayMs, retry.baseDelayMs * 2 ** (failures - 1));
    await sleep(Math.round(delay * (0.5 + random() / 2)));
  }
  return ok(undefined);
}

function contentRangeStart(header: string | undefined): number | undefined {
  const match = header ? /^bytes (\d+)-/.exec(header) : null;
  return match?.[1] === undefined ? undefined : Number(match[1]);
}

async function fetchOnce(
  request: DownloadRequest,
  state: PartialState,
  url: string,
): Promise<AttemptOutcome> {
  const idleMs = request.idleTimeoutMs ?? 30_000;
  let response: HttpResponse | undefined;
  try {
    const headers: Record<string, string> = state.offset > 0 ? { range: `bytes=${state.offset}-` } : {};
    response = await httpGet(url, headers, { idleMs, signal: request.signal });
    const status = response.status;
    const unusable = statusOutcome(request, state, status);
    if (unusable) return unusable;
    // A 200 to a range request means the server sends the whole file: start over with it.
    if (status === 200 && state.offset > 0) await restartFromZero(state);
    if (status === 206 && contentRangeStart(response.headers.get('content-range')) !== state.offset) {
      return { kind: 'restart', why: 'the server answered another range' };
    }
    return await receiveBody(request, state, response);
  } catch (e) {
    if (request.signal?.aborted)
      return { kind: 'fatal', error: agentError('CANCELED', 'the download was canceled', false) };
    const why = e instanceof IdleTimeoutError ? e.message : networkReason(e);
    return { kind: 'retry', why };
  } finally {
    // Whatever was not read is not wanted: close the connection rather than drain it.
    response?.close();
  }
}

/** What to do with an answer whose body is not the file (undefined: it is, read it). */
function statusOutcome(
  request: DownloadRequest,
  state: PartialState,
  status: number,
): AttemptOutcome | undefined {
  if (status === 401 || status === 403) return { kind: 'refresh' };
  if (status === 416) {
    return state.offset === request.expected.sizeInBytes
      ? { kind: 'complete' }
      : { kind: 'restart', why: 'range not satisfiable' };
  }
  if (status === 429 || status >= 500) return { kind: 'retry', why: `HTTP ${status}` };
  if (status !== 200 && status !== 206) {
    return { kind: 'fatal', error: agentError('DOWNLOAD_FAILED', `${request.fileId}: HTTP ${status}`) };
  }
  return undefined;
}

const longerThanSigned = (request: DownloadRequest): AttemptOutcome => ({
  kind: 'fatal',
  error: agentError('SIZE_MISMATCH', `${request.fileId} is longer than signed`, false),
});

/**
 * Receives the body into the batch buffers (BatchWriter) and waits for the last write. Bytes
 * received before a cut are still written, so the resume starts after them.
 */
async function receiveBody(
  request: DownloadRequest,
  state: PartialState,
  response: HttpResponse,
): Promise<AttemptOutcome> {
  const size = request.expected.sizeInBytes;
  const declared = response.contentLength;
  if (declared !== undefined && state.offset + declared > size) return longerThanSigned(request);
  const writer = new BatchWriter(request, state, response);
  let end: BodyEnd | undefined;
  let failure: unknown;
  try {
    end = await response.readBody(writer);
  } catch (e) {
    failure = e;
  }
  const batchFailure = await writer.finish();
  if (batchFailure !== undefined) {
    // The hash covers bytes that may not be on disk: the only safe resume point is the start. A
    // hashing thread that failed once is not tried again for this file.
    const { step, error } = batchFailure;
    await restartFromZero(state, step === 'hash');
    const why = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    return { kind: 'retry', why: `${step} failed: ${why}` };
  }
  if (writer.tooLong) return longerThanSigned(request);
  if (failure !== undefined) throw failure;
  if (state.offset === size) return { kind: 'complete' };
  if (end === 'complete') {
    // The server sent everything it declared: asking again gets the same short file.
    return {
      kind: 'fatal',
      error: agentError(
        'SIZE_MISMATCH',
        `${request.fileId}: the server's file ends after ${state.offset} bytes, ${size} are signed`,
        false,
      ),
    };
  }
  // A cut, or (without a Content-Length) an end that cannot be told from one.
  return { kind: 'retry', why: `connection closed after ${state.offset} of ${size} bytes` };
}

/**
 * The body's destination: the socket reads straight into one of the batch buffers; the hash
 * (download-hash.ts) takes each batch as it fills on this thread, or as it closes on a thread of its
 * own, and a full batch is written at its position (the thread pool, direct where possible: direct-io.ts) while the next ones
 * fill, so hashing, receiving and writing overlap. A batch is filled again only once it is written
 * and hashed; until then reading pauses. Memory: the batches, whatever the size.
 * `state.offset` advances only over batches written in order, so it always ends a prefix that is
 * on disk; the hash covers every byte accepted.
 */
class BatchWriter implements BodyTarget {
  readonly #batches: readonly Buffer[];
  /** Each batch's write in flight (settles, never rejects), or undefined when the batch is free. */
  readonly #writing: (Promise<void> | undefined)[];
  #filled = 0;
  /** File position of the current batch's first byte. */
  #position: number;
  /** Size of the current batch: short when it starts unaligned, so the next ones start aligned. */
  #limit: number;
  /** Completes when every write started so far has completed, in order; rejects with the first failure. */
  #written: Promise<void> = Promise.resolve();
  #failed = false;
  /** The next batch's opening, when it waited for the batch to be free; finish() waits for it. */
  #opening: Promise<void> = Promise.resolve();
  /** More bytes arrived than the signed size. */
  tooLong = false;

  readonly #request: DownloadRequest;
  readonly #state: PartialState;
  readonly #response: HttpResponse;

  constructor(request: DownloadRequest, state: PartialState, response: HttpResponse) {
    this.#request = request;
    this.#state = state;
    this.#response = response;
    this.#batches = state.batches.buffers;
    this.#writing = this.#batches.map(() => undefined);
    this.#position = state.offset;
    this.#limit = this.#batchLimit();
    // Every batch is free: the previous attempt's finish() waited for its writes and its hashing.
    state.hash.open(state.seq);
  }

  get #current(): number {
    return this.#state.seq % this.#batches.length;
  }

  #batchLimit(): number {
    return this.#state.batchBytes - (this.#position % directAlignment);
  }

  region(): Buffer {
    const batch = this.#batches[this.#current] as Buffer;
    // One byte past the signed size still fits, so a body longer than signed is noticed.
    const room = this.#request.expected.sizeInBytes - (this.#position + this.#filled) + 1;
    return batch.subarray(this.#filled, Math.min(this.#limit, this.#filled + Math.max(room, 1)));
  }

  received(n: number): boolean {
    if (this.#position + this.#filled + n > this.#request.expected.sizeInBytes) {
      this.tooLong = true;
      this.#response.close();
      return false;
    }
    this.#filled += n;
    this.#state.hash.publish(this.#filled);
    if (this.#filled < this.#limit) return true;
    this.#startWrite();
    return this.#openNext();
  }

  /** Opens the next batch when it is free; otherwise pauses reading until it is. */
  #openNext(): boolean {
    const { hash, seq } = this.#state;
    const previousUse = seq - this.#batches.length;
    const busy = this.#writing[this.#current];
    if (!busy && hash.isHashed(previousUse)) {
      hash.open(seq);
      return !this.#failed;
    }
    this.#opening = Promise.all([busy, hash.hashed(previousUse)]).then(
      () => {
        hash.open(seq);
        if (!this.#failed) this.#response.resume();
      },
      () => this.#fail(),
    );
    return false;
  }

  /** Writes what is left, waits for every write and the hash; returns the first failure, if any. */
  async finish(): Promise<{ readonly step: 'write' | 'hash'; readonly error: unknown } | undefined> {
    // An opening still pending must not open its seq after the next attempt has started.
    await this.#opening;
    if (this.#filled > 0 && !this.#failed) this.#startWrite();
    await Promise.all(this.#writing);
    const failure = (step: 'write' | 'hash') => (error: unknown) => ({ step, error });
    const written = await this.#written.then(() => undefined, failure('write'));
    const hashed = await this.#state.hash.hashed(this.#state.seq - 1).then(() => undefined, failure('hash'));
    return written ?? hashed;
  }

  /** Nothing more is wanted: end the body so the attempt can restart. */
  #fail(): void {
    this.#failed = true;
    this.#response.close();
  }

  #startWrite(): void {
    const index = this.#current;
    const bytes = this.#filled;
    const position = this.#position;
    this.#state.hash.close(bytes);
    this.#state.seq += 1;
    this.#position += bytes;
    this.#filled = 0;
    this.#limit = this.#batchLimit();
    const written = writeAt(this.#state.file, this.#batches[index] as Buffer, bytes, position);
    this.#writing[index] = written.then(
      () => {
        this.#writing[index] = undefined;
      },
      () => {
        this.#writing[index] = undefined;
        this.#fail();
      },
    );
    this.#written = this.#written.then(async () => {
      await written;
      this.#state.offset += bytes;
      this.#request.onProgress?.(this.#state.offset, this.#request.expected.sizeInBytes);
    });
    // Handled in finish(); until then a failure must not count as an unhandled rejection.
    this.#written.catch(() => undefined);
  }
}

/** The cause of a network failure without the URL (undici puts it in some messages). */
function networkReason(e: unknown): string {
  const cause = e instanceof Error && e.cause instanceof Error ? e.cause : e;
  const code = (cause as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? `network error ${code}` : 'network error';
}
