import type { SQSEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { QueueDefinition, QueueId } from '../../../lambdas/definitions/queues.ts';
import type { TopicRuleDefinition } from '../../../lambdas/definitions/rules.ts';
import { type LocalIotCore, startLocalIotCore } from '../../../local/iot/index.ts';
import { sqsMaxMessageBytes } from '../../../local/queues.ts';
import { Device } from './support.ts';

/** The bodies of every batch the queue's function received. */
const batches: string[][] = [];

const reports: QueueDefinition = {
  description: 'reports for the test function',
  function: 'acknowledge',
  batchSize: 10,
  maxBatchingWindowSeconds: 1,
  visibilityTimeoutSeconds: 180,
  maxReceiveCount: 2,
};

const rules = [
  {
    name: 'ToQueue',
    sql: "SELECT state.reported AS reported, topic(3) AS thingName FROM 'ota/things/+/report'",
    awsIotSqlVersion: '2016-03-23',
    actions: [{ sqs: { queue: 'acknowledgements' } }],
    errorAction: { republish: { topic: 'errors/to-queue' } },
  },
  {
    name: 'ToMissingQueue',
    sql: "SELECT * FROM 'ota/things/+/lost'",
    awsIotSqlVersion: '2016-03-23',
    // A queue the definitions do not have: only a hand-written rule can name one.
    actions: [{ sqs: { queue: 'not-created' as QueueId } }],
    errorAction: { republish: { topic: 'errors/missing-queue' } },
  },
] satisfies TopicRuleDefinition[];

let iot: LocalIotCore;
let observer: Device;

beforeAll(async () => {
  iot = await startLocalIotCore({
    rules,
    queues: { acknowledgements: reports },
    // Long enough that a rulesIdle() that did not wait for the queue would return before delivery.
    queueOptions: { maxBatchingWindowMs: 300, visibilityTimeoutMs: 50 },
    resolveLambda: (name) =>
      name === 'acknowledge'
        ? async (event) => {
            batches.push((event as SQSEvent).Records.map((record) => record.body));
          }
        : undefined,
    adminClientIds: ['observer'],
  });
  observer = await Device.connect(iot.endpoints.mqtt, 'observer');
  await observer.subscribe('errors/#');
});

afterAll(async () => {
  await observer.end();
  await iot.stop();
});

describe('rules engine: sqs action', () => {
  it('sends the SELECT result as JSON text, and rulesIdle waits for the queue to deliver it', async () => {
    const device = await Device.connect(iot.endpoints.mqtt, 'sqs-dev');
    device.publish('ota/things/sqs-dev/report', { state: { reported: { ota: { state: 'succeeded' } } } });
    device.publish('ota/things/sqs-dev/report', { state: { reported: { ota: { state: 'failed' } } } });
    await expect.poll(() => iot.queues.get('acknowledgements')?.isIdle()).toBe(false);
    await iot.rulesIdle();

    expect(batches.flat().map((body) => JSON.parse(body))).toEqual([
      { reported: { ota: { state: 'succeeded' } }, thingName: 'sqs-dev' },
      { reported: { ota: { state: 'failed' } }, thingName: 'sqs-dev' },
    ]);
    // Both reports within the batching window: one invocation.
    expect(batches).toHaveLength(1);
    expect(observer.on('errors/to-queue')).toEqual([]);
    await device.end();
  });

  it('sends an action whose queue does not exist to the error action, as AWS’s SqsAction failure', async () => {
    const device = await Device.connect(iot.endpoints.mqtt, 'lost-dev');
    device.publish('ota/things/lost-dev/lost', { n: 1 });
    const error = await observer.next('errors/missing-queue');
    expect(error.body).toEqual({
      ruleName: 'ToMissingQueue',
      topic: 'ota/things/lost-dev/lost',
      cloudwatchTraceId: expect.any(String),
      clientId: 'lost-dev',
      base64OriginalPayload: Buffer.from('{"n":1}').toString('base64'),
      failures: [
        {
          failedAction: 'SqsAction',
          failedResource: 'https://sqs.us-east-1.amazonaws.com/123456789012/not-created',
          errorMessage: expect.stringContaining('queue does not exist'),
        },
      ],
    });
    await device.end();
  });

  it('reports a message SQS refuses (over 256 KiB) as an action failure, and sends nothing', async () => {
    const before = batches.flat().length;
    const big = { state: { reported: { blob: 'x'.repeat(sqsMaxMessageBytes) } } };
    iot.routeToRules('ota/things/big-dev/report', Buffer.from(JSON.stringify(big)), 'big-dev');
    const error = await observer.next('errors/to-queue');
    expect(error.body.failures).toEqual([
      {
        failedAction: 'SqsAction',
        failedResource: 'https://sqs.us-east-1.amazonaws.com/123456789012/acknowledgements',
        errorMessage: expect.stringContaining('Message must be shorter than 262144 bytes'),
      },
    ]);
    await iot.rulesIdle();
    expect(batches.flat()).toHaveLength(before);
  });
});

describe('default queues', () => {
  it('gives the acknowledgement rule’s reports to `acknowledge` as SQS batches', async () => {
    const events: SQSEvent[] = [];
    const core = await startLocalIotCore({
      queueOptions: { maxBatchingWindowMs: 20 },
      resolveLambda: (name) =>
        name === 'acknowledge'
          ? async (event) => {
              events.push(event as SQSEvent);
            }
          : undefined,
    });
    try {
      const device = await Device.connect(core.endpoints.mqtt, 'ack-dev');
      await device.subscribe('$aws/things/ack-dev/shadow/name/ota/update/accepted');
      await device.request(
        '$aws/things/ack-dev/shadow/name/ota/update',
        { state: { reported: { ota: { state: 'downloading' } } } },
        '$aws/things/ack-dev/shadow/name/ota/update/accepted',
      );
      await core.rulesIdle();
      await device.end();

      const [record] = events.flatMap((event) => event.Records);
      expect(record?.eventSourceARN).toBe('arn:aws:sqs:us-east-1:123456789012:acknowledgements');
      expect(JSON.parse(record?.body ?? '{}')).toMatchObject({
        state: { reported: { ota: { state: 'downloading' } } },
        thingName: 'ack-dev',
        receivedAt: expect.any(Number),
      });
    } finally {
      await core.stop();
    }
  });
});
