/**
 * The HTTP plumbing the data-plane and registry endpoints share: REST-JSON as the AWS SDK v3
 * speaks it (errors named by the `x-amzn-errortype` header, a JSON body with `message`). Request
 * signatures are not checked: locally any credentials are accepted.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export class BodyTooLargeError extends Error {
  constructor(limit: number) {
    super(`Request body exceeds ${limit} bytes`);
    this.name = 'BodyTooLargeError';
  }
}

/** Reads the whole body, refusing more than `limit` bytes without buffering them. */
export function readBody(request: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        request.removeAllListeners('data');
        request.resume();
        reject(new BodyTooLargeError(limit));
        return;
      }
      chunks.push(chunk);
    });
    request.once('end', () => resolve(chunks.length === 1 && chunks[0] ? chunks[0] : Buffer.concat(chunks)));
    request.once('error', reject);
  });
}

export function sendJson(
  response: ServerResponse,
  status: number,
  body: unknown,
  contentType = 'application/json',
): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(text) });
  response.end(text);
}

/** An AWS REST-JSON error: the SDK maps `x-amzn-errortype` to its exception class. */
export function sendError(
  response: ServerResponse,
  status: number,
  type: string,
  body: Record<string, unknown>,
): void {
  const text = JSON.stringify(body);
  response.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'x-amzn-errortype': type,
  });
  response.end(text);
}

export interface ParsedRequest {
  /** Path segments, percent-decoded one by one (a Publish topic is one encoded segment). */
  readonly segments: string[];
  readonly query: URLSearchParams;
}

export function parseRequestTarget(url: string | undefined): ParsedRequest | undefined {
  const target = url ?? '/';
  const mark = target.indexOf('?');
  const path = mark === -1 ? target : target.slice(0, mark);
  try {
    const segments = path
      .split('/')
      .filter((segment) => segment !== '')
      .map(decodeURIComponent);
    return { segments, query: new URLSearchParams(mark === -1 ? '' : target.slice(mark + 1)) };
  } catch {
    return undefined;
  }
}

export type RequestHandler = (request: IncomingMessage, response: ServerResponse) => Promise<void>;

export interface RunningHttpServer {
  readonly port: number;
  close(): Promise<void>;
}

/** Starts a server whose handler never lets an exception escape: a bug is a 500 InternalFailureException. */
export async function startHttpServer(
  host: string,
  port: number,
  handler: RequestHandler,
): Promise<RunningHttpServer> {
  const server = http.createServer({ keepAlive: true }, (request, response) => {
    handler(request, response).catch((error: unknown) => {
      if (response.headersSent) {
        response.destroy();
        return;
      }
      sendError(response, 500, 'InternalFailureException', {
        message: `Internal service failure: ${String(error)}`,
      });
    });
  });
  // SDK clients keep connections alive; don't drop idle ones before they do.
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, backlog: 4096 }, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
