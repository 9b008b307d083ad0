import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { agentError, failureOf, resultCodes, type StepResult } from '../codes.ts';
import { fileMatches } from '../downloader.ts';
import { syncDirectory } from '../fs-atomic.ts';
import type { StepContext, StepFile, StepHandler } from './types.ts';

export const FILE_HANDLER_ID = 'shadow-ota/file:1';

export interface FileHandlerOptions {
  /**
   * Where files may be installed, by name: the manifest says `destination: "app-config"`, the
   * device decides that means `/etc/app/config.json`. A manifest can never name a path itself.
   */
  readonly destinations: Readonly<Record<string, string>>;
}

/**
 * `shadow-ota/file:1`: installs one verified file atomically at a configured destination (copy to a
 * temporary file beside it, fsync, rename), so a crash leaves the old file or the new one. Installed
 * means the destination holds exactly the signed bytes. `handlerProperties`: `destination` (a
 * configured name), optional `fileName` (which of the step's files; default: the only one), optional
 * `mode` (octal text, default "644").
 */
export function makeFileHandler(options: FileHandlerOptions): StepHandler {
  const target = (ctx: StepContext): { path: string; file: StepFile } | StepResult => {
    const name = ctx.handlerProperties.destination;
    const path = typeof name === 'string' ? options.destinations[name] : undefined;
    if (path === undefined || !isAbsolute(path)) {
      return failureOf(
        agentError(
          'FILE_DESTINATION_UNKNOWN',
          `destination "${String(name)}" is not configured on this device`,
          false,
        ),
      );
    }
    const wanted = ctx.handlerProperties.fileName;
    const file = typeof wanted === 'string' ? ctx.files.find((f) => f.fileName === wanted) : ctx.files[0];
    if (!file || (typeof wanted !== 'string' && ctx.files.length !== 1)) {
      return failureOf(
        agentError('STEP_FILE_MISSING', 'name the file to install (handlerProperties.fileName)', false),
      );
    }
    return { path, file };
  };
  return {
    filesForIsInstalled: () => [],
    isInstalled: async (ctx) => {
      const t = target(ctx);
      if ('resultCode' in t) return t;
      const installed = await fileMatches(t.path, { sizeInBytes: t.file.sizeInBytes, sha256: t.file.sha256 });
      return {
        resultCode: installed ? resultCodes.isInstalledInstalled : resultCodes.isInstalledNotInstalled,
        extendedResultCode: 0,
      };
    },
    install: async (ctx) => {
      const t = target(ctx);
      if ('resultCode' in t) return t;
      const mode = parseMode(ctx.handlerProperties.mode);
      try {
        await installAtomically(t.file.path, t.path, mode);
      } catch (e) {
        return failureOf(
          agentError('FILE_INSTALL_FAILED', `cannot install ${t.file.fileName}: ${(e as Error).message}`),
        );
      }
      return { resultCode: resultCodes.installSuccess, extendedResultCode: 0 };
    },
    apply: async () => ({ resultCode: resultCodes.applySuccess, extendedResultCode: 0 }),
    cancel: async () => ({ resultCode: resultCodes.cancelSuccess, extendedResultCode: 0 }),
  };
}

function parseMode(value: unknown): number {
  return typeof value === 'string' && /^[0-7]{3,4}$/.test(value) ? Number.parseInt(value, 8) : 0o644;
}

/** Copy beside the destination, fsync, rename over it, fsync the folder. */
export async function installAtomically(source: string, destination: string, mode: number): Promise<void> {
  await mkdir(dirname(destination), { recursive: true });
  const temp = join(dirname(destination), `.${basename(destination)}.${randomBytes(6).toString('hex')}.new`);
  try {
    await copyFile(source, temp);
    const handle = await open(temp, 'r+');
    try {
      await handle.chmod(mode);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, destination);
  } catch (e) {
    await unlink(temp).catch(() => undefined);
    throw e;
  }
  await syncDirectory(dirname(destination));
}
