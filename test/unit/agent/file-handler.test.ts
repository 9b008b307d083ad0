import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { agentErrors, resultCodes } from '../../../agent/codes.ts';
import { makeFileHandler } from '../../../agent/handlers/file.ts';
import { pathInside, safeName } from '../../../agent/paths.ts';
import { context, stepFile } from './support.ts';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'agent-file-'));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

describe('shadow-ota/file:1 handler', () => {
  it('installs atomically over the old file, leaves no temporary file, and then counts as installed', async () => {
    const work = join(dir, 'work');
    await mkdir(work);
    const target = join(dir, 'etc', 'app.conf');
    await mkdir(join(dir, 'etc'));
    await writeFile(target, 'old');
    const file = await stepFile(work, 'app.conf', 'new content');
    const handler = makeFileHandler({ destinations: { app: target } });
    const ctx = context({
      workFolder: work,
      files: [file],
      handlerProperties: { destination: 'app', mode: '600' },
    });
    expect((await handler.isInstalled(ctx)).resultCode).toBe(resultCodes.isInstalledNotInstalled);
    expect(await handler.install(ctx)).toEqual({
      resultCode: resultCodes.installSuccess,
      extendedResultCode: 0,
    });
    expect(await readFile(target, 'utf8')).toBe('new content');
    expect((await stat(target)).mode & 0o777).toBe(0o600);
    expect(await readdir(join(dir, 'etc'))).toEqual(['app.conf']);
    expect((await handler.isInstalled(ctx)).resultCode).toBe(resultCodes.isInstalledInstalled);
  });

  it('keeps the old file when the install fails (source missing)', async () => {
    const target = join(dir, 'app.conf');
    await writeFile(target, 'old');
    const handler = makeFileHandler({ destinations: { app: target } });
    const missing = {
      fileId: 'x',
      fileName: 'app.conf',
      path: join(dir, 'nope'),
      sizeInBytes: 1,
      sha256: 'x',
    };
    const result = await handler.install(
      context({ workFolder: dir, files: [missing], handlerProperties: { destination: 'app' } }),
    );
    expect(result).toMatchObject({ resultCode: 0, extendedResultCode: agentErrors.FILE_INSTALL_FAILED });
    expect(await readFile(target, 'utf8')).toBe('old');
    expect(await readdir(dir)).toEqual(['app.conf']);
  });

  it('refuses a destination the device did not configure (a manifest cannot name a path)', async () => {
    const file = await stepFile(dir, 'a', 'x');
    const result = await makeFileHandler({ destinations: {} }).install(
      context({ workFolder: dir, files: [file], handlerProperties: { destination: '/etc/passwd' } }),
    );
    expect(result).toMatchObject({ resultCode: 0, extendedResultCode: agentErrors.FILE_DESTINATION_UNKNOWN });
  });
});

describe('pathInside', () => {
  it.each([['../escape'], ['a/../../escape'], ['/etc/passwd'], ['..'], ['a\0b'], ['']])(
    'refuses %j',
    (name) => {
      expect(pathInside('/work/dir', name)).toMatchObject({ ok: false, error: { code: 'PATH_REFUSED' } });
    },
  );

  it.each([['file.bin'], ['sub/file.bin'], ['a/../b']])('accepts %j inside the root', (name) => {
    const result = pathInside('/work/dir', name);
    expect(result.ok && result.value.startsWith('/work/dir/')).toBe(true);
  });

  it('makes ids safe as folder names', () => {
    expect(safeName('../../x')).not.toContain('/');
    expect(safeName('..')).not.toBe('..');
  });
});
