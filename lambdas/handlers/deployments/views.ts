/** What the API shows of deployments, executions and devices: stored records → JSON bodies. */
import type { DeploymentRecord } from '../../adapters/deployment-store.ts';
import type { ExecutionRecord } from '../../adapters/execution-store.ts';
import type { FleetItem } from '../../adapters/fleet-store.ts';
import { failuresOf, finishedDevices, isTerminal, totalExecutions } from '../../domain/deployment/index.ts';

const isoOf = (epochMs: number | undefined): string | undefined =>
  epochMs === undefined ? undefined : new Date(epochMs).toISOString();

/** Drops undefined fields so bodies carry only what is known. */
function compact<T extends Record<string, unknown>>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** A share of `whole`, rounded to 0.1 %; null when nothing counts yet. */
function percent(part: number, whole: number): number | null {
  return whole === 0 ? null : Math.round((1000 * part) / whole) / 10;
}

export function deploymentView(record: DeploymentRecord): Record<string, unknown> {
  const counts = record.counters;
  const total = totalExecutions(counts);
  const finished = finishedDevices(counts);
  const ended =
    counts.succeeded +
    counts.skipped +
    counts.failed +
    counts.timed_out +
    counts.canceled +
    counts.incompatible;
  const { startAt, ...policy } = record.policy;
  return compact({
    deploymentId: record.deploymentId,
    updateId: record.updateId,
    status: record.status,
    target: record.target,
    policy: compact({ ...policy, startAt: isoOf(startAt) }),
    createdAt: record.createdAt,
    startAt: isoOf(record.startAt),
    startedAt: record.startedAt,
    endedAt: record.endedAt,
    abortReason: record.abortReason,
    devices: total,
    counts,
    /** Percentages of the devices that finished trying the update (ADR 0010: canceled and incompatible do not count). */
    rates: {
      succeeded: percent(counts.succeeded + counts.skipped, finished),
      failed: percent(counts.failed, finished),
      timedOut: percent(counts.timed_out, finished),
      anyFailure: percent(failuresOf(counts, 'ANY_FAILURE'), finished),
      completed: percent(ended, total),
    },
    signature: { keyId: record.manifest.keyId, expiresAt: record.manifest.expiresAt },
  });
}

export function executionView(record: ExecutionRecord): Record<string, unknown> {
  return compact({
    deploymentId: record.deploymentId,
    thingName: record.thingName,
    updateId: record.updateId,
    state: record.state,
    attempt: record.attempt,
    reason: record.reason,
    cancelRequested: record.cancelReason,
    // A device still waiting on its target page has no row yet, so no times.
    createdAt: record.unwritten ? undefined : record.createdAt,
    updatedAt: record.unwritten ? undefined : record.updatedAt,
    notifiedAt: isoOf(record.notifiedAt),
    deadline: isoOf(record.deadline),
    reportedAt: isoOf(record.reportedAt),
    progress: record.progress,
    // ADU's shape: resultCode, extendedResultCode, resultDetails, stepResults per step.
    result: record.lastResult,
  });
}

/**
 * What the device said last: its executions record the reports made within deployments, the
 * fleet item those outside (and its first contact). The installed update is the one in the newest
 * report that names one; the last report time is the newest of all (ADR 0040, "Fleet facts").
 */
function latestReport(
  fleet: FleetItem | undefined,
  executions: readonly ExecutionRecord[],
): Pick<FleetItem, 'installedUpdateId' | 'lastReportAt'> {
  const reports = [
    ...(fleet?.lastReportAt !== undefined
      ? [{ at: fleet.lastReportAt, installedUpdateId: fleet.installedUpdateId }]
      : []),
    ...executions.flatMap((e) =>
      e.reportedAt !== undefined ? [{ at: e.reportedAt, installedUpdateId: e.installedUpdateId }] : [],
    ),
  ].sort((a, b) => b.at - a.at);
  const installed =
    reports.find((r) => r.installedUpdateId !== undefined)?.installedUpdateId ?? fleet?.installedUpdateId;
  const newest = reports[0]?.at;
  return {
    ...(installed ? { installedUpdateId: installed } : {}),
    ...(newest !== undefined ? { lastReportAt: newest } : {}),
  };
}

export function deviceView(
  thingName: string,
  fleet: FleetItem | undefined,
  executions: readonly ExecutionRecord[],
  /** The device's newest executions, whatever page `executions` is: the current state comes from them. */
  recent: readonly ExecutionRecord[] = executions,
): Record<string, unknown> {
  // A device runs one deployment at a time (the fan-out supersedes older ones): its newest live one.
  const current = recent.find((e) => !isTerminal(e.state));
  const latest = latestReport(fleet, recent);
  return compact({
    thingName,
    installedUpdateId: latest.installedUpdateId,
    compatibility: fleet?.compatibility,
    lastReportAt: isoOf(latest.lastReportAt),
    current: current ? executionView(current) : undefined,
    executions: executions.map(executionView),
  });
}
