import type { UpdateId } from '../manifest/index.ts';
import { err, ok, type Result } from '../result.ts';
import {
  type ExecutionState,
  isAllowedTransition,
  isInProgress,
  isTerminal,
  type Transition,
  type TransitionReason,
} from './states.ts';

/** Why a cancel was asked for; it becomes the transition reason when the execution ends `canceled`. */
export type CancelReason = 'canceled_by_operator' | 'aborted';

/**
 * What the domain needs to know about one execution. Adapters store more (result codes, progress);
 * these are the fields the rules read and write. Times are epoch ms.
 */
export interface Execution {
  readonly deploymentId: string;
  readonly thingName: string;
  readonly updateId: UpdateId;
  readonly state: ExecutionState;
  /** 1 for the first try; a retry increments it, and the device echoes it so old reports are told apart. */
  readonly attempt: number;
  /** When the desired document of the current attempt was written; the device's timeout counts from here. */
  readonly notifiedAt?: number;
  /** Set when a cancel was asked for while the device was working: it has been sent the `cancel` action. */
  readonly cancelReason?: CancelReason;
  /**
   * Order key of the last device report applied: its `seq`, or when it had none the time it was
   * received (epoch ms). The stale/duplicate check compares the next report's key with it.
   */
  readonly reportOrder?: number;
  readonly reportedAt?: number;
}

/** A change of state, and the record as it is after it. The adapter writes `next` on condition `state = transition.from`. */
export interface Applied {
  readonly kind: 'transition';
  readonly transition: Transition;
  readonly next: Execution;
}

export interface Unchanged {
  readonly kind: 'unchanged';
  readonly reason: string;
}

export interface CommandRefused {
  readonly code: 'NOT_NOTIFIABLE' | 'NOT_CANCELABLE' | 'NOT_RETRYABLE';
  readonly message: string;
}

/** Builds a transition; a disallowed one is a bug in this module, so it throws. */
export function applyTransition(
  execution: Execution,
  to: ExecutionState,
  reason: TransitionReason,
  changes: Partial<Execution> = {},
): Applied {
  const from = execution.state;
  if (!isAllowedTransition(from, to)) throw new Error(`bug: transition ${from} → ${to} is not allowed`);
  return {
    kind: 'transition',
    transition: { from, to, reason },
    next: { ...execution, ...changes, state: to },
  };
}

/** The state a new execution starts in: devices that do not match the update never receive it. */
export function initialState(compatible: boolean): 'queued' | 'incompatible' {
  return compatible ? 'queued' : 'incompatible';
}

/** The fan-out wrote the desired document: the device's clock starts. Only a queued execution is notified. */
export function notify(execution: Execution, now: number): Result<Applied, CommandRefused> {
  if (execution.state !== 'queued') {
    return err({ code: 'NOT_NOTIFIABLE', message: `execution is ${execution.state}, not queued` });
  }
  return ok(applyTransition(execution, 'notified', 'notified', { notifiedAt: now }));
}

/** The device must be sent the `cancel` action; it ends `canceled` when it confirms (or when its time is up). */
export interface CancelRequested {
  readonly kind: 'cancel_requested';
  readonly next: Execution;
}

/**
 * Operator cancel or abort. A queued device has not been told anything, so it ends at once; a
 * device at work is asked to cancel (best effort, as in ADU: it may still finish) and keeps its
 * state until it reports.
 */
export function cancel(
  execution: Execution,
  reason: CancelReason,
): Result<Applied | CancelRequested | Unchanged, CommandRefused> {
  if (execution.state === 'queued') return ok(applyTransition(execution, 'canceled', reason));
  if (isTerminal(execution.state)) {
    return err({ code: 'NOT_CANCELABLE', message: `execution already ended ${execution.state}` });
  }
  if (execution.cancelReason) return ok({ kind: 'unchanged', reason: 'cancel already requested' });
  return ok({ kind: 'cancel_requested', next: { ...execution, cancelReason: reason } });
}

/**
 * A newer deployment took over the device's shadow: the desired document of this one is gone, so
 * the device will never report on it. Ends at once, whatever the device was doing.
 */
export function supersede(execution: Execution): Applied | Unchanged {
  if (isTerminal(execution.state)) return { kind: 'unchanged', reason: `already ${execution.state}` };
  return applyTransition(execution, 'canceled', 'superseded');
}

/**
 * Whether a newer deployment's execution owns the device, so an older one must give way: it
 * reached the device (sent it its document, or is to send it again), whatever its state now; not
 * one the fan-out never got to (`incompatible`, or `canceled` while it waited on its target page:
 * that deployment was canceled or aborted before the device heard of it).
 */
export function ownsDevice(execution: Execution): boolean {
  if (execution.state === 'incompatible') return false;
  return !(execution.state === 'canceled' && execution.notifiedAt === undefined && execution.attempt === 1);
}

/** Re-queues a failed or timed-out device as a new attempt; the fan-out notifies it again. */
export function retry(execution: Execution): Result<Applied, CommandRefused> {
  if (execution.state !== 'failed' && execution.state !== 'timed_out') {
    return err({
      code: 'NOT_RETRYABLE',
      message: `only failed or timed_out executions are retried, not ${execution.state}`,
    });
  }
  return ok(
    applyTransition(execution, 'queued', 'retry', {
      attempt: execution.attempt + 1,
      notifiedAt: undefined,
      cancelReason: undefined,
    }),
  );
}

/** When a notified device's time is up (epoch ms), or undefined when it has no deadline. */
export function deadlineOf(execution: Execution, deviceTimeoutSeconds: number): number | undefined {
  if (!isInProgress(execution.state) || execution.notifiedAt === undefined) return undefined;
  return execution.notifiedAt + deviceTimeoutSeconds * 1000;
}

/**
 * The scheduled sweep: a device still at work past its deadline ends `timed_out`, or `canceled` if
 * it had been asked to cancel and never confirmed.
 */
export function timeOutIfDue(
  execution: Execution,
  now: number,
  deviceTimeoutSeconds: number,
): Applied | Unchanged {
  const deadline = deadlineOf(execution, deviceTimeoutSeconds);
  if (deadline === undefined) return { kind: 'unchanged', reason: `no deadline while ${execution.state}` };
  if (now < deadline) return { kind: 'unchanged', reason: `due at ${deadline} (epoch ms)` };
  if (execution.cancelReason) return applyTransition(execution, 'canceled', execution.cancelReason);
  return applyTransition(execution, 'timed_out', 'timeout');
}
