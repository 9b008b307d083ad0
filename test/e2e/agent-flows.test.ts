/**
 * The real device agent (script and file handlers, not the simulated one) against the real local
 * cloud: updates imported and deployed through the operator API, sent by the fan-out through the
 * `ota` shadows, downloaded from the local S3 with authorizations minted on request, applied on
 * disk, acknowledged, counted. Every scenario ends with the execution read back through
 * GET /deployments/{id}/devices and the deployment's counters. Given / When / Then.
 */
import { randomBytes } from 'node:crypto';
import { access, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { agentErrors } from '../../agent/codes.ts';
import type { RunningAgent } from '../../agent/run.ts';
import { makeSigner } from '../integration/agent/support.ts';
import { countsOf, E2eCloud, type ImportFile, type UpdateIdentity } from './support/cloud.ts';
import {
  callsOf,
  type DeviceFolders,
  type DeviceOptions,
  deviceConfig,
  deviceFolders,
  deviceScript,
  gatewayCompatibility,
  kill,
  spawnDeviceProcess,
  startDevice,
  waitForCall,
} from './support/device.ts';
import { S3Interposer } from './support/interposer.ts';
import { fileStep, importManifest, referenceStep, scriptFile, scriptStep } from './support/updates.ts';

let e2e: E2eCloud;
let root: string;
const agents: RunningAgent[] = [];

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'shadow-ota-agent-e2e-'));
  e2e = await E2eCloud.start('agent-e2e');
});

// What a real agent reports must be taken whole, in every flow (its idle reports once were not).
afterEach(() => {
  expect(e2e.refusedReports()).toEqual([]);
});

afterAll(async () => {
  await Promise.all(agents.map((a) => a.stop()));
  await e2e?.stop();
  await rm(root, { recursive: true, force: true });
});

const gatewayUpdate = (name: string, version = '1.0'): UpdateIdentity => ({
  provider: 'Contoso',
  name,
  version,
});

async function device(thingName: string, options: DeviceOptions = {}) {
  const folders = await deviceFolders(root, thingName);
  const config = deviceConfig(e2e.cloud, thingName, folders, options);
  const running = await startDevice(config);
  agents.push(running);
  return { folders, config, running };
}

/** A one-parent update of script steps (and files) for the gateway model; imported and committed. */
async function importSimple(
  id: UpdateIdentity,
  folders: DeviceFolders,
  steps: readonly { criteria: string; extra?: string }[],
  extraFiles: readonly ImportFile[] = [],
  extraSteps: readonly Record<string, unknown>[] = [],
): Promise<Map<string, string>> {
  const script = scriptFile('steps.sh');
  const files = [script, ...extraFiles];
  return e2e.importUpdate(
    [
      importManifest({
        updateId: id,
        compatibility: [gatewayCompatibility],
        steps: [
          ...steps.map((s) => scriptStep(script.filename, folders.scriptState, s.criteria, s.extra)),
          ...extraSteps,
        ],
        files,
      }),
    ],
    files,
    id,
  );
}

/** Kills the script's process group (the script handler starts each script as a group leader). */
function killProcessGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch (error) {
    // Already gone: the install finished between the agent's death and this line.
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

/** Every file (not folder) under `dir`, none when it does not exist. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

const exists = (path: string): Promise<boolean> =>
  access(path).then(
    () => true,
    () => false,
  );

describe('the device agent on the local cloud', () => {
  it('Given the seed-shaped update (host script + file, reference to a camera child with pre-install/install/post-install), When it is deployed to a real agent, Then the scripts run, the file is installed, the step already met is skipped, and the deployment succeeds', async () => {
    const thing = 'agent-e2e-seed';
    const folders = await deviceFolders(root, thing);
    const parentId = gatewayUpdate('Seed-Gateway');
    const childId = { provider: 'Contoso', name: 'Seed-Camera', version: '1.0' };
    const hostScript = scriptFile('gateway.sh');
    const cameraScript = scriptFile('camera.sh');
    const appConf: ImportFile = { filename: 'app.conf', content: Buffer.from('color=blue\nlevel=7\n') };
    const child = importManifest({
      updateId: childId,
      isDeployable: false,
      compatibility: [{ group: 'cameras' }],
      steps: ['pre-install', 'install', 'post-install'].map((phase) =>
        scriptStep(
          cameraScript.filename,
          folders.scriptState,
          `camera-${phase}`,
          '--component --component-name-val',
        ),
      ),
      files: [cameraScript],
    });
    const parent = importManifest({
      updateId: parentId,
      compatibility: [gatewayCompatibility],
      steps: [
        scriptStep(hostScript.filename, folders.scriptState, 'gateway-1.0'),
        fileStep(appConf.filename, 'config', 'app-conf-1.0'),
        referenceStep(childId),
      ],
      files: [hostScript, appConf],
    });
    await e2e.importUpdate([parent, child], [hostScript, cameraScript, appConf], parentId);
    // The camera's pre-install was done on this device before: its installedCriteria are met.
    await writeFile(join(folders.scriptState, 'installed-camera-pre-installfront-camera'), 'done earlier\n');
    await device(thing);

    const id = await e2e.deploy(parentId, [thing]);

    const execution = await e2e.finalExecution(id, thing);
    expect(execution).toMatchObject({
      state: 'succeeded',
      result: {
        resultCode: 700,
        stepResults: {
          step_0: { resultCode: 700 },
          step_1: { resultCode: 700 },
          step_2: { resultCode: 700 },
        },
      },
    });
    expect(await callsOf(folders)).toEqual([
      '--action-is-installed gateway-1.0',
      '--action-download gateway-1.0',
      '--action-install gateway-1.0',
      '--action-apply gateway-1.0',
      '--action-is-installed camera-pre-install front-camera',
      '--action-is-installed camera-install front-camera',
      '--action-download camera-install front-camera',
      '--action-install camera-install front-camera',
      '--action-apply camera-install front-camera',
      '--action-is-installed camera-post-install front-camera',
      '--action-download camera-post-install front-camera',
      '--action-install camera-post-install front-camera',
      '--action-apply camera-post-install front-camera',
    ]);
    expect(await readFile(join(folders.scriptState, 'installed-gateway-1.0'), 'utf8')).toBe('gateway-1.0 \n');
    expect(await readFile(join(folders.scriptState, 'installed-camera-installfront-camera'), 'utf8')).toBe(
      'camera-install front-camera\n',
    );
    // The skipped step's mark is the one the device had: the step never ran its install.
    expect(
      await readFile(join(folders.scriptState, 'installed-camera-pre-installfront-camera'), 'utf8'),
    ).toBe('done earlier\n');
    expect(await readFile(folders.configFile, 'utf8')).toBe('color=blue\nlevel=7\n');
    const ended = await e2e.endedDeployment(id);
    expect(ended.status).toBe('completed');
    expect(countsOf(ended)).toMatchObject({
      succeeded: 1,
      queued: 0,
      notified: 0,
      downloading: 0,
      failed: 0,
    });
    const view = (await e2e.call('GET', `/devices/${thing}`)).body;
    expect(view.installedUpdateId).toEqual(parentId);
    // Online when notified: its grant came with the notification, the authorizer was never asked.
    expect(e2e.authorizationsOf(thing)).toEqual([]);
  });

  it('Given an artifact replaced in S3 after the import was committed, When a device applies the update, Then it fails with the hash code and never runs it', async () => {
    const thing = 'agent-e2e-hash';
    const folders = await deviceFolders(root, thing);
    const id = gatewayUpdate('Hash-Gateway');
    const keys = await importSimple(id, folders, [{ criteria: 'hash-1' }]);
    const scriptKey = keys.get('steps.sh');
    if (!scriptKey) throw new Error('no object key for steps.sh');
    // Same size, other bytes: only the hash can tell (a shorter object fails on its size).
    const evil = Buffer.from(
      `#!/bin/sh\ntouch ${folders.scriptState}/pwned\n#`.padEnd(deviceScript.length, '#'),
    );
    await e2e.replaceObject(scriptKey, evil);
    await device(thing);

    const deploymentId = await e2e.deploy(id, [thing]);

    const execution = await e2e.finalExecution(deploymentId, thing);
    expect(execution).toMatchObject({
      state: 'failed',
      result: { resultCode: 0, extendedResultCode: agentErrors.HASH_MISMATCH },
    });
    expect(String((execution.result as { resultDetails?: string }).resultDetails)).toMatch(/^HASH_MISMATCH/);
    expect(await callsOf(folders)).toEqual([]);
    expect(await exists(join(folders.scriptState, 'pwned'))).toBe(false);
    const ended = await e2e.endedDeployment(deploymentId);
    expect(countsOf(ended)).toMatchObject({ failed: 1, succeeded: 0 });
  });

  it('Given a device that trusts another key under the same key id, When the signed deployment arrives, Then it fails with the signature code and downloads nothing', async () => {
    const thing = 'agent-e2e-badsig';
    const folders = await deviceFolders(root, thing);
    const id = gatewayUpdate('BadSig-Gateway');
    await importSimple(id, folders, [{ criteria: 'badsig-1' }]);
    const stranger = makeSigner(String(e2e.cloud.resources.signingPublicKey.kid));
    await device(thing, { trustedKeys: [stranger.trusted] });

    const deploymentId = await e2e.deploy(id, [thing]);

    const execution = await e2e.finalExecution(deploymentId, thing);
    expect(execution).toMatchObject({
      state: 'failed',
      result: { resultCode: 0, extendedResultCode: agentErrors.SIGNATURE_BAD_SIGNATURE },
    });
    expect(await callsOf(folders)).toEqual([]);
    // The signed manifest came with the grant the fan-out sent with the notification (the
    // authorizer was never asked); not a file was downloaded.
    expect(e2e.authorizationsOf(thing)).toEqual([]);
    expect(await filesUnder(folders.workDir)).toEqual([]);
    const ended = await e2e.endedDeployment(deploymentId);
    expect(countsOf(ended)).toMatchObject({ failed: 1, succeeded: 0 });
  });

  it('Given a device of another model, When the update is deployed to it, Then it reports incompatible without downloading a file', async () => {
    const thing = 'agent-e2e-incompat';
    const folders = await deviceFolders(root, thing);
    const id = gatewayUpdate('Incompat-Gateway');
    await importSimple(id, folders, [{ criteria: 'incompat-1' }]);
    await device(thing, { compatibility: { manufacturer: 'contoso', model: 'e2e-kettle' } });

    const deploymentId = await e2e.deploy(id, [thing]);

    const execution = await e2e.finalExecution(deploymentId, thing);
    expect(execution).toMatchObject({ state: 'incompatible' });
    expect(await callsOf(folders)).toEqual([]);
    expect(e2e.authorizationsOf(thing)).toEqual([]);
    expect(await filesUnder(folders.workDir)).toEqual([]);
    const ended = await e2e.endedDeployment(deploymentId);
    expect(countsOf(ended)).toMatchObject({ incompatible: 1, succeeded: 0, failed: 0 });
  });

  it('Given STS downloads through a network that drops the connection halfway, When the device downloads a large file, Then it resumes with Range and installs exactly the file', async () => {
    const thing = 'agent-e2e-resume';
    const folders = await deviceFolders(root, thing);
    const id = gatewayUpdate('Resume-Gateway');
    const blob: ImportFile = { filename: 'blob.bin', content: randomBytes(6 * 1024 * 1024) };
    const keys = await importSimple(id, folders, [], [blob], [fileStep(blob.filename, 'blob', 'blob-1.0')]);
    const blobKey = keys.get(blob.filename);
    if (!blobKey) throw new Error('no object key for blob.bin');
    const network = await S3Interposer.start(e2e.cloud.endpoints.s3);
    try {
      const cutAt = 2 * 1024 * 1024;
      network.cutNextDownload(blobKey, cutAt);
      await device(thing, { s3Endpoint: network.endpoint });

      const deploymentId = await e2e.deploy(id, [thing], {
        download: { mode: 'sts', credentialLifetimeSeconds: 900 },
      });

      const execution = await e2e.finalExecution(deploymentId, thing);
      expect(execution).toMatchObject({ state: 'succeeded' });
      expect((await readFile(folders.blobFile)).equals(blob.content)).toBe(true);
      const gets = network.requests.filter(
        (r) => r.method === 'GET' && decodeURIComponent(r.path).endsWith(blobKey),
      );
      expect(gets[0]).toMatchObject({ status: 200, range: undefined, cut: true, bytes: cutAt });
      const resumed = gets.slice(1);
      expect(resumed.length).toBeGreaterThanOrEqual(1);
      const from = Number(/^bytes=(\d+)-$/.exec(resumed[0]?.range ?? '')?.[1]);
      expect(from).toBeGreaterThan(0);
      expect(from).toBeLessThanOrEqual(cutAt);
      expect(resumed[0]).toMatchObject({ status: 206, cut: false, bytes: blob.content.length - from });
      // Nothing fetched twice but what was in flight when the connection dropped.
      const fetched = gets.reduce((sum, r) => sum + r.bytes, 0);
      expect(fetched).toBe(blob.content.length + (cutAt - from));
      const ended = await e2e.endedDeployment(deploymentId);
      expect(countsOf(ended)).toMatchObject({ succeeded: 1 });
    } finally {
      await network.stop();
    }
  });

  it('Given an agent process killed mid-install, When it starts again, Then it completes without re-running finished steps', async () => {
    const thing = 'agent-e2e-killed';
    const folders = await deviceFolders(root, thing);
    const id = gatewayUpdate('Killed-Gateway');
    await importSimple(id, folders, [
      { criteria: 'k-first' },
      { criteria: 'k-slow', extra: '--sleep 3' },
      { criteria: 'k-last' },
    ]);
    const first = await spawnDeviceProcess(e2e.cloud, thing, folders);
    let second: Awaited<ReturnType<typeof spawnDeviceProcess>> | undefined;
    try {
      const deploymentId = await e2e.deploy(id, [thing]);
      await waitForCall(folders, '--action-install k-slow', 20_000);
      // Power loss: the agent and the script it runs (in its own process group) die together.
      await kill(first);
      killProcessGroup(Number(await readFile(join(folders.scriptState, 'k-slow.pid'), 'utf8')));
      const journal = JSON.parse(await readFile(join(folders.stateDir, 'journal.json'), 'utf8')) as {
        units: Record<string, { state: string }>;
      };
      expect(journal.units).toMatchObject({ step_0: { state: 'done' }, step_1: { state: 'started' } });

      second = await spawnDeviceProcess(e2e.cloud, thing, folders);
      const execution = await e2e.finalExecution(deploymentId, thing, 30_000);
      expect(execution).toMatchObject({ state: 'succeeded' });
      const installs = (await callsOf(folders)).filter((c) => c.startsWith('--action-install'));
      expect(installs).toEqual([
        '--action-install k-first',
        '--action-install k-slow',
        '--action-install k-slow',
        '--action-install k-last',
      ]);
      const ended = await e2e.endedDeployment(deploymentId);
      expect(countsOf(ended)).toMatchObject({ succeeded: 1, failed: 0 });
    } finally {
      await kill(first);
      if (second) await kill(second);
    }
  });

  it('Given a long script step running, When the operator cancels the deployment, Then the device reports canceled, the next step never runs, and the execution is canceled', async () => {
    const thing = 'agent-e2e-cancel';
    const folders = await deviceFolders(root, thing);
    const id = gatewayUpdate('Cancel-Gateway');
    await importSimple(id, folders, [{ criteria: 'c-long', extra: '--sleep 2' }, { criteria: 'c-after' }]);
    await device(thing);
    const deploymentId = await e2e.deploy(id, [thing]);
    await waitForCall(folders, '--action-install c-long');

    expect(await e2e.cancel(deploymentId)).toBeLessThan(300);

    const execution = await e2e.finalExecution(deploymentId, thing);
    expect(execution).toMatchObject({
      state: 'canceled',
      reason: 'canceled_by_operator',
      result: { resultCode: -1, extendedResultCode: agentErrors.CANCELED },
    });
    const calls = await callsOf(folders);
    expect(calls).toContain('--action-cancel c-long');
    expect(calls.some((c) => c.includes('c-after'))).toBe(false);
    const ended = await e2e.endedDeployment(deploymentId);
    expect(ended.status).toBe('canceled');
    expect(countsOf(ended)).toMatchObject({ canceled: 1, succeeded: 0, installing: 0, downloading: 0 });
  });

  it('Given URLs that live 10 s and a device that goes offline mid-update, When it reconnects after they expired, Then it asks for fresh authorization and completes', async () => {
    const thing = 'agent-e2e-offline';
    const folders = await deviceFolders(root, thing);
    const id = gatewayUpdate('Offline-Gateway');
    const appConf: ImportFile = {
      filename: 'later.conf',
      content: Buffer.from('fetched after the reconnect\n'),
    };
    await importSimple(
      id,
      folders,
      [{ criteria: 'o-first', extra: '--sleep 1' }],
      [appConf],
      [fileStep(appConf.filename, 'config', 'later-1.0')],
    );
    const online = await device(thing);
    const lifetimeMs = 10_000;
    // The first grant comes with the notification, minted after this.
    const firstGrantAt = Date.now();
    const deploymentId = await e2e.deploy(id, [thing], {
      download: { mode: 'presigned', credentialLifetimeSeconds: lifetimeMs / 1000 },
    });
    await waitForCall(folders, '--action-install o-first');
    await online.running.stop();
    expect(e2e.authorizationsOf(thing)).toEqual([]);
    await new Promise((resolve) =>
      setTimeout(resolve, Math.max(0, firstGrantAt + lifetimeMs + 500 - Date.now())),
    );

    await device(thing);

    const execution = await e2e.finalExecution(deploymentId, thing);
    expect(execution).toMatchObject({ state: 'succeeded' });
    expect(await readFile(folders.configFile, 'utf8')).toBe('fetched after the reconnect\n');
    const after = e2e.authorizationsOf(thing);
    expect(after.length).toBeGreaterThanOrEqual(1);
    expect(after.every((a) => a.answered === 'accepted')).toBe(true);
    expect((after[0]?.at ?? 0) - firstGrantAt).toBeGreaterThan(lifetimeMs);
    const ended = await e2e.endedDeployment(deploymentId);
    expect(countsOf(ended)).toMatchObject({ succeeded: 1, failed: 0 });
  });
});
