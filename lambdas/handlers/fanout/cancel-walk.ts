/**
 * The walk that cancel and abort take over an ended deployment's unfinished executions (ADR 0040,
 * "Index writes"). A first attempt's queued row is not indexed: those are read from the table,
 * in thing-name order, from where the last walk stopped (the cursor is saved on the deployment
 * after each page, so a large deployment is canceled over several invocations without re-reading
 * what is done). Then what the index holds (retried devices waiting, then devices at work) is
 * walked from the top: those partitions only hold what is still unfinished.
 */
import type { CancelWalk, DeploymentStore } from '../../adapters/deployment-store.ts';
import type { ExecutionRecord, ExecutionStore } from '../../adapters/execution-store.ts';
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
 * Hands `each` the unfinished executions of `deployment`, page by page; `each` answers how many
 * it acted on. Stops early when the budget is spent or `stopAt` has come; returns whether work
 * may be left.
 */
export async function walkUnfinished(
  deps: CancelWalkDeps,
  deployment: { readonly deploymentId: string; readonly cancelWalk?: CancelWalk },
  limits: CancelWalkLimits,
  each: (page: readonly ExecutionRecord[]) => Promise<number>,
): Promise<{ readonly remaining: boolean }> {
  const id = deployment.deploymentId;
  let left = limits.budget ?? Number.POSITIVE_INFINITY;
  const due = (): boolean => left <= 0 || (limits.stopAt !== undefined && deps.now() >= limits.stopAt);

  if (!deployment.cancelWalk?.done) {
    const cursor = deployment.cancelWalk?.cursor;
    let start: PagePosition | undefined =
      cursor === undefined ? undefined : { part: 0, key: { deploymentId: id, thingName: cursor } };
    do {
      if (due()) return { remaining: true };
      const page = await deps.executions.queryByState(id, 'queued', {
        limit: Math.min(left, PAGE),
        ...(start ? { exclusiveStartKey: start } : {}),
      });
      left -= await each(page.items);
      start = page.lastEvaluatedKey;
      const passed = start?.key?.thingName;
      await deps.deployments.saveCancelWalk(
        id,
        passed === undefined ? { done: true } : { cursor: passed, done: false },
      );
    } while (start);
  }

  let start: PagePosition | undefined;
  do {
    if (due()) return { remaining: true };
    const page = await deps.executions.queryByState(id, 'in_flight', {
      limit: Math.min(left, PAGE),
      ...(start ? { exclusiveStartKey: start } : {}),
    });
    left -= await each(page.items);
    start = page.lastEvaluatedKey;
  } while (start);
  return { remaining: false };
}
