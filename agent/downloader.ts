import { createHash, type Hash } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import { open, rename, stat, statfs, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { err, ok, type Result } from '../lambdas/domain/result.ts';
import { type AgentError, agentError } from './codes.ts';
import {
  alignedBuffers,
  closeDirect,
  directAlignment,
  openDirect,
  type WritableFile,
  writeAt,
} from './direct-io.ts';
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
  hash: Hash;
  offset: number;
}

const sleepFor = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export async function freeBytesOnDisk(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
}

/** SHA-256 (base64) and size of a file, streamed: memory stays bounded whatever its size. */
export async function hashFile(
  path: string,
  into: Hash = createHash('sha256'),
): Promise<{ size: number; hash: Hash }> {
  let size = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    const bytes = chunk as Buffer;
    into.update(bytes);
    size += bytes.length;
  }
  return { size, hash: into };
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
  const state = await openPartial(partialPath, expected.sizeInBytes);
  const resumedFrom = state.offset;
  try {
    const space = await checkDiskSpace(request, expected.sizeInBytes - state.offset);
    if (!space.ok) return space;
    const fetched = await fetchUntilComplete(request, state);
    if (!fetched.ok) return fetched;
  } finally {
    await closeDirect(state.file);
    await state.file.handle.close();
  }
  const verified = verifyDigest(state, expected);
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

async function openPartial(path: string, size: number): Promise<PartialState> {
  // Not append mode: batches are written at their own positions, several at a time.
  const handle = await open(path, constants.O_RDWR | constants.O_CREAT, 0o600);
  const info = await handle.stat();
  // A partial file longer than the file itself is not a prefix of it: start again.
  const file: WritableFile = { handle, direct: await openDirect(path) };
  if (info.size > size) {
    await handle.truncate(0);
    return { file, hash: createHash('sha256'), offset: 0 };
  }
  const { hash } = info.size > 0 ? await hashFile(path) : { hash: createHash('sha256') };
  return { file, hash, offset: info.size };
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

function verifyDigest(state: PartialState, expected: ExpectedFile): Result<void, AgentError> {
  if (state.offset !== expected.sizeInBytes) {
    return err(
      agentError('SIZE_MISMATCH', `got ${state.offset} bytes, expected ${expected.sizeInBytes}`, false),
    );
  }
  const digest = state.hash.digest('base64');
  if (digest !== expected.sha256) {
    return err(
      agentError('HASH_MISMATCH', `SHA-256 is ${digest}, the signed hash is ${expected.sha256}`, false),
    );
  }
  return ok(undefined);
}

async function restartFromZero(state: PartialState): Promise<void> {
  await state.file.handle.truncate(0);
  state.hash = createHash('sha256');
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
  const writeFailure = await writer.finish();
  if (writeFailure !== undefined) {
    // The hash covers bytes that may not be on disk: the only safe resume point is the start.
    await restartFromZero(state);
    const why = (writeFailure as NodeJS.ErrnoException).code ?? (writeFailure as Error).message;
    return { kind: 'retry', why: `write failed: ${why}` };
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
 * Bytes per write: one thread-pool round trip per 4 MiB instead of one per socket read (the bench
 * measured 4 MiB a little faster than 1 and 2, for 3 MB more memory; 8 was no faster).
 */
const writeBatchBytes = 4 << 20;

/**
 * Batches in rotation: one filling while the others are written. With two, nearly every switch
 * waited for the other's write (the bench's disk takes a few ms per 4 MiB); three keep two writes
 * in flight and paused about a third less often.
 */
const batchCount = 3;

/**
 * The body's destination: the socket reads straight into one of the batch buffers; each read is
 * hashed on arrival (this thread), and a full batch is written at its position (the thread pool,
 * direct where possible: direct-io.ts) while the next one fills, so hashing, receiving and
 * writing overlap. When the next batch is still being written, reading pauses until it is free.
 * Memory: the batches, whatever the size.
 * `state.offset` advances only over batches written in order, so it always ends a prefix that is
 * on disk; the hash covers every byte accepted.
 */
class BatchWriter implements BodyTarget {
  readonly #batches = alignedBuffers(batchCount, writeBatchBytes);
  /** Each batch's write in flight (settles, never rejects), or undefined when the batch is free. */
  readonly #writing: (Promise<void> | undefined)[] = this.#batches.map(() => undefined);
  #current = 0;
  #filled = 0;
  /** File position of the current batch's first byte. */
  #position: number;
  /** Size of the current batch: short when it starts unaligned, so the next ones start aligned. */
  #limit: number;
  /** Completes when every write started so far has completed, in order; rejects with the first failure. */
  #written: Promise<void> = Promise.resolve();
  #failed = false;
  /** More bytes arrived than the signed size. */
  tooLong = false;

  readonly #request: DownloadRequest;
  readonly #state: PartialState;
  readonly #response: HttpResponse;

  constructor(request: DownloadRequest, state: PartialState, response: HttpResponse) {
    this.#request = request;
    this.#state = state;
    this.#response = response;
    this.#position = state.offset;
    this.#limit = this.#batchLimit();
  }

  #batchLimit(): number {
    return writeBatchBytes - (this.#position % directAlignment);
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
    const batch = this.#batches[this.#current] as Buffer;
    this.#state.hash.update(batch.subarray(this.#filled, this.#filled + n));
    this.#filled += n;
    if (this.#filled < this.#limit) return true;
    this.#startWrite();
    this.#current = (this.#current + 1) % this.#batches.length;
    const busy = this.#writing[this.#current];
    if (!busy) return !this.#failed;
    void busy.then(() => {
      if (!this.#failed) this.#response.resume();
    });
    return false;
  }

  /** Writes what is left, waits for every write; returns the first write failure, if any. */
  async finish(): Promise<unknown> {
    if (this.#filled > 0 && !this.#failed) this.#startWrite();
    await Promise.all(this.#writing);
    return this.#written.then(
      () => undefined,
      (e: unknown) => e,
    );
  }

  #startWrite(): void {
    const index = this.#current;
    const bytes = this.#filled;
    const position = this.#position;
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
        // Nothing more is wanted: end the body so the attempt can restart.
        this.#failed = true;
        this.#response.close();
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
