/**
 * Operator commands on a running deployment (cancel, retry) and on one device in it. Each moves
 * executions with the store's conditional `transition`; a conflict means a device report or a
 * sweep got there first, so the command re-reads and decides again.
 */
import type { DeploymentRecord } from '../../adapters/deployment-store.ts';
import type { ExecutionRecord, ExecutionStore } from '../../adapters/execution-store.ts';
import type { ShadowWriter } from '../../adapters/shadow-writer.ts';
import {
  buildCancelDocument,
  type CancelReason,
  cancel,
  desiredBelongsTo,
  retry,
} from '../../domain/deployment/index.ts';
import { err, ok, type Result } from '../../domain/result.ts';
import { type Problem, problem } from '../../http/problem.ts';
import { walkUnfinished } from '../fanout/cancel-walk.ts';
import { mapWithConcurrency } from '../fanout/sharding.ts';
import { findWaiting } from '../fanout/target-walk.ts';
import type { DeploymentsDeps } from './deps.ts';
import { renewSignatureIfNeeded } from './renew-signature.ts';
import { startFanout } from './start-fanout.ts';
import { deploymentView, executionView } from './views.ts';

/** Re-decisions after a conflict before giving up (each conflict is a real concurrent change). */
const MAX_DECISIONS = 5;

type ControlDeps = Pick<
  DeploymentsDeps,
  | 'deployments'
  | 'executions'
  | 'targets'
  | 'shadows'
  | 'observability'
  | 'invoker'
  | 'tuning'
  | 'updates'
  | 'artifacts'
  | 'signer'
>;

export type CancelOutcome = 'canceled' | 'cancel_requested' | 'unchanged' | 'ended';

/**
 * Sends the `cancel` action to a device at work, locked to the shadow version in which this
 * execution's document was seen (ADR 0010): a newer deployment's document is never touched.
 */
export async function sendCancelAction(
  deps: { readonly shadows: Pick<ShadowWriter, 'get' | 'update'> },
  execution: Pick<ExecutionRecord, 'deploymentId' | 'thingName' | 'attempt'>,
): Promise<boolean> {
  for (let round = 0; round < MAX_DECISIONS; round++) {
    const read = await deps.shadows.get(execution.thingName);
    if (!read.ok) throw new Error(`reading the ota shadow of ${execution.thingName}: ${read.error.message}`);
    const desiredOta = read.value?.state.desired?.ota;
    if (!read.value || !desiredBelongsTo(desiredOta, execution.deploymentId, execution.attempt)) return false;
    const written = await deps.shadows.update(execution.thingName, buildCancelDocument(read.value.version));
    if (written.ok) return true;
    if (written.error.code !== 'VERSION_CONFLICT') {
      throw new Error(`cancelling ${execution.thingName}: ${written.error.code} ${written.error.message}`);
    }
  }
  throw new Error(`the ota shadow of ${execution.thingName} kept changing while sending cancel`);
}

/**
 * Cancels one execution: a queued one (or one still waiting on its target page) ends `canceled`
 * at once; one at work is marked and sent the cancel action (it ends when the device confirms, or
 * at its deadline). A conflict is decided again on the execution as it is. Safe to repeat: a
 * repeat sends the action again, which the device treats as one. The operator's commands and the
 * scheduler's cancel of an ended deployment both cancel through here.
 */
export async function cancelExecution(
  deps: {
    readonly executions: Pick<ExecutionStore, 'transition'>;
    readonly shadows: Pick<ShadowWriter, 'get' | 'update'>;
  },
  first: ExecutionRecord,
  reason: CancelReason,
  now: number,
): Promise<Result<{ readonly outcome: CancelOutcome; readonly execution: ExecutionRecord }, Problem>> {
  let execution = first;
  for (let round = 0; round < MAX_DECISIONS; round++) {
    const decision = cancel(execution, reason);
    if (!decision.ok) {
      return err(problem('NOT_CANCELABLE', `${execution.thingName}: ${decision.error.message}.`));
    }
    const step = decision.value;
    if (step.kind === 'unchanged') {
      await sendCancelAction(deps, execution);
      return ok({ outcome: 'unchanged', execution });
    }
    const written = await deps.executions.transition(execution, step.next, {
      at: now,
      ...(step.kind === 'transition' ? { reason: step.transition.reason } : {}),
    });
    if (written.ok) {
      if (step.kind === 'cancel_requested') await sendCancelAction(deps, written.value);
      return ok({
        outcome: step.kind === 'transition' ? 'canceled' : 'cancel_requested',
        execution: written.value,
      });
    }
    if (!written.error.current)
      return err(problem('EXECUTION_NOT_FOUND', `${execution.thingName} is not in this deployment.`));
    execution = written.error.current;
  }
  throw new Error(`execution ${first.deploymentId}/${first.thingName} kept changing while canceling`);
}

export interface CancelSweep {
  readonly canceled: number;
  readonly cancelRequested: number;
  /** True when executions were left for a later pass (the budget ran out). */
  readonly remaining: boolean;
}

/** How long one cancel request walks the deployment's executions before it answers. */
const CANCEL_REQUEST_MS = 10_000;

/**
 * Cancels what is unfinished of a deployment, up to `budget` executions: queued devices end
 * `canceled` at once, devices at work are sent the cancel action (walkUnfinished's order and
 * cursor).
 */
export async function cancelExecutions(
  deps: Pick<DeploymentsDeps, 'executions' | 'targets' | 'deployments' | 'shadows' | 'tuning'>,
  deployment: Pick<DeploymentRecord, 'deploymentId' | 'updateId' | 'shards' | 'fanout' | 'cancelWalk'>,
  reason: CancelReason,
  now: number,
  budget: number = deps.tuning.executionsPerRequest,
): Promise<CancelSweep> {
  let canceled = 0;
  let cancelRequested = 0;
  // A request answers within API Gateway's 29 s: what it cannot reach, the scheduler finishes.
  const stopAt = Date.now() + CANCEL_REQUEST_MS;
  const walk = await walkUnfinished(
    { ...deps, now: Date.now },
    deployment,
    { budget, stopAt },
    async (page) => {
      // Devices at work already asked stay unfinished until they confirm: passed over.
      const todo = page.filter((e) => e.state === 'queued' || e.cancelReason === undefined);
      const results = await mapWithConcurrency(todo, deps.tuning.concurrency, (e) =>
        cancelExecution(deps, e, reason, now),
      );
      for (const r of results) {
        if (r.ok && r.value.outcome === 'canceled') canceled++;
        if (r.ok && r.value.outcome === 'cancel_requested') cancelRequested++;
      }
      return todo.length;
    },
  );
  return { canceled, cancelRequested, remaining: walk.remaining };
}

async function existing(
  deps: Pick<DeploymentsDeps, 'deployments'>,
  deploymentId: string,
): Promise<Result<DeploymentRecord, Problem>> {
  const deployment = await deps.deployments.get(deploymentId);
  return deployment
    ? ok(deployment)
    : err(problem('DEPLOYMENT_NOT_FOUND', `Deployment ${deploymentId} does not exist.`));
}

/** `POST /deployments/{id}/cancel`: ends the deployment `canceled` (releasing its update) and cancels its devices. */
export async function cancelDeployment(
  deps: ControlDeps,
  deploymentId: string,
  now: number,
): Promise<Result<{ readonly complete: boolean; readonly body: Record<string, unknown> }, Problem>> {
  const found = await existing(deps, deploymentId);
  if (!found.ok) return found;
  if (found.value.status !== 'canceled') {
    const ended = await deps.deployments.end(deploymentId, { status: 'canceled' }, now);
    if (!ended.ok) {
      const current = await deps.deployments.get(deploymentId);
      // Another cancel won the race: the outcome is the same. Anything else ended it otherwise.
      if (current?.status !== 'canceled') {
        return err(
          problem(
            'DEPLOYMENT_NOT_ACTIVE',
            `Deployment ${deploymentId} already ended ${current?.status ?? 'unknown'}.`,
          ),
        );
      }
    }
  }
  const sweep = await cancelExecutions(deps, found.value, 'canceled_by_operator', now);
  // What this request could not reach, the worker finishes (it cancels the executions of a canceled deployment).
  if (sweep.remaining) await startFanout(deps, deploymentId);
  const deployment = (await deps.deployments.get(deploymentId)) ?? found.value;
  return ok({ complete: !sweep.remaining, body: { ...deploymentView(deployment), cancel: sweep } });
}

/** Re-queues failed and timed-out executions of a deployment as new attempts, up to `budget`. */
async function requeueFailures(
  deps: Pick<DeploymentsDeps, 'executions' | 'tuning'>,
  deploymentId: string,
  now: number,
): Promise<{ readonly requeued: number; readonly remaining: boolean }> {
  let requeued = 0;
  let left = deps.tuning.executionsPerRequest;
  for (const state of ['failed', 'timed_out'] as const) {
    while (left > 0) {
      const page = await deps.executions.queryByState(deploymentId, state, { limit: Math.min(left, 100) });
      if (page.items.length === 0) break;
      left -= page.items.length;
      const results = await mapWithConcurrency(page.items, deps.tuning.concurrency, (e) =>
        retryExecution(deps, e, now),
      );
      requeued += results.filter((r) => r.ok).length;
    }
  }
  return { requeued, remaining: left <= 0 };
}

async function retryExecution(
  deps: Pick<DeploymentsDeps, 'executions'>,
  first: ExecutionRecord,
  now: number,
): Promise<Result<ExecutionRecord, Problem>> {
  let execution = first;
  for (let round = 0; round < MAX_DECISIONS; round++) {
    const decision = retry(execution);
    if (!decision.ok)
      return err(problem('NOT_RETRYABLE', `${execution.thingName}: ${decision.error.message}.`));
    const written = await deps.executions.transition(execution, decision.value.next, {
      at: now,
      reason: 'retry',
    });
    if (written.ok) return ok(written.value);
    if (!written.error.current)
      return err(problem('EXECUTION_NOT_FOUND', `${execution.thingName} is not in this deployment.`));
    execution = written.error.current;
  }
  throw new Error(`execution ${first.deploymentId}/${first.thingName} kept changing while retrying`);
}

/** The deployment rolls out again (reopened if it had ended) so the worker notifies re-queued devices. */
async function reopenForRetry(
  deps: Pick<DeploymentsDeps, 'deployments'>,
  deployment: DeploymentRecord,
  now: number,
): Promise<Result<void, Problem>> {
  if (deployment.status === 'canceled') {
    return err(
      problem(
        'DEPLOYMENT_NOT_ACTIVE',
        `Deployment ${deployment.deploymentId} was canceled; create a new one.`,
      ),
    );
  }
  if (deployment.status !== 'completed' && deployment.status !== 'aborted') return ok(undefined);
  const reopened = await deps.deployments.reopen(deployment.deploymentId, now);
  if (reopened.ok) return ok(undefined);
  if (reopened.error.code === 'UPDATE_NOT_READY') {
    return err(problem('UPDATE_NOT_READY', 'The deployment’s update is no longer ready (deleted?).'));
  }
  return err(problem('DEPLOYMENT_CONFLICT', `Deployment ${deployment.deploymentId} changed; try again.`));
}

/** `POST /deployments/{id}/retry`: failed and timed-out devices get a new attempt. */
export async function retryDeployment(
  deps: ControlDeps,
  deploymentId: string,
  now: number,
): Promise<Result<{ readonly complete: boolean; readonly body: Record<string, unknown> }, Problem>> {
  const found = await existing(deps, deploymentId);
  if (!found.ok) return found;
  const [failed, timedOut] = await Promise.all([
    deps.executions.queryByState(deploymentId, 'failed', { limit: 1 }),
    deps.executions.queryByState(deploymentId, 'timed_out', { limit: 1 }),
  ]);
  if (failed.items.length + timedOut.items.length === 0) {
    return err(problem('NOTHING_TO_RETRY', `Deployment ${deploymentId} has no failed or timed-out device.`));
  }
  const reopened = await reopenForRetry(deps, found.value, now);
  if (!reopened.ok) return reopened;
  const renewed = await renewSignatureIfNeeded(deps, found.value, now);
  if (!renewed.ok) return renewed;
  const result = await requeueFailures(deps, deploymentId, now);
  await startFanout(deps, deploymentId);
  const deployment = (await deps.deployments.get(deploymentId)) ?? found.value;
  return ok({ complete: !result.remaining, body: { ...deploymentView(deployment), retry: result } });
}

async function existingExecution(
  deps: Pick<DeploymentsDeps, 'deployments' | 'executions' | 'targets'>,
  deploymentId: string,
  thingName: string,
): Promise<Result<{ deployment: DeploymentRecord; execution: ExecutionRecord }, Problem>> {
  const deployment = await existing(deps, deploymentId);
  if (!deployment.ok) return deployment;
  const execution =
    (await deps.executions.get(deploymentId, thingName)) ??
    (await findWaiting(deps, deployment.value, thingName));
  if (!execution) {
    return err(
      problem('EXECUTION_NOT_FOUND', `Device ${thingName} is not part of deployment ${deploymentId}.`),
    );
  }
  return ok({ deployment: deployment.value, execution });
}

/** `POST /deployments/{id}/devices/{thing}/cancel`. */
export async function cancelDevice(
  deps: ControlDeps,
  deploymentId: string,
  thingName: string,
  now: number,
): Promise<Result<Record<string, unknown>, Problem>> {
  const found = await existingExecution(deps, deploymentId, thingName);
  if (!found.ok) return found;
  const result = await cancelExecution(deps, found.value.execution, 'canceled_by_operator', now);
  return result.ok ? ok(executionView(result.value.execution)) : result;
}

/** `POST /deployments/{id}/devices/{thing}/retry`. */
export async function retryDevice(
  deps: ControlDeps,
  deploymentId: string,
  thingName: string,
  now: number,
): Promise<Result<Record<string, unknown>, Problem>> {
  const found = await existingExecution(deps, deploymentId, thingName);
  if (!found.ok) return found;
  const decision = retry(found.value.execution);
  if (!decision.ok) return err(problem('NOT_RETRYABLE', `${thingName}: ${decision.error.message}.`));
  const reopened = await reopenForRetry(deps, found.value.deployment, now);
  if (!reopened.ok) return reopened;
  const renewed = await renewSignatureIfNeeded(deps, found.value.deployment, now);
  if (!renewed.ok) return renewed;
  const result = await retryExecution(deps, found.value.execution, now);
  if (!result.ok) return result;
  await startFanout(deps, deploymentId);
  return ok(executionView(result.value));
}
