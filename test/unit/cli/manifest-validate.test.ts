import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// Spawns the real CLI the way `npx shadow-ota` runs it: node on the bin shim.
const bin = fileURLToPath(new URL('../../../cli/bin.js', import.meta.url));
const samples = fileURLToPath(new URL('../manifest/fixtures/adu-samples/', import.meta.url));
const sample = (p: string) => join(samples, p);

const validImport = sample('import/azure-iot-cli/surface15/parent.importmanifest.json');
const validBomV4 = sample('import/azure-iot-cli/surface15/leaf1.importmanifest.json');
const invalidImport = sample('import/schemastore/invalid-v4.0/nosteps-importmanifest.json');
const validUpdate = sample('update/docs/update-manifest-mini-example.updatemanifest.json');

function run(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { timeout: 30_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('shadow-ota manifest validate', () => {
  it('exits 0 when every file is valid, telling import from update manifests by shape', async () => {
    const r = await run('manifest', 'validate', validImport, validBomV4, validUpdate);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`valid    ${validImport} (import manifest)`);
    expect(r.stdout).toContain(`valid    ${validUpdate} (update manifest)`);
    expect(r.stdout).toContain('warning  /instructions/steps/0/handlerProperties/installedCriteria');
  });

  it('exits 1 and prints each fault with its path when a file is invalid', async () => {
    const r = await run('manifest', 'validate', validImport, invalidImport);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`INVALID  ${invalidImport} (import manifest, 1 fault)`);
    expect(r.stdout).toContain('error    /instructions/steps: steps must list at least one step');
  });

  it('prints exactly [{ file, valid, errors: [{ path, message }] }] with --json', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'shadow-ota-cli-'));
    const badJson = join(dir, 'bad.json');
    writeFileSync(badJson, '{ "updateId": ');
    const missing = join(dir, 'missing.json');
    const r = await run('manifest', 'validate', '--json', validImport, invalidImport, badJson, missing);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toEqual([
      { file: validImport, valid: true, errors: [] },
      {
        file: invalidImport,
        valid: false,
        errors: [{ path: '/instructions/steps', message: 'steps must list at least one step' }],
      },
      {
        file: badJson,
        valid: false,
        errors: [{ path: '', message: expect.stringContaining('not valid JSON') }],
      },
      { file: missing, valid: false, errors: [{ path: '', message: 'cannot read the file (ENOENT)' }] },
    ]);
  });

  it('checks a file as the kind given with --kind', async () => {
    const r = await run('manifest', 'validate', '--json', '--kind', 'update', validImport);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)[0].errors).toEqual([
      { path: '/manifestVersion', message: expect.stringContaining('"4" or "5"') },
    ]);
  });

  it.each([
    ['no file', ['manifest', 'validate']],
    ['an unknown kind', ['manifest', 'validate', '--kind', 'parent', validImport]],
    ['an unknown option', ['manifest', 'validate', '--strict', validImport]],
    ['an unknown command', ['manifests']],
    ['no command', []],
  ])('exits 2 on a usage error: %s', async (_case, args) => {
    const r = await run(...args);
    expect(r.code).toBe(2);
    expect(r.stderr).not.toBe('');
  });

  it('exits 0 for --help', async () => {
    const r = await run('manifest', 'validate', '--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('--kind <kind>');
  });
});
