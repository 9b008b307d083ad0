/**
 * One HTTP/1.1 GET whose body the socket reads straight into buffers the caller hands out.
 *
 * Why not node:http: its parser copies every body chunk into a fresh Buffer, on top of the fresh
 * Buffer each 64 KiB socket read already is. For a 1 GiB download that is 2 GiB of short-lived
 * allocations: about half a second of this thread's time, and most of the agent's peak memory
 * (the garbage outlives the bytes by a GC cycle). Here the socket's `onread` reads into the
 * caller's batch buffers: no copy, no garbage. The protocol needed is small: a GET with
 * `Connection: close`, a status line, headers, and a body framed by Content-Length or by the end of
 * the connection. A chunked body (S3 and CloudFront send a length for an object; a proxy may not)
 * is fetched again through node:http (agent/http-get-standard.ts).
 * TLS is node:tls with its defaults (certificate and host name verified).
 */
import { connect, isIP, type OnReadOpts, type Socket } from 'node:net';
import { type ConnectionOptions, connect as tlsConnect } from 'node:tls';
import { standardGet } from './http-get-standard.ts';

/** Where the body goes: the caller's buffers, handed out one free region at a time. */
export interface BodyTarget {
  /** A free region for the next bytes (never empty). Valid until `received` is called. */
  region(): Buffer;
  /** `n` bytes were put at the start of the last region. False: pause until `resume()` is called. */
  received(n: number): boolean;
}

/** How a body ended: every declared byte arrived, the connection ended without a length, or it was cut. */
export type BodyEnd = 'complete' | 'closed' | 'cut';

export interface HttpResponse {
  readonly status: number;
  /** Lower-case names; repeated headers joined with ", ". */
  readonly headers: ReadonlyMap<string, string>;
  /** The declared body length; undefined when the body ends with the connection. */
  readonly contentLength: number | undefined;
  /** Reads the body into `target`; rejects when the connection fails (network error, idle, abort). */
  readBody(target: BodyTarget): Promise<BodyEnd>;
  /** Continues after `received` returned false. */
  resume(): void;
  /** Closes the connection (whatever was not read is not wanted). */
  close(): void;
}

export interface GetOptions {
  /** Fail when nothing arrives for this long (waiting for the answer or during the body). */
  readonly idleMs: number;
  readonly signal: AbortSignal | undefined;
}

/** Raised by the socket idle timer; told apart from other network errors in the message. */
export class IdleTimeoutError extends Error {
  override readonly name = 'IdleTimeoutError';
}

const maxRedirects = 5;
const isRedirect = (status: number): boolean => [301, 302, 303, 307, 308].includes(status);
/** Holds the status line and headers, and bytes read while the body is paused. */
const sideBytes = 64 * 1024;

/** GET `url` with `headers`, following redirects; resolves once the answer's headers are in. */
export async function httpGet(
  url: string,
  headers: Readonly<Record<string, string>>,
  options: GetOptions,
): Promise<HttpResponse> {
  let target = new URL(url);
  for (let redirects = 0; ; redirects += 1) {
    const response = await Exchange.open(target, headers, options);
    const location = response.headers.get('location');
    if (!isRedirect(response.status) || location === undefined) {
      if (!isTransferCoded(response)) return response;
      // A body this client does not decode: ask again through node:http, which does.
      response.close();
      return standardGet(target, headers, options);
    }
    response.close();
    if (redirects === maxRedirects) throw new Error('too many redirects');
    target = redirectTarget(target, location);
  }
}

/**
 * Where a redirect leads, resolved against the current URL. Never from https to plain http: the
 * bytes are verified by hash either way, but a presigned URL's signature must not travel in clear.
 */
export function redirectTarget(current: URL, location: string): URL {
  const next = new URL(location, current);
  if (current.protocol === 'https:' && next.protocol !== 'https:')
    throw new Error('refusing a redirect from https to plain http');
  return next;
}

function requestText(url: URL, headers: Readonly<Record<string, string>>): string {
  const lines = [`GET ${url.pathname}${url.search} HTTP/1.1`, `Host: ${url.host}`, 'Connection: close'];
  for (const [name, value] of Object.entries(headers)) {
    if (/[\r\n]/.test(name) || /[\r\n]/.test(value)) throw new Error('invalid request header');
    lines.push(`${name}: ${value}`);
  }
  return `${lines.join('\r\n')}\r\n\r\n`;
}

interface Head {
  readonly status: number;
  readonly headers: Map<string, string>;
  /** Where the body starts in the bytes read so far. */
  readonly bodyStart: number;
}

/** Parses the status line and headers once they are complete; undefined while they are not. */
export function parseHead(bytes: Buffer): Head | undefined {
  const end = bytes.indexOf('\r\n\r\n');
  if (end === -1) return undefined;
  const [statusLine = '', ...lines] = bytes.subarray(0, end).toString('latin1').split('\r\n');
  const status = /^HTTP\/1\.[01] (\d{3})(?: |$)/.exec(statusLine)?.[1];
  if (status === undefined) throw new Error('malformed HTTP status line');
  const headers = new Map<string, string>();
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw new Error('malformed HTTP header');
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    const before = headers.get(name);
    headers.set(name, before === undefined ? value : `${before}, ${value}`);
  }
  return { status: Number(status), headers, bodyStart: end + 4 };
}

/** A successful answer whose body is transfer-coded (chunked): agent/http-get-standard.ts reads it. */
function isTransferCoded(response: HttpResponse): boolean {
  return response.status >= 200 && response.status < 300 && response.headers.has('transfer-encoding');
}

/**
 * The declared body length (undefined: the body ends with the connection), or an error for a body
 * this client does not read (httpGet hands a successful one to node:http; an error answer, which
 * may be chunked, is never read).
 */
function bodyFraming(head: Head): { length: number | undefined } | Error {
  if (head.headers.has('transfer-encoding')) {
    return Object.assign(new Error('chunked HTTP bodies are not supported'), { code: 'CHUNKED_BODY' });
  }
  const text = head.headers.get('content-length');
  if (text === undefined) return { length: undefined };
  if (!/^\d+$/.test(text)) return new Error('malformed Content-Length');
  return { length: Number(text) };
}

/** One request and its answer on a connection of its own. */
class Exchange implements HttpResponse {
  readonly #socket: Socket;
  readonly #side = Buffer.allocUnsafe(sideBytes);
  #sideFilled = 0;
  /** Body bytes read but not yet given to the target (they sit in the side buffer). */
  #pending: Buffer | undefined;
  #target: BodyTarget | undefined;
  /** Whether the socket reads next into a target region (else into the side buffer). */
  #landsInTarget = false;
  #paused = true;
  #head: Head | undefined;
  /** Set once the body is wanted. */
  #length: number | undefined;
  #delivered = 0;
  #settle: { resolve: (end: BodyEnd) => void; reject: (e: Error) => void } | undefined;
  #failure: Error | undefined;
  #onHead: { resolve: () => void; reject: (e: Error) => void } | undefined;

  private constructor(url: URL, options: GetOptions) {
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
    const onread: OnReadOpts = {
      buffer: () => this.#nextLanding(),
      callback: (n: number) => this.#onRead(n),
    };
    if (url.protocol === 'https:') {
      // node:tls takes `onread` when it dials the connection itself (its types do not say so).
      const tlsOptions: ConnectionOptions & { onread: OnReadOpts } = {
        host,
        port,
        onread,
        ...(isIP(host) ? {} : { servername: host }),
      };
      this.#socket = tlsConnect(tlsOptions);
    } else if (url.protocol === 'http:') {
      this.#socket = connect({ host, port, onread });
    } else {
      throw new Error(`unsupported protocol ${url.protocol}`);
    }
    this.#socket.setTimeout(options.idleMs, () =>
      this.#socket.destroy(new IdleTimeoutError('no data received in time')),
    );
    const abort = (): void => {
      this.#socket.destroy(new Error('aborted'));
    };
    options.signal?.addEventListener('abort', abort, { once: true });
    this.#socket.once('close', () => {
      options.signal?.removeEventListener('abort', abort);
      this.#ended();
    });
    this.#socket.once('error', (e) => {
      this.#failure = e;
    });
  }

  static async open(
    url: URL,
    headers: Readonly<Record<string, string>>,
    options: GetOptions,
  ): Promise<Exchange> {
    if (options.signal?.aborted) throw new Error('aborted');
    const request = requestText(url, headers);
    const exchange = new Exchange(url, options);
    const headIn = new Promise<void>((resolve, reject) => {
      exchange.#onHead = { resolve, reject };
    });
    exchange.#paused = false;
    exchange.#socket.write(request);
    await headIn;
    return exchange;
  }

  get status(): number {
    return this.#head?.status ?? 0;
  }

  get headers(): ReadonlyMap<string, string> {
    return this.#head?.headers ?? new Map();
  }

  get contentLength(): number | undefined {
    const framing = this.#head ? bodyFraming(this.#head) : undefined;
    return framing && !(framing instanceof Error) ? framing.length : undefined;
  }

  readBody(target: BodyTarget): Promise<BodyEnd> {
    const framing = this.#head ? bodyFraming(this.#head) : new Error('no answer yet');
    if (framing instanceof Error) return Promise.reject(framing);
    this.#length = framing.length;
    this.#target = target;
    const done = new Promise<BodyEnd>((resolve, reject) => {
      this.#settle = { resolve, reject };
    });
    this.resume();
    return done;
  }

  resume(): void {
    this.#paused = false;
    if (!this.#drainPending()) return;
    if (this.#finished()) return;
    if (this.#socket.destroyed) this.#ended();
    else this.#socket.resume();
  }

  close(): void {
    // A body being read ends here, whatever it still holds.
    this.#pending = undefined;
    this.#settle?.resolve(this.#length === undefined ? 'closed' : 'cut');
    this.#settle = undefined;
    this.#socket.destroy();
  }

  /** Called by the socket after every read: where the next one goes. */
  #nextLanding(): Buffer {
    this.#landsInTarget = !this.#paused && !this.#pending && this.#target !== undefined;
    if (this.#target && this.#landsInTarget) return this.#target.region();
    return this.#side.subarray(this.#head ? 0 : this.#sideFilled);
  }

  /** `n` bytes were read where `#nextLanding` said. Returning false pauses the socket. */
  #onRead(n: number): boolean {
    if (!this.#head) return this.#onHeadBytes(n);
    if (!this.#landsInTarget) {
      // Read while paused (the first read after a resume): copied into the target from here.
      this.#pending = this.#side.subarray(0, n);
      return this.#drainPending() && !this.#finished();
    }
    return this.#deliver(n) && !this.#finished();
  }

  #onHeadBytes(n: number): boolean {
    this.#sideFilled += n;
    let head: Head | undefined;
    try {
      head = parseHead(this.#side.subarray(0, this.#sideFilled));
    } catch (e) {
      this.#socket.destroy(e as Error);
      return false;
    }
    if (!head) {
      if (this.#sideFilled < sideBytes) return true;
      this.#socket.destroy(new Error('HTTP response headers too large'));
      return false;
    }
    this.#head = head;
    if (this.#sideFilled > head.bodyStart)
      this.#pending = this.#side.subarray(head.bodyStart, this.#sideFilled);
    // Nothing more is read until the caller has looked at the status and wants the body.
    this.#paused = true;
    this.#onHead?.resolve();
    return false;
  }

  /** Gives `n` bytes from the last region to the target, never past the declared length. */
  #deliver(n: number): boolean {
    const length = this.#length;
    const take = length === undefined ? n : Math.min(n, length - this.#delivered);
    this.#delivered += take;
    const more = this.#target?.received(take) ?? false;
    if (!more) this.#paused = true;
    return more;
  }

  /** Copies the bytes held in the side buffer into target regions; true when none are left. */
  #drainPending(): boolean {
    while (this.#pending && this.#target && !this.#paused) {
      const region = this.#target.region();
      const n = this.#pending.copy(region);
      this.#pending = n < this.#pending.length ? this.#pending.subarray(n) : undefined;
      this.#deliver(n);
    }
    return this.#pending === undefined;
  }

  /** Resolves the body once every declared byte is in. */
  #finished(): boolean {
    const length = this.#length;
    if (length === undefined || this.#delivered < length || !this.#settle) return false;
    this.#settle.resolve('complete');
    this.#settle = undefined;
    this.#socket.destroy();
    return true;
  }

  /** The connection is gone: settle whatever waits on it. */
  #ended(): void {
    if (!this.#head) {
      this.#onHead?.reject(this.#failure ?? new Error('connection closed before an answer'));
      return;
    }
    if (!this.#settle || this.#pending) return;
    if (this.#failure) this.#settle.reject(this.#failure);
    else this.#settle.resolve(this.#length === undefined ? 'closed' : 'cut');
    this.#settle = undefined;
  }
}
