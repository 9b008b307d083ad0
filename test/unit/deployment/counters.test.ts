import { describe, expect, it } from 'vitest';
import {
  applyCounterDeltas,
  counterDeltas,
  type ExecutionState,
  emptyCounters,
  executionStates,
  isAllowedTransition,
  totalExecutions,
} from '../../../lambdas/domain/deployment/index.ts';

describe('counter deltas', () => {
  it.each([
    [undefined, 'queued', { queued: 1 }],
    [undefined, 'incompatible', { incompatible: 1 }],
    ['queued', 'notified', { queued: -1, notified: 1 }],
    ['applying', 'succeeded', { applying: -1, succeeded: 1 }],
    ['timed_out', 'succeeded', { timed_out: -1, succeeded: 1 }],
    ['failed', 'queued', { failed: -1, queued: 1 }],
    ['downloading', 'downloading', {}],
  ] as const)('%s → %s changes %j', (from, to, deltas) => {
    expect(counterDeltas(from, to)).toEqual(deltas);
  });

  it('keeps every counter equal to its state population over random valid walks', () => {
    let seed = 42;
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const devices: ExecutionState[] = [];
    let counters = emptyCounters();
    for (let step = 0; step < 5000; step++) {
      if (devices.length < 50 && random() < 0.1) {
        const state = random() < 0.9 ? 'queued' : 'incompatible';
        devices.push(state);
        counters = applyCounterDeltas(counters, counterDeltas(undefined, state));
        continue;
      }
      const index = Math.floor(random() * devices.length);
      const from = devices[index];
      if (from === undefined) continue;
      const options = executionStates.filter((to) => isAllowedTransition(from, to));
      const to = options[Math.floor(random() * options.length)];
      if (to === undefined) continue;
      devices[index] = to;
      counters = applyCounterDeltas(counters, counterDeltas(from, to));
    }
    for (const state of executionStates) {
      expect(counters[state]).toBe(devices.filter((d) => d === state).length);
    }
    expect(totalExecutions(counters)).toBe(devices.length);
  });
});
