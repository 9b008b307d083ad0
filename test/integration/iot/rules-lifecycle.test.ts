import { UpdateThingShadowCommand } from '@aws-sdk/client-iot-data-plane';
import type { Context } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TopicRuleDefinition } from '../../../lambdas/definitions/rules.ts';
import {
  type LambdaFailure,
  type LocalIotCore,
  type LocalLambdaHandler,
  startLocalIotCore,
} from '../../../local/iot/index.ts';
import { Device, dataPlaneClient, settle } from './support.ts';

interface Invocation {
  readonly event: Record<string, unknown>;
  readonly context: Context;
}

const invocations: Record<string, Invocation[]> = { acknowledge: [], flaky: [] };
const failures: LambdaFailure[] = [];
// A Lambda action's event is the rule's SELECT result: a JSON object.
const handlers: Record<string, LocalLambdaHandler> = {
  acknowledge: async (event, context) => {
    invocations.acknowledge?.push({ event: event as Record<string, unknown>, context });
  },
  flaky: async (event, context) => {
    invocations.flaky?.push({ event: event as Record<string, unknown>, context });
    throw new Error('handler failed');
  },
};

const rules: TopicRuleDefinition[] = [
  {
    name: 'OtaAcknowledgement',
    sql: `SELECT current.state.reported.ota AS ota, previous.state.reported.ota.state AS previousState,
            current.version AS version, topic(3) AS thingName, timestamp() AS receivedAt
          FROM '$aws/things/+/shadow/name/ota/update/documents'
          WHERE NOT isUndefined(current.state.reported.ota) AND current.state.reported.ota.state <> 'downloading'`,
    awsIotSqlVersion: '2016-03-23',
    actions: [{ lambda: { function: 'acknowledge' } }],
  },
  {
    name: 'MissingFunction',
    sql: "SELECT *, clientid() AS sender FROM 'ota/things/+/missing'",
    awsIotSqlVersion: '2016-03-23',
    actions: [{ lambda: { function: 'not-deployed' } }],
    // biome-ignore lint/suspicious/noTemplateCurlyInString: an AWS IoT substitution template, not JavaScript
    errorAction: { republish: { topic: 'errors/${topic(3)}' } },
  },
  {
    name: 'FailingHandler',
    sql: "SELECT * FROM 'ota/things/+/flaky'",
    awsIotSqlVersion: '2016-03-23',
    actions: [{ lambda: { function: 'flaky' } }],
    errorAction: { republish: { topic: 'errors/flaky' } },
  },
];

let iot: LocalIotCore;
let observer: Device;

beforeAll(async () => {
  iot = await startLocalIotCore({
    rules,
    resolveLambda: (name) => handlers[name],
    onLambdaFailure: (failure) => failures.push(failure),
    lambdaRetryDelaysMs: [10, 10],
    adminClientIds: ['observer'],
  });
  observer = await Device.connect(iot.endpoints.mqtt, 'observer');
  await observer.subscribe('errors/#', '$aws/events/presence/#');
});

afterAll(async () => {
  await observer.end();
  await iot.stop();
});

describe('rules engine', () => {
  it('invokes the Lambda with the SELECT result for matching shadow documents only', async () => {
    const device = await Device.connect(iot.endpoints.mqtt, 'rule-dev');
    await device.subscribe('$aws/things/rule-dev/shadow/name/ota/update/accepted');
    const report = (state: string) =>
      device.request(
        '$aws/things/rule-dev/shadow/name/ota/update',
        { state: { reported: { ota: { state, deploymentId: 'd-1' } } } },
        '$aws/things/rule-dev/shadow/name/ota/update/accepted',
      );
    await report('downloading');
    await report('succeeded');
    await iot.rulesIdle();

    expect(invocations.acknowledge).toHaveLength(1);
    const [invocation] = invocations.acknowledge ?? [];
    expect(invocation?.event).toEqual({
      ota: { state: 'succeeded', deploymentId: 'd-1' },
      previousState: 'downloading',
      version: 2,
      thingName: 'rule-dev',
      receivedAt: expect.any(Number),
    });
    expect(invocation?.context.invokedFunctionArn).toBe(
      'arn:aws:lambda:us-east-1:123456789012:function:acknowledge',
    );
    await device.end();
  });

  it('fires on documents of an update made through the data-plane API too', async () => {
    const before = invocations.acknowledge?.length ?? 0;
    const data = dataPlaneClient(iot.endpoints.iotData);
    await data.send(
      new UpdateThingShadowCommand({
        thingName: 'rule-http',
        shadowName: 'ota',
        payload: Buffer.from(JSON.stringify({ state: { reported: { ota: { state: 'failed' } } } })),
      }),
    );
    data.destroy();
    await settle(50);
    await iot.rulesIdle();
    expect(invocations.acknowledge?.slice(before).map((i) => i.event.thingName)).toEqual(['rule-http']);
  });

  it('sends an action that cannot be invoked to the error action, in AWS’s error message format', async () => {
    const device = await Device.connect(iot.endpoints.mqtt, 'err-dev');
    device.publish('ota/things/err-dev/missing', { n: 1 });
    const error = await observer.next('errors/err-dev');
    expect(error.body).toEqual({
      ruleName: 'MissingFunction',
      topic: 'ota/things/err-dev/missing',
      cloudwatchTraceId: expect.any(String),
      clientId: 'err-dev',
      base64OriginalPayload: Buffer.from('{"n":1}').toString('base64'),
      failures: [
        {
          failedAction: 'LambdaAction',
          failedResource: 'arn:aws:lambda:us-east-1:123456789012:function:not-deployed',
          errorMessage: expect.stringContaining('Function not found'),
        },
      ],
    });
    await device.end();
  });

  it('retries a handler that throws twice, then reports it as an async failure, not to the error action', async () => {
    const device = await Device.connect(iot.endpoints.mqtt, 'flaky-dev');
    device.publish('ota/things/flaky-dev/flaky', { n: 2 });
    await settle(50);
    await iot.rulesIdle();
    expect(invocations.flaky).toHaveLength(3);
    expect(failures).toEqual([
      expect.objectContaining({ functionName: 'flaky', attempts: 3, event: { n: 2 } }),
    ]);
    expect(observer.on('errors/flaky')).toEqual([]);
    await device.end();
  });
});

describe('lifecycle events', () => {
  it('publishes connected and disconnected with AWS’s fields', async () => {
    const from = observer.received.length;
    const device = await Device.connect(iot.endpoints.mqtt, 'life-1');
    const connected = await observer.next('$aws/events/presence/connected/life-1', from);
    expect(connected.body).toEqual({
      clientId: 'life-1',
      timestamp: expect.any(Number),
      eventType: 'connected',
      sessionIdentifier: expect.any(String),
      principalIdentifier: 'life-1',
      ipAddress: expect.stringContaining('127.0.0.1'),
      versionNumber: 0,
    });
    // Epoch milliseconds, unlike shadow timestamps.
    expect(String(connected.body.timestamp)).toHaveLength(13);

    await device.client.endAsync();
    const disconnected = await observer.next('$aws/events/presence/disconnected/life-1', from);
    expect(disconnected.body).toMatchObject({
      clientId: 'life-1',
      eventType: 'disconnected',
      sessionIdentifier: connected.body.sessionIdentifier,
      clientInitiatedDisconnect: true,
      disconnectReason: 'CLIENT_INITIATED_DISCONNECT',
      versionNumber: 0,
    });
  });

  it('says AUTHORIZATION_ERROR when the broker drops a device for a refused publish', async () => {
    const from = observer.received.length;
    const device = await Device.connect(iot.endpoints.mqtt, 'life-2');
    const closed = device.closed();
    device.publish('ota/things/someone-else/status', {});
    await closed;
    const disconnected = await observer.next('$aws/events/presence/disconnected/life-2', from);
    expect(disconnected.body).toMatchObject({
      clientInitiatedDisconnect: false,
      disconnectReason: 'AUTHORIZATION_ERROR',
    });
    await device.end();
  });
});
