import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadAgentConfig, parseAgentConfig } from '../../../agent/config.ts';

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

describe('loadAgentConfig: the trusted-keys file', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'agent-config-'));
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  /** Writes `keys` as the trusted-keys file of a configuration without inline keys, and loads it. */
  async function loadWithKeysFile(keys: unknown) {
    await writeFile(join(dir, 'keys.json'), JSON.stringify(keys));
    const { trustedKeys: _inline, ...rest } = base;
    await writeFile(join(dir, 'agent.json'), JSON.stringify({ ...rest, trustedKeysFile: 'keys.json' }));
    return loadAgentConfig(join(dir, 'agent.json'), {});
  }

  const second = { ...key, kid: 'k2' };

  it.each([
    [
      'one JWK, as the local cloud writes it beside its signing key',
      { ...key, alg: 'ES256', use: 'sig' },
      ['k1'],
    ],
    ['an array of JWKs', [key, second], ['k1', 'k2']],
    ['a JWK Set', { keys: [key, second] }, ['k1', 'k2']],
  ])('takes %s', async (_name, keys, kids) => {
    const loaded = await loadWithKeysFile(keys);
    expect(loaded.ok && loaded.value.trustedKeys.map((k) => k.kid)).toEqual(kids);
  });

  it('refuses anything else with a fault at /trustedKeysFile that says what it must hold', async () => {
    const loaded = await loadWithKeysFile({ kty: 'RSA', n: 'n', e: 'AQAB', kid: 'r1' });
    expect(loaded.ok).toBe(false);
    if (loaded.ok) return;
    expect(loaded.error).toEqual([
      { path: '/trustedKeysFile', message: expect.stringContaining('must hold an EC P-256 public JWK') },
    ]);
  });
});
