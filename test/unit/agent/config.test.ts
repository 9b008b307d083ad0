import { describe, expect, it } from 'vitest';
import { parseAgentConfig } from '../../../agent/config.ts';

const key = { kty: 'EC', crv: 'P-256', x: 'x', y: 'y', kid: 'k1' };
const base = {
  thingName: 'thing-1',
  endpoint: 'mqtt://127.0.0.1:1883',
  workDir: 'w',
  stateDir: 's',
  trustedKeys: [key],
};

describe('parseAgentConfig', () => {
  it('takes the environment over the file', () => {
    const parsed = parseAgentConfig(base, {
      SHADOW_OTA_AGENT_THING_NAME: 'from-env',
      SHADOW_OTA_AGENT_LOG_LEVEL: 'debug',
    });
    expect(parsed).toMatchObject({
      ok: true,
      value: { thingName: 'from-env', logLevel: 'debug', progressIntervalMs: 0 },
    });
  });

  it('reports every fault with its JSON pointer', () => {
    const parsed = parseAgentConfig({ ...base, thingName: 'bad name!', endpoint: 'http://x', extra: 1 }, {});
    expect(parsed.ok).toBe(false);
    const paths = parsed.ok ? [] : parsed.error.map((f) => f.path).sort();
    expect(paths).toEqual(['', '/endpoint', '/thingName']);
  });

  it('requires a certificate for mqtts and at least one trusted key', () => {
    const parsed = parseAgentConfig(
      { ...base, endpoint: 'mqtts://iot.example.com:8883', trustedKeys: [] },
      {},
    );
    expect(parsed.ok ? [] : parsed.error.map((f) => f.path)).toEqual(['/certificateFile', '/trustedKeys']);
  });
});
