/**
 * The fan-out worker (ADR 0040): idempotent, time-boxed, leased per lane. Without a lane (or lane
 * `expand`) it expands the target and then starts one worker per shard; with a shard number it
 * notifies that shard's devices. Before leaving with work left it re-invokes itself when the next
 * batch is due soon; otherwise the scheduler resumes it.
 */
import { randomUUID } from 'node:crypto';
import { type DeploymentRecord, EXPAND_LANE, isActiveStatus } from '../../adapters/deployment-store.ts';
import { type FanoutDeps, type FanoutEvent, stopAtOf, type TimeBudget } from './deps.ts';
import { compatibilityOf } from './desired.ts';
import { decodeExpansionCursor, encodeExpansionCursor, expandOnePage } from './expand.ts';
import { runShard, type ShardOutcome } from './notify.ts';

export type WorkerOutcome =
  | { readonly kind: 'expanded'; readonly written: number; readonly shardsStarted: number }
  | { readonly kind: 'expanding'; readonly written: number; readonly reinvoked: boolean }
  | ({ readonly kind: 'shard'; readonly shard: number; readonly reinvoked: boolean } & {
      readonly outcome: ShardOutcome;
    })
  | { readonly kind: 'skipped'; readonly reason: string };

/** A fan-out event from anywhere (Lambda delivers what the invoker sent); anything else is refused. */
export function parseFanoutEvent(input: unknown): FanoutEvent | undefined {
  if (typeof input !== 'object' || input === null) return undefined;
  const { deploymentId, lane } = input as { deploymentId?: unknown; lane?: unknown };
  if (typeof deploymentId !== 'string' || deploymentId === '') return undefined;
  if (lane !== undefined && typeof lane !== 'string') return undefined;
  return lane === undefined ? { deploymentId } : { deploymentId, lane };
}

/**
 * The lease outlives the work by the time the worker keeps for leaving (at least a second): the
 * last checkpoint is written after `stopAt` and must still find the lease live. A crashed worker
 * holds its lane until then, no longer than its invocation could have run.
 */
function leaseEnd(deps: FanoutDeps, stopAt: number): number {
  return stopAt + Math.max(deps.tuning.stopBeforeEndMs, 1000);
}

async function startShards(deps: FanoutDeps, deployment: DeploymentRecord): Promise<number> {
  for (let shard = 0; shard < deployment.shards; shard++) {
    await deps.invoker.invoke('fanoutWorker', { deploymentId: deployment.deploymentId, lane: String(shard) });
  }
  return deployment.shards;
}

async function expand(
  deps: FanoutDeps,
  deployment: DeploymentRecord,
  owner: string,
  budget: TimeBudget,
): Promise<WorkerOutcome> {
  const id = deployment.deploymentId;
  const now = deps.now();
  const lease = await deps.deployments.acquireLease(
    id,
    EXPAND_LANE,
    { owner, now },
    leaseEnd(deps, stopAtOf(deps, budget)),
  );
  if (!lease.ok) return { kind: 'skipped', reason: lease.error.code };
  try {
    let written = 0;
    if (!lease.value.done) {
      if (deployment.status === 'scheduled') await deps.deployments.setStatus(id, 'expanding', now);
      const compatibility = compatibilityOf(deployment.manifest.inline);
      if (!compatibility.ok) throw new Error(`bug: ${compatibility.error.message} (deployment ${id})`);
      let cursor = decodeExpansionCursor(lease.value.cursor);
      for (;;) {
        if (deps.now() >= stopAtOf(deps, budget)) {
          await deps.deployments.releaseLease(id, EXPAND_LANE, owner);
          await deps.invoker.invoke('fanoutWorker', { deploymentId: id });
          return { kind: 'expanding', written, reinvoked: true };
        }
        const step = await expandOnePage(deps, deployment, cursor, compatibility.value, deps.now());
        written += step.written;
        const saved = await deps.deployments.saveFanoutCheckpoint(
          id,
          EXPAND_LANE,
          step.next ? { cursor: encodeExpansionCursor(step.next) } : { done: true },
          { owner, now: deps.now() },
        );
        if (!saved.ok) return { kind: 'skipped', reason: saved.error.code };
        if (!step.next) break;
        cursor = step.next;
        // A deployment canceled while it expands stops here: its cancel walks the rows written.
        // The lane stays undone, which is final: a canceled deployment is never reopened, and an
        // aborted one was rolling out (abort needs finished devices), so it had expanded.
        const current = await deps.deployments.get(id);
        if (!current || !isActiveStatus(current.status))
          return { kind: 'skipped', reason: `deployment is ${current?.status ?? 'gone'}` };
      }
    }
    const rolling = await deps.deployments.setStatus(id, 'rolling_out', deps.now());
    if (!rolling.ok) return { kind: 'skipped', reason: rolling.error.code };
    deps.observability.logger.info('target expanded', { deploymentId: id, written });
    return { kind: 'expanded', written, shardsStarted: await startShards(deps, rolling.value) };
  } finally {
    await deps.deployments.releaseLease(id, EXPAND_LANE, owner);
  }
}

async function notifyLane(
  deps: FanoutDeps,
  deployment: DeploymentRecord,
  shard: number,
  owner: string,
  budget: TimeBudget,
): Promise<WorkerOutcome> {
  const id = deployment.deploymentId;
  const lane = String(shard);
  if (deployment.status !== 'rolling_out')
    return { kind: 'skipped', reason: `deployment is ${deployment.status}` };
  const lease = await deps.deployments.acquireLease(
    id,
    lane,
    { owner, now: deps.now() },
    leaseEnd(deps, stopAtOf(deps, budget)),
  );
  if (!lease.ok) return { kind: 'skipped', reason: lease.error.code };
  let outcome: ShardOutcome;
  try {
    outcome = await runShard(deps, deployment, shard, { owner, ...lease.value }, budget);
  } finally {
    await deps.deployments.releaseLease(id, lane, owner);
  }
  const now = deps.now();
  const again =
    outcome.kind === 'out_of_time' ||
    (outcome.kind === 'waiting' && outcome.nextDueAt - now <= deps.tuning.reinvokeWithinMs);
  if (again) await deps.invoker.invoke('fanoutWorker', { deploymentId: id, lane });
  return { kind: 'shard', shard, outcome, reinvoked: again };
}

/** One invocation: `budget` is the Lambda context (its remaining time bounds the work). */
export async function runFanoutWorker(
  deps: FanoutDeps,
  event: FanoutEvent,
  budget: TimeBudget,
): Promise<WorkerOutcome> {
  // An invocation with no time to work in would only hand over again, at once and forever.
  if (stopAtOf(deps, budget) <= deps.now()) return { kind: 'skipped', reason: 'no time left' };
  const deployment = await deps.deployments.get(event.deploymentId);
  if (!deployment) return { kind: 'skipped', reason: 'DEPLOYMENT_NOT_FOUND' };
  const owner = randomUUID();
  if (event.lane === undefined || event.lane === EXPAND_LANE) {
    if (deployment.status === 'rolling_out') {
      return { kind: 'expanded', written: 0, shardsStarted: await startShards(deps, deployment) };
    }
    if (deployment.status !== 'scheduled' && deployment.status !== 'expanding') {
      return { kind: 'skipped', reason: `deployment is ${deployment.status}` };
    }
    return expand(deps, deployment, owner, budget);
  }
  const shard = Number(event.lane);
  if (!Number.isInteger(shard) || shard < 0 || shard >= deployment.shards) {
    return { kind: 'skipped', reason: `no lane ${event.lane}` };
  }
  return notifyLane(deps, deployment, shard, owner, budget);
}
