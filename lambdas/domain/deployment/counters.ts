import { type ExecutionState, executionStates } from './states.ts';

/** Executions of one deployment per state. */
export type StateCounters = Readonly<Record<ExecutionState, number>>;

/** Changes to apply to the counters (DynamoDB `ADD` per attribute); states not named do not change. */
export type CounterDeltas = Readonly<Partial<Record<ExecutionState, number>>>;

export function emptyCounters(): Record<ExecutionState, number> {
  return Object.fromEntries(executionStates.map((state) => [state, 0])) as Record<ExecutionState, number>;
}

/**
 * The counter changes for one execution moving `from` → `to` (`from` undefined: the execution was
 * just created). Applied in the same transaction as the transition, they keep the sum of the
 * counters equal to the number of executions and each counter equal to its state's population.
 */
export function counterDeltas(from: ExecutionState | undefined, to: ExecutionState): CounterDeltas {
  if (from === to) return {};
  if (from === undefined) return { [to]: 1 };
  return { [from]: -1, [to]: 1 };
}

export function applyCounterDeltas(
  counters: StateCounters,
  deltas: CounterDeltas,
): Record<ExecutionState, number> {
  const next = { ...counters };
  for (const state of executionStates) next[state] += deltas[state] ?? 0;
  return next;
}

export function totalExecutions(counters: StateCounters): number {
  return executionStates.reduce((sum, state) => sum + counters[state], 0);
}
