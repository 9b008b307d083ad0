import type { RolloutPolicy } from './request.ts';

/**
 * Rollout planning as a token bucket kept in the deployment's checkpoint. Credit is counted in
 * device·ms/min so that an integer rate (devices per minute) refills an integer amount per
 * millisecond: the arithmetic is exact and the plan deterministic.
 */
export const CREDIT_PER_DEVICE = 60_000;

/** When the account cap leaves this deployment nothing, look again after this long. */
export const ACCOUNT_CAP_RECHECK_MS = 1000;

export interface RolloutBucket {
  /** Unspent credit, in device·ms/min (one device = CREDIT_PER_DEVICE). */
  readonly credit: number;
  /** Epoch ms the credit was computed at. */
  readonly at: number;
}

export interface RolloutPlanInput {
  readonly rollout: RolloutPolicy;
  /** Epoch ms the deployment starts (its start time, or its creation time). */
  readonly startAt: number;
  readonly now: number;
  /** Devices that succeeded or were skipped so far: what the exponential ramp counts. */
  readonly succeeded: number;
  /** Devices still queued. */
  readonly remaining: number;
  /**
   * This deployment's share of the account-wide shadow update rate, per second (the account's
   * quota divided among the deployments that run at once, decided by the caller).
   */
  readonly accountCapPerSecond: number;
  /** The bucket returned by the previous plan; absent on the first. */
  readonly bucket?: RolloutBucket;
}

export type RolloutWait = 'start' | 'rate' | 'account_cap' | 'done';

export interface RolloutPlan {
  /** How many devices the caller may notify now. The bucket already counts them as spent: sending fewer wastes credit, never exceeds the rate. */
  readonly notifyNow: number;
  /** Epoch ms when at least one more device may be notified; null when none remain. */
  readonly nextDueAt: number | null;
  /** What the rollout waits for after this batch. */
  readonly waitingFor: RolloutWait;
  /** The effective rate, devices per minute (policy, ramp and account cap applied). */
  readonly ratePerMinute: number;
  /** Most devices notified in one go: a second's worth, at least one. */
  readonly burst: number;
  /** Store it with the checkpoint and pass it to the next plan. */
  readonly bucket: RolloutBucket;
}

/**
 * The policy's rate after the exponential ramp: the start rate, multiplied by `factor` after every
 * `increaseAfterSucceeded` successes, never above `ratePerMinute`; whole devices per minute.
 */
export function rampedRatePerMinute(rollout: RolloutPolicy, succeeded: number): number {
  const { ramp, ratePerMinute } = rollout;
  if (!ramp) return ratePerMinute;
  const steps = Math.floor(Math.max(0, succeeded) / ramp.increaseAfterSucceeded);
  const ramped = Math.floor(ramp.startRatePerMinute * ramp.factor ** steps);
  return Math.max(1, Math.min(ratePerMinute, ramped));
}

/** The rate this deployment may use now: the ramped policy rate, under the account cap. */
export function effectiveRatePerMinute(
  rollout: RolloutPolicy,
  succeeded: number,
  accountCapPerSecond: number,
): number {
  const cap = Number.isFinite(accountCapPerSecond) ? Math.max(0, Math.floor(accountCapPerSecond * 60)) : 0;
  return Math.min(rampedRatePerMinute(rollout, succeeded), cap);
}

export function burstFor(ratePerMinute: number): number {
  return Math.max(1, Math.ceil(ratePerMinute / 60));
}

/** Credit after refilling up to `now`; never more than one burst, so idle time is not saved up. */
function refill(bucket: RolloutBucket, ratePerMinute: number, now: number): RolloutBucket {
  const capacity = burstFor(ratePerMinute) * CREDIT_PER_DEVICE;
  // A caller whose clock is behind the last plan's gets no credit for negative time.
  const elapsed = Math.max(0, now - bucket.at);
  return {
    credit: Math.min(capacity, bucket.credit + ratePerMinute * elapsed),
    at: Math.max(bucket.at, now),
  };
}

/**
 * How many devices to notify now and when to come back. Over any window of length w, a caller that
 * follows the plans notifies at most `burst + rate·w` devices, however irregularly it calls (a worker
 * that was down does not catch up in one burst).
 */
export function planRollout(input: RolloutPlanInput): RolloutPlan {
  const ratePerMinute = effectiveRatePerMinute(input.rollout, input.succeeded, input.accountCapPerSecond);
  const burst = burstFor(ratePerMinute);
  const bucket = input.bucket ?? { credit: burst * CREDIT_PER_DEVICE, at: input.startAt };
  const plan = { ratePerMinute, burst };
  if (input.remaining <= 0) return { ...plan, notifyNow: 0, nextDueAt: null, waitingFor: 'done', bucket };
  if (input.now < input.startAt) {
    return { ...plan, notifyNow: 0, nextDueAt: input.startAt, waitingFor: 'start', bucket };
  }
  if (ratePerMinute === 0) {
    return {
      ...plan,
      notifyNow: 0,
      nextDueAt: input.now + ACCOUNT_CAP_RECHECK_MS,
      waitingFor: 'account_cap',
      bucket,
    };
  }
  const filled = refill(bucket, ratePerMinute, input.now);
  const notifyNow = Math.min(input.remaining, Math.floor(filled.credit / CREDIT_PER_DEVICE));
  const spent = { credit: filled.credit - notifyNow * CREDIT_PER_DEVICE, at: filled.at };
  if (notifyNow === input.remaining)
    return { ...plan, notifyNow, nextDueAt: null, waitingFor: 'done', bucket: spent };
  const nextDueAt = spent.at + Math.ceil((CREDIT_PER_DEVICE - spent.credit) / ratePerMinute);
  return { ...plan, notifyNow, nextDueAt, waitingFor: 'rate', bucket: spent };
}
