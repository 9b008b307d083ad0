/**
 * The agent's side of the shadow protocol (ADR 0010) against the local IoT Core over real MQTT:
 * what it publishes on its `ota` shadow for one deployment, and how it keeps a newer document safe
 * when it clears desired itself.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../../agent/log.ts';
import { type RunningAgent, startAgent } from '../../../agent/run.ts';
import { buildDesiredOta } from '../../../lambdas/domain/deployment/index.ts';
import {
  buildManifest,
  type DeployOptions,
  type ShadowRequestSeen,
  scriptStep,
  testScript,
  World,
} from './support.ts';

let world: World;
const running: RunningAgent[] = [];
const requests: ShadowRequestSeen[] = [];

beforeAll(async () => {
  world = await World.start({ observe: (request) => requests.push(request) });
});
afterAll(async () => {
  await Promise.all(running.map((a) => a.stop()));
  await world.stop();
});

const script = { name: 'install.sh', body: Buffer.from(testScript) };
const updateId = { provider: 'contoso', name: 'toaster-fw', version: '3.0' };

async function startDevice(thing: string) {
  const config = await world.deviceConfig(thing);
  const agent = await startAgent(config, { log: silentLogger, channelTimeoutMs: 5000 });
  running.push(agent);
  return config;
}

/** What the fan-out writes: the service's own document builder, `job` included. */
async function deployAsService(thing: string, options: DeployOptions): Promise<void> {
  await world.sign(options);
  const built = buildDesiredOta({ deploymentId: options.deploymentId, attempt: 1, updateId });
  if (!built.ok) throw new Error(built.error.message);
  world.writeDesired(thing, built.value.document.state.desired);
}

const ofThing = (thing: string) => (r: ShadowRequestSeen) => r.topic.startsWith(`$aws/things/${thing}/`);

async function shadowOf(thing: string) {
  const reply = world.iot.shadows.get({ thingName: thing, shadowName: 'ota' }, Buffer.from('{}'));
  if (!reply.ok) throw new Error('no shadow');
  return reply.body as { version: number; state: { desired?: { ota?: unknown }; delta?: unknown } };
}

describe('agent on the ota shadow', () => {
  it('acts on a whole delta without reading the shadow, sends only its terminal report (numbered) and clears desired in it', async () => {
    const thing = 'protocol-lean';
    const config = await startDevice(thing);
    const { manifest, bodies } = buildManifest(
      updateId,
      [{ manufacturer: 'contoso' }],
      [script],
      [scriptStep(config.scriptState, 'lean-1')],
    );
    world.serve(bodies);
    await world.waitForReported(thing, (o) => o.state === 'idle');
    await world.iot.rulesIdle();
    const before = requests.filter(ofThing(thing)).length;

    await deployAsService(thing, { deploymentId: 'dep-lean', manifest });
    await world.waitForReported(thing, (o) => o.state === 'succeeded');
    await world.iot.rulesIdle();

    const sent = requests.filter(ofThing(thing)).slice(before);
    // No `downloading` report: its download authorization request told the service (ADR 0050).
    expect(sent.map((r) => r.topic.split('/').at(-1))).toEqual(['update']);
    expect(world.downloadRequests.filter((r) => r.thing === thing)).toHaveLength(1);
    const [terminal] = sent;
    expect(terminal?.state?.reported?.ota?.state).toBe('succeeded');
    expect(terminal?.state?.desired).toEqual({ ota: null });
    expect(Number(terminal?.state?.reported?.ota?.seq)).toBeGreaterThan(0);
    const shadow = await shadowOf(thing);
    expect(shadow.state.desired?.ota).toBeUndefined();
    expect(shadow.state.delta).toBeUndefined();
    // Locked to the version its document was seen in: the clear went through at once.
    expect(terminal?.version).toBe(shadow.version - 1);
  });

  it('when the shadow changed while it worked, its clear is refused and it reports again at the new version', async () => {
    const thing = 'protocol-moved';
    const config = await startDevice(thing);
    const { manifest, bodies } = buildManifest(
      updateId,
      [{ manufacturer: 'contoso' }],
      [script],
      [scriptStep(config.scriptState, 'moved-1', '--sleep 1')],
    );
    world.serve(bodies);
    await world.waitForReported(thing, (o) => o.state === 'idle');
    await deployAsService(thing, { deploymentId: 'dep-moved', manifest });
    // It has its document once it asks to download; the install then sleeps a second.
    const asked = Date.now() + 10_000;
    while (!world.downloadRequests.some((r) => r.thing === thing) && Date.now() < asked)
      await new Promise((r) => setTimeout(r, 20));

    // Someone else writes the shadow mid-install (no delta for the agent): its version moves on.
    const other = world.iot.shadows.update(
      { thingName: thing, shadowName: 'ota' },
      Buffer.from(JSON.stringify({ state: { reported: { note: 'written by someone else' } } })),
    );
    expect(other.ok).toBe(true);

    await world.waitForReported(thing, (o) => o.state === 'succeeded');
    const end = Date.now() + 10_000;
    while ((await shadowOf(thing)).state.desired?.ota !== undefined && Date.now() < end)
      await new Promise((r) => setTimeout(r, 50));
    await world.iot.rulesIdle();

    const terminals = requests
      .filter(ofThing(thing))
      .filter((r) => r.state?.reported?.ota?.state === 'succeeded');
    // The first terminal report was refused as a whole (409); the resync sent it again.
    expect(terminals.length).toBe(2);
    expect(terminals.every((r) => r.state?.desired !== undefined)).toBe(true);
    expect((await shadowOf(thing)).state.desired?.ota).toBeUndefined();
  });
});
