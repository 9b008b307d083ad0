import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { type DynamoDBDocumentClient, UpdateCommand, type UpdateCommandInput } from '@aws-sdk/lib-dynamodb';

/**
 * The account-wide cap on shadow updates per second, shared by every fan-out worker of every
 * deployment: one item (pk `#account-rate`) of the deployments table, kept as a GCRA (the
 * "generic cell rate algorithm", a token bucket stored as one instant): `tat`, the theoretical
 * arrival time, is when the bucket would be full again. Taking n tokens moves it n × (1 s / cap)
 * later, allowed while it stays within one second (the bucket's depth) of now.
 *
 * Why this shape: the move is a plain `SET tat = tat + :cost` under a range condition, so workers
 * taking at the same moment do not conflict; a bucket of tokens and a timestamp needs a read and
 * a write locked to it, and with 16 workers three writes in four lost their race (session 8's
 * fan-out benchmark: 1,950 refused of 2,615). A grab is one request; an idle bucket (`tat` past)
 * is restarted with one more, and a refused grab answers with `tat` as it is, so what still fits
 * is taken without a read.
 */
export const ACCOUNT_RATE_ITEM_KEY = '#account-rate';

/** Default cap (ADR 0040): AWS's UpdateThingShadow quota in the smaller regions is 400/s. */
export const DEFAULT_ACCOUNT_SHADOW_RATE_CAP = 400;

export interface TokenGrant {
  /** Tokens taken (0..wanted); the caller may send this many shadow updates now. */
  readonly granted: number;
  /** When granted < wanted: ms until one more token is due. */
  readonly retryAfterMs: number;
}

export interface AccountRateLimiter {
  readonly capPerSecond: number;
  /** Takes up to `wanted` tokens at `now` (epoch ms); never blocks. */
  take(wanted: number, now: number): Promise<TokenGrant>;
}

export interface AccountRateLimiterOptions {
  readonly db: Pick<DynamoDBDocumentClient, 'send'>;
  readonly tableName: string;
  readonly capPerSecond: number;
  /** The table's partition key attribute. @default 'deploymentId' */
  readonly partitionKey?: string;
  /** Refused grabs retried (a restart lost to another, a grab shrunk to what fits). @default 5 */
  readonly maxRaces?: number;
}

/** The bucket holds one second's worth of the cap. */
const DEPTH_MS = 1000;
/** Float slack, so that (depth / cost) tokens that fit exactly are not lost to rounding. */
const EPSILON = 1e-9;

/** The pure arithmetic of the cap: what a token costs, what fits, how long until one more. */
export function accountRateSchedule(capPerSecond: number) {
  const tokenMs = DEPTH_MS / capPerSecond;
  return {
    tokenMs,
    /** `tat` may be at most this when `n` tokens are taken at `now`. */
    latestTatFor: (n: number, now: number) => now + DEPTH_MS - n * tokenMs,
    /** Tokens that fit at `now` with the bucket at `tat` (all of a second's when it is idle). */
    fitting: (tat: number | undefined, now: number) =>
      tat === undefined || tat < now
        ? capPerSecond
        : Math.max(0, Math.floor((now + DEPTH_MS - tat) / tokenMs + EPSILON)),
    /** How long after `now` one more token fits, the bucket being at `tat`. */
    retryAfterMs: (tat: number, now: number) =>
      Math.max(1, Math.ceil(tat + tokenMs - DEPTH_MS - now - EPSILON)),
  };
}

type Attempt = { readonly ok: true; readonly tat: number } | { readonly ok: false; readonly tat?: number };

export function makeAccountRateLimiter(options: AccountRateLimiterOptions): AccountRateLimiter {
  const { db, tableName, capPerSecond } = options;
  const pk = options.partitionKey ?? 'deploymentId';
  const key = { [pk]: ACCOUNT_RATE_ITEM_KEY };
  const maxRaces = options.maxRaces ?? 5;
  if (!Number.isInteger(capPerSecond) || capPerSecond <= 0) {
    throw new Error(`bug: the account cap must be a positive integer, not ${capPerSecond}`);
  }
  const schedule = accountRateSchedule(capPerSecond);

  async function conditional(update: Omit<UpdateCommandInput, 'TableName' | 'Key'>): Promise<Attempt> {
    try {
      const out = await db.send(
        new UpdateCommand({
          TableName: tableName,
          Key: key,
          ...update,
          ReturnValues: 'UPDATED_NEW',
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
      return { ok: true, tat: Number(out.Attributes?.tat) };
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
      const tat = error.Item?.tat?.N;
      return tat === undefined ? { ok: false } : { ok: false, tat: Number(tat) };
    }
  }

  /** Takes n tokens from a bucket in use (`tat` not past). */
  const spend = (n: number, now: number) =>
    conditional({
      UpdateExpression: 'SET tat = tat + :cost',
      ConditionExpression: 'tat >= :now AND tat <= :latest',
      ExpressionAttributeValues: {
        ':cost': n * schedule.tokenMs,
        ':now': now,
        ':latest': schedule.latestTatFor(n, now),
      },
    });

  /** Takes n tokens from an idle bucket (or none yet): it starts full at `now`. */
  const restart = (n: number, now: number) =>
    conditional({
      // The fields of the token bucket this item held before (milliTokens, at) go.
      UpdateExpression: 'SET tat = :tat, capPerSecond = :cap REMOVE milliTokens, #at',
      ConditionExpression: 'attribute_not_exists(tat) OR tat < :now',
      ExpressionAttributeNames: { '#at': 'at' },
      ExpressionAttributeValues: { ':tat': now + n * schedule.tokenMs, ':cap': capPerSecond, ':now': now },
    });

  async function take(wanted: number, now: number): Promise<TokenGrant> {
    if (wanted <= 0) return { granted: 0, retryAfterMs: 0 };
    let n = Math.min(wanted, capPerSecond);
    let idle = false;
    for (let race = 0; race < maxRaces; race++) {
      const attempt: Attempt = idle ? await restart(n, now) : await spend(n, now);
      if (attempt.ok) {
        return { granted: n, retryAfterMs: n < wanted ? schedule.retryAfterMs(attempt.tat, now) : 0 };
      }
      idle = attempt.tat === undefined || attempt.tat < now;
      const fits = schedule.fitting(attempt.tat, now);
      if (fits === 0) return { granted: 0, retryAfterMs: schedule.retryAfterMs(attempt.tat ?? now, now) };
      n = Math.min(n, fits);
    }
    // Every try lost a race: others are spending the cap right now; come back shortly.
    return { granted: 0, retryAfterMs: Math.max(1, Math.ceil(schedule.tokenMs)) };
  }

  return { capPerSecond, take };
}
