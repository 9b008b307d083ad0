/**
 * Applies one device report to its execution: the acknowledgement Lambda calls it with the
 * update request the device published, the reconciliation sweep with a fresh GetThingShadow. The
 * same decision either way (`decideReport`), written on condition that the execution is still
 * as read; on a conflict it re-reads and decides again. Idempotent: a redelivered event is a
 * duplicate by its order key, and a trim it may owe is retried.
 */
import type {
  ExecutionRecord,
  ExecutionStore,
  ForwardEntry,
  ForwardOutcome,
} from '../../adapters/execution-store.ts';
import type { FleetItem, FleetStore } from '../../adapters/fleet-store.ts';
import type { ShadowWriter } from '../../adapters/shadow-writer.ts';
import {
  buildTrimDocument,
  decideReport,
  desiredBelongsTo,
  type ExecutionState,
  forwardReport,
  isTerminal,
  parseReportedOta,
  type ReportDecision,
  type ReportedOta,
  type TransitionReason,
} from '../../domain/deployment/index.ts';
import { type Observability, outcome } from '../../observability.ts';
import { mapWithConcurrency } from '../fanout/sharding.ts';
import { fleetFactsOf, fleetNeedsWrite } from './fleet-report.ts';

/** `desired.ota` as seen with the report: in the shadow as read (reconcile), or not at all (an event). */
export interface SeenDesired {
  /** The shadow version in which `ota` was seen: a trim is locked to it. */
  readonly version: number;
  readonly ota: unknown;
}

/** What a report is applied from: a device's update request, or the shadow as read now. */
export interface ShadowReport {
  readonly thingName: string;
  /** When the service received the report (or read it), epoch ms. */
  readonly reportedAt: number;
  readonly reportedOta: unknown;
  /**
   * The device cleared `desired.ota` itself in this report (the agent's terminal report does, locked
   * to the shadow version): no trim is owed.
   */
  readonly clearsDesired: boolean;
  /** Known only when the shadow was read; otherwise a trim reads it first. */
  readonly seenDesired?: SeenDesired;
}

export interface AcknowledgeDeps {
  readonly executions: Pick<ExecutionStore, 'get' | 'transition' | 'applyForwardReport'>;
  readonly fleet: Pick<FleetStore, 'get' | 'upsertReport'>;
  readonly shadows: Pick<ShadowWriter, 'update' | 'get'>;
  readonly observability: Observability;
}

export type AckOutcome =
  | { readonly kind: 'invalid' }
  /** A valid report that names no deployment, or one with no execution for this thing. */
  | { readonly kind: 'no_execution'; readonly deploymentId?: string }
  | {
      readonly kind: 'transition';
      readonly from: ExecutionState;
      readonly to: ExecutionState;
      readonly reason: TransitionReason;
      readonly trimmed: boolean;
    }
  | { readonly kind: 'progress'; readonly state: ExecutionState; readonly trimmed: boolean }
  /**
   * Moved to `to`, or progress in it, by a batched write (`applyShadowReports`): the write's
   * answer does not say which state it left.
   */
  | { readonly kind: 'forwarded'; readonly to: ExecutionState; readonly trimmed: boolean }
  | {
      readonly kind: 'stale' | 'duplicate' | 'ignored';
      readonly code: string;
      readonly trimmed: boolean;
    };

/** Re-reads after a lost race; more than a few in a row means something else is wrong. */
const MAX_DECISIONS = 5;
const MAX_TRIMS = 3;

interface Settled {
  readonly decision: ReportDecision;
  readonly execution: ExecutionRecord;
}

/** What a report writes besides the state: when, and what the device said. */
function reportFacts(ota: ReportedOta, now: number) {
  return {
    at: now,
    ...(ota.lastResult ? { lastResult: ota.lastResult } : {}),
    ...(ota.progress ? { progress: ota.progress } : {}),
    ...(ota.installedUpdateId ? { installedUpdateId: ota.installedUpdateId } : {}),
  };
}

/** Decides and writes until the write lands or the decision needs no write. */
async function settleReport(
  deps: AcknowledgeDeps,
  first: ExecutionRecord,
  ota: ReportedOta,
  report: ShadowReport,
  now: number,
): Promise<Settled | undefined> {
  let execution = first;
  for (let round = 1; round <= MAX_DECISIONS; round++) {
    const decision = decideReport(execution, { ota, reportedAt: report.reportedAt });
    if (decision.kind !== 'transition' && decision.kind !== 'progress') return { decision, execution };
    const written = await deps.executions.transition(execution, decision.next, {
      ...reportFacts(ota, now),
      ...(decision.kind === 'transition' ? { reason: decision.transition.reason } : {}),
    });
    if (written.ok) return { decision, execution: written.value };
    deps.observability.count(outcome.ackConflictRetried);
    if (!written.error.current) return undefined;
    execution = written.error.current;
  }
  throw new Error(
    `execution ${first.deploymentId}/${first.thingName} kept changing under ${MAX_DECISIONS} decisions`,
  );
}

/**
 * Clears `desired.ota` of an execution that ended, locked to the shadow version in which it was
 * seen (ADR 0010); read first when it was not seen. On a version conflict the shadow is read again:
 * if the document is still this execution's it is trimmed at the new version; if a newer
 * deployment's, it is left alone.
 */
export async function trimIfOwed(
  deps: Pick<AcknowledgeDeps, 'shadows' | 'observability'>,
  execution: Pick<ExecutionRecord, 'deploymentId' | 'thingName' | 'attempt' | 'state'>,
  seen: SeenDesired | undefined,
): Promise<boolean> {
  if (!isTerminal(execution.state)) return false;
  let view = seen ?? (await readDesired(deps, execution.thingName));
  for (let round = 1; round <= MAX_TRIMS; round++) {
    if (!view || !desiredBelongsTo(view.ota, execution.deploymentId, execution.attempt)) return false;
    const trimmed = await deps.shadows.update(execution.thingName, buildTrimDocument(view.version));
    if (trimmed.ok) {
      deps.observability.count(outcome.desiredTrimmed);
      return true;
    }
    if (trimmed.error.code !== 'VERSION_CONFLICT') {
      throw new Error(`trimming ${execution.thingName}: ${trimmed.error.code} ${trimmed.error.message}`);
    }
    view = await readDesired(deps, execution.thingName);
  }
  throw new Error(`the ota shadow of ${execution.thingName} kept changing under ${MAX_TRIMS} trims`);
}

async function readDesired(
  deps: Pick<AcknowledgeDeps, 'shadows'>,
  thingName: string,
): Promise<SeenDesired | undefined> {
  const read = await deps.shadows.get(thingName);
  if (!read.ok) throw new Error(`reading ${thingName}: ${read.error.message}`);
  return read.value ? { version: read.value.version, ota: read.value.state.desired?.ota } : undefined;
}

function countDecision(obs: Observability, decision: ReportDecision): void {
  if (decision.kind === 'stale') obs.count(outcome.staleReportIgnored);
  if (decision.kind === 'duplicate') obs.count(outcome.duplicateReportIgnored);
  if (decision.kind !== 'transition') return;
  if (decision.transition.to === 'succeeded') obs.count(outcome.deviceSucceeded);
  if (decision.transition.to === 'failed') obs.count(outcome.deviceFailed);
}

/** The report's `ota` section; a report that is not valid is counted and logged. */
function parsedOta(deps: AcknowledgeDeps, report: ShadowReport): ReportedOta | undefined {
  const { logger } = deps.observability;
  const parsed = parseReportedOta(report.reportedOta);
  if (!parsed.ok) {
    deps.observability.count(outcome.reportInvalid);
    logger.warn('device report refused', { ...contextOf(report), faults: parsed.error.faults });
    return undefined;
  }
  const { report: ota, warnings } = parsed.value;
  if (warnings.length > 0)
    logger.warn('device report partly dropped', { ...contextOf(report), faults: warnings });
  return ota;
}

const contextOf = (report: ShadowReport) => ({ thingName: report.thingName, reportedAt: report.reportedAt });

/**
 * Whether the report must write the fleet item. A report outside any deployment is the fleet's
 * only record of it. Within one, the execution write holds the facts; the fleet item is written
 * when the execution ends and the fleet lacks what targeting reads (fleetNeedsWrite): never for
 * a progress report.
 */
async function recordFleetFacts(
  deps: AcknowledgeDeps,
  ota: ReportedOta,
  report: ShadowReport,
  inExecution: boolean,
  endedNow: boolean,
  known: () => Promise<FleetItem | undefined>,
): Promise<void> {
  const outside = !inExecution && (ota.installedUpdateId !== undefined || ota.compatibility !== undefined);
  if (outside || (endedNow && fleetNeedsWrite(await known(), ota)))
    await deps.fleet.upsertReport(report.thingName, fleetFactsOf(ota, report.reportedAt));
}

export async function applyShadowReport(
  deps: AcknowledgeDeps,
  report: ShadowReport,
  now: number,
): Promise<AckOutcome> {
  const ota = parsedOta(deps, report);
  if (!ota) return { kind: 'invalid' };
  const settled = ota.deploymentId
    ? await applyToExecution(deps, ota, report, now, ota.deploymentId)
    : undefined;
  return finishSettled(deps, ota, report, settled, () => deps.fleet.get(report.thingName));
}

/**
 * Whether the report is the one that ended its execution: a move into a terminal state, or the
 * same report again on the execution it ended (a redelivery after the execution write landed and
 * the fleet write did not; the fleet write is idempotent and ordered by report time).
 */
function endsExecution(settled: Settled | undefined): boolean {
  if (!settled) return false;
  const { decision, execution } = settled;
  if (decision.kind === 'transition') return isTerminal(decision.transition.to);
  return decision.kind === 'duplicate' && isTerminal(execution.state);
}

/** What follows a report's decision on its execution: the fleet, the counts, the trim, the log. */
async function finishSettled(
  deps: AcknowledgeDeps,
  ota: ReportedOta,
  report: ShadowReport,
  settled: Settled | undefined,
  knownFleet: () => Promise<FleetItem | undefined>,
): Promise<AckOutcome> {
  await recordFleetFacts(deps, ota, report, settled !== undefined, endsExecution(settled), knownFleet);
  if (!settled) {
    return ota.deploymentId
      ? { kind: 'no_execution', deploymentId: ota.deploymentId }
      : { kind: 'no_execution' };
  }

  const { decision, execution } = settled;
  countDecision(deps.observability, decision);
  const trimmed = report.clearsDesired ? false : await trimIfOwed(deps, execution, report.seenDesired);
  deps.observability.logger.info('device report', {
    ...contextOf(report),
    deploymentId: execution.deploymentId,
    decision: decision.kind,
    state: execution.state,
    ...(decision.kind === 'transition' ? { from: decision.transition.from } : {}),
    ...('code' in decision ? { code: decision.code } : {}),
    trimmed,
  });
  if (decision.kind === 'transition') {
    const { from, to, reason } = decision.transition;
    return { kind: 'transition', from, to, reason, trimmed };
  }
  if (decision.kind === 'progress') return { kind: 'progress', state: decision.state, trimmed };
  return { kind: decision.kind, code: decision.code, trimmed };
}

/** The batched path's deps: the same, with the stores' batch requests. */
export interface BatchAcknowledgeDeps extends AcknowledgeDeps {
  readonly executions: AcknowledgeDeps['executions'] & Pick<ExecutionStore, 'applyForwardReports'>;
  readonly fleet: AcknowledgeDeps['fleet'] & Pick<FleetStore, 'getMany'>;
}

/** One report's end in a batch: its outcome, or the error that leaves it to be delivered again. */
export type BatchItemResult =
  | { readonly ok: true; readonly outcome: AckOutcome }
  | { readonly ok: false; readonly error: unknown };

interface Forwarded {
  readonly index: number;
  readonly ota: ReportedOta;
  readonly report: ShadowReport;
  readonly entry: ForwardEntry;
}

/**
 * After the batch's forward moves, what is left of each report (fleet, trim, or the whole report on
 * its own) runs a device's reports in batch order, devices side by side, this many at once.
 */
const DEVICES_AT_ONCE = 8;

/**
 * Applies a batch of reports (ADR 0040, "Batched acknowledgements"): the usual ones, which move
 * their execution forward, in one conditional write request per 25 (`applyForwardReports`),
 * with one fleet read per 100 of those that ended; a refused move is decided on the execution
 * the refusal returned, as `applyShadowReport` does; everything else goes through
 * `applyShadowReport` one by one. A report that fails does not fail the others.
 */
export async function applyShadowReports(
  deps: BatchAcknowledgeDeps,
  reports: readonly ShadowReport[],
  now: number,
): Promise<BatchItemResult[]> {
  const results = new Array<BatchItemResult>(reports.length);
  const forwarded: Forwarded[] = [];
  const alone: number[] = [];
  reports.forEach((report, index) => {
    const ota = parsedOta(deps, report);
    if (!ota) {
      results[index] = { ok: true, outcome: { kind: 'invalid' } };
      return;
    }
    const forward = ota.deploymentId && forwardReport({ ota, reportedAt: report.reportedAt });
    if (!forward) alone.push(index);
    else
      forwarded.push({
        index,
        ota,
        report,
        entry: { thingName: report.thingName, report: forward, extra: reportFacts(ota, now) },
      });
  });
  const written =
    forwarded.length > 0 ? await deps.executions.applyForwardReports(forwarded.map((f) => f.entry)) : [];
  const knownFleet = await fleetOfEnded(deps, forwarded, written);

  const work = new Map<number, () => Promise<AckOutcome>>();
  forwarded.forEach((item, k) => {
    const result = written[k];
    const { ota, report } = item;
    if (result?.kind === 'applied') work.set(item.index, () => finishForwarded(deps, item, knownFleet));
    else if (result?.kind === 'refused')
      work.set(item.index, async () => {
        const settled = result.current && (await settleReport(deps, result.current, ota, report, now));
        return finishSettled(deps, ota, report, settled, () => deps.fleet.get(report.thingName));
      });
    else {
      deps.observability.count(outcome.batchWriteSentAlone);
      work.set(item.index, () => applyShadowReport(deps, report, now));
    }
  });
  for (const index of alone)
    work.set(index, () => applyShadowReport(deps, reports[index] as ShadowReport, now));

  const byDevice = new Map<string, number[]>();
  for (const index of [...work.keys()].sort((a, b) => a - b)) {
    const thingName = (reports[index] as ShadowReport).thingName;
    byDevice.set(thingName, [...(byDevice.get(thingName) ?? []), index]);
  }
  await mapWithConcurrency([...byDevice.values()], DEVICES_AT_ONCE, async (indexes) => {
    for (const index of indexes) results[index] = await settledResult(work.get(index));
  });
  return results;
}

async function settledResult(run: (() => Promise<AckOutcome>) | undefined): Promise<BatchItemResult> {
  try {
    if (!run) throw new Error('bug: a report of the batch was given no work');
    return { ok: true, outcome: await run() };
  } catch (error) {
    return { ok: false, error };
  }
}

/**
 * The fleet items of the devices whose execution the batch ended, in one read per 100; if that
 * read fails, each is read on its own (the execution is written already, and a redelivered
 * report would be a duplicate that no longer writes the fleet).
 */
async function fleetOfEnded(
  deps: BatchAcknowledgeDeps,
  forwarded: readonly Forwarded[],
  written: readonly ForwardOutcome[],
): Promise<(thingName: string) => Promise<FleetItem | undefined>> {
  const ended = forwarded
    .filter((item, k) => written[k]?.kind === 'applied' && isTerminal(item.entry.report.to))
    .map((item) => item.report.thingName);
  if (ended.length === 0) return (thingName) => deps.fleet.get(thingName);
  try {
    const known = await deps.fleet.getMany(ended);
    return async (thingName) => known.get(thingName);
  } catch (error) {
    deps.observability.logger.warn('fleet batch read failed; reading device by device', {
      error: error as Error,
    });
    return (thingName) => deps.fleet.get(thingName);
  }
}

/** A batched move landed: the state it reached is the report's, the one it left unknown. */
async function finishForwarded(
  deps: AcknowledgeDeps,
  { ota, report, entry }: Forwarded,
  knownFleet: (thingName: string) => Promise<FleetItem | undefined>,
): Promise<AckOutcome> {
  const { to, deploymentId, attempt } = entry.report;
  const endedNow = isTerminal(to);
  await recordFleetFacts(deps, ota, report, true, endedNow, () => knownFleet(report.thingName));
  // A terminal state is never reached by progress in it: this was a move.
  if (to === 'succeeded') deps.observability.count(outcome.deviceSucceeded);
  if (to === 'failed') deps.observability.count(outcome.deviceFailed);
  const execution = { deploymentId, thingName: report.thingName, attempt, state: to };
  const trimmed = report.clearsDesired ? false : await trimIfOwed(deps, execution, report.seenDesired);
  deps.observability.logger.info('device report', {
    ...contextOf(report),
    deploymentId,
    decision: 'forwarded',
    state: to,
    trimmed,
  });
  return { kind: 'forwarded', to, trimmed };
}

/**
 * The usual report moves its execution forward: written at once on the conditions that make it
 * so (one request, ADR 0040 "One request per report"). Otherwise the refused write answers with
 * the execution as it is, and the report is decided on that.
 */
async function applyToExecution(
  deps: AcknowledgeDeps,
  ota: ReportedOta,
  report: ShadowReport,
  now: number,
  deploymentId: string,
): Promise<Settled | undefined> {
  const forward = forwardReport({ ota, reportedAt: report.reportedAt });
  if (!forward) {
    const execution = await deps.executions.get(deploymentId, report.thingName);
    return execution && settleReport(deps, execution, ota, report, now);
  }
  const written = await deps.executions.applyForwardReport(report.thingName, forward, reportFacts(ota, now));
  if (!written.ok) {
    const { current } = written.error;
    return current && settleReport(deps, current, ota, report, now);
  }
  // The same decision the read path makes on the execution as it was (forwardReport's contract):
  // a move to `to`, or progress in it.
  const decision = decideReport(written.value, { ota, reportedAt: report.reportedAt });
  if (decision.kind !== 'transition' && decision.kind !== 'progress')
    throw new Error(`bug: a report for ${forward.to} was decided ${decision.kind} on its execution`);
  const reached = decision.kind === 'transition' ? decision.transition.to : decision.state;
  if (reached !== forward.to)
    throw new Error(`bug: a report for ${forward.to} was decided to reach ${reached}`);
  return { decision, execution: { ...written.value, ...decision.next } };
}
