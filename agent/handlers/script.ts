import { chmod, readFile, unlink } from 'node:fs/promises';
import { z } from 'zod';
import { agentError, agentErrors, failureOf, type StepResult } from '../codes.ts';
import { pathInside } from '../paths.ts';
import { childEnvironment, runProcess } from '../process.ts';
import type { Component, StepContext, StepHandler } from './types.ts';

/** ADU's script handler id. */
export const SCRIPT_HANDLER_ID = 'microsoft/script:1';

export interface ScriptHandlerOptions {
  /** Longest one action may run. @default 30 minutes */
  readonly timeoutMs?: number;
}

type Action = 'download' | 'install' | 'apply' | 'cancel' | 'is-installed';

const resultFileShape = z.object({
  resultCode: z.number().int(),
  extendedResultCode: z.number().int().optional(),
  resultDetails: z.string().optional(),
});

/**
 * `microsoft/script:1`, compatible with ADU's script handler: runs `handlerProperties.scriptFileName`
 * (one of the step's verified files) with the manifest's `arguments` split on spaces, the
 * component placeholders replaced (`--component-name-val`, `--component-prop-val <name>`, ...),
 * then `--action-<name>`... in ADU's order: the action first, the arguments, then `--work-folder`,
 * `--result-file`, `--installed-criteria`. The script writes an ADU result to the result file;
 * a non-zero exit or a missing or unreadable result file is a failure. No shell is involved.
 */
export function makeScriptHandler(options: ScriptHandlerOptions = {}): StepHandler {
  const timeoutMs = options.timeoutMs ?? 30 * 60_000;
  const perform = (action: Action) => (ctx: StepContext) => runAction(ctx, action, timeoutMs);
  return {
    filesForIsInstalled: (ctx) => {
      const name = ctx.handlerProperties.scriptFileName;
      return ctx.files.filter((f) => f.fileName === name).map((f) => f.fileId);
    },
    isInstalled: perform('is-installed'),
    download: perform('download'),
    install: perform('install'),
    apply: perform('apply'),
    cancel: perform('cancel'),
  };
}

/** Replaces ADU's component placeholders by the component's values ("n/a" when unknown). */
export function scriptArguments(argumentText: string, component: Component | undefined): string[] {
  const tokens = argumentText.split(' ').filter((t) => t !== '');
  const value = (v: string | undefined): string => v ?? 'n/a';
  const out: string[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i] ?? '';
    if (token === '--component-id-val') out.push(value(component?.id));
    else if (token === '--component-name-val') out.push(value(component?.name));
    else if (token === '--component-manufacturer-val') out.push(value(component?.manufacturer));
    else if (token === '--component-model-val') out.push(value(component?.model));
    else if (token === '--component-version-val') out.push(value(component?.version));
    else if (token === '--component-group-val') out.push(value(component?.group));
    else if (token === '--component-prop-val') {
      const name = tokens[i + 1];
      out.push(value(name === undefined ? undefined : component?.properties?.[name]));
      if (name !== undefined) i++;
    } else out.push(token);
  }
  return out;
}

async function runAction(ctx: StepContext, action: Action, timeoutMs: number): Promise<StepResult> {
  const scriptFileName = ctx.handlerProperties.scriptFileName;
  if (typeof scriptFileName !== 'string' || scriptFileName === '') {
    return failureOf(
      agentError('HANDLER_PROPERTIES_INVALID', 'handlerProperties.scriptFileName is missing', false),
    );
  }
  const script = ctx.files.find((f) => f.fileName === scriptFileName);
  if (!script) {
    return failureOf(
      agentError('STEP_FILE_MISSING', `${scriptFileName} is not a verified file of this step`, false),
    );
  }
  const resultFile = pathInside(ctx.workFolder, `action--action-${action}_aduc_result.json`);
  if (!resultFile.ok) return failureOf(resultFile.error);
  await unlink(resultFile.value).catch(() => undefined);
  // Only a verified file is made executable, by its owner only.
  await chmod(script.path, 0o700);
  const argumentText =
    typeof ctx.handlerProperties.arguments === 'string' ? ctx.handlerProperties.arguments : '';
  const args = [
    `--action-${action}`,
    ...scriptArguments(argumentText, ctx.component),
    '--work-folder',
    ctx.workFolder,
    '--result-file',
    resultFile.value,
    ...(ctx.installedCriteria ? ['--installed-criteria', ctx.installedCriteria] : []),
  ];
  const outcome = await runProcess(script.path, args, {
    cwd: ctx.workFolder,
    env: childEnvironment,
    timeoutMs,
    signal: ctx.signal,
  });
  if (outcome.output) ctx.log.debug('script output', { action, output: outcome.output });
  if (outcome.startError !== undefined) {
    return failureOf(
      agentError('SCRIPT_START_FAILED', `${scriptFileName} could not start: ${outcome.startError}`),
    );
  }
  if (outcome.aborted)
    return failureOf(agentError('CANCELED', `${scriptFileName} --action-${action} was stopped`));
  if (outcome.timedOut) {
    return failureOf(
      agentError('SCRIPT_TIMEOUT', `${scriptFileName} --action-${action} ran past ${timeoutMs} ms`),
    );
  }
  if (outcome.exitCode !== 0) {
    return {
      ...failureOf(
        agentError('SCRIPT_EXIT_CODE', `${scriptFileName} --action-${action} exited ${outcome.exitCode}`),
      ),
      // ADU folds the exit code into the ERC's low bits; so do we.
      extendedResultCode: (agentErrors.SCRIPT_EXIT_CODE | ((outcome.exitCode ?? 0xff) & 0xff)) >>> 0,
    };
  }
  return readResultFile(resultFile.value, `${scriptFileName} --action-${action}`);
}

async function readResultFile(path: string, what: string): Promise<StepResult> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch {
    return failureOf(agentError('SCRIPT_RESULT_FILE', `${what} wrote no readable result file`));
  }
  const parsed = resultFileShape.safeParse(raw);
  if (!parsed.success)
    return failureOf(agentError('SCRIPT_RESULT_FILE', `${what} wrote a result without resultCode`));
  const { resultCode, extendedResultCode = 0, resultDetails } = parsed.data;
  // As ADU: a failure with ERC 0 says nothing actionable; give it one.
  if (resultCode <= 0 && extendedResultCode === 0) {
    return {
      ...failureOf(agentError('SCRIPT_RESULT_ERC_ZERO', `${what} failed without an extended result code`)),
      resultCode,
      ...(resultDetails ? { resultDetails } : {}),
    };
  }
  return { resultCode, extendedResultCode, ...(resultDetails ? { resultDetails } : {}) };
}
