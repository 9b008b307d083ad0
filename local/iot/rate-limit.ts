/**
 * Request-rate quotas of the shadow APIs, as token buckets: one for the account, one per thing.
 * Off unless configured. The clock comes in as `nowMs` so the limiter is deterministic in tests.
 */

export interface ShadowRateLimits {
  /** Shadow requests per second for the whole account (AWS: 4,000 or 400 by region). */
  readonly accountPerSecond?: number;
  /** Shadow requests per second per thing (AWS: 20). */
  readonly thingPerSecond?: number;
}

interface Bucket {
  tokens: number;
  updatedMs: number;
}

class TokenBucket {
  readonly #perSecond: number;
  readonly #buckets = new Map<string, Bucket>();

  constructor(perSecond: number) {
    this.#perSecond = perSecond;
  }

  /** Takes one token for `key`; false when the bucket is empty. A full bucket holds one second's worth. */
  take(key: string, nowMs: number): boolean {
    const capacity = this.#perSecond;
    const bucket = this.#buckets.get(key) ?? { tokens: capacity, updatedMs: nowMs };
    bucket.tokens = Math.min(capacity, bucket.tokens + ((nowMs - bucket.updatedMs) * capacity) / 1000);
    bucket.updatedMs = nowMs;
    this.#buckets.set(key, bucket);
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }
}

export interface RateLimiter {
  /** Counts one shadow request of `thingName`; false when a quota is exceeded. */
  allow(thingName: string, nowMs: number): boolean;
}

export function makeRateLimiter(limits: ShadowRateLimits = {}): RateLimiter {
  const account = limits.accountPerSecond ? new TokenBucket(limits.accountPerSecond) : undefined;
  const perThing = limits.thingPerSecond ? new TokenBucket(limits.thingPerSecond) : undefined;
  if (!account && !perThing) return { allow: () => true };
  return {
    allow(thingName, nowMs) {
      if (perThing && !perThing.take(thingName, nowMs)) return false;
      return !account || account.take('', nowMs);
    },
  };
}
