import { formatUpdateId, type UpdateId, updateIdKey } from '../manifest/index.ts';
import { type Applied, applyTransition, type Execution } from './execution.ts';
import type { DeviceReportedState, ReportedOta } from './report.ts';
import {
  type ExecutionState,
  executionStates,
  isAllowedTransition,
  isForward,
  isInProgress,
  isTerminal,
} from './states.ts';

/** One device report as the acknowledgement handler sees it: the `reported.ota` a device sent. */
export interface DeviceReport {
  readonly ota: ReportedOta;
  /** When the service received the report (the rule's `timestamp()`), epoch ms. */
  readonly reportedAt: number;
}

/** The key that orders one device's reports: its sequence when it sends one, else when it arrived. */
export function reportOrderOf(report: DeviceReport): number {
  return report.ota.seq ?? report.reportedAt;
}

export type IgnoreCode =
  | 'STALE_REPORT'
  | 'DUPLICATE_REPORT'
  | 'OTHER_DEPLOYMENT'
  | 'PREVIOUS_ATTEMPT'
  | 'ALREADY_TERMINAL'
  | 'NO_PROGRESS';

/** The device moved its execution to a new state; `next` also records the report's version and time. */
export type ReportTransition = Applied;

/** Same state (or a device that went back a step, e.g. re-downloading after a reboot): record the report, keep the state. */
export interface ReportProgress {
  readonly kind: 'progress';
  readonly state: ExecutionState;
  readonly next: Execution;
  readonly note?: string;
}

export interface ReportIgnored {
  readonly kind: 'stale' | 'duplicate' | 'ignored';
  readonly code: IgnoreCode;
  readonly reason: string;
}

export type ReportDecision = ReportTransition | ReportProgress | ReportIgnored;

/** Update identity is case-insensitive in provider and name and ignores leading zeros in the version (ADR 0001). */
export function sameUpdateId(a: UpdateId, b: UpdateId): boolean {
  return updateIdKey(a) === updateIdKey(b);
}

function ignored(kind: ReportIgnored['kind'], code: IgnoreCode, reason: string): ReportIgnored {
  return { kind, code, reason };
}

/**
 * What the device's state means for the execution. Success needs the device to name the deployed
 * update as its installed update: an installer's "done" alone is not proof (a reboot may still be
 * pending, or the new image may have rolled itself back), so the execution waits in `applying`.
 */
function targetState(
  state: Exclude<DeviceReportedState, 'idle'>,
  report: ReportedOta,
  execution: Execution,
): ExecutionState {
  if (state !== 'succeeded' && state !== 'skipped') return state;
  const installed = report.installedUpdateId;
  return installed && sameUpdateId(installed, execution.updateId) ? state : 'applying';
}

function checkIdentity(execution: Execution, ota: ReportedOta): ReportIgnored | undefined {
  if (ota.deploymentId !== execution.deploymentId) {
    return ignored('ignored', 'OTHER_DEPLOYMENT', `report is for deployment ${ota.deploymentId ?? '(none)'}`);
  }
  if (ota.attempt < execution.attempt) {
    return ignored(
      'ignored',
      'PREVIOUS_ATTEMPT',
      `report is for attempt ${ota.attempt}, execution is at ${execution.attempt}`,
    );
  }
  return undefined;
}

/**
 * Orders reports by their key (`reportOrderOf`). The rule invokes the Lambda asynchronously, so
 * reports arrive twice, late and out of order; the device numbers them, so any delivery order
 * converges on its newest report.
 */
function checkOrder(execution: Execution, report: DeviceReport): ReportIgnored | undefined {
  const last = execution.reportOrder;
  if (last === undefined) return undefined;
  const order = reportOrderOf(report);
  if (order === last) return ignored('duplicate', 'DUPLICATE_REPORT', `report ${last} already applied`);
  if (order > last) return undefined;
  return ignored('stale', 'STALE_REPORT', `report ${order} is older than ${last}`);
}

function recorded(report: DeviceReport): { readonly reportOrder: number; readonly reportedAt: number } {
  return { reportOrder: reportOrderOf(report), reportedAt: report.reportedAt };
}

/**
 * Decides what a device report does to an execution: a transition, a progress record, or nothing
 * (stale, duplicate, or not about this execution), each with a reason. Pure: the caller writes
 * `next` on condition that the stored state and report order are still those of `execution`.
 */
export function decideReport(execution: Execution, report: DeviceReport): ReportDecision {
  const { ota } = report;
  const mismatch = checkIdentity(execution, ota) ?? checkOrder(execution, report);
  if (mismatch) return mismatch;
  if (ota.state === 'idle') return ignored('ignored', 'NO_PROGRESS', 'device reports idle');

  const to = targetState(ota.state, ota, execution);
  const from = execution.state;
  // A device can report before the fan-out records that it sent the document (the send comes
  // first): its clock starts at its first report, or it could never time out.
  const changes = { ...recorded(report), notifiedAt: execution.notifiedAt ?? report.reportedAt };

  if (isTerminal(from)) {
    // A slow device's final word beats our timeout: what it says it did is what happened.
    if (from === 'timed_out' && (to === 'succeeded' || to === 'failed')) {
      return applyTransition(execution, to, 'late_report', changes);
    }
    return ignored('ignored', 'ALREADY_TERMINAL', `execution already ended ${from}`);
  }
  if (isForward(from, to)) {
    // A device confirming a cancel we asked for ends for our reason, not its own.
    const reason = to === 'canceled' && execution.cancelReason ? execution.cancelReason : 'device_report';
    return applyTransition(execution, to, reason, changes);
  }

  const note =
    to === 'applying' && ota.state !== 'applying'
      ? `device reports ${ota.state} but its installed update is ${ota.installedUpdateId ? formatUpdateId(ota.installedUpdateId) : 'not reported'}`
      : undefined;
  return { kind: 'progress', state: from, next: { ...execution, ...changes }, ...(note ? { note } : {}) };
}

/**
 * When a report needs no read first (ADR 0040, "One request per report"): the conditions on the
 * stored execution under which `decideReport` is sure to move it forward to `to` for the device's
 * own reason. The adapter writes the move on exactly these conditions, so the usual report costs
 * one conditional write; when they do not hold, the write answers with the execution as it is and
 * `decideReport` decides from that. Excluded, because the outcome depends on the stored execution
 * beyond them: idle (no move), `canceled` (its reason is the cancel asked for, if any), and the
 * late report of a timed-out device.
 */
export interface ForwardReport {
  readonly deploymentId: string;
  /** The stored attempt must be the report's (an older report is ignored, a newer one is odd). */
  readonly attempt: number;
  /** The stored order key must be absent or lower (otherwise: duplicate or stale). */
  readonly order: number;
  /**
   * The stored state must be one of these: not terminal, behind `to`, or `to` itself when only a
   * device's report leads into it (a progress report: `decideReport` keeps the state and records
   * the report, which is the same write).
   */
  readonly from: readonly ExecutionState[];
  readonly to: ExecutionState;
  /**
   * A report of success moves to `to` only if it names the execution's update as installed: the
   * stored update must be exactly this one (a differently spelled but equal id takes the read path).
   */
  readonly updateId?: UpdateId;
  /**
   * What the move records besides the state (`decideReport`'s changes), and `notifiedAt` =
   * `reportedAt` where the execution has none yet.
   */
  readonly changes: { readonly reportOrder: number; readonly reportedAt: number };
}

/**
 * The in-progress states only a device's report leads into (`notified` is the fan-out's): an
 * execution in one of them got there for the device's reason, so a further report in the same
 * state (progress) writes the same record as a move into it would.
 */
function reachedByReports(state: ExecutionState): boolean {
  return isInProgress(state) && state !== 'notified';
}

export function forwardReport(report: DeviceReport): ForwardReport | undefined {
  const { ota } = report;
  if (ota.deploymentId === undefined || ota.state === 'idle' || ota.state === 'canceled') return undefined;
  const claimsSuccess = ota.state === 'succeeded' || ota.state === 'skipped';
  // Without an installed update a success claim waits in `applying` whatever the execution's update.
  const to: ExecutionState = claimsSuccess && !ota.installedUpdateId ? 'applying' : ota.state;
  const from = executionStates.filter(
    (state) =>
      (isForward(state, to) && isAllowedTransition(state, to)) || (state === to && reachedByReports(to)),
  );
  if (from.length === 0) return undefined;
  return {
    deploymentId: ota.deploymentId,
    attempt: ota.attempt,
    order: reportOrderOf(report),
    from,
    to,
    ...(claimsSuccess && ota.installedUpdateId ? { updateId: ota.installedUpdateId } : {}),
    changes: recorded(report),
  };
}
