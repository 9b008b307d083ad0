/**
 * The execution state machine: one execution per (deployment, device). See
 * docs/adr/0010-deployment-shadow-protocol.md for the diagram and the reasons.
 */
export const executionStates = [
  'queued',
  'notified',
  'downloading',
  'installing',
  'applying',
  'succeeded',
  'failed',
  'timed_out',
  'canceled',
  'skipped',
  'incompatible',
] as const;

export type ExecutionState = (typeof executionStates)[number];

export const inProgressStates = ['notified', 'downloading', 'installing', 'applying'] as const;
export type InProgressState = (typeof inProgressStates)[number];

export const terminalStates = [
  'succeeded',
  'failed',
  'timed_out',
  'canceled',
  'skipped',
  'incompatible',
] as const;
export type TerminalState = (typeof terminalStates)[number];

/** Progress order of the non-terminal states; every terminal state ranks after all of them. */
const RANK: Readonly<Record<ExecutionState, number>> = {
  queued: 0,
  notified: 1,
  downloading: 2,
  installing: 3,
  applying: 4,
  succeeded: 5,
  failed: 5,
  timed_out: 5,
  canceled: 5,
  skipped: 5,
  incompatible: 5,
};

export function isTerminal(state: ExecutionState): state is TerminalState {
  return (terminalStates as readonly string[]).includes(state);
}

export function isInProgress(state: ExecutionState): state is InProgressState {
  return (inProgressStates as readonly string[]).includes(state);
}

export function isExecutionState(value: unknown): value is ExecutionState {
  return typeof value === 'string' && (executionStates as readonly string[]).includes(value);
}

/** True when `to` is further along than `from` (a device may skip states whose reports were lost). */
export function isForward(from: ExecutionState, to: ExecutionState): boolean {
  return RANK[to] > RANK[from];
}

/**
 * Every edge of the state machine, whatever causes it:
 * - forward moves from a non-terminal state (a device report, a notification, a cancel);
 *   a queued device cannot time out (its clock starts when it is notified);
 * - `timed_out` → `succeeded` | `failed`: a slow device's late final report is the truth;
 * - `failed` | `timed_out` → `queued`: an operator's retry starts a new attempt.
 * The conditional write that applies a transition checks `state = from`, so these edges are also
 * the only writes that can ever change a state.
 */
export function isAllowedTransition(from: ExecutionState, to: ExecutionState): boolean {
  if (from === 'queued' && to === 'timed_out') return false;
  if (!isTerminal(from)) return isForward(from, to);
  if (from === 'timed_out') return to === 'succeeded' || to === 'failed' || to === 'queued';
  return from === 'failed' && to === 'queued';
}

/** Why an execution moved: stable codes, stored with the execution and shown in status. */
export type TransitionReason =
  | 'notified'
  | 'device_report'
  /** The device asked for download authorization: it has its document and starts downloading. */
  | 'download_authorized'
  | 'late_report'
  | 'canceled_by_operator'
  | 'aborted'
  | 'superseded'
  | 'timeout'
  | 'retry';

export interface Transition {
  readonly from: ExecutionState;
  readonly to: ExecutionState;
  readonly reason: TransitionReason;
}
