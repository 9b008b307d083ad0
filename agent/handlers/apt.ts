import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { agentError, failureOf, resultCodes, type StepResult } from '../codes.ts';
import { readJsonFile, writeFileAtomic } from '../fs-atomic.ts';
import { childEnvironment, runProcess } from '../process.ts';
import type { StepContext, StepHandler } from './types.ts';

export const APT_HANDLER_ID = 'microsoft/apt:1';

/** ADU's ERC for a missing installedCriteria in an apt step, and its exact text (ADU-REFERENCE §2). */
export const ADU_APT_MISSING_INSTALLED_CRITERIA = 0x30200007;

export interface AptHandlerOptions {
  /** Where installed criteria are remembered (the agent's state directory). */
  readonly stateDir: string;
  /** @default 'apt-get' */
  readonly aptGet?: string;
  /** @default 'dpkg-query' */
  readonly dpkgQuery?: string;
  /** Run `apt-get update` before downloading. @default true */
  readonly updateLists?: boolean;
  /** @default 30 minutes */
  readonly timeoutMs?: number;
}

// Debian policy names; versions may hold an epoch and ~. Neither may start with '-' (no option injection).
const packageName = z.string().regex(/^[a-z0-9][a-z0-9+.-]+$/, 'not a Debian package name');
const packageVersion = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9.+~:-]*$/, 'not a Debian version');

/** ADU's apt manifest: `{ name, version, packages: [{ name, version? }] }`. */
export const aptManifestSchema = z.object({
  name: z.string().min(1),
  version: z.string().min(1),
  packages: z.array(z.object({ name: packageName, version: packageVersion.optional() })).min(1),
  agentRestartRequired: z.boolean().optional(),
});
export type AptManifest = z.infer<typeof aptManifestSchema>;

/** `name=version` as apt-get takes it, or the bare name when no version is pinned. */
export const packageSpecs = (m: AptManifest): string[] =>
  m.packages.map((p) => (p.version ? `${p.name}=${p.version}` : p.name));

/**
 * `microsoft/apt:1`, compatible with ADU's apt handler: the step's one file is an apt manifest;
 * download = `apt-get install --download-only`, install = `apt-get install` of the pinned versions
 * (no shell, argv only). installedCriteria is required (ADU fails the step without it); the step is
 * installed when its criteria were recorded after a successful install AND dpkg still has every
 * package at its pinned version (a package removed by hand since is installed again).
 */
export function makeAptHandler(options: AptHandlerOptions): StepHandler {
  const aptGet = options.aptGet ?? 'apt-get';
  const timeoutMs = options.timeoutMs ?? 30 * 60_000;
  const recordPath = join(options.stateDir, 'apt-installed-criteria.json');
  const env = { ...childEnvironment, DEBIAN_FRONTEND: 'noninteractive' };

  const apt = async (ctx: StepContext, args: string[]): Promise<StepResult | undefined> => {
    const outcome = await runProcess(aptGet, args, {
      cwd: ctx.workFolder,
      env,
      timeoutMs,
      signal: ctx.signal,
    });
    if (outcome.exitCode === 0) return undefined;
    ctx.log.warn('apt-get failed', {
      args: args.slice(0, 3),
      exitCode: outcome.exitCode,
      output: outcome.output,
    });
    const why = outcome.startError ?? (outcome.timedOut ? 'timed out' : `exit code ${outcome.exitCode}`);
    return failureOf(agentError('APT_COMMAND_FAILED', `apt-get ${args[0] ?? ''} failed: ${why}`));
  };

  return {
    filesForIsInstalled: (ctx) => ctx.files.slice(0, 1).map((f) => f.fileId),
    isInstalled: async (ctx) => {
      const checked = await readManifest(ctx);
      if ('resultCode' in checked) return checked;
      const recorded = await recordedCriteria(recordPath);
      const installed =
        recorded.includes(checked.criteria) &&
        (await allPackagesInstalled(checked.manifest, options.dpkgQuery ?? 'dpkg-query', ctx));
      return {
        resultCode: installed ? resultCodes.isInstalledInstalled : resultCodes.isInstalledNotInstalled,
        extendedResultCode: 0,
      };
    },
    download: async (ctx) => {
      const checked = await readManifest(ctx);
      if ('resultCode' in checked) return checked;
      if (options.updateLists ?? true) {
        const failed = await apt(ctx, ['update']);
        if (failed) return failed;
      }
      const failed = await apt(ctx, ['install', '-y', '--download-only', ...packageSpecs(checked.manifest)]);
      return failed ?? { resultCode: resultCodes.downloadSuccess, extendedResultCode: 0 };
    },
    install: async (ctx) => {
      const checked = await readManifest(ctx);
      if ('resultCode' in checked) return checked;
      const failed = await apt(ctx, [
        'install',
        '-y',
        '--allow-downgrades',
        '-o',
        'Dpkg::Options::=--force-confold',
        ...packageSpecs(checked.manifest),
      ]);
      if (failed) return failed;
      const recorded = await recordedCriteria(recordPath);
      await writeFileAtomic(recordPath, JSON.stringify([...new Set([...recorded, checked.criteria])]));
      return { resultCode: resultCodes.installSuccess, extendedResultCode: 0 };
    },
    apply: async () => ({ resultCode: resultCodes.applySuccess, extendedResultCode: 0 }),
    cancel: async () => ({ resultCode: resultCodes.cancelUnableToCancel, extendedResultCode: 0 }),
  };
}

async function readManifest(
  ctx: StepContext,
): Promise<{ manifest: AptManifest; criteria: string } | StepResult> {
  if (!ctx.installedCriteria) {
    return {
      resultCode: resultCodes.failure,
      extendedResultCode: ADU_APT_MISSING_INSTALLED_CRITERIA,
      resultDetails: "Property 'installedCriteria' in handlerProperties is missing or empty.",
    };
  }
  const file = ctx.files[0];
  if (!file)
    return failureOf(agentError('STEP_FILE_MISSING', 'an apt step needs its apt manifest file', false));
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(file.path, 'utf8'));
  } catch {
    return failureOf(agentError('APT_MANIFEST_INVALID', `${file.fileName} is not JSON`, false));
  }
  const parsed = aptManifestSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue ? `/${issue.path.join('/')}: ${issue.message}` : '';
    return failureOf(agentError('APT_MANIFEST_INVALID', `${file.fileName} ${where}`, false));
  }
  return { manifest: parsed.data, criteria: ctx.installedCriteria };
}

async function recordedCriteria(path: string): Promise<string[]> {
  const value = await readJsonFile(path);
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
}

async function allPackagesInstalled(m: AptManifest, dpkgQuery: string, ctx: StepContext): Promise<boolean> {
  for (const p of m.packages) {
    // dpkg-query's own format placeholders, not a template.
    const format = ['-f=$', '{Status}|$', '{Version}'].join('');
    const outcome = await runProcess(dpkgQuery, ['-W', format, p.name], {
      cwd: ctx.workFolder,
      env: childEnvironment,
      timeoutMs: 60_000,
      signal: ctx.signal,
    });
    const [status, version] = outcome.output.trim().split('|');
    if (outcome.exitCode !== 0 || status !== 'install ok installed') return false;
    if (p.version && version !== p.version) return false;
  }
  return true;
}
