import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readlink, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveObjectFile } from '../../../local/s3-gateway/object-file.ts';

let directory: string;
let path: string;
let content: Buffer;

beforeAll(async () => {
  directory = await mkdtemp(join(tmpdir(), 'object-file-'));
  path = join(directory, 'object.bin');
  content = randomBytes(12 * 1024 * 1024 + 123);
  await writeFile(path, content);
});

afterAll(() => rm(directory, { recursive: true, force: true }));

/** Descriptors this process holds open on `file` (Linux /proc). */
async function openDescriptorsOn(file: string): Promise<number> {
  let count = 0;
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (target === file) count++;
  }
  return count;
}

/** A server answering every GET from the object file; `served` settles with each answer. */
async function fileServer(): Promise<{ url: string; served: Promise<boolean>[]; close(): Promise<void> }> {
  const served: Promise<boolean>[] = [];
  const server = http.createServer((req, res) => {
    served.push(serveObjectFile(res, { path, headers: { etag: '"e"' } }, req.headers.range));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    served,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function get(url: string, headers: Record<string, string> = {}): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => http.get(url, { headers }, resolve).on('error', reject));
}

async function body(response: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of response) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

describe('serving an object from its file', () => {
  it('sends every byte, or exactly the range asked for, and closes the file', async () => {
    const server = await fileServer();
    try {
      const whole = await get(server.url);
      expect(whole.statusCode).toBe(200);
      expect((await body(whole)).equals(content)).toBe(true);
      const part = await get(server.url, { range: 'bytes=1048570-3145730' });
      expect(part.statusCode).toBe(206);
      expect(part.headers['content-range']).toBe(`bytes 1048570-3145730/${content.length}`);
      expect((await body(part)).equals(content.subarray(1048570, 3145731))).toBe(true);
      expect(await Promise.all(server.served)).toEqual([true, true]);
      expect(await openDescriptorsOn(path)).toBe(0);
    } finally {
      await server.close();
    }
  });

  it('finishes and closes the file when the client goes away mid-answer, wherever it is cut', async () => {
    const server = await fileServer();
    try {
      // Cut after 1..8 pieces arrived: the server is caught reading, writing or waiting in turn.
      for (let pieces = 1; pieces <= 8; pieces++) {
        const response = await get(server.url);
        for (let seen = 0; seen < pieces; seen++)
          await new Promise((resolve) => response.once('data', resolve));
        response.socket.destroy();
      }
      const settled = await Promise.race([
        Promise.all(server.served).then(() => 'settled'),
        new Promise((resolve) => setTimeout(() => resolve('hung'), 5000)),
      ]);
      expect(settled).toBe('settled');
      expect(server.served).toHaveLength(8);
      expect(await openDescriptorsOn(path)).toBe(0);
    } finally {
      await server.close();
    }
  });
});
