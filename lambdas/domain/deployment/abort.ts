import type { StateCounters } from './counters.ts';
import type { AbortCriterion, FailureType } from './request.ts';

export type AbortDecision =
  | { readonly abort: false }
  | {
      readonly abort: true;
      readonly criterion: AbortCriterion;
      readonly failures: number;
      readonly finished: number;
      /** A sentence for the status page, naming the numbers that tripped the criterion. */
      readonly reason: string;
    };

/**
 * Devices that finished trying the update. Canceled and incompatible devices never tried it, so
 * counting them would dilute the failure rate.
 */
export function finishedDevices(counters: StateCounters): number {
  return counters.succeeded + counters.skipped + counters.failed + counters.timed_out;
}

export function failuresOf(counters: StateCounters, type: FailureType): number {
  if (type === 'FAILED') return counters.failed;
  if (type === 'TIMED_OUT') return counters.timed_out;
  return counters.failed + counters.timed_out;
}

const FAILURE_WORDS: Readonly<Record<FailureType, string>> = {
  FAILED: 'failed',
  TIMED_OUT: 'timed out',
  ANY_FAILURE: 'failed or timed out',
};

function percent(part: number, whole: number): string {
  return `${Math.round((1000 * part) / whole) / 10}%`;
}

/**
 * Abort when any criterion is met, in the order given: at least `minFinishedDevices` finished, and
 * failures are at least `thresholdPercent` of them.
 */
export function evaluateAbort(counters: StateCounters, criteria: readonly AbortCriterion[]): AbortDecision {
  const finished = finishedDevices(counters);
  for (const criterion of criteria) {
    const failures = failuresOf(counters, criterion.failureType);
    const reached =
      finished >= criterion.minFinishedDevices &&
      failures > 0 &&
      failures * 100 >= criterion.thresholdPercent * finished;
    if (reached) {
      const reason =
        `${failures} of ${finished} finished devices ${FAILURE_WORDS[criterion.failureType]} (${percent(failures, finished)}), ` +
        `at or above the ${criterion.failureType} threshold of ${criterion.thresholdPercent}% ` +
        `after at least ${criterion.minFinishedDevices} finished devices`;
      return { abort: true, criterion, failures, finished, reason };
    }
  }
  return { abort: false };
}
