import { describe, expect, it } from 'vitest';
import {
  type AbortCriterion,
  emptyCounters,
  evaluateAbort,
  type StateCounters,
} from '../../../lambdas/domain/deployment/index.ts';

function counters(values: Partial<StateCounters>): StateCounters {
  return { ...emptyCounters(), ...values };
}

const failed10: AbortCriterion = { failureType: 'FAILED', thresholdPercent: 10, minFinishedDevices: 20 };
const timedOut25: AbortCriterion = { failureType: 'TIMED_OUT', thresholdPercent: 25, minFinishedDevices: 4 };
const any50: AbortCriterion = { failureType: 'ANY_FAILURE', thresholdPercent: 50, minFinishedDevices: 10 };

describe('abort criteria', () => {
  it.each([
    ['below the minimum finished', [failed10], { succeeded: 10, failed: 9 }, false],
    ['at the minimum and at the threshold', [failed10], { succeeded: 18, failed: 2 }, true],
    ['just under the threshold', [failed10], { succeeded: 19, failed: 2 }, false],
    ['skipped devices count as finished', [failed10], { succeeded: 17, skipped: 2, failed: 2 }, false],
    [
      'canceled and incompatible devices do not dilute',
      [failed10],
      { succeeded: 18, failed: 2, canceled: 500, incompatible: 500 },
      true,
    ],
    [
      'in-progress devices are not finished',
      [failed10],
      { succeeded: 9, failed: 2, downloading: 100 },
      false,
    ],
    ['timeouts do not count as FAILED', [failed10], { succeeded: 18, timed_out: 5 }, false],
    ['timeouts count for TIMED_OUT', [timedOut25], { succeeded: 3, timed_out: 1 }, true],
    ['ANY_FAILURE adds failed and timed out', [any50], { succeeded: 5, failed: 3, timed_out: 2 }, true],
    ['ANY_FAILURE below its threshold', [any50], { succeeded: 6, failed: 2, timed_out: 2 }, false],
    ['no criteria, no abort', [], { failed: 1000 }, false],
    [
      'a 100% threshold needs every finished device to fail',
      [{ ...any50, thresholdPercent: 100 }],
      { failed: 10 },
      true,
    ],
  ] as const)('%s → abort %s', (_name, criteria, values, abort) => {
    expect(evaluateAbort(counters(values), criteria).abort).toBe(abort);
  });

  it('explains the decision with the numbers that tripped it, naming the first criterion met', () => {
    const decision = evaluateAbort(counters({ succeeded: 3, failed: 1, timed_out: 2 }), [
      failed10,
      timedOut25,
      any50,
    ]);
    expect(decision).toEqual({
      abort: true,
      criterion: timedOut25,
      failures: 2,
      finished: 6,
      reason:
        '2 of 6 finished devices timed out (33.3%), at or above the TIMED_OUT threshold of 25% after at least 4 finished devices',
    });
  });
});
