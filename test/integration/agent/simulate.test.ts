/** `shadow-ota-agent simulate`: N agents in one process over plain MQTT, simulated handler, real protocol. */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentErrors } from '../../../agent/codes.ts';
import { simulatedThingName, startFleet } from '../../../agent/simulate.ts';
import { buildManifest, World } from './support.ts';

let world: World;
beforeAll(async () => {
  world = await World.start();
});
afterAll(() => world.stop());

describe('simulated fleet', () => {
  it('Given 6 simulated devices, when each gets the update, then each reports a terminal state at the failure rate', async () => {
    const url = new URL(world.iot.endpoints.mqtt);
    const payload = { name: 'fw.bin', body: Buffer.alloc(2048, 7) };
    const { manifest, bodies } = buildManifest(
      { provider: 'contoso', name: 'sim-fw', version: '1.0' },
      [{ manufacturer: 'contoso' }],
      [payload],
      [
        {
          handler: 'contoso/firmware:1',
          files: ['fw.bin'],
          handlerProperties: { installedCriteria: 'sim-1.0' },
        },
      ],
    );
    world.serve(bodies);
    let draws = 0;
    const fleet = await startFleet({
      count: 6,
      prefix: 'sim-',
      host: url.hostname,
      port: Number(url.port),
      trustedKeys: [world.trusted],
      root: join(world.root, 'fleet'),
      compatibility: { manufacturer: 'contoso' },
      // Every third install fails.
      handler: { installMs: 20, failureRate: 0.5, random: () => (draws++ % 3 === 2 ? 0 : 0.9) },
    });
    try {
      const names = Array.from({ length: 6 }, (_, i) => simulatedThingName('sim-', i + 1, 6));
      expect(names[0]).toBe('sim-1');
      for (const thing of names) await world.deploy(thing, { deploymentId: 'dep-sim', manifest });
      const finals = await Promise.all(
        names.map((thing) =>
          world.waitForReported(thing, (o) => o.state === 'succeeded' || o.state === 'failed'),
        ),
      );
      const failed = finals.filter((o) => o.state === 'failed');
      expect(failed).toHaveLength(2);
      for (const f of failed)
        expect(f).toMatchObject({ lastResult: { extendedResultCode: agentErrors.SIMULATED_FAILURE } });
      expect(finals.filter((o) => o.state === 'succeeded')).toHaveLength(4);
    } finally {
      await fleet.stop();
    }
  });
});
