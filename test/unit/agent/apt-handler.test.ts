/**
 * The apt handler against the machine's real apt. It installs a small package only where that can
 * work offline: as root on Debian with the package's .deb already in the apt cache; it removes the
 * package again afterwards. Elsewhere the same test checks what can be checked without installing.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agentErrors, resultCodes } from '../../../agent/codes.ts';
import { ADU_APT_MISSING_INSTALLED_CRITERIA, makeAptHandler } from '../../../agent/handlers/apt.ts';
import { context, stepFile } from './support.ts';

const pkg = { name: 'libjs-microplugin.js', version: '0.0.3+dfsg-1.1' };
/** dpkg-query's own placeholder, not a template. */
const statusFormat = ['-f=$', '{Status}'].join('');
const installedBefore = (): boolean =>
  spawnSync('dpkg-query', ['-W', statusFormat, pkg.name], { encoding: 'utf8' }).stdout ===
  'install ok installed';
const debCached = (): boolean =>
  existsSync('/var/cache/apt/archives') &&
  readdirSync('/var/cache/apt/archives').some((f) => f.startsWith('libjs-microplugin.js_'));
/** Root, apt-get present, the .deb cached, and the package not already installed (we must not remove someone's package). */
const realAptUsable =
  process.getuid?.() === 0 && existsSync('/usr/bin/apt-get') && debCached() && !installedBefore();

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'agent-apt-'));
});
afterAll(async () => {
  if (realAptUsable && installedBefore())
    spawnSync('apt-get', ['remove', '-y', pkg.name], { stdio: 'ignore' });
  await rm(dir, { recursive: true, force: true });
});

describe('microsoft/apt:1 handler', () => {
  it("fails a step without installedCriteria with ADU's own code and text", async () => {
    const manifest = await stepFile(
      dir,
      'apt.json',
      JSON.stringify({ name: 'x', version: '1', packages: [pkg] }),
    );
    const result = await makeAptHandler({ stateDir: dir }).isInstalled(
      context({ workFolder: dir, files: [manifest] }),
    );
    expect(result).toEqual({
      resultCode: 0,
      extendedResultCode: ADU_APT_MISSING_INSTALLED_CRITERIA,
      resultDetails: "Property 'installedCriteria' in handlerProperties is missing or empty.",
    });
  });

  it('refuses a package name that could pass for an option', async () => {
    const manifest = await stepFile(
      dir,
      'evil.json',
      JSON.stringify({ name: 'x', version: '1', packages: [{ name: '-oAPT::x=1' }] }),
    );
    const result = await makeAptHandler({ stateDir: dir }).install(
      context({ workFolder: dir, files: [manifest], installedCriteria: 'evil-1' }),
    );
    expect(result).toMatchObject({ resultCode: 0, extendedResultCode: agentErrors.APT_MANIFEST_INVALID });
  });

  it(`installs ${pkg.name}=${pkg.version} with the real apt-get (root + cached .deb), then it is installed`, async () => {
    const manifest = await stepFile(
      dir,
      'microplugin.json',
      JSON.stringify({ name: 'contoso-web', version: '1.0', packages: [pkg] }),
    );
    const handler = makeAptHandler({ stateDir: dir, updateLists: false });
    const ctx = context({ workFolder: dir, files: [manifest], installedCriteria: 'contoso-web-1.0' });
    expect((await handler.isInstalled(ctx)).resultCode).toBe(resultCodes.isInstalledNotInstalled);
    // Not root on Debian with the package cached: the 901 above is what can be checked without installing.
    if (!realAptUsable) return;
    expect(await handler.download?.(ctx)).toEqual({
      resultCode: resultCodes.downloadSuccess,
      extendedResultCode: 0,
    });
    expect(await handler.install(ctx)).toEqual({
      resultCode: resultCodes.installSuccess,
      extendedResultCode: 0,
    });
    expect(installedBefore()).toBe(true);
    expect((await handler.isInstalled(ctx)).resultCode).toBe(resultCodes.isInstalledInstalled);
    // Removed by hand since: no longer installed, even though the criteria were recorded.
    spawnSync('apt-get', ['remove', '-y', pkg.name], { stdio: 'ignore' });
    expect((await handler.isInstalled(ctx)).resultCode).toBe(resultCodes.isInstalledNotInstalled);
  });
});
