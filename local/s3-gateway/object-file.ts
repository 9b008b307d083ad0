/**
 * A plain GetObject served straight from the storing server's file, once the gateway has checked
 * the request: one read of the file in large pieces and one socket write, instead of the storing
 * server reading in 64 KiB pieces into a second loopback connection that the gateway reads and
 * writes again. Only the simple case takes this path (no conditionals, no response-header
 * overrides, a satisfiable `bytes=a-[b]` range or none); everything else is forwarded, so the
 * storing server's own answers (304, 416, errors) stay exactly as they were.
 */
import { close, fstat as fstatCallback, open, read as readCallback } from 'node:fs';
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import { promisify } from 'node:util';

/** Where the storing server keeps an object, and the headers it answers a GET of it with. */
export interface StoredObject {
  /** The file holding exactly the object's bytes. */
  readonly path: string;
  /** ETag, Last-Modified, Content-Type, x-amz-meta-*, ...: everything but the length and range. */
  readonly headers: Readonly<Record<string, string>>;
}

/** Finds an object in the storing server; undefined when it is not there (the proxy then answers). */
export type ObjectLocator = (bucket: string, key: string) => Promise<StoredObject | undefined>;

const openFile = promisify(open);
const fstat = promisify(fstatCallback);
const closeFile = promisify(close);
const readFile = promisify(readCallback);

/** Pieces the file is read in: fewer, larger socket writes (the storing server reads 64 KiB). */
const readBytes = 1 << 20;
/** Buffers in flight: one being written to the socket while the next is read. */
const POOL = 2;

const CONDITIONAL_HEADERS = ['if-match', 'if-none-match', 'if-modified-since', 'if-unmodified-since'];

/** Query parameters a plain GetObject may carry besides the signature (the SDK adds `x-id`). */
const PLAIN_QUERY = new Set(['x-id']);

/** True when the forwarded request is a GetObject this module can answer as the storing server would. */
export function isPlainGetObject(
  method: string,
  action: string,
  forwardedQuery: readonly (readonly [string, string])[],
  headers: IncomingHttpHeaders,
): boolean {
  if (method !== 'GET' || action !== 's3:GetObject') return false;
  if (forwardedQuery.some(([name]) => !PLAIN_QUERY.has(name))) return false;
  return CONDITIONAL_HEADERS.every((name) => headers[name] === undefined);
}

interface ByteRange {
  readonly start: number;
  readonly end: number;
}

/**
 * The bytes to send: all of them (no Range), a satisfiable `bytes=start-[end]` (end clipped to the
 * last byte, as the storing server does), or undefined for anything else (forwarded instead).
 */
export function rangeToServe(header: string | undefined, size: number): ByteRange | 'all' | undefined {
  if (header === undefined) return 'all';
  const match = /^bytes=(\d+)-(\d*)$/.exec(header);
  if (!match) return undefined;
  const start = Number(match[1]);
  const end = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
  if (!Number.isSafeInteger(start) || start >= size || end < start) return undefined;
  return { start, end };
}

/**
 * Answers the GET from the object's file. Returns false, having sent nothing, when it cannot (the
 * object is gone, or the range is not one it serves): the caller forwards the request then.
 */
export async function serveObjectFile(
  res: ServerResponse,
  stored: StoredObject,
  rangeHeader: string | undefined,
): Promise<boolean> {
  // A plain descriptor, closed by sendRange once sending starts (whatever happens), here otherwise.
  const fd = await openFile(stored.path, 'r').catch(() => undefined);
  if (fd === undefined) return false;
  let streaming = false;
  try {
    const { size } = await fstat(fd);
    const range = rangeToServe(rangeHeader, size);
    if (range === undefined) return false;
    const { start, end } = range === 'all' ? { start: 0, end: size - 1 } : range;
    res.writeHead(range === 'all' ? 200 : 206, {
      ...stored.headers,
      'accept-ranges': 'bytes',
      'content-length': String(end + 1 - start),
      ...(range === 'all' ? {} : { 'content-range': `bytes ${start}-${end}/${size}` }),
    });
    if (end < start) {
      res.end();
      return true;
    }
    streaming = true;
    await sendRange(res, fd, start, end);
    return true;
  } finally {
    if (!streaming) await closeFile(fd);
  }
}

/** Rejects once the answer is cut (the client went away) before `finish` was called. */
function cutOff(res: ServerResponse): { readonly cut: Promise<never>; finish(): void } {
  let done = false;
  const cut = new Promise<never>((_, reject) => {
    res.once('close', () => {
      if (!done) reject(new Error('the client went away'));
    });
  });
  cut.catch(() => undefined);
  return {
    cut,
    finish: () => {
      done = true;
    },
  };
}

/**
 * Resolves once the socket has taken `chunk` (its write callback). A socket already destroyed may
 * never call it back, so the write also ends with the answer being cut.
 */
function written(res: ServerResponse, chunk: Buffer, cut: Promise<never>): Promise<void> {
  if (res.destroyed || res.socket?.destroyed) return Promise.reject(new Error('the client went away'));
  const taken = new Promise<void>((resolve, reject) => {
    res.write(chunk, (error) => (error ? reject(error) : resolve()));
  });
  return Promise.race([taken, cut]);
}

/**
 * Sends bytes `start..end` of the file through a pool of reused buffers: a read stream would
 * allocate a fresh 1 MiB buffer per piece, and on this kind of virtual machine faulting in that
 * fresh memory cost more CPU than the copy itself (the local S3 served about 460 MB/s). A buffer
 * is read into again only once the socket has taken it. Closes the descriptor whatever happens.
 */
async function sendRange(res: ServerResponse, fd: number, start: number, end: number): Promise<void> {
  const pool = Array.from({ length: POOL }, () => Buffer.allocUnsafeSlow(readBytes));
  const inFlight: (Promise<void> | undefined)[] = new Array(POOL).fill(undefined);
  const answer = cutOff(res);
  try {
    let position = start;
    for (let turn = 0; position <= end; turn = (turn + 1) % POOL) {
      await inFlight[turn];
      const buffer = pool[turn] as Buffer;
      const { bytesRead } = await readFile(fd, buffer, 0, Math.min(readBytes, end + 1 - position), position);
      if (bytesRead === 0) throw new Error('the object file is shorter than it was');
      position += bytesRead;
      const sent = written(res, buffer.subarray(0, bytesRead), answer.cut);
      // Awaited on this buffer's next turn or at the end; until then a rejection must not count as unhandled.
      sent.catch(() => undefined);
      inFlight[turn] = sent;
    }
    await Promise.all(inFlight);
    answer.finish();
    res.end();
  } catch (error) {
    // A client that went away, or a file that changed under us: the answer cannot be completed.
    res.destroy(error instanceof Error ? error : undefined);
  } finally {
    await Promise.allSettled(inFlight);
    await closeFile(fd);
  }
}
