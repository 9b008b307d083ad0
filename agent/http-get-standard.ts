/**
 * The same GET through node:http / node:https, for what the agent's own client does not decode: a
 * body with a Transfer-Encoding (chunked), as a proxy or a compressing CDN may send. Slower (its
 * parser copies every chunk, and each is copied again into the caller's batch buffers), but every
 * server's answer still downloads. Same contract as agent/http-get.ts.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { BodyEnd, BodyTarget, GetOptions, HttpResponse } from './http-get.ts';
import { IdleTimeoutError } from './http-get.ts';

export async function standardGet(
  url: URL,
  headers: Readonly<Record<string, string>>,
  options: GetOptions,
): Promise<HttpResponse> {
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  const request = send(url, {
    method: 'GET',
    headers,
    ...(options.signal ? { signal: options.signal } : {}),
  });
  request.setTimeout(options.idleMs, () => request.destroy(new IdleTimeoutError('no data received in time')));
  const answer = await new Promise<IncomingMessage>((resolve, reject) => {
    request.once('response', resolve);
    request.once('error', reject);
    request.end();
  });
  return new StandardResponse(answer, () => request.destroy());
}

class StandardResponse implements HttpResponse {
  readonly status: number;
  readonly headers: ReadonlyMap<string, string>;
  readonly contentLength: number | undefined;
  readonly #message: IncomingMessage;
  readonly #destroy: () => void;
  #target: BodyTarget | undefined;
  /** Bytes of the last chunk the target had no room for yet. */
  #pending: Buffer | undefined;
  /** Set when the stream ended: resolves the body once nothing is held back. */
  #settle: (() => void) | undefined;

  constructor(message: IncomingMessage, destroy: () => void) {
    this.#message = message;
    this.#destroy = destroy;
    this.status = message.statusCode ?? 0;
    this.headers = new Map(
      Object.entries(message.headers).map(([name, value]) => [
        name,
        Array.isArray(value) ? value.join(', ') : String(value ?? ''),
      ]),
    );
    // A transfer-coded body declares no length of its own bytes.
    const length = message.headers['content-length'];
    this.contentLength =
      message.headers['transfer-encoding'] === undefined && length !== undefined ? Number(length) : undefined;
  }

  readBody(target: BodyTarget): Promise<BodyEnd> {
    const message = this.#message;
    this.#target = target;
    return new Promise<BodyEnd>((resolve, reject) => {
      message.on('data', (chunk: Buffer) => {
        this.#pending = chunk;
        this.#drain();
      });
      // The stream may end while the target still holds bytes back: settle once they are in.
      message.once('end', () => {
        this.#settle = () => resolve(message.complete ? 'complete' : 'cut');
        if (!this.#pending) this.#settle();
      });
      message.once('error', reject);
      message.once('aborted', () => reject(new Error('the connection closed mid-body')));
      message.resume();
    });
  }

  /** Copies held bytes into the target while it takes them; holds the stream when it is full. */
  #drain(): void {
    const target = this.#target;
    while (target && this.#pending && this.#pending.length > 0) {
      const n = this.#pending.copy(target.region());
      this.#pending = this.#pending.subarray(n);
      if (!target.received(n)) {
        this.#message.pause();
        return;
      }
    }
    this.#pending = undefined;
    if (this.#settle) this.#settle();
    else this.#message.resume();
  }

  resume(): void {
    this.#drain();
  }

  close(): void {
    this.#destroy();
  }
}
