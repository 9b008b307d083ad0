/**
 * An HTTP interposer in front of the local S3 endpoint: forwards every request unchanged (the Host
 * header too, so SigV4 signatures made for the interposer's address verify at the gateway) and
 * records it; told to, it cuts the next download of an object after N body bytes by destroying
 * the connection, as a flaky network would.
 */
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ForwardedRequest {
  readonly method: string;
  /** Path without the query (the bucket and the object's key, percent-encoded). */
  readonly path: string;
  readonly range: string | undefined;
  readonly status: number;
  /** Body bytes passed on to the client. */
  bytes: number;
  cut: boolean;
}

export class S3Interposer {
  readonly requests: ForwardedRequest[] = [];
  readonly #server: Server;
  readonly #target: URL;
  #cut: { readonly pathEnd: string; readonly afterBytes: number } | undefined;

  private constructor(server: Server, target: URL) {
    this.#server = server;
    this.#target = target;
  }

  static async start(targetEndpoint: string): Promise<S3Interposer> {
    const server = createServer();
    const interposer = new S3Interposer(server, new URL(targetEndpoint));
    server.on('request', (req, res) => {
      const url = new URL(req.url ?? '/', 'http://interposer');
      const upstream = request(
        {
          hostname: interposer.#target.hostname,
          port: interposer.#target.port,
          method: req.method,
          path: req.url,
          headers: req.headers,
        },
        (answer) => {
          const seen: ForwardedRequest = {
            method: req.method ?? '',
            path: url.pathname,
            range: req.headers.range,
            status: answer.statusCode ?? 0,
            bytes: 0,
            cut: false,
          };
          interposer.requests.push(seen);
          const cut = interposer.#takeCut(seen);
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.on('data', (chunk: Buffer) => {
            if (seen.cut) return;
            if (cut !== undefined && seen.bytes + chunk.length >= cut) {
              res.write(chunk.subarray(0, cut - seen.bytes));
              seen.bytes = cut;
              seen.cut = true;
              // Let the bytes reach the client, then drop the connection mid-body.
              setTimeout(() => res.socket?.destroy(), 50);
              answer.destroy();
              return;
            }
            seen.bytes += chunk.length;
            res.write(chunk);
          });
          answer.on('end', () => {
            if (!seen.cut) res.end();
          });
        },
      );
      upstream.on('error', () => res.socket?.destroy());
      req.pipe(upstream);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return interposer;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  /** The next successful GET whose path ends with `pathEnd` is cut after `afterBytes` body bytes. */
  cutNextDownload(pathEnd: string, afterBytes: number): void {
    this.#cut = { pathEnd, afterBytes };
  }

  #takeCut(seen: ForwardedRequest): number | undefined {
    const cut = this.#cut;
    if (
      !cut ||
      seen.method !== 'GET' ||
      seen.status !== 200 ||
      !decodeURIComponent(seen.path).endsWith(cut.pathEnd)
    )
      return undefined;
    this.#cut = undefined;
    return cut.afterBytes;
  }

  async stop(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
