/**
 * Applies one device report to its execution: the acknowledgement Lambda calls it with the
 * update request the device published, the reconciliation sweep with a fresh GetThingShadow. The
 * same decision either way (`decideReport`), written on condition that the execution is still
 * as read; on a conflict it re-reads and decides again. Idempotent: a redelivered event is a
 * duplicate by its order key, and a trim it may owe is retried.
 */
import type { ExecutionRecord, ExecutionStore } from '../../adapters/execution-store.ts';
import type { FleetStore } from '../../adapters/fleet-store.ts';
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

export async function applyShadowReport(
  deps: AcknowledgeDeps,
  report: ShadowReport,
  now: number,
): Promise<AckOutcome> {
  const { logger } = deps.observability;
  const context = { thingName: report.thingName, reportedAt: report.reportedAt };
  const parsed = parseReportedOta(report.reportedOta);
  if (!parsed.ok) {
    deps.observability.count(outcome.reportInvalid);
    logger.warn('device report refused', { ...context, faults: parsed.error.faults });
    return { kind: 'invalid' };
  }
  const { report: ota, warnings } = parsed.value;
  if (warnings.length > 0) logger.warn('device report partly dropped', { ...context, faults: warnings });

  const settled = ota.deploymentId
    ? await applyToExecution(deps, ota, report, now, ota.deploymentId)
    : undefined;
  const endedNow = settled?.decision.kind === 'transition' && isTerminal(settled.decision.transition.to);
  // A report outside any deployment is the fleet's only record of it. Within one, the execution
  // write holds the facts; the fleet item is written when the execution ends and the fleet lacks
  // what targeting reads (fleetNeedsWrite): never for a progress report.
  const outside = !settled && (ota.installedUpdateId !== undefined || ota.compatibility !== undefined);
  if (outside || (endedNow && fleetNeedsWrite(await deps.fleet.get(report.thingName), ota)))
    await deps.fleet.upsertReport(report.thingName, fleetFactsOf(ota, report.reportedAt));
  if (!settled) {
    return ota.deploymentId
      ? { kind: 'no_execution', deploymentId: ota.deploymentId }
      : { kind: 'no_execution' };
  }

  const { decision, execution } = settled;
  countDecision(deps.observability, decision);
  const trimmed = report.clearsDesired ? false : await trimIfOwed(deps, execution, report.seenDesired);
  logger.info('device report', {
    ...context,
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
