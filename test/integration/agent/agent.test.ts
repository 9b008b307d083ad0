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
import { buildManifest, readLines, sha256, testScript, World } from './support.ts';

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

function scriptStep(state: string, criteria: string, extra = '') {
  return {
    handler: 'microsoft/script:1',
    files: ['install.sh'],
    handlerProperties: {
      scriptFileName: 'install.sh',
      arguments: `--state ${state} ${extra}`.trim(),
      installedCriteria: criteria,
    },
  };
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
});
