/**
 * The walk that cancel and abort take over an ended deployment's unfinished executions (ADR 0040,
 * "Index writes"). A first attempt's queued row is not indexed: those are read from the table,
 * in thing-name order, from where the last walk stopped (the cursor is saved on the deployment
 * after each page, so a large deployment is canceled over several invocations without re-reading
 * what is done). Then what the index holds (retried devices waiting, then devices at work) is
 * walked from the top: those partitions only hold what is still unfinished.
 */
import {
  type CancelWalk,
  type DeploymentStore,
  EXPAND_LANE,
  type FanoutLane,
} from '../../adapters/deployment-store.ts';
import { afterThing, type ExecutionRecord, type ExecutionStore } from '../../adapters/execution-store.ts';
import type { PagePosition } from '../../adapters/page-token.ts';

export interface CancelWalkDeps {
  readonly executions: Pick<ExecutionStore, 'queryByState'>;
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
 * Whether the table's queued first attempts of an ended deployment are final: its expansion
 * finished, or its lease ran out (an ended deployment's lane cannot be taken again). Until then
 * an expansion that began before the cancel may still write rows anywhere in thing-name order,
 * so the walk starts from the top and saves nothing.
 */
function rowsFinal(fanout: Readonly<Record<string, FanoutLane>>, now: number): boolean {
  const expansion = fanout[EXPAND_LANE];
  return expansion?.done === true || (expansion?.leaseUntil ?? 0) < now;
}

/**
 * Hands `each` the unfinished executions of `deployment`, page by page; `each` answers how many
 * it acted on. Stops early when the budget is spent or `stopAt` has come; returns whether work
 * may be left.
 */
export async function walkUnfinished(
  deps: CancelWalkDeps,
  deployment: {
    readonly deploymentId: string;
    readonly fanout: Readonly<Record<string, FanoutLane>>;
    readonly cancelWalk?: CancelWalk;
  },
  limits: CancelWalkLimits,
  each: (page: readonly ExecutionRecord[]) => Promise<number>,
): Promise<{ readonly remaining: boolean }> {
  const id = deployment.deploymentId;
  let left = limits.budget ?? Number.POSITIVE_INFINITY;
  const due = (): boolean => left <= 0 || (limits.stopAt !== undefined && deps.now() >= limits.stopAt);
  /** Walks `selector` from `start` to its end; false when the budget or the time ran out first. */
  const walk = async (
    selector: 'queued' | 'in_flight',
    start: PagePosition | undefined,
    afterPage: (next: PagePosition | undefined) => Promise<void> = async () => {},
  ): Promise<boolean> => {
    let position = start;
    do {
      if (due()) return false;
      const page = await deps.executions.queryByState(id, selector, {
        limit: Math.min(left, PAGE),
        ...(position ? { exclusiveStartKey: position } : {}),
      });
      // Retried devices waiting are the `requeued` partition's, walked second.
      left -= await each(selector === 'queued' ? page.items.filter((e) => e.attempt === 1) : page.items);
      position = page.lastEvaluatedKey;
      await afterPage(position);
    } while (position);
    return true;
  };

  const final = rowsFinal(deployment.fanout, deps.now());
  if (!(final && deployment.cancelWalk?.done)) {
    const cursor = final ? deployment.cancelWalk?.cursor : undefined;
    const saveProgress = async (next: PagePosition | undefined): Promise<void> => {
      if (!final) return;
      const passed = next?.key?.thingName;
      await deps.deployments.saveCancelWalk(
        id,
        passed === undefined ? { done: true } : { cursor: passed, done: false },
      );
    };
    if (!(await walk('queued', cursor === undefined ? undefined : afterThing(id, cursor), saveProgress)))
      return { remaining: true };
  }
  return { remaining: !(await walk('in_flight', undefined)) };
}
