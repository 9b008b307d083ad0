/**
 * The agent's own HTTP/1.1 GET (agent/http-get.ts): what node:http did for the downloader and a
 * test would notice if it stopped: redirects, headers split over reads, bodies framed by length or
 * by the end of the connection, chunked bodies read through node:http, and TLS with the certificate
 * verified.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { downloadFile } from '../../../agent/downloader.ts';
import { type BodyTarget, httpGet, parseHead, redirectTarget } from '../../../agent/http-get.ts';
import { ok } from '../../../lambdas/domain/result.ts';
import { createCertificateAuthority, issueServerCertificate } from '../../../local/iot/certs.ts';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('base64');
const body = randomBytes(300_000);
let dir: string;

/** Collects a body into one Buffer through small regions, pausing now and then. */
function collector(regionBytes = 7000): { target: BodyTarget; bytes: () => Buffer } {
  const chunks: Buffer[] = [];
  let region = Buffer.alloc(regionBytes);
  return {
    target: {
      region: () => region,
      received: (n) => {
        chunks.push(Buffer.from(region.subarray(0, n)));
        region = Buffer.alloc(regionBytes);
        return true;
      },
    },
    bytes: () => Buffer.concat(chunks),
  };
}

async function listen(server: Server | TcpServer): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

function handler(req: IncomingMessage, res: ServerResponse): void {
  if (req.url === '/moved') {
    res.writeHead(302, { location: '/file' }).end();
  } else if (req.url === '/chunked') {
    res.writeHead(200);
    res.write(body.subarray(0, 10));
    res.end(body.subarray(10, 20));
  } else {
    res.writeHead(200, { 'content-length': body.length }).end(body);
  }
}

let http: Server;
let httpPort: number;
let raw: TcpServer;
let rawPort: number;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'agent-http-'));
  http = createHttpServer(handler);
  httpPort = await listen(http);
  // A server that sends its headers a few bytes at a time and ends the body by closing.
  raw = createTcpServer((socket) => {
    socket.once('data', () => {
      const head = 'HTTP/1.1 200 OK\r\nX-Split: yes\r\nX-Split: twice\r\n\r\n';
      let at = 0;
      const step = (): void => {
        if (at < head.length) {
          socket.write(head.slice(at, at + 5));
          at += 5;
          setTimeout(step, 2);
        } else socket.end(body);
      };
      step();
    });
  });
  rawPort = await listen(raw);
});
afterAll(async () => {
  http.closeAllConnections();
  await new Promise((resolve) => http.close(resolve));
  await new Promise((resolve) => raw.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

const options = { idleMs: 5000, signal: undefined };

describe('httpGet', () => {
  it('follows a redirect and reads a body framed by its Content-Length', async () => {
    const response = await httpGet(`http://127.0.0.1:${httpPort}/moved`, {}, options);
    expect(response.status).toBe(200);
    expect(response.contentLength).toBe(body.length);
    const sink = collector();
    expect(await response.readBody(sink.target)).toBe('complete');
    expect(sink.bytes().equals(body)).toBe(true);
  });

  it('reads headers split over many reads, joins repeated ones, and a body that ends with the connection', async () => {
    const response = await httpGet(`http://127.0.0.1:${rawPort}/`, {}, options);
    expect(response.headers.get('x-split')).toBe('yes, twice');
    expect(response.contentLength).toBeUndefined();
    const sink = collector(1000);
    expect(await response.readBody(sink.target)).toBe('closed');
    expect(sink.bytes().equals(body)).toBe(true);
  });

  it('follows redirects relative or absolute, but never from https down to plain http', () => {
    const here = new URL('https://bucket.example/a/file?X-Amz-Signature=s');
    expect(redirectTarget(here, '/b/file').href).toBe('https://bucket.example/b/file');
    expect(redirectTarget(here, 'https://other.example/x').href).toBe('https://other.example/x');
    expect(() => redirectTarget(here, 'http://bucket.example/a/file')).toThrow(/plain http/);
    expect(redirectTarget(new URL('http://127.0.0.1:9000/a'), 'http://127.0.0.1:9000/b').pathname).toBe('/b');
  });

  it('reads a chunked body through node:http, pausing when the target is full', async () => {
    const response = await httpGet(`http://127.0.0.1:${httpPort}/chunked`, {}, options);
    expect(response.status).toBe(200);
    expect(response.headers.get('transfer-encoding')).toBe('chunked');
    expect(response.contentLength).toBeUndefined();
    // Regions of 7 bytes, and "full" after every one: the reader waits for resume() each time.
    const sink = collector(7);
    let pauses = 0;
    const target = {
      region: () => sink.target.region(),
      received: (n: number) => {
        sink.target.received(n);
        pauses++;
        setTimeout(() => response.resume(), 5);
        return false;
      },
    };
    expect(await response.readBody(target)).toBe('complete');
    expect(sink.bytes().equals(body.subarray(0, 20))).toBe(true);
    expect(pauses).toBeGreaterThanOrEqual(3);
    response.close();
  });

  it('refuses a malformed status line and a header without a name', () => {
    expect(() => parseHead(Buffer.from('HTTP/2 200 OK\r\n\r\n'))).toThrow(/status line/);
    expect(() => parseHead(Buffer.from('HTTP/1.1 200 OK\r\n: x\r\n\r\n'))).toThrow(/header/);
    expect(parseHead(Buffer.from('HTTP/1.1 200 OK\r\nA: b'))).toBeUndefined();
  });
});

describe('downloads over HTTPS', () => {
  let https: Server;
  let url: string;
  let caFile: string;

  beforeAll(async () => {
    const ca = await createCertificateAuthority(1);
    const leaf = await issueServerCertificate(ca, ['localhost']);
    caFile = join(dir, 'ca.pem');
    await writeFile(caFile, ca.cert);
    https = createHttpsServer({ key: leaf.key, cert: leaf.cert }, handler);
    url = `https://localhost:${await listen(https)}/file`;
  });
  afterAll(async () => {
    https.closeAllConnections();
    await new Promise((resolve) => https.close(resolve));
  });

  it('refuses a server whose certificate is not trusted', async () => {
    const result = await downloadFile({
      fileId: 'untrusted',
      expected: { sizeInBytes: body.length, sha256: sha(body) },
      destination: join(dir, 'untrusted.bin'),
      source: { url: async () => ok(url) },
      retry: { attempts: 1, baseDelayMs: 0, maxDelayMs: 0 },
    });
    expect(result).toMatchObject({ ok: false, error: { code: 'DOWNLOAD_FAILED' } });
  });

  it('downloads and verifies the file from a server whose CA the process trusts', async () => {
    const destination = join(dir, 'trusted.bin');
    const script = join(import.meta.dirname, 'fixtures', 'download-once.ts');
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', script, url, String(body.length), sha(body), destination],
      { env: { ...process.env, NODE_EXTRA_CA_CERTS: caFile } },
    );
    expect(JSON.parse(stdout)).toEqual({
      ok: true,
      value: { bytes: body.length, resumedFrom: 0, reused: false },
    });
    expect((await readFile(destination)).equals(body)).toBe(true);
  });
});
