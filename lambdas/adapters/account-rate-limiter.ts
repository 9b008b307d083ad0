import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import { type DynamoDBDocumentClient, GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';

/**
 * The account-wide cap on shadow updates per second, shared by every fan-out worker of every
 * deployment: a token bucket kept in one item (pk `#account-rate`) of the deployments table.
 * Each grab reads the item, refills it for the time passed and takes what it can with a write
 * conditioned on the item being unchanged (optimistic lock on `at` and `tokens`); a lost race
 * re-reads. Grabs are small (a fraction of a second's worth), so concurrent workers share the
 * cap fairly and a grab never holds more than it will spend soon.
 *
 * Tokens are kept in milli-tokens so that a cap in tokens per second refills an integer amount
 * per millisecond: `cap` milli-tokens/ms. The bucket holds at most one second's worth.
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
  /** Lost races retried before answering "nothing granted, try again soon". @default 5 */
  readonly maxRaces?: number;
}

interface BucketState {
  /** Milli-tokens. */
  readonly milliTokens: number;
  readonly at: number;
}

const MILLI = 1000;

/** The bucket after refilling up to `now`; full (one second's worth) when it did not exist. */
export function refillAccountBucket(
  stored: BucketState | undefined,
  capPerSecond: number,
  now: number,
): BucketState {
  const capacity = capPerSecond * MILLI;
  if (!stored) return { milliTokens: capacity, at: now };
  // A worker whose clock is behind the last writer's gets no credit for negative time.
  const elapsed = Math.max(0, now - stored.at);
  return {
    milliTokens: Math.min(capacity, stored.milliTokens + elapsed * capPerSecond),
    at: Math.max(stored.at, now),
  };
}

export function makeAccountRateLimiter(options: AccountRateLimiterOptions): AccountRateLimiter {
  const { db, tableName, capPerSecond } = options;
  const pk = options.partitionKey ?? 'deploymentId';
  const key = { [pk]: ACCOUNT_RATE_ITEM_KEY };
  const maxRaces = options.maxRaces ?? 5;
  if (!Number.isInteger(capPerSecond) || capPerSecond <= 0) {
    throw new Error(`bug: the account cap must be a positive integer, not ${capPerSecond}`);
  }

  async function read(): Promise<BucketState | undefined> {
    const out = await db.send(new GetCommand({ TableName: tableName, Key: key, ConsistentRead: true }));
    const item = out.Item;
    if (!item || typeof item.milliTokens !== 'number' || typeof item.at !== 'number') return undefined;
    return { milliTokens: item.milliTokens, at: item.at };
  }

  async function write(next: BucketState, previous: BucketState | undefined): Promise<boolean> {
    try {
      await db.send(
        new PutCommand({
          TableName: tableName,
          Item: { ...key, milliTokens: next.milliTokens, at: next.at, capPerSecond },
          // Tokens are taken once: the write applies only to the bucket as this grab read it, so
          // two workers racing on one state cannot both spend the same tokens.
          ConditionExpression: previous
            ? 'milliTokens = :tokens AND #at = :at'
            : 'attribute_not_exists(milliTokens)',
          ...(previous
            ? {
                ExpressionAttributeNames: { '#at': 'at' },
                ExpressionAttributeValues: { ':tokens': previous.milliTokens, ':at': previous.at },
              }
            : {}),
        }),
      );
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw error;
    }
  }

  async function take(wanted: number, now: number): Promise<TokenGrant> {
    if (wanted <= 0) return { granted: 0, retryAfterMs: 0 };
    for (let race = 0; race < maxRaces; race++) {
      const stored = await read();
      const filled = refillAccountBucket(stored, capPerSecond, now);
      const granted = Math.min(wanted, Math.floor(filled.milliTokens / MILLI));
      const retryAfterMs =
        granted < wanted ? Math.ceil((MILLI - (filled.milliTokens - granted * MILLI)) / capPerSecond) : 0;
      if (granted === 0) return { granted, retryAfterMs };
      const next = { milliTokens: filled.milliTokens - granted * MILLI, at: filled.at };
      if (await write(next, stored)) return { granted, retryAfterMs };
    }
    // Every try lost a race: others are spending the cap right now; come back shortly.
    return { granted: 0, retryAfterMs: Math.max(1, Math.ceil(MILLI / capPerSecond)) };
  }

  return { capPerSecond, take };
}
