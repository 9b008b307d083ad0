import { createHash } from 'node:crypto';
import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { afterEach, describe, expect, it } from 'vitest';
import type { QueueDefinition } from '../../../lambdas/definitions/queues.ts';
import {
  type DeadLetter,
  type LocalQueue,
  type LocalQueueOptions,
  type QueueConsumer,
  readBatchResponse,
  sqsMaxMessageBytes,
  startLocalQueue,
} from '../../../local/queues.ts';

interface Invocation {
  readonly event: SQSEvent;
  readonly context: Context;
  /** Epoch ms. */
  readonly at: number;
}

const definition: QueueDefinition = {
  description: 'test queue',
  function: 'acknowledge',
  batchSize: 3,
  maxBatchingWindowSeconds: 1,
  visibilityTimeoutSeconds: 180,
  maxReceiveCount: 3,
};

const started: LocalQueue[] = [];

afterEach(async () => {
  await Promise.all(started.splice(0).map((queue) => queue.stop()));
});

/** A queue whose function records each batch and answers with `respond` (which may throw). */
function queueWith(
  respond: (event: SQSEvent, call: number) => unknown,
  options: Partial<Omit<LocalQueueOptions, 'definition'>> & {
    readonly definition?: Partial<QueueDefinition>;
  } = {},
) {
  const invocations: Invocation[] = [];
  const consumer: QueueConsumer = async (event, context) => {
    invocations.push({ event, context, at: Date.now() });
    return respond(event, invocations.length);
  };
  const queue = startLocalQueue({
    name: 'reports',
    region: 'eu-west-1',
    accountId: '111122223333',
    visibilityTimeoutMs: 50,
    maxBatchingWindowMs: 10,
    resolveFunction: (name) => (name === 'acknowledge' ? consumer : undefined),
    ...options,
    definition: { ...definition, ...options.definition },
  });
  started.push(queue);
  return { queue, invocations };
}

const bodiesOf = (invocation: Invocation | undefined): string[] =>
  invocation?.event.Records.map((record) => record.body) ?? [];

const failing =
  (...bodies: string[]) =>
  (event: SQSEvent): SQSBatchResponse => ({
    batchItemFailures: event.Records.filter((r) => bodies.includes(r.body)).map((r) => ({
      itemIdentifier: r.messageId,
    })),
  });

describe('local queue: sending', () => {
  it('refuses a body over 256 KiB, as SendMessage does, and takes one of exactly 256 KiB', async () => {
    const { queue, invocations } = queueWith(() => undefined);
    expect(queue.send('x'.repeat(sqsMaxMessageBytes + 1))).toEqual({
      ok: false,
      code: 'InvalidParameterValue',
      message: expect.stringContaining('Message must be shorter than 262144 bytes'),
    });
    // Bytes, not characters: 'é' is two of them in UTF-8.
    expect(queue.send('é'.repeat(sqsMaxMessageBytes / 2 + 1)).ok).toBe(false);
    expect(queue.send('x'.repeat(sqsMaxMessageBytes))).toEqual({ ok: true, messageId: expect.any(String) });
    await queue.idle();
    expect(invocations.flatMap((i) => bodiesOf(i).map((b) => b.length))).toEqual([sqsMaxMessageBytes]);
  });

  it('names itself as SQS does and refuses messages once stopped', async () => {
    const { queue } = queueWith(() => undefined);
    expect(queue.url).toBe('https://sqs.eu-west-1.amazonaws.com/111122223333/reports');
    expect(queue.arn).toBe('arn:aws:sqs:eu-west-1:111122223333:reports');
    await queue.stop();
    expect(queue.send('late')).toMatchObject({ ok: false, code: 'QueueStopped' });
  });
});

describe('local queue: the event source mapping', () => {
  it('invokes the function with the SQS event Lambda sends', async () => {
    const { queue, invocations } = queueWith(() => undefined);
    const before = Date.now();
    const sent = queue.send('{"thingName":"t-1"}');
    await queue.idle();

    expect(invocations).toHaveLength(1);
    const [invocation] = invocations;
    const [record] = invocation?.event.Records ?? [];
    expect(record).toEqual({
      messageId: sent.ok ? sent.messageId : 'not sent',
      receiptHandle: expect.any(String),
      body: '{"thingName":"t-1"}',
      attributes: {
        ApproximateReceiveCount: '1',
        SentTimestamp: expect.any(String),
        SenderId: expect.any(String),
        ApproximateFirstReceiveTimestamp: expect.any(String),
      },
      messageAttributes: {},
      md5OfBody: createHash('md5').update('{"thingName":"t-1"}').digest('hex'),
      eventSource: 'aws:sqs',
      eventSourceARN: 'arn:aws:sqs:eu-west-1:111122223333:reports',
      awsRegion: 'eu-west-1',
    });
    const sentAt = Number(record?.attributes.SentTimestamp);
    expect(sentAt).toBeGreaterThanOrEqual(before);
    expect(Number(record?.attributes.ApproximateFirstReceiveTimestamp)).toBeGreaterThanOrEqual(sentAt);
    expect(invocation?.context.invokedFunctionArn).toBe(
      'arn:aws:lambda:eu-west-1:111122223333:function:acknowledge',
    );
  });

  it('hands out full batches at once and the rest when the batching window has passed', async () => {
    const windowMs = 400;
    const { queue, invocations } = queueWith(() => undefined, { maxBatchingWindowMs: windowMs });
    const sentAt = Date.now();
    for (const n of [1, 2, 3, 4, 5, 6, 7]) queue.send(`m${n}`);
    await queue.idle();

    expect(invocations.map(bodiesOf)).toEqual([['m1', 'm2', 'm3'], ['m4', 'm5', 'm6'], ['m7']]);
    const [first, second, last] = invocations.map((i) => i.at - sentAt);
    expect(first).toBeLessThan(windowMs);
    expect(second).toBeLessThan(windowMs);
    expect(last).toBeGreaterThanOrEqual(windowMs - 2);
  });

  it('gathers messages sent within the window into one batch', async () => {
    const { queue, invocations } = queueWith(() => undefined, { maxBatchingWindowMs: 200 });
    queue.send('early');
    await new Promise((resolve) => setTimeout(resolve, 50));
    queue.send('later');
    await queue.idle();
    expect(invocations.map(bodiesOf)).toEqual([['early', 'later']]);
  });

  it('runs at most `concurrency` batches at once', async () => {
    let running = 0;
    let most = 0;
    const { queue, invocations } = queueWith(
      async () => {
        running++;
        most = Math.max(most, running);
        await new Promise((resolve) => setTimeout(resolve, 30));
        running--;
      },
      { concurrency: 2, definition: { batchSize: 1 } },
    );
    for (const n of [1, 2, 3, 4, 5]) queue.send(`m${n}`);
    await queue.idle();
    expect(invocations).toHaveLength(5);
    expect(most).toBe(2);
  });
});

describe('local queue: outcomes', () => {
  it('deletes the messages of a batch answered with no failures', async () => {
    const { queue, invocations } = queueWith(() => ({ batchItemFailures: [] }));
    queue.send('a');
    queue.send('b');
    await queue.idle();
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(invocations.map(bodiesOf)).toEqual([['a', 'b']]);
  });

  it('delivers only the reported failures again, after the visibility timeout, one receive count up', async () => {
    const { queue, invocations } = queueWith(
      (event, call) => (call === 1 ? failing('b')(event) : undefined),
      {
        visibilityTimeoutMs: 120,
      },
    );
    for (const body of ['a', 'b', 'c']) queue.send(body);
    await queue.idle();

    expect(invocations.map(bodiesOf)).toEqual([['a', 'b', 'c'], ['b']]);
    const [first, second] = invocations;
    expect((second?.at ?? 0) - (first?.at ?? 0)).toBeGreaterThanOrEqual(118);
    const firstB = first?.event.Records[1];
    const again = second?.event.Records[0];
    expect(again?.messageId).toBe(firstB?.messageId);
    expect(again?.attributes.ApproximateReceiveCount).toBe('2');
    expect(again?.attributes.ApproximateFirstReceiveTimestamp).toBe(
      firstB?.attributes.ApproximateFirstReceiveTimestamp,
    );
    expect(again?.receiptHandle).not.toBe(firstB?.receiptHandle);
  });

  it('delivers the whole batch again when the function throws', async () => {
    const { queue, invocations } = queueWith((_event, call) => {
      if (call === 1) throw new Error('table unavailable');
    });
    queue.send('a');
    queue.send('b');
    await queue.idle();
    expect(invocations.map(bodiesOf)).toEqual([
      ['a', 'b'],
      ['a', 'b'],
    ]);
    expect(invocations[1]?.event.Records.map((r) => r.attributes.ApproximateReceiveCount)).toEqual([
      '2',
      '2',
    ]);
  });

  it.each([
    ['an itemIdentifier not in the batch', { batchItemFailures: [{ itemIdentifier: 'not-a-message' }] }],
    ['an empty itemIdentifier', { batchItemFailures: [{ itemIdentifier: '' }] }],
    ['a failure with the wrong key', { batchItemFailures: [{ messageId: 'x' }] }],
    ['batchItemFailures that is not a list', { batchItemFailures: 'a' }],
    ['a response that is not an object', 'done'],
  ])('fails the whole batch on %s', async (_case, response) => {
    const { queue, invocations } = queueWith((_event, call) => (call === 1 ? response : undefined));
    queue.send('a');
    queue.send('b');
    await queue.idle();
    expect(invocations.map(bodiesOf)).toEqual([
      ['a', 'b'],
      ['a', 'b'],
    ]);
  });

  it('moves a message that failed its maxReceiveCount-th delivery to the dead letters', async () => {
    const letters: DeadLetter[] = [];
    const { queue, invocations } = queueWith(failing('poison'), { onDeadLetter: (l) => letters.push(l) });
    queue.send('poison');
    queue.send('fine');
    await queue.idle();

    expect(invocations.map(bodiesOf)).toEqual([['poison', 'fine'], ['poison'], ['poison']]);
    expect(queue.deadLetters()).toEqual([
      {
        queueName: 'reports',
        messageId: invocations[0]?.event.Records[0]?.messageId,
        body: 'poison',
        receiveCount: 3,
        sentTimestamp: expect.any(Number),
        lastError: expect.objectContaining({ message: 'Reported as a batch item failure' }),
      },
    ]);
    expect(letters).toEqual(queue.deadLetters());
  });

  it('keeps the newest dead letters up to its limit', async () => {
    const { queue } = queueWith(
      () => {
        throw new Error('down');
      },
      { deadLetterLimit: 2, definition: { maxReceiveCount: 1 } },
    );
    for (const body of ['a', 'b', 'c']) queue.send(body);
    await queue.idle();
    expect(queue.deadLetters().map((l) => [l.body, (l.lastError as Error).message])).toEqual([
      ['b', 'down'],
      ['c', 'down'],
    ]);
  });
});

describe('local queue: idle and stop', () => {
  it('is idle only once a failed message has been delivered again and done', async () => {
    const { queue, invocations } = queueWith((event, call) => (call === 1 ? failing('a')(event) : undefined));
    queue.send('a');
    expect(queue.isIdle()).toBe(false);
    await queue.idle();
    expect(queue.isIdle()).toBe(true);
    expect(invocations).toHaveLength(2);
  });

  it('does not wait for a function that is not registered, and delivers once it is', async () => {
    const received: string[] = [];
    let registered: QueueConsumer | undefined;
    const queue = startLocalQueue({
      name: 'orphan',
      definition,
      region: 'us-east-1',
      accountId: '123456789012',
      maxBatchingWindowMs: 0,
      resolveFunction: () => registered,
    });
    started.push(queue);
    queue.send('waiting');
    await queue.idle();
    expect(received).toEqual([]);

    registered = async (event) => {
      received.push(...event.Records.map((r) => r.body));
    };
    await expect.poll(() => received, { timeout: 2000 }).toEqual(['waiting']);
  });

  it('delivers what it holds when stopped, without waiting out the batching window', async () => {
    const { queue, invocations } = queueWith(() => undefined, { maxBatchingWindowMs: 60_000 });
    queue.send('a');
    const stopping = Date.now();
    await queue.stop();
    expect(invocations.map(bodiesOf)).toEqual([['a']]);
    expect(Date.now() - stopping).toBeLessThan(5000);
  });
});

describe('reading the batch response', () => {
  const ids = new Set(['m-1', 'm-2']);

  it.each([
    ['no response', undefined],
    ['null', null],
    ['an object without batchItemFailures', { kind: 'done' }],
    ['a null list', { batchItemFailures: null }],
    ['an empty list', { batchItemFailures: [] }],
  ])('takes %s as complete success', (_case, response) => {
    expect(readBatchResponse(response, ids)).toEqual({ kind: 'done', failedIds: new Set() });
  });

  it('names the failed messages', () => {
    expect(readBatchResponse({ batchItemFailures: [{ itemIdentifier: 'm-2' }] }, ids)).toEqual({
      kind: 'done',
      failedIds: new Set(['m-2']),
    });
  });

  it.each([
    ['an unknown id', { batchItemFailures: [{ itemIdentifier: 'm-3' }] }],
    ['a null id', { batchItemFailures: [{ itemIdentifier: null }] }],
    ['a null item', { batchItemFailures: [null] }],
    ['an array response', []],
  ])('fails the batch on %s', (_case, response) => {
    expect(readBatchResponse(response, ids)).toMatchObject({ kind: 'failed' });
  });
});
