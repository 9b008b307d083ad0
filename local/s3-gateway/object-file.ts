/**
 * A plain GetObject served straight from the storing server's file, once the gateway has checked
 * the request: one read of the file in large pieces and one socket write, instead of the storing
 * server reading in 64 KiB pieces into a second loopback connection that the gateway reads and
 * writes again. Only the simple case takes this path (no conditionals, no response-header
 * overrides, a satisfiable `bytes=a-[b]` range or none); everything else is forwarded, so the
 * storing server's own answers (304, 416, errors) stay exactly as they were.
 */
import { close, createReadStream, fstat as fstatCallback, open } from 'node:fs';
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
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

/** Pieces the file is read in: fewer, larger socket writes (the storing server reads 64 KiB). */
const readBytes = 1 << 20;

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
  // A plain descriptor, owned by the read stream once there is one (it closes it on end, error or
  // destroy): a FileHandle would close it a second time, or leak it to the garbage collector.
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
    // A stream on the descriptor, not FileHandle.createReadStream: its promise-based reads served
    // about half as fast here.
    const body = createReadStream('', { fd, start, end, highWaterMark: readBytes });
    streaming = true;
    await pipeline(body, res);
    return true;
  } finally {
    if (!streaming) await closeFile(fd);
  }
}
