import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { freePort } from '../../local/dynamodb.ts';
import { importManifest } from './support/updates.ts';

/**
 * The local cloud as a user runs it: `npm run cloud`, a child process in its own process group,
 * stopped with SIGINT sent to the group, as Ctrl-C in a terminal does.
 */
interface CloudProcess {
  readonly child: ChildProcess;
  readonly output: () => string;
  readonly exited: Promise<number | null>;
}

interface Endpoints {
  readonly api: string;
  readonly s3: string;
  readonly dynamodb: string;
  readonly mqtt: string;
  readonly mqtts: string;
  readonly iotData: string;
  readonly iot: string;
  readonly pid: number;
  readonly resources: { readonly signingPublicKey: { readonly kid: string } };
}

const running = new Set<CloudProcess>();
const dirs: string[] = [];

function startCloud(args: readonly string[], script: 'cloud' | 'start' = 'cloud'): CloudProcess {
  const child = spawn(
    'npm',
    [
      'run',
      '--silent',
      script,
      '--',
      ...['--api-port', '0', '--s3-port', '0', '--dynamodb-port', '0'],
      ...['--mqtt-port', '0', '--mqtts-port', '0', '--iot-data-port', '0', '--iot-port', '0'],
      ...args,
    ],
    {
      cwd: process.cwd(),
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    },
  );
  let output = '';
  child.stdout?.on('data', (d: Buffer) => {
    output += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    output += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const cloud = { child, output: () => output, exited };
  running.add(cloud);
  void exited.then(() => running.delete(cloud));
  return cloud;
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'shadow-ota-e2e-'));
  dirs.push(dir);
  return dir;
}

async function waitForEndpoints(
  dataDir: string,
  cloud: CloudProcess,
  timeoutMs = 60_000,
): Promise<Endpoints> {
  const file = join(dataDir, 'endpoints.json');
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (cloud.child.exitCode !== null) throw new Error(`the cloud exited early:\n${cloud.output()}`);
    if (existsSync(file)) return JSON.parse(await readFile(file, 'utf8')) as Endpoints;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`no endpoints.json after ${timeoutMs} ms:\n${cloud.output()}`);
}

/** Ctrl-C: SIGINT to the whole process group (npm, tsx, node). */
async function interrupt(cloud: CloudProcess): Promise<number | null> {
  process.kill(-(cloud.child.pid as number), 'SIGINT');
  return cloud.exited;
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Every process on the machine: its pid, its parent and its command line (Linux /proc). */
async function processes(): Promise<{ pid: number; ppid: number; args: string[] }[]> {
  const found: { pid: number; ppid: number; args: string[] }[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const [cmdline, stat] = await Promise.all(
      ['cmdline', 'stat'].map((file) => readFile(`/proc/${entry}/${file}`, 'utf8').catch(() => '')),
    );
    const ppid = Number(stat?.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    found.push({ pid: Number(entry), ppid, args: (cmdline ?? '').split('\0') });
  }
  return found;
}

/** PIDs of DynamoDB Local JVMs listening on `port` (found by their command line). */
async function dynamoDbJvms(port: string): Promise<number[]> {
  return (await processes())
    .filter(
      ({ args }) => args.some((a) => a.includes('DynamoDBLocal')) && args[args.indexOf('-port') + 1] === port,
    )
    .map(({ pid }) => pid);
}

async function waitUntilGone(pids: readonly number[], timeoutMs = 10_000): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  let alive = pids.filter(isRunning);
  while (alive.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    alive = alive.filter(isRunning);
  }
  return alive;
}

const firmware = Buffer.from('firmware for the e2e test\n');

function manifest(version: string): Record<string, unknown> {
  return importManifest({
    updateId: { provider: 'Contoso', name: 'E2e', version },
    compatibility: [{ manufacturer: 'contoso', model: 'e2e' }],
    steps: [
      {
        handler: 'microsoft/script:1',
        files: ['install.sh'],
        handlerProperties: { installedCriteria: `e2e-${version}` },
      },
    ],
    files: [{ filename: 'install.sh', content: firmware }],
  });
}

async function importAndUpload(api: string, version: string): Promise<void> {
  const res = await fetch(`${api}/updates`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(manifest(version)),
  });
  expect(res.status).toBe(201);
  const body = (await res.json()) as { updates: { files: { uploadUrl: string }[] }[] };
  const put = await fetch(body.updates[0]?.files[0]?.uploadUrl ?? '', { method: 'PUT', body: firmware });
  expect(put.status).toBe(200);
}

async function commit(api: string, version: string): Promise<string> {
  const res = await fetch(`${api}/updates/Contoso/E2e/${version}/commit`, { method: 'POST' });
  const body = (await res.json()) as { updates: { state: string }[] };
  return body.updates[0]?.state ?? `HTTP ${res.status}`;
}

/** Every process below `pid`: the JVM runs in a process group of its own, out of the group's reach. */
async function descendants(pid: number): Promise<number[]> {
  const all = await processes();
  const below = (root: number): number[] =>
    all.filter(({ ppid }) => ppid === root).flatMap(({ pid: child }) => [child, ...below(child)]);
  return below(pid);
}

afterEach(async () => {
  // A failed test must not leave a cloud (and its JVM) behind.
  for (const cloud of running) {
    const pids = await descendants(cloud.child.pid as number);
    process.kill(-(cloud.child.pid as number), 'SIGKILL');
    for (const pid of pids.filter(isRunning)) process.kill(pid, 'SIGKILL');
    await cloud.exited;
  }
});

afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

describe('npm run cloud', () => {
  it('comes up, imports an update over HTTP, and stops on Ctrl-C leaving no process or data behind', async () => {
    const dataDir = await tempDir();
    const cloud = startCloud(['--ephemeral', '--data-dir', dataDir]);
    const endpoints = await waitForEndpoints(dataDir, cloud);
    const ddbPort = new URL(endpoints.dynamodb).port;
    const jvms = await dynamoDbJvms(ddbPort);
    expect(jvms).toHaveLength(1);

    await importAndUpload(endpoints.api, '1.0');
    expect(await commit(endpoints.api, '1.0')).toBe('ready');
    expect(cloud.output()).toContain(`operator API  ${endpoints.api}`);
    // The local IoT Core is part of the cloud: its endpoints are published and its shadows answer.
    expect(endpoints.mqtt).toMatch(/^mqtt:\/\/127\.0\.0\.1:\d+$/);
    expect(endpoints.mqtts).toMatch(/^mqtts:\/\/127\.0\.0\.1:\d+$/);
    const shadow = await fetch(`${endpoints.iotData}/things/demo-1/shadow?name=ota`);
    expect(shadow.status).toBe(404);
    expect(((await shadow.json()) as { message: string }).message).toMatch(/shadow|thing/i);
    const endpoint = await fetch(`${endpoints.iot}/endpoint?endpointType=iot%3AData-ATS`);
    expect(endpoint.status).toBe(200);

    await interrupt(cloud);
    expect(cloud.output()).toContain('stopped');
    expect(await waitUntilGone([endpoints.pid, ...jvms])).toEqual([]);
    expect(await dynamoDbJvms(ddbPort)).toEqual([]);
    // Ephemeral: nothing but what the test itself put there remains.
    expect(await readdir(dataDir)).toEqual([]);
  });

  it('stops, JVM included, when its terminal closes (SIGHUP to the group)', async () => {
    const dataDir = await tempDir();
    const cloud = startCloud(['--ephemeral', '--data-dir', dataDir]);
    const endpoints = await waitForEndpoints(dataDir, cloud);
    const jvms = await dynamoDbJvms(new URL(endpoints.dynamodb).port);
    expect(jvms).toHaveLength(1);
    process.kill(-(cloud.child.pid as number), 'SIGHUP');
    try {
      // DynamoDB Local runs in a process group of its own: only the cloud's own stop ends it.
      expect(await waitUntilGone([endpoints.pid, ...jvms])).toEqual([]);
      expect(await readdir(dataDir)).toEqual([]);
    } finally {
      // An orphan is out of afterEach's reach (its parent is gone).
      for (const pid of jvms.filter(isRunning)) process.kill(pid, 'SIGKILL');
    }
  });

  it('Ctrl-C while the services are still starting leaves no JVM behind', async () => {
    const dataDir = await tempDir();
    const port = String(await freePort());
    const cloud = startCloud(['--ephemeral', '--data-dir', dataDir, '--dynamodb-port', port]);
    let jvms: number[] = [];
    for (let i = 0; i < 300 && jvms.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
      jvms = await dynamoDbJvms(port);
    }
    expect(jvms).toHaveLength(1);
    await interrupt(cloud);
    expect(await waitUntilGone(jvms)).toEqual([]);
    expect(cloud.output()).toContain('stopped');
  });

  it('keeps data in --data-dir across a restart, and refuses a second cloud on the same directory', async () => {
    const dataDir = await tempDir();
    const first = startCloud(['--data-dir', dataDir]);
    const before = await waitForEndpoints(dataDir, first);
    await importAndUpload(before.api, '2.0');

    const second = startCloud(['--data-dir', dataDir]);
    expect(await second.exited).not.toBe(0);
    expect(second.output()).toContain(`pid ${before.pid}`);

    // npm dies of the SIGINT itself; what counts is that the cloud stopped cleanly.
    await interrupt(first);
    expect(first.output()).toContain('stopped');
    expect(existsSync(join(dataDir, 'endpoints.json'))).toBe(false);

    const again = startCloud(['--data-dir', dataDir]);
    const after = await waitForEndpoints(dataDir, again);
    // The item (DynamoDB Local's file), the uploaded object (the S3 directory) and the key survived.
    const fetched = await fetch(`${after.api}/updates/Contoso/E2e/2.0`);
    expect(((await fetched.json()) as { state: string }).state).toBe('pending');
    expect(await commit(after.api, '2.0')).toBe('ready');
    expect(after.resources.signingPublicKey.kid).toBe(before.resources.signingPublicKey.kid);
    await interrupt(again);
    expect(await waitUntilGone([after.pid])).toEqual([]);
  });
});

describe('npm start', () => {
  it('stops quietly on Ctrl-C in the middle of the demo: the services in order, DynamoDB Local last', async () => {
    const dataDir = await tempDir();
    const cloud = startCloud(['--ephemeral', '--data-dir', dataDir, '--devices', '30'], 'start');
    const endpoints = await waitForEndpoints(dataDir, cloud);
    const jvms = await dynamoDbJvms(new URL(endpoints.dynamodb).port);
    expect(jvms).toHaveLength(1);
    // Given the rollout under way (devices notified, pollers and fan-out busy against DynamoDB)...
    for (let i = 0; i < 600 && !/notified [1-9]/.test(cloud.output()); i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(cloud.output()).toMatch(/finished \| rolling_out .*notified [1-9]/);
    // ...when the user presses Ctrl-C, then it stops without a single failed call on the way, and
    // without waiting for the fan-out worker's pace (it handed over: 90 s here before it did).
    const asked = Date.now();
    await interrupt(cloud);
    expect(Date.now() - asked).toBeLessThan(20_000);
    expect(cloud.output()).toContain('stopped');
    expect(cloud.output()).not.toMatch(/ECONNREFUSED|failed|refused|Error/);
    expect(await waitUntilGone([endpoints.pid, ...jvms])).toEqual([]);
  }, 120_000);
});
