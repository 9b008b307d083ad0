import { resolve } from 'node:path';
import { CommanderError } from 'commander';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { defaultPorts, optionEnv, parseLocalCloudOptions } from '../../../local/options.ts';

afterEach(() => {
  vi.unstubAllEnvs();
  vi.restoreAllMocks();
});

describe('local cloud options', () => {
  it('defaults: ./.data, persistent, loopback, well-known ports', () => {
    expect(parseLocalCloudOptions([])).toEqual({
      host: '127.0.0.1',
      dataDir: resolve('.data'),
      ephemeral: false,
      ports: defaultPorts,
      bare: false,
      devices: 100,
      exitWhenDone: false,
    });
  });

  it('reads the flags', () => {
    const options = parseLocalCloudOptions([
      '--data-dir',
      '/tmp/x',
      '--ephemeral',
      '--host',
      '0.0.0.0',
      '--api-port',
      '0',
      '--s3-port',
      '9000',
      '--dynamodb-port',
      '0',
      '--bare',
    ]);
    expect(options).toEqual({
      host: '0.0.0.0',
      dataDir: '/tmp/x',
      ephemeral: true,
      ports: { ...defaultPorts, api: 0, s3: 9000, dynamodb: 0 },
      bare: true,
      devices: 100,
      exitWhenDone: false,
    });
  });

  it('reads the environment, and flags win over it', () => {
    vi.stubEnv(optionEnv.apiPort, '0');
    vi.stubEnv(optionEnv.s3Port, '7000');
    vi.stubEnv(optionEnv.ephemeral, '1');
    vi.stubEnv(optionEnv.dataDir, '/tmp/from-env');
    const options = parseLocalCloudOptions(['--s3-port', '7001']);
    expect(options).toMatchObject({ ephemeral: true, dataDir: '/tmp/from-env', ports: { api: 0, s3: 7001 } });
  });

  it.each(['0', 'false'])('SHADOW_OTA_EPHEMERAL=%s means persistent', (value) => {
    vi.stubEnv(optionEnv.ephemeral, value);
    expect(parseLocalCloudOptions([]).ephemeral).toBe(false);
  });

  it.each([
    ['--api-port', 'http'],
    ['--s3-port', '70000'],
    ['--unknown', 'x'],
  ])('refuses %s %s', (flag, value) => {
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    expect(() => parseLocalCloudOptions([flag, value])).toThrow(CommanderError);
  });
});

describe('main job flags', () => {
  it('reads --devices and --exit-when-done', () => {
    const options = parseLocalCloudOptions(['--devices', '25', '--exit-when-done'], {});
    expect(options).toMatchObject({ devices: 25, exitWhenDone: true, bare: false });
  });

  it.each(['0', '-3', 'ten', '10001'])('refuses --devices %s', (value) => {
    expect(() => parseLocalCloudOptions(['--devices', value], {})).toThrow(/1 to 10000 devices/);
  });
});
