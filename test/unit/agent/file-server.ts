/** A small HTTP file server for agent tests: Range requests, a connection cut halfway, expiring URLs. */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ServedFile {
  readonly body: Buffer;
  /** Cut the connection after this many bytes, for the first `cuts` responses. */
  cutAfter?: number;
  cuts?: number;
  /** Ignore Range headers (answer 200 with the whole body). */
  ignoreRange?: boolean;
}

export interface RequestLog {
  readonly path: string;
  readonly range: string | undefined;
  readonly token: string | null;
}

export class FileServer {
  readonly files = new Map<string, ServedFile>();
  readonly requests: RequestLog[] = [];
  /** Tokens accepted in `?token=`; others get 403 (an expired presigned URL). Empty set: no check. */
  readonly validTokens = new Set<string>();
  #server: Server | undefined;
  #base = '';

  get base(): string {
    return this.#base;
  }

  url(path: string, token?: string): string {
    return `${this.#base}${path}${token ? `?token=${token}` : ''}`;
  }

  async start(): Promise<void> {
    this.#server = createServer((req, res) => this.#handle(req, res));
    await new Promise<void>((resolve) => this.#server?.listen(0, '127.0.0.1', resolve));
    const { port } = this.#server.address() as AddressInfo;
    this.#base = `http://127.0.0.1:${port}`;
  }

  async stop(): Promise<void> {
    this.#server?.closeAllConnections();
    await new Promise<void>((resolve) => this.#server?.close(() => resolve()));
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', this.#base);
    const token = url.searchParams.get('token');
    this.requests.push({ path: url.pathname, range: req.headers.range, token });
    if (this.validTokens.size > 0 && (token === null || !this.validTokens.has(token))) {
      res.writeHead(403).end('expired');
      return;
    }
    const file = this.files.get(url.pathname);
    if (!file) {
      res.writeHead(404).end();
      return;
    }
    const match = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const start = match && !file.ignoreRange ? Number(match[1]) : 0;
    if (start > file.body.length) {
      res.writeHead(416).end();
      return;
    }
    const body = file.body.subarray(start);
    res.writeHead(match && !file.ignoreRange ? 206 : 200, {
      'content-length': body.length,
      ...(match && !file.ignoreRange
        ? { 'content-range': `bytes ${start}-${file.body.length - 1}/${file.body.length}` }
        : {}),
    });
    if (file.cuts && file.cuts > 0 && file.cutAfter !== undefined) {
      file.cuts -= 1;
      res.write(body.subarray(0, file.cutAfter), () => {
        // Give the bytes time to leave, then drop the connection mid-body.
        setTimeout(() => res.socket?.destroy(), 20);
      });
      return;
    }
    res.end(body);
  }
}
