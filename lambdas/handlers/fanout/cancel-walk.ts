/**
 * The walk that cancel and abort take over an ended deployment's unfinished executions (ADR 0040,
 * "Target pages"). Devices still waiting on the target pages (no row yet) come first: each
 * lane's pages from where its fan-out stopped, lane after lane, from where the last walk stopped
 * (saved on the deployment after each page, so a large deployment is canceled over several
 * invocations without re-reading what is done). Then what the index holds (retried devices
 * waiting, then devices at work) is walked from the top: those partitions only hold what is
 * still unfinished.
 */
import {
  type DeploymentRecord,
  type DeploymentStore,
  EXPAND_LANE,
  type FanoutLane,
} from '../../adapters/deployment-store.ts';
import type { ExecutionRecord, ExecutionStore } from '../../adapters/execution-store.ts';
import type { PagePosition } from '../../adapters/page-token.ts';
import type { TargetPages } from '../../adapters/target-pages.ts';
import {
  decodeLanePosition,
  decodeTargetPosition,
  encodeLanePosition,
  readWaiting,
  type TargetPosition,
} from './target-walk.ts';

export interface CancelWalkDeps {
  readonly executions: Pick<ExecutionStore, 'queryByState' | 'getWritten' | 'takeBackRepeat'>;
  readonly targets: Pick<TargetPages, 'readLane'>;
  readonly deployments: Pick<DeploymentStore, 'saveCancelWalk'>;
  /** Epoch ms. */
  readonly now: () => number;
}

export interface CancelWalkLimits {
  /** Executions acted on at most (what `each` counts). @default no limit */
  readonly budget?: number;
  /** Epoch ms: no page is started after it. @default no limit */
  readonly stopAt?: number;
}

const PAGE = 100;

/**
 * Whether the target pages of an ended deployment are final: its expansion finished, or its
 * lease ran out (an ended deployment's lane cannot be taken again). Until then an expansion that
 * began before the cancel may still write a page, so the walk saves nothing.
 */
function pagesFinal(fanout: Readonly<Record<string, FanoutLane>>, now: number): boolean {
  const expansion = fanout[EXPAND_LANE];
  return expansion?.done === true || (expansion?.leaseUntil ?? 0) < now;
}

/** The later of two positions in one lane's walk. */
function later(a: TargetPosition, b: TargetPosition): TargetPosition {
  return a.page !== b.page ? (a.page > b.page ? a : b) : a.index >= b.index ? a : b;
}

type Walked = Pick<DeploymentRecord, 'deploymentId' | 'updateId' | 'shards' | 'fanout' | 'cancelWalk'>;

/**
 * Hands `each` the unfinished executions of `deployment`, page by page (devices waiting on the
 * target pages as `unwritten` executions, whose first transition writes them); `each` answers how
 * many it acted on. Stops early when the budget is spent or `stopAt` has come; returns whether
 * work may be left.
 */
export async function walkUnfinished(
  deps: CancelWalkDeps,
  deployment: Walked,
  limits: CancelWalkLimits,
  each: (page: readonly ExecutionRecord[]) => Promise<number>,
): Promise<{ readonly remaining: boolean }> {
  const id = deployment.deploymentId;
  let left = limits.budget ?? Number.POSITIVE_INFINITY;
  const due = (): boolean => left <= 0 || (limits.stopAt !== undefined && deps.now() >= limits.stopAt);

  /** The lanes' waiting devices; false when the budget or the time ran out first. */
  const walkPages = async (): Promise<boolean> => {
    const final = pagesFinal(deployment.fanout, deps.now());
    const saved = final ? decodeLanePosition(deployment.cancelWalk?.cursor) : undefined;
    for (let lane = saved?.lane ?? 0; lane < deployment.shards; lane++) {
      // Before its fan-out's position every device of the lane has a row.
      let position = decodeTargetPosition(deployment.fanout[String(lane)]?.cursor);
      if (saved && saved.lane === lane) position = later(position, saved.position);
      for (;;) {
        if (due()) return false;
        const read = await readWaiting(deps, deployment, lane, position);
        if (read.exhausted) break;
        const budgeted = read.waiting.slice(0, Math.max(0, Math.min(left, read.waiting.length)));
        left -= await each(budgeted.map((w) => w.execution));
        const whole = budgeted.length === read.waiting.length;
        position = whole ? read.pageEnd : (budgeted.at(-1)?.after ?? position);
        if (final)
          await deps.deployments.saveCancelWalk(id, {
            cursor: encodeLanePosition({ lane, position }),
            done: false,
          });
      }
    }
    if (final) await deps.deployments.saveCancelWalk(id, { done: true });
    return true;
  };

  /** Retried devices waiting, then devices at work, from the top. */
  const walkIndex = async (): Promise<boolean> => {
    let position: PagePosition | undefined;
    do {
      if (due()) return false;
      const page = await deps.executions.queryByState(id, 'in_flight', {
        limit: Math.min(left, PAGE),
        ...(position ? { exclusiveStartKey: position } : {}),
      });
      left -= await each(page.items);
      position = page.lastEvaluatedKey;
    } while (position);
    return true;
  };

  const pagesDone = pagesFinal(deployment.fanout, deps.now()) && deployment.cancelWalk?.done === true;
  if (!pagesDone && !(await walkPages())) return { remaining: true };
  return { remaining: !(await walkIndex()) };
}
