import type { AccountRateLimiter } from '../../adapters/account-rate-limiter.ts';
import type { DeploymentStore } from '../../adapters/deployment-store.ts';
import type { ExecutionStore } from '../../adapters/execution-store.ts';
import type { FanoutReads } from '../../adapters/fanout-reads.ts';
import type { FleetStore } from '../../adapters/fleet-store.ts';
import type { FunctionInvoker } from '../../adapters/function-invoker.ts';
import type { ShadowWriter } from '../../adapters/shadow-writer.ts';
import type { TargetPages } from '../../adapters/target-pages.ts';
import type { ThingRegistry } from '../../adapters/thing-registry.ts';
import type { Observability } from '../../observability.ts';
import type { GrantPusher } from './push-grant.ts';

/** What the fan-out worker works with; the handler builds these from the environment. */
export interface FanoutDeps {
  readonly deployments: Pick<
    DeploymentStore,
    | 'get'
    | 'setStatus'
    | 'acquireLease'
    | 'releaseLease'
    | 'saveFanoutCheckpoint'
    | 'saveCancelWalk'
    | 'list'
    | 'end'
    | 'recordAbort'
  >;
  readonly executions: Pick<
    ExecutionStore,
    | 'putIncompatible'
    | 'get'
    | 'getWritten'
    | 'takeBackRepeat'
    | 'queryByState'
    | 'listForThing'
    | 'transition'
    | 'transitionMany'
  >;
  /** The deployments' target pages (the expansion writes them, the lanes and cancels walk them). */
  readonly targets: TargetPages;
  readonly reads: FanoutReads;
  readonly fleet: Pick<FleetStore, 'scanCompatible'>;
  readonly registry: Pick<ThingRegistry, 'listThingsInGroup'>;
  readonly shadows: Pick<ShadowWriter, 'update' | 'get'>;
  /** Sends each device its download grant with the notification; absent: devices ask for it. */
  readonly grants?: GrantPusher;
  readonly accountLimiter: AccountRateLimiter;
  readonly invoker: FunctionInvoker;
  readonly observability: Observability;
  /** Epoch ms. */
  readonly now: () => number;
  readonly sleep: (ms: number) => Promise<void>;
  readonly tuning: FanoutTuning;
}

export interface FanoutTuning {
  /** Shadow updates in flight at once per worker. */
  readonly concurrency: number;
  /** Retried devices the tail pass reads per Query (before the shard filter). */
  readonly scanPage: number;
  /** The worker stops this long before its invocation's end (checkpoint, lease release, re-invoke). */
  readonly stopBeforeEndMs: number;
  /** Re-invoke itself when the next batch is due within this long; otherwise the scheduler resumes it. */
  readonly reinvokeWithinMs: number;
  /** Longest the worker waits in-process for the next batch (it sleeps, paying duration). */
  readonly maxInProcessWaitMs: number;
  /** Devices per account-cap grab: small grabs share the cap fairly between workers. */
  readonly maxGrab: number;
  /**
   * Grabs (and the rollout plans before them) come at most this often: the rollout credit of the
   * interval goes out as one batch. Without it a worker at 250/s grabs 5 devices every 20 ms, and
   * each grab is a read and a write of the account item (most of the fan-out's DynamoDB traffic
   * after the devices' own). Well under a second's burst, so the rate holds in every window.
   */
  readonly minGrabIntervalMs: number;
  /**
   * A shard's cursor and rollout bucket are saved at most this often (and always when the worker
   * stops): one write per interval, not per batch. A crash loses at most this much progress, which
   * the next worker re-reads (already notified devices are no longer queued) and at most one burst
   * of the rate (the bucket never holds more than one).
   */
  readonly checkpointEveryMs: number;
}

export const defaultTuning: FanoutTuning = {
  concurrency: 64,
  scanPage: 500,
  stopBeforeEndMs: 10_000,
  reinvokeWithinMs: 60_000,
  maxInProcessWaitMs: 5_000,
  maxGrab: 100,
  minGrabIntervalMs: 100,
  checkpointEveryMs: 5_000,
};

/** The worker's event: no lane = expand (then start every shard); a shard number as text = notify that shard. */
export interface FanoutEvent {
  readonly deploymentId: string;
  readonly lane?: string;
}

/** The part of the Lambda context the worker reads. */
export interface TimeBudget {
  getRemainingTimeInMillis(): number;
}

/**
 * When the work must stop (epoch ms): the invocation's end less the time kept for leaving. Read
 * afresh at every step, from the context's own clock, so an invocation whose time is cut short
 * (the local cloud stopping) hands over at its next step.
 */
export function stopAtOf(deps: Pick<FanoutDeps, 'now' | 'tuning'>, budget: TimeBudget): number {
  return deps.now() + budget.getRemainingTimeInMillis() - deps.tuning.stopBeforeEndMs;
}
