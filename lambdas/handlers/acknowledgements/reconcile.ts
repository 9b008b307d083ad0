/**
 * The reconciliation sweep (ADR 0040): AWS invokes the acknowledgement Lambda asynchronously, and an
 * event that fails every retry is gone. So executions still at work that have been silent for a
 * while are re-read from their shadow, and the report there goes through the same decision as
 * the event would have. A report already applied is a duplicate by its `seq`: no write.
 */
import type { ExecutionRecord, ExecutionStore } from '../../adapters/execution-store.ts';
import { type Observability, outcome } from '../../observability.ts';
import { type AcknowledgeDeps, type AckOutcome, applyShadowReport } from './apply-report.ts';

export interface ReconcileDeps extends AcknowledgeDeps {
  readonly executions: Pick<ExecutionStore, 'get' | 'transition' | 'applyForwardReport' | 'queryByState'>;
  /** The deployments to sweep (the scheduler's active ones). */
  readonly activeDeploymentIds: () => Promise<readonly string[]>;
  /** An execution is silent when nothing was heard from it for this long. @default 5 minutes */
  readonly silenceMs?: number;
  /** How often the sweep runs (the scheduler's period). @default 1 minute */
  readonly sweepIntervalMs?: number;
  /** Stop after this many shadow reads, to stay within one invocation. @default 2000 */
  readonly maxShadowReads?: number;
}

export interface ReconcileSummary {
  readonly examined: number;
  readonly shadowsRead: number;
  /** Executions whose state changed: a report whose event was lost, applied now. */
  readonly corrected: number;
  /** Trims that were owed and are done. */
  readonly trimmed: number;
  /** True when `maxShadowReads` stopped the sweep early; the next one continues. */
  readonly truncated: boolean;
}

export const reconcileDefaults = {
  silenceMs: 5 * 60_000,
  sweepIntervalMs: 60_000,
  maxShadowReads: 2000,
} as const;

/** When the device was last heard of: its last applied report, or the notification. */
export function lastHeardAt(
  execution: Pick<ExecutionRecord, 'reportedAt' | 'notifiedAt'>,
): number | undefined {
  const times = [execution.reportedAt, execution.notifiedAt].filter((t): t is number => t !== undefined);
  return times.length > 0 ? Math.max(...times) : undefined;
}

/**
 * How long an execution may stay silent before its shadow is read: the sweep's threshold, or an
 * eighth of the device's time (deadline - notifiedAt) when that is longer. An agent reports once,
 * at its end, so silence is how a device at work looks: with the threshold alone, an update taking
 * half an hour cost three shadow reads per device. Lost events are rare (Lambda retries them, then
 * keeps them in a queue), and reads at 1/8, 1/4 and 1/2 of the device's time still find one
 * before the device would time out.
 */
export function silenceThresholdFor(
  execution: Pick<ExecutionRecord, 'notifiedAt' | 'deadline'>,
  silenceMs: number,
): number {
  const { notifiedAt, deadline } = execution;
  if (notifiedAt === undefined || deadline === undefined) return silenceMs;
  return Math.max(silenceMs, Math.floor((deadline - notifiedAt) / 8));
}

/**
 * True when this sweep should read the device's shadow: its silence just crossed the threshold,
 * or twice it, four times it, ... Stateless (no "last reconciled" write), and a device silent for
 * a day costs about log2(day / threshold) reads, not one per sweep.
 */
export function isReconcileDue(silence: number, silenceMs: number, sweepIntervalMs: number): boolean {
  if (silence < silenceMs) return false;
  for (let mark = silenceMs; mark <= silence; mark *= 2) {
    if (silence - mark < sweepIntervalMs) return true;
  }
  return false;
}

/** A transition the events never brought: the report that carried it was lost. */
function correctedState(result: AckOutcome): boolean {
  return result.kind === 'transition';
}

interface Tally {
  examined: number;
  shadowsRead: number;
  corrected: number;
  trimmed: number;
}

async function reconcileOne(
  deps: ReconcileDeps,
  execution: ExecutionRecord,
  now: number,
  tally: Tally,
  obs: Observability,
): Promise<void> {
  tally.shadowsRead++;
  const shadow = await deps.shadows.get(execution.thingName);
  if (!shadow.ok) {
    obs.logger.warn('reconcile: shadow not read', { thingName: execution.thingName, error: shadow.error });
    return;
  }
  const reportedOta = shadow.value?.state.reported?.ota;
  if (!shadow.value || reportedOta === undefined) return;
  const result = await applyShadowReport(
    deps,
    {
      thingName: execution.thingName,
      // The agent's `seq` orders the report; a device without one is ordered by this read's time.
      reportedAt: now,
      reportedOta,
      clearsDesired: false,
      seenDesired: { version: shadow.value.version, ota: shadow.value.state.desired?.ota },
    },
    now,
  );
  if (correctedState(result)) {
    tally.corrected++;
    obs.count(outcome.executionReconciled);
    obs.logger.warn('reconcile: a lost report was applied', {
      deploymentId: execution.deploymentId,
      thingName: execution.thingName,
      outcome: result.kind,
    });
  }
  if ('trimmed' in result && result.trimmed) tally.trimmed++;
}

export async function reconcileSilentExecutions(deps: ReconcileDeps, now: number): Promise<ReconcileSummary> {
  const silenceMs = deps.silenceMs ?? reconcileDefaults.silenceMs;
  const sweepIntervalMs = deps.sweepIntervalMs ?? reconcileDefaults.sweepIntervalMs;
  const maxReads = deps.maxShadowReads ?? reconcileDefaults.maxShadowReads;
  const tally: Tally = { examined: 0, shadowsRead: 0, corrected: 0, trimmed: 0 };
  const obs = deps.observability;
  const summary = (truncated: boolean): ReconcileSummary => ({ ...tally, truncated });

  for (const deploymentId of await deps.activeDeploymentIds()) {
    let exclusiveStartKey: Parameters<ReconcileDeps['executions']['queryByState']>[2]['exclusiveStartKey'];
    do {
      // Every device at work, in one walk of the in-progress states' shared index partition.
      const page = await deps.executions.queryByState(deploymentId, 'in_progress', {
        limit: 200,
        ...(exclusiveStartKey ? { exclusiveStartKey } : {}),
      });
      for (const execution of page.items) {
        tally.examined++;
        const heard = lastHeardAt(execution);
        const threshold = silenceThresholdFor(execution, silenceMs);
        if (heard === undefined || !isReconcileDue(now - heard, threshold, sweepIntervalMs)) continue;
        if (tally.shadowsRead >= maxReads) return summary(true);
        await reconcileOne(deps, execution, now, tally, obs);
      }
      exclusiveStartKey = page.lastEvaluatedKey;
    } while (exclusiveStartKey);
  }
  return summary(false);
}
