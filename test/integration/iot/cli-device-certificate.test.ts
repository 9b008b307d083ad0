import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalIotCore, startLocalIotCore } from '../../../local/iot/index.ts';

// The real CLI, as `npx shadow-ota` runs it.
const bin = fileURLToPath(new URL('../../../cli/bin.js', import.meta.url));

function run(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { timeout: 30_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('shadow-ota local device-certificate', () => {
  let dataDir: string;
  let core: LocalIotCore;

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'cli-device-cert-'));
    // Where the local cloud keeps its IoT Core's state (and so its CA) in a data directory.
    core = await startLocalIotCore({ dataDir: join(dataDir, 'iot') });
  });

  afterAll(async () => {
    await core.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('issues a certificate the mutual TLS listener accepts for that thing, and says how to use it', async () => {
    const out = join(dataDir, 'device');
    const r = await run('local', 'device-certificate', 'cli-dev', '--data-dir', dataDir, '--out', out);
    expect(r.code, r.stderr).toBe(0);
    const printed = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as Record<string, string>;
    expect(printed).toEqual({
      endpoint: 'mqtts://localhost:8883',
      certificateFile: join(out, 'cli-dev.crt'),
      privateKeyFile: join(out, 'cli-dev.key'),
      caFile: join(dataDir, 'iot', 'tls', 'ca.pem'),
    });
    expect((await stat(join(out, 'cli-dev.key'))).mode & 0o777).toBe(0o600);

    const client = await mqtt.connectAsync(core.endpoints.mqtts, {
      clientId: 'cli-dev',
      cert: await readFile(join(out, 'cli-dev.crt')),
      key: await readFile(join(out, 'cli-dev.key')),
      ca: await readFile(printed.caFile ?? ''),
      reconnectPeriod: 0,
    });
    expect(client.connected).toBe(true);
    await client.endAsync();
  });

  it('refuses without a local CA (exit 1) and refuses a bad thing name (exit 2)', async () => {
    const empty = await mkdtemp(join(tmpdir(), 'cli-device-cert-none-'));
    try {
      const none = await run('local', 'device-certificate', 'dev', '--data-dir', empty);
      expect(none.code).toBe(1);
      expect(none.stderr).toContain('no local CA in');
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
    const bad = await run('local', 'device-certificate', 'no spaces', '--data-dir', dataDir);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('thing name');
  });
});
