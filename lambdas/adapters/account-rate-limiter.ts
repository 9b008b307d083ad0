import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { type DynamoDBDocumentClient, UpdateCommand, type UpdateCommandInput } from '@aws-sdk/lib-dynamodb';
import { retryKindOf } from './aws-http.ts';

/**
 * The account-wide cap on shadow updates per second, shared by every fan-out worker of every
 * deployment: one item (pk `#account-rate`) of the deployments table, kept as a GCRA (the
 * "generic cell rate algorithm", a token bucket stored as one instant): `tatUs`, the theoretical
 * arrival time in epoch microseconds, is when the bucket would be full again. Taking n tokens
 * moves it n × (1 s / cap) later, allowed while it stays within one second (the bucket's depth)
 * of now.
 *
 * Why this shape: the move is a plain `SET tatUs = tatUs + :cost` under a range condition, so workers
 * taking at the same moment do not conflict; a bucket of tokens and a timestamp needs a read and
 * a write locked to it, and with 16 workers three writes in four lost their race (session 8's
 * fan-out benchmark: 1,950 refused of 2,615). A grab is one request; an idle bucket (`tatUs` past)
 * is restarted with one more, and a refused grab answers with `tatUs` as it is, so what still fits
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
  /**
   * Best without retries of its own (`fastDocumentClientOnce`): a grab sent again later carries a
   * stale time, and a restart landing late would leave the bucket looking idle.
   */
  readonly db: Pick<DynamoDBDocumentClient, 'send'>;
  readonly tableName: string;
  readonly capPerSecond: number;
  /** The table's partition key attribute. @default 'deploymentId' */
  readonly partitionKey?: string;
  /** Refused grabs retried (a restart lost to another, a grab shrunk to what fits). @default 5 */
  readonly maxRaces?: number;
}

/** The bucket holds one second's worth of the cap; times are whole microseconds, so that
 * DynamoDB's decimal arithmetic and ours agree exactly (a float `tat` could fit by our sums and
 * not by DynamoDB's, and the same refused grab would be sent again and again). */
const DEPTH_US = 1_000_000;
/** Far enough ahead that the token-bucket version of the limiter sees an empty bucket that never refills. */
const OLD_BUCKET_HELD_UNTIL_MS = 8_640_000_000_000_000;
/** A grab DynamoDB could not answer (throttled, 5xx) is not retried with its stale time: asked again later. */
const UNANSWERED_RETRY_MS = 100;

/** The pure arithmetic of the cap in whole microseconds: what a token costs, what fits, how long until one more. */
export function accountRateSchedule(capPerSecond: number) {
  // Rounded up: the cap is never exceeded, at most a hair undershot (300/s gives 299.94/s).
  const tokenUs = Math.ceil(DEPTH_US / capPerSecond);
  const full = Math.floor(DEPTH_US / tokenUs);
  return {
    tokenUs,
    /** `tat` may be at most this when `n` tokens are taken at `nowUs`. */
    latestTatFor: (n: number, nowUs: number) => nowUs + DEPTH_US - n * tokenUs,
    /** Tokens that fit at `nowUs` with the bucket at `tat` (a whole second's when it is idle). */
    fitting: (tat: number | undefined, nowUs: number) =>
      tat === undefined || tat < nowUs ? full : Math.max(0, Math.floor((nowUs + DEPTH_US - tat) / tokenUs)),
    /** How long after `nowUs` one more token fits, in ms, the bucket being at `tat`. */
    retryAfterMs: (tat: number, nowUs: number) =>
      Math.max(1, Math.ceil((tat + tokenUs - DEPTH_US - nowUs) / 1000)),
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
      return { ok: true, tat: Number(out.Attributes?.tatUs) };
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
      // Left marshalled by both document clients, as the SDK leaves items in errors.
      const tat = error.Item?.tatUs?.N;
      return tat === undefined ? { ok: false } : { ok: false, tat: Number(tat) };
    }
  }

  /** Takes n tokens from a bucket in use (`tat` not past). */
  const spend = (n: number, nowUs: number) =>
    conditional({
      UpdateExpression: 'SET tatUs = tatUs + :cost',
      ConditionExpression: 'tatUs >= :now AND tatUs <= :latest',
      ExpressionAttributeValues: {
        ':cost': n * schedule.tokenUs,
        ':now': nowUs,
        ':latest': schedule.latestTatFor(n, nowUs),
      },
    });

  /** Takes n tokens from an idle bucket (or none yet): it starts full at `now`. */
  const restart = (n: number, nowUs: number) =>
    conditional({
      // The token-bucket version's fields say "empty until far ahead": a worker of that version
      // still running after an upgrade takes nothing rather than a full second of its own.
      UpdateExpression: 'SET tatUs = :tat, capPerSecond = :cap, milliTokens = :zero, #at = :held',
      ConditionExpression: 'attribute_not_exists(tatUs) OR tatUs < :now',
      ExpressionAttributeNames: { '#at': 'at' },
      ExpressionAttributeValues: {
        ':tat': nowUs + n * schedule.tokenUs,
        ':cap': capPerSecond,
        ':now': nowUs,
        ':zero': 0,
        ':held': OLD_BUCKET_HELD_UNTIL_MS,
      },
    });

  async function grab(wanted: number, nowUs: number): Promise<TokenGrant> {
    let n = Math.min(wanted, capPerSecond);
    let idle = false;
    for (let race = 0; race < maxRaces; race++) {
      const attempt: Attempt = idle ? await restart(n, nowUs) : await spend(n, nowUs);
      if (attempt.ok) {
        return { granted: n, retryAfterMs: n < wanted ? schedule.retryAfterMs(attempt.tat, nowUs) : 0 };
      }
      idle = attempt.tat === undefined || attempt.tat < nowUs;
      const fits = schedule.fitting(attempt.tat, nowUs);
      if (fits === 0) return { granted: 0, retryAfterMs: schedule.retryAfterMs(attempt.tat ?? nowUs, nowUs) };
      n = Math.min(n, fits);
    }
    // Every try lost a race: others are spending the cap right now; come back shortly.
    return { granted: 0, retryAfterMs: Math.max(1, Math.ceil(schedule.tokenUs / 1000)) };
  }

  async function take(wanted: number, now: number): Promise<TokenGrant> {
    if (wanted <= 0) return { granted: 0, retryAfterMs: 0 };
    try {
      return await grab(wanted, Math.round(now * 1000));
    } catch (error) {
      if (retryKindOf(error) === undefined) throw error;
      return { granted: 0, retryAfterMs: UNANSWERED_RETRY_MS };
    }
  }

  return { capPerSecond, take };
}
