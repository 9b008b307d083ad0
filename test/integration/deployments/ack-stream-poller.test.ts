import { randomUUID } from 'node:crypto';
import {
  DeleteItemCommand,
  DynamoDBClient,
  PutItemCommand,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { DynamoDBStreamsClient, TrimmedDataAccessException } from '@aws-sdk/client-dynamodb-streams';
import type { DynamoDBRecord, DynamoDBStreamEvent } from 'aws-lambda';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { executionsTable } from '../../../lambdas/definitions/tables.ts';
import { type StreamPoller, startStreamPoller } from '../../../local/streams.ts';
import { ensureTable } from '../../../local/tables.ts';

const aws = { region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } };
const db = new DynamoDBClient({ ...aws, endpoint: inject('ddbEndpoint') });
const streams = new DynamoDBStreamsClient({ ...aws, endpoint: inject('ddbEndpoint') });
const pollers: StreamPoller[] = [];

async function freshTable(): Promise<string> {
  const name = `ack-stream-poller-${randomUUID().slice(0, 8)}`;
  await ensureTable(db, executionsTable, name);
  return name;
}

function putExecution(table: string, thingName: string, state: string) {
  return db.send(
    new PutItemCommand({
      TableName: table,
      Item: {
        deploymentId: { S: 'd-1' },
        thingName: { S: thingName },
        state: { S: state },
        attempt: { N: '1' },
        blob: { B: new Uint8Array([1, 2, 3]) },
      },
    }),
  );
}

function setState(table: string, thingName: string, state: string) {
  return db.send(
    new UpdateItemCommand({
      TableName: table,
      Key: { deploymentId: { S: 'd-1' }, thingName: { S: thingName } },
      UpdateExpression: 'SET #s = :s',
      ExpressionAttributeNames: { '#s': 'state' },
      ExpressionAttributeValues: { ':s': { S: state } },
    }),
  );
}

async function poll(
  table: string,
  handler: (event: DynamoDBStreamEvent) => Promise<void> | void,
  maxBatchingWindowMs?: number,
) {
  const poller = await startStreamPoller({
    streams,
    tableName: table,
    handler,
    idleDelayMs: 20,
    retryDelayMs: 20,
    ...(maxBatchingWindowMs !== undefined ? { maxBatchingWindowMs } : {}),
  });
  pollers.push(poller);
  return poller;
}

afterAll(async () => {
  await Promise.all(pollers.map((p) => p.stop()));
  db.destroy();
  streams.destroy();
});

describe('local DynamoDB Streams poller', () => {
  it('is not caught up after a pass in which an iterator had to be renewed: the records behind it come first', async () => {
    const table = await freshTable();
    const states: string[] = [];
    // DynamoDB Local sometimes refuses an iterator taken on an empty shard once records arrive
    // (TrimmedDataAccessException). Injected: every read from the writes on is refused, and the
    // next two after the wait begins (whichever pass is under way, one that begins after it too).
    let writesDone = false;
    let refusalsLeft = Number.POSITIVE_INFINITY;
    let refused = 0;
    const flaky = {
      send: ((command: { constructor: { name: string } }) => {
        if (writesDone && refusalsLeft > 0 && command.constructor.name === 'GetRecordsCommand') {
          refusalsLeft--;
          refused++;
          return Promise.reject(new TrimmedDataAccessException({ message: 'trimmed', $metadata: {} }));
        }
        return streams.send(command as never);
      }) as DynamoDBStreamsClient['send'],
    };
    const poller = await startStreamPoller({
      streams: flaky,
      tableName: table,
      handler: (event) => {
        states.push(...event.Records.map((r) => String(r.dynamodb?.NewImage?.state?.S)));
      },
      idleDelayMs: 20,
    });
    pollers.push(poller);
    await poller.caughtUp();
    writesDone = true;
    await putExecution(table, 'thing-t', 'queued');
    await setState(table, 'thing-t', 'notified');
    await new Promise((resolve) => setTimeout(resolve, 100));
    refusalsLeft = 2;
    await poller.caughtUp();
    expect(refused).toBeGreaterThan(2);
    expect(states).toEqual(['queued', 'notified']);
  });

  it('delivers INSERT, MODIFY and REMOVE in order, in the shape Lambda sends', async () => {
    const table = await freshTable();
    const records: DynamoDBRecord[] = [];
    const poller = await poll(table, (event) => {
      records.push(...event.Records);
    });

    await putExecution(table, 'thing-a', 'queued');
    await setState(table, 'thing-a', 'notified');
    await db.send(
      new DeleteItemCommand({
        TableName: table,
        Key: { deploymentId: { S: 'd-1' }, thingName: { S: 'thing-a' } },
      }),
    );
    await poller.caughtUp();

    expect(records.map((r) => r.eventName)).toEqual(['INSERT', 'MODIFY', 'REMOVE']);
    const [insert, modify, remove] = records;
    expect(insert?.eventSource).toBe('aws:dynamodb');
    expect(insert?.eventSourceARN).toBe(poller.streamArn);
    expect(insert?.dynamodb?.NewImage?.state).toEqual({ S: 'queued' });
    expect(insert?.dynamodb?.NewImage?.attempt).toEqual({ N: '1' });
    // Lambda's event carries binary values as base64 and the creation time as epoch seconds.
    expect(insert?.dynamodb?.NewImage?.blob).toEqual({ B: Buffer.from([1, 2, 3]).toString('base64') });
    expect(typeof insert?.dynamodb?.ApproximateCreationDateTime).toBe('number');
    expect(modify?.dynamodb?.OldImage?.state).toEqual({ S: 'queued' });
    expect(modify?.dynamodb?.NewImage?.state).toEqual({ S: 'notified' });
    expect(remove?.dynamodb?.OldImage?.state).toEqual({ S: 'notified' });
    const sequence = records.map((r) => BigInt(r.dynamodb?.SequenceNumber ?? '0'));
    expect([...sequence].sort((a, b) => (a < b ? -1 : 1))).toEqual(sequence);
  });

  it('delivers a failed batch again, unchanged, before anything after it', async () => {
    const table = await freshTable();
    const deliveries: string[][] = [];
    let failuresLeft = 2;
    const poller = await poll(table, (event) => {
      deliveries.push(event.Records.map((r) => r.dynamodb?.SequenceNumber ?? ''));
      if (failuresLeft-- > 0) throw new Error('handler failed');
    });

    await putExecution(table, 'thing-b', 'queued');
    await putExecution(table, 'thing-c', 'queued');
    await poller.caughtUp();
    await setState(table, 'thing-b', 'notified');
    await poller.caughtUp();

    const [first, second, third, fourth] = deliveries;
    expect(first?.length).toBeGreaterThan(0);
    expect(second).toEqual(first);
    expect(third).toEqual(first);
    expect(fourth).toHaveLength(1);
    expect(BigInt(fourth?.[0] ?? '0')).toBeGreaterThan(BigInt(first?.at(-1) ?? '0'));
  });

  it('splits a backlog into batches of at most batchSize records', async () => {
    const table = await freshTable();
    for (let i = 0; i < 5; i++) await putExecution(table, `thing-${i}`, 'queued');
    const sizes: number[] = [];
    const poller = await startStreamPoller({
      streams,
      tableName: table,
      handler: (event) => {
        sizes.push(event.Records.length);
      },
      batchSize: 2,
      idleDelayMs: 20,
    });
    pollers.push(poller);
    await poller.caughtUp();
    expect(sizes).toEqual([2, 2, 1]);
  });

  it('gathers records for its batching window and delivers them as one batch, caught up only after', async () => {
    const table = await freshTable();
    const batches: { at: number; things: string[] }[] = [];
    const poller = await poll(
      table,
      (event) => {
        batches.push({
          at: Date.now(),
          things: event.Records.map((r) => r.dynamodb?.NewImage?.thingName?.S ?? ''),
        });
      },
      2000,
    );
    const started = Date.now();
    for (let i = 0; i < 4; i++) {
      await putExecution(table, `thing-w${i}`, 'queued');
      await new Promise((r) => setTimeout(r, 40));
    }
    await poller.caughtUp();

    // Written over a few hundred ms, read by several polls, delivered once the window closed.
    expect(batches.map((b) => b.things)).toEqual([['thing-w0', 'thing-w1', 'thing-w2', 'thing-w3']]);
    expect((batches[0]?.at ?? 0) - started).toBeGreaterThanOrEqual(1900);
  });

  it('refuses a table that has no stream', async () => {
    const name = `ack-no-stream-${randomUUID().slice(0, 8)}`;
    await ensureTable(db, { ...executionsTable, stream: undefined }, name);
    await expect(startStreamPoller({ streams, tableName: name, handler: () => {} })).rejects.toThrow(
      /has no stream/,
    );
  });
});
