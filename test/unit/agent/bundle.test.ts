import { execFile } from 'node:child_process';
import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildAgent } from '../../../agent/build.ts';

const run = promisify(execFile);
const projectModules = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'node_modules');

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'agent-bundle-'));
  // The packages kept out of the bundle (aws-crt's native binary) are installed beside it on a device.
  await symlink(projectModules, join(dir, 'node_modules'), 'dir');
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('the shipped agent bundle', () => {
  it('builds to one ESM file that plain node runs without tsx', async () => {
    const bundle = join(dir, 'shadow-ota-agent.mjs');
    await buildAgent(bundle);
    const { stdout } = await run(process.execPath, [bundle, '--help'], { cwd: dir });
    expect(stdout).toContain('Usage: shadow-ota-agent');
    expect(stdout).toMatch(/^\s+run \[options\]/m);
    expect(stdout).toMatch(/^\s+simulate \[options\]/m);
  }, 30_000);
});
