import { describe, expect, it } from 'vitest';
import {
  ACCOUNT_CAP_RECHECK_MS,
  burstFor,
  effectiveRatePerMinute,
  planRollout,
  type RolloutBucket,
  type RolloutPlanInput,
  type RolloutPolicy,
  rampedRatePerMinute,
} from '../../../lambdas/domain/deployment/index.ts';

const START = Date.parse('2030-06-01T12:00:00Z');
const UNCAPPED = 1_000_000;

/** A small seeded generator (mulberry32): the property runs are random but repeatable. */
function generator(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

interface Send {
  readonly at: number;
  readonly count: number;
  readonly rate: number;
}

/** Calls the planner at irregular times (sometimes early, sometimes after long pauses) and records what it allowed. */
function simulate(
  rollout: RolloutPolicy,
  seed: number,
  options: { successEvery?: number; calls?: number } = {},
): Send[] {
  const random = generator(seed);
  const sends: Send[] = [];
  let now = START + Math.floor(random() * 5000);
  let bucket: RolloutBucket | undefined;
  let notified = 0;
  for (let call = 0; call < (options.calls ?? 300); call++) {
    const input: RolloutPlanInput = {
      rollout,
      startAt: START,
      now,
      succeeded: options.successEvery ? Math.floor(notified / options.successEvery) : 0,
      remaining: 1_000_000 - notified,
      accountCapPerSecond: UNCAPPED,
      ...(bucket ? { bucket } : {}),
    };
    const plan = planRollout(input);
    sends.push({ at: now, count: plan.notifyNow, rate: plan.ratePerMinute });
    notified += plan.notifyNow;
    bucket = plan.bucket;
    const pause = random() < 0.1 ? Math.floor(random() * 600_000) : Math.floor(random() * 3000);
    now = random() < 0.5 && plan.nextDueAt !== null ? plan.nextDueAt : now + pause;
  }
  return sends;
}

/** Largest excess of notifications over `rate·window + burst` across every window of the run. */
function worstExcess(sends: readonly Send[], maxRate: number): number {
  let worst = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < sends.length; i++) {
    let sum = 0;
    for (let j = i; j < sends.length; j++) {
      const later = sends[j];
      const first = sends[i];
      if (!later || !first) continue;
      sum += later.count;
      const allowance = (maxRate * (later.at - first.at)) / 60_000 + burstFor(maxRate);
      worst = Math.max(worst, sum - allowance);
    }
  }
  return worst;
}

describe('rollout rate', () => {
  it.each([1, 7, 60, 1000, 240_000])('never exceeds %i/min plus one burst over any window', (rate) => {
    for (const seed of [1, 2, 3, 4, 5]) {
      expect(worstExcess(simulate({ ratePerMinute: rate }, seed), rate)).toBeLessThanOrEqual(1e-9);
    }
  });

  it('holds with an exponential ramp, against the fastest rate reached', () => {
    const rollout = {
      ratePerMinute: 5000,
      ramp: { startRatePerMinute: 50, factor: 2, increaseAfterSucceeded: 100 },
    };
    for (const seed of [11, 12, 13]) {
      const sends = simulate(rollout, seed, { successEvery: 2 });
      const fastest = Math.max(...sends.map((send) => send.rate));
      expect(fastest).toBeGreaterThan(50);
      expect(worstExcess(sends, fastest)).toBeLessThanOrEqual(1e-9);
    }
  });

  it('does not save up idle time: after a long pause only one burst goes out', () => {
    const first = planRollout({
      rollout: { ratePerMinute: 600 },
      startAt: START,
      now: START,
      succeeded: 0,
      remaining: 10_000,
      accountCapPerSecond: UNCAPPED,
    });
    const later = planRollout({
      rollout: { ratePerMinute: 600 },
      startAt: START,
      now: START + 3_600_000,
      succeeded: 0,
      remaining: 10_000,
      accountCapPerSecond: UNCAPPED,
      bucket: first.bucket,
    });
    expect(first.notifyNow).toBe(10);
    expect(later.notifyNow).toBe(10);
  });

  it('notifies everyone at the rate when called when due', () => {
    let bucket: RolloutBucket | undefined;
    let now = START;
    let remaining = 1000;
    let calls = 0;
    while (remaining > 0 && calls < 10_000) {
      const plan = planRollout({
        rollout: { ratePerMinute: 600 },
        startAt: START,
        now,
        succeeded: 0,
        remaining,
        accountCapPerSecond: UNCAPPED,
        ...(bucket ? { bucket } : {}),
      });
      remaining -= plan.notifyNow;
      bucket = plan.bucket;
      calls++;
      if (plan.nextDueAt === null) break;
      now = plan.nextDueAt;
    }
    expect(remaining).toBe(0);
    // 1000 devices at 10/s with a first burst of 10: the last goes out at 99 s.
    expect(now - START).toBe(99_000);
  });

  it('is deterministic', () => {
    expect(simulate({ ratePerMinute: 77 }, 9)).toEqual(simulate({ ratePerMinute: 77 }, 9));
  });
});

describe('rollout plan states', () => {
  const base = {
    rollout: { ratePerMinute: 120 },
    startAt: START,
    succeeded: 0,
    remaining: 50,
    accountCapPerSecond: UNCAPPED,
  };

  it.each([
    ['before the start time', { now: START - 1 }, { notifyNow: 0, nextDueAt: START, waitingFor: 'start' }],
    ['at the start: one burst', { now: START }, { notifyNow: 2, nextDueAt: START + 500, waitingFor: 'rate' }],
    [
      'with nothing left',
      { now: START, remaining: 0 },
      { notifyNow: 0, nextDueAt: null, waitingFor: 'done' },
    ],
    [
      'with the last few',
      { now: START, remaining: 1 },
      { notifyNow: 1, nextDueAt: null, waitingFor: 'done' },
    ],
    [
      'with no account capacity',
      { now: START, accountCapPerSecond: 0 },
      { notifyNow: 0, nextDueAt: START + ACCOUNT_CAP_RECHECK_MS, waitingFor: 'account_cap' },
    ],
    [
      'with a NaN account capacity',
      { now: START, accountCapPerSecond: Number.NaN },
      { notifyNow: 0, nextDueAt: START + ACCOUNT_CAP_RECHECK_MS, waitingFor: 'account_cap' },
    ],
  ] as const)('%s', (_name, overrides, expected) => {
    expect(planRollout({ ...base, ...overrides })).toEqual(expect.objectContaining(expected));
  });

  it('takes no credit for a clock that went backwards', () => {
    const plan = planRollout({
      ...base,
      now: START - 10_000,
      bucket: { credit: 0, at: START + 1000 },
      startAt: START - 20_000,
    });
    expect(plan.notifyNow).toBe(0);
    expect(plan.bucket.at).toBe(START + 1000);
  });
});

describe('rates', () => {
  const ramp = {
    ratePerMinute: 1000,
    ramp: { startRatePerMinute: 10, factor: 2, increaseAfterSucceeded: 5 },
  };
  it.each([
    [0, 10],
    [4, 10],
    [5, 20],
    [10, 40],
    [34, 640],
    [35, 1000],
    [10_000_000, 1000],
    [-3, 10],
  ])('after %i successes the ramp allows %i/min', (succeeded, rate) => {
    expect(rampedRatePerMinute(ramp, succeeded)).toBe(rate);
  });

  it('rounds a fractional ramp down to whole devices per minute', () => {
    expect(
      rampedRatePerMinute(
        { ratePerMinute: 100, ramp: { startRatePerMinute: 3, factor: 1.5, increaseAfterSucceeded: 1 } },
        1,
      ),
    ).toBe(4);
  });

  it.each([
    [600, 100, 600],
    [600, 5, 300],
    [600, 0.5, 30],
    [600, -1, 0],
  ])('policy %i/min under an account cap of %d/s runs at %i/min', (rate, cap, expected) => {
    expect(effectiveRatePerMinute({ ratePerMinute: rate }, 0, cap)).toBe(expected);
  });

  it('throttles the plan to the account cap', () => {
    const plan = planRollout({
      rollout: { ratePerMinute: 240_000 },
      startAt: START,
      now: START,
      succeeded: 0,
      remaining: 10 ** 6,
      accountCapPerSecond: 100,
    });
    expect(plan.ratePerMinute).toBe(6000);
    expect(plan.notifyNow).toBe(100);
  });
});
