import { describe, expect, it } from 'vitest';
import {
  type ExecutionState,
  executionStates,
  isAllowedTransition,
  isTerminal,
} from '../../../lambdas/domain/deployment/index.ts';

/** The whole state machine written out by hand: every allowed edge, nothing else. */
const allowed: Readonly<Record<ExecutionState, readonly ExecutionState[]>> = {
  queued: [
    'notified',
    'downloading',
    'installing',
    'applying',
    'succeeded',
    'failed',
    'canceled',
    'skipped',
    'incompatible',
  ],
  notified: [
    'downloading',
    'installing',
    'applying',
    'succeeded',
    'failed',
    'timed_out',
    'canceled',
    'skipped',
    'incompatible',
  ],
  downloading: [
    'installing',
    'applying',
    'succeeded',
    'failed',
    'timed_out',
    'canceled',
    'skipped',
    'incompatible',
  ],
  installing: ['applying', 'succeeded', 'failed', 'timed_out', 'canceled', 'skipped', 'incompatible'],
  applying: ['succeeded', 'failed', 'timed_out', 'canceled', 'skipped', 'incompatible'],
  succeeded: [],
  failed: ['queued'],
  timed_out: ['succeeded', 'failed', 'queued'],
  canceled: [],
  skipped: [],
  incompatible: [],
};

const pairs = executionStates.flatMap((from) =>
  executionStates.map((to) => [from, to, allowed[from].includes(to)] as const),
);

describe('execution state machine', () => {
  it.each(pairs)('%s → %s allowed: %s', (from, to, expected) => {
    expect(isAllowedTransition(from, to)).toBe(expected);
  });

  it.each([
    ['queued', false],
    ['notified', false],
    ['downloading', false],
    ['installing', false],
    ['applying', false],
    ['succeeded', true],
    ['failed', true],
    ['timed_out', true],
    ['canceled', true],
    ['skipped', true],
    ['incompatible', true],
  ] as const)('%s is terminal: %s', (state, terminal) => {
    expect(isTerminal(state)).toBe(terminal);
  });

  it('never allows staying in place (a no-op is not a transition)', () => {
    for (const state of executionStates) expect(isAllowedTransition(state, state)).toBe(false);
  });
});
