import type { Context } from 'aws-lambda';
import {
  type ActiveDeploymentStatus,
  activeDeploymentStatuses,
  type DeploymentRecord,
  type DeploymentStatus,
  makeDeploymentStore,
} from '../adapters/deployment-store.ts';
import { documentClient } from '../adapters/dynamodb.ts';
import type { Observability } from '../observability.ts';
import type { TimeBudget } from './fanout/deps.ts';
import {
  abortIfDue,
  cancelRemaining,
  completeIfDone,
  resumeWorkers,
  type SweepDeps,
  sweepTimeouts,
} from './fanout/sweeps.ts';
import {
  type FanoutClients,
  type FanoutConfig,
  fanoutConfigFromEnv,
  fanoutDepsFromConfig,
} from './fanout-worker.ts';

/**
 * The scheduler (ADR 0040): every minute in AWS (EventBridge), on a timer in the local cloud. It
 * resumes fan-out workers that hold no live lease, times out silent devices, aborts on the
 * criteria, cancels what is left of canceled or aborted deployments, completes finished ones, and
 * runs the reconciliation sweep. Every step is idempotent, so overlapping ticks are harmless.
 */
export interface SchedulerDeps extends SweepDeps {
  /** D's reconciliation sweep over the active deployments (lambdas/handlers/acknowledgements/reconcile.ts). */
  readonly reconcile?: (activeDeploymentIds: readonly string[], now: number) => Promise<unknown>;
  /** Ended deployments are swept this long after their creation (devices time out within 7 days). */
  readonly endedWindowMs?: number;
  /** The tick stops this long before its invocation ends. @default 5000 */
  readonly stopBeforeEndMs?: number;
}

export interface SchedulerSummary {
  readonly active: number;
  readonly workersStarted: number;
  readonly timedOut: number;
  readonly aborted: number;
  readonly completed: number;
  readonly canceled: number;
}

const DEFAULT_ENDED_WINDOW_MS = 8 * 24 * 3600_000;

async function listAll(
  deps: SchedulerDeps,
  status: DeploymentStatus,
  newerThan?: string,
): Promise<DeploymentRecord[]> {
  const found: DeploymentRecord[] = [];
  let nextToken: string | undefined;
  do {
    const page = await deps.deployments.list({ status, limit: 100, ...(nextToken ? { nextToken } : {}) });
    if (!page.ok) return found;
    for (const item of page.value.items) {
      // Newest first: the first one older than the window ends the walk.
      if (newerThan !== undefined && item.createdAt < newerThan) return found;
      found.push(item);
    }
    nextToken = page.value.nextToken;
  } while (nextToken);
  return found;
}

export async function runScheduler(deps: SchedulerDeps, budget: TimeBudget): Promise<SchedulerSummary> {
  const started = deps.now();
  const stopAt = started + budget.getRemainingTimeInMillis() - (deps.stopBeforeEndMs ?? 5000);
  const tally = { active: 0, workersStarted: 0, timedOut: 0, aborted: 0, completed: 0, canceled: 0 };

  const active = (
    await Promise.all(activeDeploymentStatuses.map((s: ActiveDeploymentStatus) => listAll(deps, s)))
  ).flat();
  tally.active = active.length;
  for (const deployment of active) {
    if (deps.now() >= stopAt) break;
    tally.timedOut += await sweepTimeouts(deps, deployment, stopAt);
    if (await abortIfDue(deps, deployment)) {
      tally.aborted++;
      tally.canceled += await cancelRemaining(deps, deployment, 'aborted', stopAt);
      continue;
    }
    if (await completeIfDone(deps, deployment)) {
      tally.completed++;
      continue;
    }
    tally.workersStarted += (await resumeWorkers(deps, deployment)).length;
  }

  const window = new Date(started - (deps.endedWindowMs ?? DEFAULT_ENDED_WINDOW_MS)).toISOString();
  for (const [status, reason] of [
    ['canceled', 'canceled_by_operator'],
    ['aborted', 'aborted'],
  ] as const) {
    for (const deployment of await listAll(deps, status, window)) {
      if (deps.now() >= stopAt) break;
      tally.canceled += await cancelRemaining(deps, deployment, reason, stopAt);
      tally.timedOut += await sweepTimeouts(deps, deployment, stopAt);
    }
  }

  if (deps.reconcile && deps.now() < stopAt) {
    await deps.reconcile(
      active.map((d) => d.deploymentId),
      deps.now(),
    );
  }
  deps.observability.flush();
  return tally;
}

export type SchedulerHandler = (event: unknown, context: TimeBudget) => Promise<SchedulerSummary>;

export function makeScheduler(deps: SchedulerDeps): SchedulerHandler {
  return (_event, context) => runScheduler(deps, context);
}

/** The scheduler's dependencies from the fan-out configuration (same tables, same clients). */
export function schedulerDepsFromConfig(
  config: FanoutConfig,
  clients: FanoutClients = {},
  overrides: { readonly observability?: Observability; readonly now?: () => number } = {},
): SchedulerDeps {
  const db = documentClient(clients.dynamodb);
  const fanout = fanoutDepsFromConfig(config, clients, overrides);
  return {
    deployments: makeDeploymentStore({
      db,
      tableName: config.deploymentsTable,
      updatesTableName: config.updatesTable,
    }),
    executions: fanout.executions,
    targets: fanout.targets,
    shadows: fanout.shadows,
    invoker: fanout.invoker,
    observability: fanout.observability,
    now: fanout.now,
  };
}

let built: SchedulerHandler | undefined;

/** The Lambda entry point (EventBridge `rate(1 minute)`; the event carries nothing we need). */
export const handler = (event: unknown, context: Context): Promise<SchedulerSummary> => {
  built ??= makeScheduler(schedulerDepsFromConfig(fanoutConfigFromEnv(process.env)));
  return built(event, context);
};
