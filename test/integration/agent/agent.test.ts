/**
 * The device agent against the local IoT Core over real MQTT (the AWS IoT Device SDK v2), with the
 * service side played by the test: desired.ota written to the shadow, download requests answered
 * with URLs of a local file server. Each scenario is Given / When / Then.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentErrors } from '../../../agent/codes.ts';
import { silentLogger } from '../../../agent/log.ts';
import { type RunningAgent, startAgent } from '../../../agent/run.ts';
import {
  buildManifest,
  readLines,
  scriptStep,
  testScript,
  World,
  waitForCall,
  writeExecutable,
} from './support.ts';

let world: World;
const running: RunningAgent[] = [];

beforeAll(async () => {
  world = await World.start();
});
afterAll(async () => {
  await Promise.all(running.map((a) => a.stop()));
  await world.stop();
});

const script = { name: 'install.sh', body: Buffer.from(testScript) };
const updateId = (version: string) => ({ provider: 'contoso', name: 'toaster-fw', version });

async function startDevice(thing: string, overrides = {}) {
  const config = await world.deviceConfig(thing, overrides);
  const agent = await startAgent(config, { log: silentLogger, channelTimeoutMs: 5000 });
  running.push(agent);
  return { config, agent };
}

describe('device agent on the local IoT Core', () => {
  it('Given a signed update over mTLS, when the delta arrives, then it downloads, runs the steps and reports succeeded', async () => {
    const thing = 'agent-happy';
    const certificate = await world.iot.issueClientCertificate(thing);
    const tlsPort = Number(new URL(world.iot.endpoints.mqtts).port);
    const config = await world.deviceConfig(thing);
    // The skipped step: its criteria are already met on the device.
    await import('node:fs/promises').then((fs) =>
      fs.writeFile(join(config.scriptState, 'installed-already-1'), ''),
    );
    const appConf = { name: 'app.conf', body: Buffer.from('color=blue\n') };
    const { manifest, bodies } = buildManifest(
      updateId('1.0'),
      [{ manufacturer: 'contoso', model: 'toaster' }],
      [script, appConf],
      [
        scriptStep(config.scriptState, 'pre-1'),
        scriptStep(config.scriptState, 'already-1'),
        {
          handler: 'shadow-ota/file:1',
          files: ['app.conf'],
          handlerProperties: { destination: 'config', installedCriteria: 'conf-1' },
        },
      ],
    );
    world.serve(bodies);
    const agent = await startAgent(
      {
        ...config,
        mqtt: {
          host: 'localhost',
          port: tlsPort,
          tls: { cert: certificate.cert, key: certificate.key, ca: world.iot.caCertificate },
        },
      },
      { log: silentLogger },
    );
    running.push(agent);

    await world.deploy(thing, { deploymentId: 'dep-happy', manifest });

    const ota = await world.waitForReported(thing, (o) => o.state === 'succeeded');
    expect(ota).toMatchObject({
      deploymentId: 'dep-happy',
      attempt: 1,
      updateId: updateId('1.0'),
      installedUpdateId: updateId('1.0'),
      compatibility: { manufacturer: 'contoso', model: 'toaster' },
      lastResult: {
        resultCode: 700,
        stepResults: {
          step_0: { resultCode: 700 },
          step_1: { resultCode: 900 },
          step_2: { resultCode: 700 },
        },
      },
    });
    const calls = await readLines(join(config.scriptState, 'calls.log'));
    expect(calls).toEqual([
      '--action-is-installed pre-1',
      '--action-download pre-1',
      '--action-install pre-1',
      '--action-apply pre-1',
      '--action-is-installed already-1',
    ]);
    const installedPath = config.handlers.file?.destinations.config ?? '';
    expect(await readFile(installedPath, 'utf8')).toBe('color=blue\n');
    // Download authorization was asked once for the deployment, not per file.
    expect(world.downloadRequests.filter((r) => r.thing === thing)).toHaveLength(1);
  });

  it('Given a manifest signed by an unknown key, then nothing runs and it reports failed with the signature code', async () => {
    const thing = 'agent-badsig';
    const { config } = await startDevice(thing);
    const { manifest, bodies } = buildManifest(
      updateId('1.0'),
      [{ manufacturer: 'contoso' }],
      [script],
      [scriptStep(config.scriptState, 'x-1')],
    );
    world.serve(bodies);
    const requestsBefore = [...world.files.requests];
    const stranger = (await import('./support.ts')).makeSigner('test-key-1');
    await world.deploy(thing, { deploymentId: 'dep-badsig', manifest, signer: stranger.signer });
    const ota = await world.waitForReported(thing, (o) => o.state === 'failed');
    expect(ota).toMatchObject({
      deploymentId: 'dep-badsig',
      lastResult: { resultCode: 0, extendedResultCode: agentErrors.SIGNATURE_BAD_SIGNATURE },
    });
    expect(String((ota.lastResult as { resultDetails?: string }).resultDetails)).toMatch(
      /^SIGNATURE_BAD_SIGNATURE/,
    );
    expect(await readLines(join(config.scriptState, 'calls.log'))).toEqual([]);
    // The signed manifest came with the authorization; no file was fetched.
    expect(world.downloadRequests.filter((r) => r.thing === thing)).toHaveLength(1);
    expect(world.files.requests).toEqual(requestsBefore);
  });

  it('Given an update for another model, then it reports incompatible without downloading a file', async () => {
    const thing = 'agent-incompat';
    const { config } = await startDevice(thing);
    const { manifest, bodies } = buildManifest(
      updateId('1.0'),
      [{ manufacturer: 'contoso', model: 'kettle' }],
      [script],
      [scriptStep(config.scriptState, 'y-1')],
    );
    world.serve(bodies);
    const requestsBefore = [...world.files.requests];
    await world.deploy(thing, { deploymentId: 'dep-incompat', manifest });
    const ota = await world.waitForReported(thing, (o) => o.state === 'incompatible');
    expect(ota).toMatchObject({
      deploymentId: 'dep-incompat',
      lastResult: { extendedResultCode: agentErrors.INCOMPATIBLE },
    });
    expect(world.downloadRequests.filter((r) => r.thing === thing)).toHaveLength(1);
    expect(world.files.requests).toEqual(requestsBefore);
  });

  it('Given a finished deployment, when the same desired document arrives again, then nothing runs again', async () => {
    const thing = 'agent-dup';
    const { config } = await startDevice(thing);
    const { manifest, bodies } = buildManifest(
      updateId('2.0'),
      [{ manufacturer: 'contoso' }],
      [script],
      [scriptStep(config.scriptState, 'dup-1')],
    );
    world.serve(bodies);
    const options = { deploymentId: 'dep-dup', manifest };
    const signature = await world.sign(options);
    await world.deploy(thing, { ...options, signature });
    await world.waitForReported(thing, (o) => o.state === 'succeeded');
    const callsBefore = await readLines(join(config.scriptState, 'calls.log'));
    const reportsBefore = world.reported(thing);
    // The fan-out notifying twice writes the identical document: a new version, a new delta.
    await world.deploy(thing, { ...options, signature });
    await new Promise((r) => setTimeout(r, 700));
    expect(await readLines(join(config.scriptState, 'calls.log'))).toEqual(callsBefore);
    expect(world.reported(thing)).toEqual(reportsBefore);
    expect(world.downloadRequests.filter((r) => r.thing === thing)).toHaveLength(1);
  });

  it('Given a running deployment, when the service sends cancel, then the next step never runs and it reports canceled', async () => {
    const thing = 'agent-cancel';
    const { config } = await startDevice(thing);
    const { manifest, bodies } = buildManifest(
      updateId('3.0'),
      [{ manufacturer: 'contoso' }],
      [script],
      [scriptStep(config.scriptState, 'slow-1', '--sleep 1'), scriptStep(config.scriptState, 'after-1')],
    );
    world.serve(bodies);
    await world.deploy(thing, { deploymentId: 'dep-cancel', manifest });
    // The first step is running (it sleeps a second): cancel now.
    await waitForCall(config.scriptState, '--action-install slow-1');
    world.cancel(thing);
    const ota = await world.waitForReported(thing, (o) => o.state === 'canceled');
    expect(ota).toMatchObject({
      deploymentId: 'dep-cancel',
      lastResult: { resultCode: -1, extendedResultCode: agentErrors.CANCELED },
    });
    const calls = await readLines(join(config.scriptState, 'calls.log'));
    expect(calls.some((c) => c.includes('after-1'))).toBe(false);
  });

  it('Given an agent stopped mid-install, when it starts again, then completed steps are not re-run and it finishes', async () => {
    const thing = 'agent-restart';
    const first = await startDevice(thing);
    const state = first.config.scriptState;
    const { manifest, bodies } = buildManifest(
      updateId('4.0'),
      [{ manufacturer: 'contoso' }],
      [script],
      [scriptStep(state, 'r-first'), scriptStep(state, 'r-slow', '--sleep 2'), scriptStep(state, 'r-last')],
    );
    world.serve(bodies);
    await world.deploy(thing, { deploymentId: 'dep-restart', manifest });
    await waitForCall(state, '--action-install r-slow');
    await first.agent.stop();
    const journal = JSON.parse(await readFile(join(first.config.stateDir, 'journal.json'), 'utf8')) as {
      units: Record<string, { state: string }>;
    };
    expect(journal.units).toMatchObject({ step_0: { state: 'done' }, step_1: { state: 'started' } });

    await startDevice(thing);
    const ota = await world.waitForReported(thing, (o) => o.state === 'succeeded');
    expect(ota).toMatchObject({ deploymentId: 'dep-restart', installedUpdateId: updateId('4.0') });
    const calls = await readLines(join(state, 'calls.log'));
    expect(calls.filter((c) => c === '--action-install r-first')).toHaveLength(1);
    expect(calls.filter((c) => c === '--action-install r-slow')).toHaveLength(2);
    expect(calls.filter((c) => c === '--action-install r-last')).toHaveLength(1);
  });

  it('Given an agent stopped mid-install, when it starts again while the service refuses grants, then it finishes from its journal', async () => {
    const thing = 'agent-resume-offline';
    const first = await startDevice(thing);
    const state = first.config.scriptState;
    const { manifest, bodies } = buildManifest(
      updateId('4.2'),
      [{ manufacturer: 'contoso' }],
      [script],
      [scriptStep(state, 'o-first'), scriptStep(state, 'o-slow', '--sleep 2')],
    );
    world.serve(bodies);
    await world.deploy(thing, { deploymentId: 'dep-resume-offline', manifest });
    await waitForCall(state, '--action-install o-slow');
    await first.agent.stop();
    const journal = JSON.parse(await readFile(join(first.config.stateDir, 'journal.json'), 'utf8')) as {
      signed?: { manifest: string; signature: string };
    };
    expect(journal.signed?.manifest).toContain('o-slow');
    const asked = world.downloadRequests.filter((r) => r.thing === thing).length;

    // The deployment ran past its deadline, say: the service no longer hands out its grant.
    world.rejectDownloads = 'NO_ACTIVE_EXECUTION';
    try {
      await startDevice(thing);
      const ota = await world.waitForReported(thing, (o) => o.state === 'succeeded');
      expect(ota).toMatchObject({ deploymentId: 'dep-resume-offline', installedUpdateId: updateId('4.2') });
      // Its files were on disk and its signed manifest in the journal: it asked for nothing.
      expect(world.downloadRequests.filter((r) => r.thing === thing)).toHaveLength(asked);
    } finally {
      world.rejectDownloads = undefined;
    }
  });

  it('Given an agent stopped after downloading, when a crash tore the downloaded file, then it downloads it again and never runs the torn one', async () => {
    const thing = 'agent-torn-file';
    const first = await startDevice(thing);
    const state = first.config.scriptState;
    const { manifest, bodies } = buildManifest(
      updateId('4.1'),
      [{ manufacturer: 'contoso' }],
      [script],
      [scriptStep(state, 't-first'), scriptStep(state, 't-slow', '--sleep 2')],
    );
    world.serve(bodies);
    await world.deploy(thing, { deploymentId: 'dep-torn', manifest });
    await waitForCall(state, '--action-install t-slow');
    await first.agent.stop();
    const journal = JSON.parse(await readFile(join(first.config.stateDir, 'journal.json'), 'utf8')) as {
      units: Record<string, { state: string }>;
    };
    expect(journal.units).toMatchObject({ step_1: { state: 'started' } });
    // Downloads are not fsynced: a power cut can leave a file with other bytes than were verified.
    const scriptPath = join(first.config.workDir, 'dep-torn', 'step_1', 'install.sh');
    const tampered = join(state, 'tampered');
    await writeExecutable(scriptPath, `#!/bin/sh\ntouch ${tampered}\n`);
    const fetchedBefore = world.files.requests.length;

    await startDevice(thing);
    const ota = await world.waitForReported(thing, (o) => o.state === 'succeeded');
    expect(ota).toMatchObject({ deploymentId: 'dep-torn', installedUpdateId: updateId('4.1') });
    expect(world.files.requests.length).toBe(fetchedBefore + 1);
    expect((await readFile(scriptPath)).equals(script.body)).toBe(true);
    await expect(readFile(tampered)).rejects.toThrow(/ENOENT/);
    const calls = await readLines(join(state, 'calls.log'));
    expect(calls.filter((c) => c === '--action-install t-slow')).toHaveLength(2);
  });

  it('Given a reference step, then the child update runs on each matching component with its values', async () => {
    const thing = 'agent-components';
    const { config } = await startDevice(thing, {
      components: [
        { id: 'm-1', name: 'left-motor', group: 'motors' },
        { id: 'm-2', name: 'right-motor', group: 'motors' },
        { id: 'c-1', name: 'camera', group: 'cameras' },
      ],
    });
    const childId = { provider: 'contoso', name: 'motor-fw', version: '1.2' };
    const child = buildManifest(
      childId,
      [{ group: 'motors' }],
      [script],
      [scriptStep(config.scriptState, 'motor-1.2', '--component --component-name-val')],
    );
    const parent = buildManifest(
      updateId('5.0'),
      [{ manufacturer: 'contoso' }],
      [],
      [{ child: child.manifest }],
    );
    world.serve(parent.bodies);
    world.serve(child.bodies);
    await world.deploy(thing, {
      deploymentId: 'dep-components',
      manifest: parent.manifest,
      children: [child.manifest],
    });
    const ota = await world.waitForReported(thing, (o) => o.state === 'succeeded' || o.state === 'failed');
    expect(ota).toMatchObject({
      state: 'succeeded',
      lastResult: { stepResults: { step_0: { resultCode: 700 } } },
    });
    const installs = (await readLines(join(config.scriptState, 'calls.log'))).filter((c) =>
      c.startsWith('--action-install'),
    );
    expect(installs).toEqual([
      '--action-install motor-1.2 left-motor',
      '--action-install motor-1.2 right-motor',
    ]);
  });

  it('Given version 9.0 installed, when 8.0 comes without a rollback claim, then it refuses; with one, it applies', async () => {
    const thing = 'agent-downgrade';
    const { config } = await startDevice(thing);
    const v9 = buildManifest(
      updateId('9.0'),
      [{ manufacturer: 'contoso' }],
      [script],
      [scriptStep(config.scriptState, 'v9')],
    );
    world.serve(v9.bodies);
    await world.deploy(thing, { deploymentId: 'dep-v9', manifest: v9.manifest });
    await world.waitForReported(thing, (o) => o.state === 'succeeded' && o.deploymentId === 'dep-v9');
    const v8 = buildManifest(
      updateId('8.0'),
      [{ manufacturer: 'contoso' }],
      [script],
      [scriptStep(config.scriptState, 'v8')],
    );
    world.serve(v8.bodies);
    await world.deploy(thing, { deploymentId: 'dep-v8', manifest: v8.manifest });
    const refused = await world.waitForReported(
      thing,
      (o) => o.deploymentId === 'dep-v8' && o.state === 'failed',
    );
    expect(refused).toMatchObject({
      lastResult: { extendedResultCode: agentErrors.DOWNGRADE_REFUSED },
      installedUpdateId: updateId('9.0'),
    });
    await world.deploy(thing, { deploymentId: 'dep-v8-rollback', manifest: v8.manifest, rollback: true });
    const rolled = await world.waitForReported(
      thing,
      (o) => o.deploymentId === 'dep-v8-rollback' && o.state === 'succeeded',
    );
    expect(rolled).toMatchObject({ installedUpdateId: updateId('8.0') });
  });

  it('Given the grant sent with the notification, then it installs without asking for authorization', async () => {
    const thing = 'agent-pushed';
    const { config } = await startDevice(thing);
    const { manifest, bodies } = buildManifest(
      updateId('9.0'),
      [{ manufacturer: 'contoso' }],
      [script],
      [scriptStep(config.scriptState, 'pushed-1')],
    );
    world.serve(bodies);
    const options = { deploymentId: 'dep-pushed', manifest };
    // A grant for another deployment first: never used for this one.
    await world.pushGrant(thing, { deploymentId: 'dep-other', manifest });
    await world.pushGrant(thing, options);
    await world.deploy(thing, options);
    await world.waitForReported(thing, (o) => o.state === 'succeeded' && o.deploymentId === 'dep-pushed');
    expect(world.downloadRequests.filter((r) => r.thing === thing)).toEqual([]);
    expect(await readLines(join(config.scriptState, 'calls.log'))).toContain('--action-install pushed-1');
  });

  it('Given a pushed grant for another attempt of the deployment, then it asks for its own', async () => {
    const thing = 'agent-pushed-attempt';
    const { config } = await startDevice(thing);
    const { manifest, bodies } = buildManifest(
      updateId('9.2'),
      [{ manufacturer: 'contoso' }],
      [script],
      [scriptStep(config.scriptState, 'attempt-1')],
    );
    world.serve(bodies);
    const options = { deploymentId: 'dep-pushed-attempt', manifest };
    await world.pushGrant(thing, { ...options, attempt: 2 });
    await world.deploy(thing, options);
    await world.waitForReported(
      thing,
      (o) => o.state === 'succeeded' && o.deploymentId === 'dep-pushed-attempt',
    );
    const asked = world.downloadRequests.filter((r) => r.thing === thing);
    expect(asked).toHaveLength(1);
    expect(asked[0]?.body).toMatchObject({ deploymentId: 'dep-pushed-attempt', attempt: 1 });
  });

  it('Given a pushed grant with too little life left, then it asks for a fresh one', async () => {
    const thing = 'agent-pushed-stale';
    const { config } = await startDevice(thing);
    const { manifest, bodies } = buildManifest(
      updateId('9.1'),
      [{ manufacturer: 'contoso' }],
      [script],
      [scriptStep(config.scriptState, 'stale-1')],
    );
    world.serve(bodies);
    const options = { deploymentId: 'dep-pushed-stale', manifest };
    await world.pushGrant(thing, options, 1_000);
    await new Promise((r) => setTimeout(r, 600));
    await world.deploy(thing, options);
    await world.waitForReported(
      thing,
      (o) => o.state === 'succeeded' && o.deploymentId === 'dep-pushed-stale',
    );
    expect(world.downloadRequests.filter((r) => r.thing === thing)).toHaveLength(1);
  });

  it('Given the service refuses the download, then it reports failed with the authorization code', async () => {
    const thing = 'agent-refused';
    const { config } = await startDevice(thing);
    const { manifest, bodies } = buildManifest(
      updateId('1.0'),
      [{ manufacturer: 'contoso' }],
      [script],
      [scriptStep(config.scriptState, 'z-1')],
    );
    world.serve(bodies);
    world.rejectDownloads = 'NO_ACTIVE_EXECUTION';
    try {
      await world.deploy(thing, { deploymentId: 'dep-refused', manifest });
      const ota = await world.waitForReported(thing, (o) => o.state === 'failed');
      expect(ota).toMatchObject({ lastResult: { extendedResultCode: agentErrors.AUTHORIZATION_REJECTED } });
      expect(String((ota.lastResult as { resultDetails?: string }).resultDetails)).toContain(
        'NO_ACTIVE_EXECUTION',
      );
    } finally {
      world.rejectDownloads = undefined;
    }
  });
});
