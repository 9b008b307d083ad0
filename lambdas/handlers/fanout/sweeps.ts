/**
 * The scheduler's sweeps (ADR 0040), each idempotent and safe to run concurrently with workers,
 * acknowledgements and itself: every change is a conditional transition on the state it read.
 */
import { type DeploymentRecord, type DeploymentStore, EXPAND_LANE } from '../../adapters/deployment-store.ts';
import type { ExecutionRecord, ExecutionStore, StateSelector } from '../../adapters/execution-store.ts';
import type { FunctionInvoker } from '../../adapters/function-invoker.ts';
import type { PagePosition } from '../../adapters/page-token.ts';
import type { ShadowWriter } from '../../adapters/shadow-writer.ts';
import type { TargetPages } from '../../adapters/target-pages.ts';
import {
  type CancelReason,
  type ExecutionState,
  evaluateAbort,
  inProgressStates,
  timeOutIfDue,
} from '../../domain/deployment/index.ts';
import type { Observability } from '../../observability.ts';
import { cancelExecution } from '../deployments/control.ts';
import { walkUnfinished } from './cancel-walk.ts';

export interface SweepDeps {
  readonly deployments: Pick<DeploymentStore, 'get' | 'list' | 'end' | 'recordAbort' | 'saveCancelWalk'>;
  readonly executions: Pick<
    ExecutionStore,
    'get' | 'getWritten' | 'takeBackRepeat' | 'queryByState' | 'transition'
  >;
  readonly targets: Pick<TargetPages, 'readLane'>;
  readonly shadows: Pick<ShadowWriter, 'get' | 'update'>;
  readonly invoker: FunctionInvoker;
  readonly observability: Observability;
  readonly now: () => number;
}

const PAGE = 200;
const nonTerminal: readonly ExecutionState[] = ['queued', ...inProgressStates];

/** Calls `each` on every execution of a deployment in `state`, page by page, until `stopAt`. */
async function forEachInState(
  deps: SweepDeps,
  deploymentId: string,
  state: StateSelector,
  stopAt: number,
  each: (execution: ExecutionRecord) => Promise<void>,
): Promise<void> {
  let start: Parameters<SweepDeps['executions']['queryByState']>[2]['exclusiveStartKey'];
  do {
    if (deps.now() >= stopAt) return;
    const page = await deps.executions.queryByState(deploymentId, state, {
      limit: PAGE,
      ...(start ? { exclusiveStartKey: start } : {}),
    });
    for (const execution of page.items) await each(execution);
    start = page.lastEvaluatedKey;
  } while (start);
}

/** Starts a worker for each lane that has work and no live lease. Returns the lanes started. */
export async function resumeWorkers(deps: SweepDeps, deployment: DeploymentRecord): Promise<string[]> {
  const now = deps.now();
  const id = deployment.deploymentId;
  const free = (lane: string): boolean => (deployment.fanout[lane]?.leaseUntil ?? 0) < now;
  if (deployment.status !== 'rolling_out') {
    if (deployment.fanout[EXPAND_LANE]?.done || !free(EXPAND_LANE)) return [];
    await deps.invoker.invoke('fanoutWorker', { deploymentId: id });
    return [EXPAND_LANE];
  }
  const lanes = Array.from({ length: deployment.shards }, (_, i) => String(i));
  // Walked lanes only have retried devices left, found through the index.
  const queued = await deps.executions.queryByState(id, 'requeued', { limit: PAGE });
  const shardsWithQueued = new Set(queued.items.map((e) => String(e.shard)));
  const due = lanes.filter(
    (lane) => free(lane) && (!deployment.fanout[lane]?.done || shardsWithQueued.has(lane)),
  );
  for (const lane of due) await deps.invoker.invoke('fanoutWorker', { deploymentId: id, lane });
  return due;
}

/** Devices past their deadline end `timed_out` (or `canceled` when a cancel was never confirmed). */
export async function sweepTimeouts(
  deps: SweepDeps,
  deployment: DeploymentRecord,
  stopAt: number,
): Promise<number> {
  const timeout = deployment.policy.deviceTimeoutSeconds;
  // No device can be due before the rollout has run for one timeout: skip the reads until then.
  if (deps.now() < deployment.startAt + timeout * 1000) return 0;
  let timedOut = 0;
  await forEachInState(deps, deployment.deploymentId, 'in_progress', stopAt, async (execution) => {
    const now = deps.now();
    const decision = timeOutIfDue(execution, now, timeout);
    if (decision.kind !== 'transition') return;
    const written = await deps.executions.transition(execution, decision.next, {
      at: now,
      reason: decision.transition.reason,
    });
    if (written.ok) timedOut++;
  });
  return timedOut;
}

/**
 * An ended (canceled or aborted) deployment's remaining devices: queued ones end `canceled` at
 * once; devices at work are asked to cancel (best effort; they end when they confirm or time out).
 */
export async function cancelRemaining(
  deps: SweepDeps,
  deployment: DeploymentRecord,
  reason: CancelReason,
  stopAt: number,
): Promise<number> {
  let changed = 0;
  try {
    await walkUnfinished(deps, deployment, { stopAt }, async (page) => {
      for (const execution of page) if (await cancelOne(deps, execution, reason)) changed++;
      return 0;
    });
  } catch (error) {
    // The walk's cursor stays before the page that failed: the next tick walks it again. The
    // other deployments of this tick go on.
    deps.observability.logger.warn('cancel walk stopped; the next tick goes on from its cursor', {
      deploymentId: deployment.deploymentId,
      error: String(error),
    });
  }
  return changed;
}

/**
 * One execution of an ended deployment, canceled as the operator's cancel does it (control.ts):
 * false for one already asked to cancel. A device still waiting on its target page that cannot
 * be written fails the walk (its page is walked again next tick: passing it would leave it
 * `queued` for good); for a device at work the failure is logged (it ends at its deadline).
 */
async function cancelOne(
  deps: SweepDeps,
  execution: ExecutionRecord,
  reason: CancelReason,
): Promise<boolean> {
  if (execution.cancelReason) return false;
  try {
    const result = await cancelExecution(deps, execution, reason, deps.now());
    return result.ok && result.value.outcome !== 'unchanged';
  } catch (error) {
    if (execution.unwritten) throw error;
    deps.observability.logger.warn('cancel failed; the device ends at its deadline', {
      deploymentId: execution.deploymentId,
      thingName: execution.thingName,
      error: String(error),
    });
    return false;
  }
}

/** Aborts when the counters meet a criterion; true when it did. */
export async function abortIfDue(deps: SweepDeps, deployment: DeploymentRecord): Promise<boolean> {
  if (deployment.status !== 'rolling_out') return false;
  const decision = evaluateAbort(deployment.counters, deployment.policy.abort);
  if (!decision.abort) return false;
  const ended = await deps.deployments.recordAbort(deployment.deploymentId, decision.reason, deps.now());
  if (ended.ok)
    deps.observability.logger.warn('deployment aborted', {
      deploymentId: deployment.deploymentId,
      reason: decision.reason,
    });
  return ended.ok;
}

/**
 * Whether the index holds any unfinished execution (retried or at work): the first item found in
 * its partitions, one Query each at most. Queued first attempts are not indexed; the lanes'
 * walks account for them (a lane is done once its last page is sent).
 */
async function anyUnfinished(deps: SweepDeps, deploymentId: string): Promise<boolean> {
  let start: PagePosition | undefined;
  do {
    const page = await deps.executions.queryByState(deploymentId, 'in_flight', {
      limit: 1,
      ...(start ? { exclusiveStartKey: start } : {}),
    });
    if (page.items.length > 0) return true;
    start = page.lastEvaluatedKey;
  } while (start);
  return false;
}

/**
 * Completes a rolling-out deployment once its fan-out is done and no execution is left
 * unfinished. Both the counters (the stream's projection) and the index must agree, so neither's
 * lag can end a deployment early.
 */
export async function completeIfDone(deps: SweepDeps, deployment: DeploymentRecord): Promise<boolean> {
  if (deployment.status !== 'rolling_out') return false;
  const lanes = [EXPAND_LANE, ...Array.from({ length: deployment.shards }, (_, i) => String(i))];
  if (!lanes.every((lane) => deployment.fanout[lane]?.done)) return false;
  if (nonTerminal.some((state) => deployment.counters[state] > 0)) return false;
  if (await anyUnfinished(deps, deployment.deploymentId)) return false;
  const ended = await deps.deployments.end(deployment.deploymentId, { status: 'completed' }, deps.now());
  if (ended.ok)
    deps.observability.logger.info('deployment completed', { deploymentId: deployment.deploymentId });
  return ended.ok;
}

export function unfinished(deployment: DeploymentRecord): number {
  return nonTerminal.reduce((sum, state) => sum + deployment.counters[state], 0);
}
