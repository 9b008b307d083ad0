/**
 * How a deployment's devices are split among parallel fan-out workers, and each worker's share of
 * the rollout rate. Pure: no AWS, no clock.
 *
 * One worker (one Lambda at one vCPU: 1,769 MB) costs about 3.7 ms of CPU per device (three AWS
 * requests: the supersede check, UpdateThingShadow, the `notified` write; bench/results/fanout.json),
 * so it sustains about 270 devices/s; the largest account quota is 4,000/s. So a deployment is split
 * into shards by the thing name's hash, each with its own worker, lease, cursor and rollout bucket,
 * each running at `rate / shards`.
 */
import { CREDIT_PER_DEVICE, type RolloutBucket, type RolloutPolicy } from '../../domain/deployment/index.ts';

/** One shard is given at most this rate (250 devices/s): within what one worker sustains. */
export const SHARD_RATE_PER_MINUTE = 15_000;
/** 16 × 250/s covers the largest account quota (4,000/s). */
export const MAX_SHARDS = 16;

/** FNV-1a, 32 bits: stable across runtimes and releases, so a thing's shard never changes. */
export function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}

export function shardOf(thingName: string, shards: number): number {
  return fnv1a(thingName) % shards;
}

/** Shards for a deployment: enough that none runs faster than SHARD_RATE_PER_MINUTE, never more than the rate. */
export function shardCountFor(ratePerMinute: number): number {
  const wanted = Math.ceil(ratePerMinute / SHARD_RATE_PER_MINUTE);
  return Math.max(1, Math.min(MAX_SHARDS, wanted, ratePerMinute));
}

/** Shard `index`'s part of `total` devices per minute: the parts sum to `total`, each at least 1. */
export function shareOf(total: number, shards: number, index: number): number {
  const base = Math.floor(total / shards);
  return Math.max(1, base + (index < total % shards ? 1 : 0));
}

/**
 * The rollout policy one shard plans with: its share of the rate and of the ramp's start rate.
 * The shares sum to the deployment's rate (each shard ramps on the deployment-wide success count,
 * so they step up together); a ramp starting below one device per minute per shard starts at one.
 */
export function shardRollout(rollout: RolloutPolicy, shards: number, index: number): RolloutPolicy {
  const ratePerMinute = shareOf(rollout.ratePerMinute, shards, index);
  if (!rollout.ramp) return { ratePerMinute };
  const startRatePerMinute = Math.min(ratePerMinute, shareOf(rollout.ramp.startRatePerMinute, shards, index));
  return { ratePerMinute, ramp: { ...rollout.ramp, startRatePerMinute } };
}

/**
 * Gives back the credit of devices a plan allowed but that were not sent (the account cap granted
 * fewer, or the shadow service throttled them). The bucket never holds more than it did before the
 * plan spent them, so the rate bound of `planRollout` still holds.
 */
export function refundRollout(bucket: RolloutBucket, devices: number): RolloutBucket {
  if (devices <= 0) return bucket;
  return { credit: bucket.credit + devices * CREDIT_PER_DEVICE, at: bucket.at };
}

/** Runs `work` on every item with at most `limit` in flight; results in input order. */
export async function mapWithConcurrency<T, R>(
  items: readonly T[],
  limit: number,
  work: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const runner = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index] as T, index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, runner));
  return results;
}
