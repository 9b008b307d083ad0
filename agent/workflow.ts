import { mkdir, readFile } from 'node:fs/promises';
import { isCompatible } from '../lambdas/domain/deployment/index.ts';
import {
  type FullUpdateManifest,
  isMiniManifest,
  parseUpdateManifest,
  type UpdateFile,
  type UpdateStep,
} from '../lambdas/domain/manifest/index.ts';
import { err, ok, type Result } from '../lambdas/domain/result.ts';
import {
  type AgentError,
  agentError,
  failureOf,
  isSuccessCode,
  requiresReboot,
  resultCodes,
  type StepResult,
} from './codes.ts';
import type { ExpectedFile } from './downloader.ts';
import type { Component, HandlerRegistry, StepContext, StepFile, StepHandler } from './handlers/types.ts';
import type { Journal, TerminalOutcome } from './journal.ts';
import type { Logger } from './log.ts';
import { pathInside, safeName } from './paths.ts';
import { filesAreSigned, signedFile, type VerifiedUpdate } from './verify.ts';

export type WorkState = 'downloading' | 'installing' | 'applying';

export interface WorkflowDeps {
  readonly journal: Journal;
  readonly handlers: HandlerRegistry;
  readonly components: readonly Component[];
  readonly workDir: string;
  /** Downloads and verifies one file to `destination` (inside the work directory). */
  readonly fetchFile: (
    fileId: string,
    expected: ExpectedFile,
    destination: string,
    signal: AbortSignal,
  ) => Promise<Result<void, AgentError>>;
  /** Called when the device enters a state worth telling the service (the agent decides what to send). */
  readonly onState: (state: WorkState, step: number) => Promise<void>;
  /** Asks the system to reboot; the agent continues after the restart, from the journal. */
  readonly requestReboot: () => Promise<Result<void, AgentError>>;
  readonly log: Logger;
}

export type WorkflowEnd =
  | { readonly kind: 'terminal'; readonly outcome: TerminalOutcome }
  | { readonly kind: 'reboot_pending' }
  /** The agent is stopping (or a newer deployment took over): nothing journaled as final. */
  | { readonly kind: 'interrupted' };

/** Abort reason of a stop (process exit, superseded), as opposed to a cancel from the service. */
export const STOP = 'stop';

/** How one unit of work (a step, or a child step on one component) ended. */
type UnitEnd =
  | { readonly kind: 'done'; readonly result: StepResult; readonly skipped: boolean }
  | { readonly kind: 'failed'; readonly result: StepResult; readonly canceled: boolean }
  | { readonly kind: 'reboot' };

const success = (resultCode: number): StepResult => ({ resultCode, extendedResultCode: 0 });
const failed = (e: AgentError): Extract<UnitEnd, { kind: 'failed' }> => ({
  kind: 'failed',
  result: failureOf(e),
  canceled: e.code === 'CANCELED',
});

/**
 * Runs a verified update's steps in order, ADU style: per step, the files `isInstalled` needs,
 * then `isInstalled` (900: skip the step), then the remaining files, `download`, `install`, `apply`.
 * Reference steps apply the child update to every configured component matching its compatibility.
 * Every unit's state is journaled before and after it runs: after a crash, completed units are
 * never run again, the unit in flight is asked `isInstalled` first, and a unit that asked for a
 * reboot must confirm `isInstalled` = 900 after it. Cancel is honoured between units.
 */
export async function runWorkflow(
  deps: WorkflowDeps,
  update: VerifiedUpdate,
  signal: AbortSignal,
): Promise<WorkflowEnd> {
  const { journal } = deps;
  if (!journal.isFor(update.deploymentId, update.attempt)) {
    await journal.begin(update.deploymentId, update.attempt, update.updateId);
  }
  const root = pathInside(deps.workDir, safeName(update.deploymentId));
  if (!root.ok)
    return finish(deps, update, { kind: 'failed', result: failureOf(root.error), canceled: false }, {});
  await deps.onState('downloading', 0);
  const stepResults: Record<string, StepResult> = {};
  let allSkipped = true;
  const steps = update.manifest.instructions.steps;
  for (const [index, step] of steps.entries()) {
    if (signal.aborted)
      return finish(
        deps,
        update,
        failed(agentError('CANCELED', `canceled before step ${index}`)),
        stepResults,
      );
    const end =
      step.type === 'reference'
        ? await runReference(deps, update, index, step.detachedManifestFileId, root.value, signal)
        : await runUnit(deps, update, {
            key: `step_${index}`,
            index,
            step,
            files: update.manifest.files,
            folder: [root.value, `step_${index}`],
            signal,
          });
    if (end.kind === 'reboot') return rebootNow(deps);
    stepResults[`step_${index}`] = end.result;
    if (end.kind === 'failed') return finish(deps, update, end, stepResults, signal);
    allSkipped &&= end.skipped;
  }
  return finish(
    deps,
    update,
    {
      kind: 'done',
      result: success(allSkipped ? resultCodes.installSkippedAlreadyInstalled : resultCodes.applySuccess),
      skipped: allSkipped,
    },
    stepResults,
  );
}

async function rebootNow(deps: WorkflowDeps): Promise<WorkflowEnd> {
  await deps.journal.setPhase('awaiting_reboot');
  const rebooted = await deps.requestReboot();
  if (!rebooted.ok)
    deps.log.error('reboot request failed', { code: rebooted.error.code, message: rebooted.error.message });
  return { kind: 'reboot_pending' };
}

async function finish(
  deps: WorkflowDeps,
  update: VerifiedUpdate,
  end: Exclude<UnitEnd, { kind: 'reboot' }>,
  stepResults: Record<string, StepResult>,
  signal?: AbortSignal,
): Promise<WorkflowEnd> {
  // A stop is not an outcome: the journal keeps the unit in flight, and the next start resumes it.
  if (signal?.reason === STOP) return { kind: 'interrupted' };
  const lastResult = { ...end.result, stepResults };
  let outcome: TerminalOutcome;
  if (end.kind === 'done') {
    await deps.journal.recordInstalled(update.updateId);
    outcome = {
      state: end.skipped ? 'skipped' : 'succeeded',
      lastResult,
      installedUpdateId: update.updateId,
    };
  } else {
    outcome = { state: end.canceled ? 'canceled' : 'failed', lastResult };
  }
  await deps.journal.finish(outcome);
  return { kind: 'terminal', outcome };
}

interface UnitInput {
  readonly key: string;
  /** The top-level step index, for progress reports. */
  readonly index: number;
  readonly step: Exclude<UpdateStep, { type: 'reference' }>;
  readonly files: Readonly<Record<string, UpdateFile>>;
  readonly folder: readonly string[];
  readonly component?: Component;
  readonly signal: AbortSignal;
}

/** The step's files with their signed sizes and hashes and their paths in the step folder. */
function describeFiles(
  update: VerifiedUpdate,
  input: UnitInput,
  folder: string,
): Result<StepFile[], AgentError> {
  const out: StepFile[] = [];
  for (const fileId of input.step.files) {
    const file = input.files[fileId];
    if (!file) return err(agentError('STEP_FILE_MISSING', `file ${fileId} is not in the manifest`, false));
    const expected = signedFile(update.claims, fileId);
    if (!expected.ok) return expected;
    const path = pathInside(folder, file.fileName);
    if (!path.ok) return path;
    out.push({ fileId, fileName: file.fileName, path: path.value, ...expected.value });
  }
  return ok(out);
}

async function fetchFiles(
  deps: WorkflowDeps,
  files: readonly StepFile[],
  signal: AbortSignal,
): Promise<Result<void, AgentError>> {
  for (const f of files) {
    const fetched = await deps.fetchFile(
      f.fileId,
      { sizeInBytes: f.sizeInBytes, sha256: f.sha256 },
      f.path,
      signal,
    );
    if (!fetched.ok) return fetched;
  }
  return ok(undefined);
}

async function runUnit(deps: WorkflowDeps, update: VerifiedUpdate, input: UnitInput): Promise<UnitEnd> {
  const { journal } = deps;
  const record = journal.unit(input.key);
  // A completed unit is never run again: its journaled result stands.
  if (record?.result && (record.state === 'done' || record.state === 'skipped')) {
    return { kind: 'done', result: record.result, skipped: record.state === 'skipped' };
  }
  const handler = deps.handlers.get(input.step.handler);
  if (!handler)
    return failed(
      agentError('UNKNOWN_HANDLER', `no handler for ${input.step.handler} on this device`, false),
    );
  const folder = pathInside(...(input.folder as [string, ...string[]]));
  if (!folder.ok) return failed(folder.error);
  await mkdir(folder.value, { recursive: true, mode: 0o700 });
  const files = describeFiles(update, input, folder.value);
  if (!files.ok) return failed(files.error);
  const installedCriteria = input.step.handlerProperties?.installedCriteria;
  const base = {
    handler: input.step.handler,
    handlerProperties: input.step.handlerProperties ?? {},
    ...(installedCriteria ? { installedCriteria } : {}),
    workFolder: folder.value,
    ...(input.component ? { component: input.component } : {}),
    signal: input.signal,
    log: deps.log.child({ step: input.key }),
  };
  const log = base.log;

  const early =
    handler.filesForIsInstalled?.({ ...base, files: files.value }) ?? files.value.map((f) => f.fileId);
  const earlyFiles = files.value.filter((f) => early.includes(f.fileId));
  const fetchedEarly = await fetchFiles(deps, earlyFiles, input.signal);
  if (!fetchedEarly.ok) return failed(fetchedEarly.error);
  // Every file is described; only those `filesForIsInstalled` named are on disk yet.
  const earlyCtx: StepContext = { ...base, files: files.value };

  if (record?.state === 'reboot_pending') return confirmAfterReboot(deps, input.key, handler, earlyCtx);

  const installed = await call(() => handler.isInstalled(earlyCtx));
  if (installed.resultCode === resultCodes.isInstalledInstalled) {
    log.info('step already installed: skipped');
    await journal.setUnit(input.key, { state: 'skipped', result: installed });
    return { kind: 'done', result: installed, skipped: true };
  }
  if (!isSuccessCode(installed.resultCode)) return { kind: 'failed', result: installed, canceled: false };
  await journal.setUnit(input.key, { state: 'started' });

  const fetchedAll = await fetchFiles(deps, files.value, input.signal);
  if (!fetchedAll.ok) return failed(fetchedAll.error);
  const ctx: StepContext = { ...base, files: files.value };
  const phases: [WorkState | undefined, (c: StepContext) => Promise<StepResult>][] = [
    [undefined, (c) => handler.download?.(c) ?? Promise.resolve(success(resultCodes.downloadSuccess))],
    ['installing', (c) => handler.install(c)],
    ['applying', (c) => handler.apply(c)],
  ];
  let last = success(resultCodes.applySuccess);
  for (const [state, phase] of phases) {
    if (state) await deps.onState(state, input.index);
    last = await call(() => phase(ctx));
    if (input.signal.aborted) return cancelUnit(handler, ctx);
    if (!isSuccessCode(last.resultCode)) return { kind: 'failed', result: last, canceled: false };
    if (requiresReboot(last.resultCode)) {
      await journal.setUnit(input.key, { state: 'reboot_pending', result: last });
      return { kind: 'reboot' };
    }
  }
  await journal.setUnit(input.key, { state: 'done', result: last });
  return { kind: 'done', result: last, skipped: false };
}

/** After a reboot (or a restart) the unit that asked for it must now be installed. */
async function confirmAfterReboot(
  deps: WorkflowDeps,
  key: string,
  handler: StepHandler,
  ctx: StepContext,
): Promise<UnitEnd> {
  const installed = await call(() => handler.isInstalled(ctx));
  if (installed.resultCode !== resultCodes.isInstalledInstalled) {
    return failed(
      agentError(
        'REBOOT_NOT_CONFIRMED',
        `after the reboot ${key} is not installed (${installed.resultCode})`,
        false,
      ),
    );
  }
  const result = success(resultCodes.applySuccess);
  await deps.journal.setUnit(key, { state: 'done', result });
  return { kind: 'done', result, skipped: false };
}

async function cancelUnit(handler: StepHandler, ctx: StepContext): Promise<UnitEnd> {
  if (ctx.signal.reason === STOP) return failed(agentError('CANCELED', 'the agent is stopping'));
  const answer = await call(() => handler.cancel(ctx));
  ctx.log.info('step canceled', { cancelResult: answer.resultCode });
  return failed(agentError('CANCELED', 'the deployment was canceled during this step'));
}

/** Handlers return failures as values; one that throws is a bug in it, reported as a failure all the same. */
async function call(fn: () => Promise<StepResult>): Promise<StepResult> {
  try {
    return await fn();
  } catch (e) {
    return failureOf(agentError('HANDLER_CRASHED', e instanceof Error ? e.message : String(e)));
  }
}

function componentProperties(c: Component): Record<string, string> {
  const named = {
    id: c.id,
    name: c.name,
    group: c.group,
    manufacturer: c.manufacturer,
    model: c.model,
    version: c.version,
  };
  return {
    ...(c.properties ?? {}),
    ...Object.fromEntries(
      Object.entries(named).filter((e): e is [string, string] => typeof e[1] === 'string'),
    ),
  };
}

async function readChildManifest(
  deps: WorkflowDeps,
  update: VerifiedUpdate,
  fileId: string,
  folder: string,
  signal: AbortSignal,
): Promise<Result<FullUpdateManifest, AgentError>> {
  const expected = signedFile(update.claims, fileId);
  if (!expected.ok) return expected;
  const file = update.manifest.files[fileId];
  if (!file) return err(agentError('CHILD_MANIFEST_INVALID', `file ${fileId} is not in the manifest`, false));
  const path = pathInside(folder, file.fileName);
  if (!path.ok) return path;
  await mkdir(folder, { recursive: true, mode: 0o700 });
  const fetched = await deps.fetchFile(fileId, expected.value, path.value, signal);
  if (!fetched.ok) return fetched;
  const parsed = parseUpdateManifest(await readFile(path.value));
  if (!parsed.ok || isMiniManifest(parsed.value)) {
    return err(agentError('CHILD_MANIFEST_INVALID', `${file.fileName} is not a full update manifest`, false));
  }
  if (!filesAreSigned(update.claims, parsed.value.files)) {
    return err(
      agentError(
        'SIGNATURE_FILES_MISMATCH',
        `${file.fileName} names files the signature does not cover`,
        false,
      ),
    );
  }
  return ok(parsed.value);
}

/** A reference step: the child update, on every configured component that matches its compatibility. */
async function runReference(
  deps: WorkflowDeps,
  update: VerifiedUpdate,
  index: number,
  fileId: string,
  root: string,
  signal: AbortSignal,
): Promise<UnitEnd> {
  const folder = pathInside(root, `step_${index}`);
  if (!folder.ok) return failed(folder.error);
  const child = await readChildManifest(deps, update, fileId, folder.value, signal);
  if (!child.ok) return failed(child.error);
  const components = deps.components.filter((c) =>
    isCompatible(componentProperties(c), child.value.compatibility),
  );
  if (components.length === 0) {
    deps.log.info('no component matches the child update', { step: index });
    return { kind: 'done', result: success(resultCodes.installSkippedNoMatchingComponents), skipped: true };
  }
  let allSkipped = true;
  for (const component of components) {
    for (const [j, step] of child.value.instructions.steps.entries()) {
      if (step.type === 'reference')
        return failed(
          agentError('CHILD_MANIFEST_INVALID', 'a child update may not reference another', false),
        );
      if (signal.aborted) return failed(agentError('CANCELED', `canceled before step ${index}.${j}`));
      const end = await runUnit(deps, update, {
        key: `step_${index}/${safeName(component.id)}/step_${j}`,
        index,
        step,
        files: child.value.files,
        folder: [folder.value, 'child'],
        component,
        signal,
      });
      if (end.kind !== 'done') return end;
      allSkipped &&= end.skipped;
    }
  }
  return {
    kind: 'done',
    result: success(allSkipped ? resultCodes.installSkippedAlreadyInstalled : resultCodes.applySuccess),
    skipped: allSkipped,
  };
}
