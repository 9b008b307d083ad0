/**
 * The local stand-in for Lambda's DynamoDB Streams event source mapping: polls a table's stream on
 * DynamoDB Local and invokes a handler with the event Lambda would send (`DynamoDBStreamEvent`),
 * one batch at a time per shard, in order, parents before children. A batch whose handler throws
 * is delivered again, unchanged, until it succeeds (Lambda's default: retry until the records
 * expire, blocking the shard), so the handler must be idempotent under redelivery, as in AWS.
 */
import {
  type _Record,
  DescribeStreamCommand,
  type DynamoDBStreamsClient,
  ExpiredIteratorException,
  GetRecordsCommand,
  type GetRecordsCommandOutput,
  GetShardIteratorCommand,
  ListStreamsCommand,
  type AttributeValue as SdkAttributeValue,
  type Shard,
  type ShardIteratorType,
  TrimmedDataAccessException,
} from '@aws-sdk/client-dynamodb-streams';
import type { AttributeValue, DynamoDBRecord, DynamoDBStreamEvent } from 'aws-lambda';

export type StreamHandler = (event: DynamoDBStreamEvent) => Promise<unknown> | unknown;

export interface StreamPollerOptions {
  readonly streams: Pick<DynamoDBStreamsClient, 'send'>;
  readonly tableName: string;
  readonly handler: StreamHandler;
  /** Records per invocation (Lambda's BatchSize). @default 100 */
  readonly batchSize?: number;
  /**
   * Lambda's MaximumBatchingWindowInSeconds, in ms: records are gathered until `batchSize` or this
   * long after the first of them, then delivered as one batch. @default 0 (each read is a batch)
   */
  readonly maxBatchingWindowMs?: number;
  /** Pause after a pass that found nothing new. @default 200 */
  readonly idleDelayMs?: number;
  /** Pause before delivering a failed batch again. @default 500 */
  readonly retryDelayMs?: number;
  /** Attempts per batch before it is handed to `onBatchDropped` and skipped. @default Infinity (AWS's default) */
  readonly maxAttempts?: number;
  /** `TRIM_HORIZON` reads what the stream still holds; `LATEST` only what comes next. @default 'TRIM_HORIZON' */
  readonly startingPosition?: 'TRIM_HORIZON' | 'LATEST';
  readonly region?: string;
  /** A handler failure (it will be retried) or a polling error. */
  readonly onError?: (
    error: unknown,
    context: { readonly attempt?: number; readonly shardId?: string },
  ) => void;
  /** A batch that failed `maxAttempts` times (Lambda's on-failure destination). */
  readonly onBatchDropped?: (event: DynamoDBStreamEvent, error: unknown) => void;
}

export interface StreamPoller {
  readonly streamArn: string;
  /** Resolves after a whole pass, begun after the call, found no new record: everything written before is delivered. */
  caughtUp(): Promise<void>;
  /** Stops polling; a batch being delivered finishes first. */
  stop(): Promise<void>;
}

interface ShardCursor {
  readonly shardId: string;
  readonly parentShardId?: string;
  iterator?: string;
  lastSequenceNumber?: string;
  /** The shard is closed and read to its end. */
  finished: boolean;
  /** Read but not yet delivered: the batching window is still open. */
  gathered: _Record[];
  gatheringSince?: number;
}

/** The SDK decodes binary values to bytes and times to Dates; Lambda's event carries base64 and epoch seconds. */
export function toLambdaAttributeValue(value: SdkAttributeValue): AttributeValue {
  if (value.S !== undefined) return { S: value.S };
  if (value.N !== undefined) return { N: value.N };
  if (value.BOOL !== undefined) return { BOOL: value.BOOL };
  if (value.NULL !== undefined) return { NULL: value.NULL };
  if (value.B !== undefined) return { B: Buffer.from(value.B).toString('base64') };
  if (value.SS !== undefined) return { SS: value.SS };
  if (value.NS !== undefined) return { NS: value.NS };
  if (value.BS !== undefined) return { BS: value.BS.map((b) => Buffer.from(b).toString('base64')) };
  if (value.L !== undefined) return { L: value.L.map(toLambdaAttributeValue) };
  if (value.M !== undefined) return { M: toLambdaImage(value.M) };
  throw new Error(`Unknown attribute value: ${JSON.stringify(Object.keys(value))}`);
}

function toLambdaImage(image: Record<string, SdkAttributeValue>): Record<string, AttributeValue> {
  return Object.fromEntries(
    Object.entries(image).map(([name, value]) => [name, toLambdaAttributeValue(value)]),
  );
}

/** One stream record in the shape Lambda delivers it. */
export function toLambdaRecord(record: _Record, streamArn: string, region: string): DynamoDBRecord {
  const change = record.dynamodb ?? {};
  const created = change.ApproximateCreationDateTime;
  return {
    eventID: record.eventID,
    eventName: record.eventName,
    eventVersion: record.eventVersion ?? '1.1',
    eventSource: 'aws:dynamodb',
    awsRegion: record.awsRegion ?? region,
    eventSourceARN: streamArn,
    dynamodb: {
      ...(created ? { ApproximateCreationDateTime: Math.floor(created.getTime() / 1000) } : {}),
      ...(change.Keys ? { Keys: toLambdaImage(change.Keys) } : {}),
      ...(change.NewImage ? { NewImage: toLambdaImage(change.NewImage) } : {}),
      ...(change.OldImage ? { OldImage: toLambdaImage(change.OldImage) } : {}),
      ...(change.SequenceNumber ? { SequenceNumber: change.SequenceNumber } : {}),
      ...(change.SizeBytes !== undefined ? { SizeBytes: change.SizeBytes } : {}),
      ...(change.StreamViewType ? { StreamViewType: change.StreamViewType } : {}),
    },
  };
}

async function latestStreamArn(streams: StreamPollerOptions['streams'], tableName: string): Promise<string> {
  const listed = await streams.send(new ListStreamsCommand({ TableName: tableName }));
  const newest = (listed.Streams ?? [])
    .filter((s) => s.TableName === tableName && s.StreamArn)
    .sort((a, b) => (a.StreamLabel ?? '').localeCompare(b.StreamLabel ?? ''))
    .at(-1);
  if (!newest?.StreamArn)
    throw new Error(`Table ${tableName} has no stream; its definition must declare one`);
  return newest.StreamArn;
}

async function listShards(streams: StreamPollerOptions['streams'], streamArn: string): Promise<Shard[]> {
  const shards: Shard[] = [];
  let start: string | undefined;
  do {
    const out = await streams.send(
      new DescribeStreamCommand({ StreamArn: streamArn, ...(start ? { ExclusiveStartShardId: start } : {}) }),
    );
    shards.push(...(out.StreamDescription?.Shards ?? []));
    start = out.StreamDescription?.LastEvaluatedShardId;
  } while (start);
  return shards;
}

function sleep(ms: number, wake: { current?: () => void }): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    wake.current = () => {
      clearTimeout(timer);
      resolve();
    };
  });
}

export async function startStreamPoller(options: StreamPollerOptions): Promise<StreamPoller> {
  const { streams } = options;
  const batchSize = options.batchSize ?? 100;
  const windowMs = options.maxBatchingWindowMs ?? 0;
  const idleDelayMs = options.idleDelayMs ?? 200;
  const retryDelayMs = options.retryDelayMs ?? 500;
  const maxAttempts = options.maxAttempts ?? Number.POSITIVE_INFINITY;
  const region = options.region ?? 'us-east-1';
  const streamArn = await latestStreamArn(streams, options.tableName);

  const shards = new Map<string, ShardCursor>();
  const wake: { current?: () => void } = {};
  let stopping = false;
  let pass = 0;
  /** A shard's iterator had to be renewed in the current pass, so the pass did not read it. */
  let unreadInPass = false;
  /** The pass before this one renewed an iterator too. */
  let renewedLastPass = false;
  const waiters: { after: number; resolve: () => void }[] = [];

  async function discoverShards(): Promise<void> {
    for (const shard of await listShards(streams, streamArn)) {
      if (!shard.ShardId || shards.has(shard.ShardId)) continue;
      shards.set(shard.ShardId, {
        shardId: shard.ShardId,
        ...(shard.ParentShardId ? { parentShardId: shard.ParentShardId } : {}),
        finished: false,
        gathered: [],
      });
    }
  }

  /** Lambda reads a child shard only after its parent, so one key's changes arrive in order. */
  function readable(cursor: ShardCursor): boolean {
    if (cursor.finished) return false;
    const parent = cursor.parentShardId ? shards.get(cursor.parentShardId) : undefined;
    return parent === undefined || parent.finished;
  }

  async function iteratorFor(cursor: ShardCursor): Promise<string | undefined> {
    const type: ShardIteratorType = cursor.lastSequenceNumber
      ? 'AFTER_SEQUENCE_NUMBER'
      : (options.startingPosition ?? 'TRIM_HORIZON');
    const out = await streams.send(
      new GetShardIteratorCommand({
        StreamArn: streamArn,
        ShardId: cursor.shardId,
        ShardIteratorType: type,
        ...(cursor.lastSequenceNumber ? { SequenceNumber: cursor.lastSequenceNumber } : {}),
      }),
    );
    return out.ShardIterator;
  }

  /** Delivers one batch until the handler accepts it (or it runs out of attempts). */
  async function deliver(event: DynamoDBStreamEvent, shardId: string): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await options.handler(structuredClone(event));
        return;
      } catch (error) {
        options.onError?.(error, { attempt, shardId });
        if (attempt >= maxAttempts) {
          options.onBatchDropped?.(event, error);
          return;
        }
        if (stopping) throw error;
        await sleep(retryDelayMs, wake);
      }
    }
  }

  /** Delivers what a shard gathered once the batch is full, its window closed or the shard ended. */
  async function deliverGathered(cursor: ShardCursor, force: boolean): Promise<number> {
    const gathered = cursor.gathered;
    if (gathered.length === 0) return 0;
    const windowClosed = Date.now() - (cursor.gatheringSince ?? 0) >= windowMs;
    if (!force && gathered.length < batchSize && !windowClosed) return 0;
    await deliver({ Records: gathered.map((r) => toLambdaRecord(r, streamArn, region)) }, cursor.shardId);
    cursor.lastSequenceNumber = gathered.at(-1)?.dynamodb?.SequenceNumber ?? cursor.lastSequenceNumber;
    cursor.gathered = [];
    cursor.gatheringSince = undefined;
    return gathered.length;
  }

  /** Reads a shard once; returns how many records it delivered. */
  async function readShard(cursor: ShardCursor): Promise<number> {
    cursor.iterator ??= await iteratorFor(cursor);
    if (!cursor.iterator) {
      cursor.finished = true;
      return deliverGathered(cursor, true);
    }
    let out: GetRecordsCommandOutput;
    try {
      out = await streams.send(
        new GetRecordsCommand({ ShardIterator: cursor.iterator, Limit: batchSize - cursor.gathered.length }),
      );
    } catch (error) {
      // An iterator outlives its use (15 minutes), or DynamoDB Local trims under an iterator taken
      // on an empty shard: take a fresh one after the last record read.
      if (!(error instanceof ExpiredIteratorException || error instanceof TrimmedDataAccessException))
        throw error;
      // The fresh iterator starts after the last record delivered: what was gathered is read again.
      cursor.iterator = undefined;
      cursor.gathered = [];
      cursor.gatheringSince = undefined;
      // This pass did not read the shard: it cannot tell a waiter that everything was delivered.
      unreadInPass = true;
      return 0;
    }
    const records = out.Records ?? [];
    if (records.length > 0 && cursor.gathered.length === 0) cursor.gatheringSince = Date.now();
    cursor.gathered.push(...records);
    cursor.iterator = out.NextShardIterator;
    if (!cursor.iterator) cursor.finished = true;
    return deliverGathered(cursor, cursor.finished);
  }

  async function onePass(): Promise<number> {
    await discoverShards();
    let delivered = 0;
    for (const cursor of shards.values()) {
      if (stopping) break;
      if (readable(cursor)) delivered += await readShard(cursor);
    }
    return delivered;
  }

  function settleWaiters(completedPass: number): void {
    for (let i = waiters.length - 1; i >= 0; i--) {
      const waiter = waiters[i];
      if (waiter && completedPass > waiter.after) {
        waiters.splice(i, 1);
        waiter.resolve();
      }
    }
  }

  const loop = (async () => {
    while (!stopping) {
      const current = ++pass;
      unreadInPass = false;
      let delivered = 0;
      try {
        delivered = await onePass();
      } catch (error) {
        if (stopping) break;
        options.onError?.(error, {});
        delivered = -1;
      }
      // Caught up only when nothing was delivered, nothing waits in an open batching window,
      // and every shard was read (not one whose iterator had to be renewed, DynamoDB Local's quirk).
      const gathering = [...shards.values()].some((cursor) => cursor.gathered.length > 0);
      if (delivered === 0 && !gathering && !unreadInPass) settleWaiters(current);
      // Drain a backlog without pausing, and read a renewed shard again at once (only once in a
      // row: a shard that keeps refusing fresh iterators is retried at the idle pace); pause when
      // idle, and longer after a polling error.
      const rereadAtOnce = unreadInPass && !renewedLastPass && delivered >= 0;
      renewedLastPass = unreadInPass;
      if (delivered > 0 || rereadAtOnce || stopping) continue;
      await sleep(delivered < 0 ? retryDelayMs : idleDelayMs, wake);
    }
    // Stopping closes every open batching window: what was gathered is delivered, not dropped.
    for (const cursor of shards.values()) await deliverGathered(cursor, true).catch(() => undefined);
    for (const waiter of waiters.splice(0)) waiter.resolve();
  })();

  return {
    streamArn,
    caughtUp() {
      if (stopping) return Promise.resolve();
      return new Promise((resolve) => {
        waiters.push({ after: pass, resolve });
        wake.current?.();
      });
    },
    async stop() {
      stopping = true;
      wake.current?.();
      await loop;
    },
  };
}
