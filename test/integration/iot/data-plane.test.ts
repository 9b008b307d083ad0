import {
  ConflictException,
  DeleteThingShadowCommand,
  GetThingShadowCommand,
  InvalidRequestException,
  type IoTDataPlaneClient,
  ListNamedShadowsForThingCommand,
  PublishCommand,
  RequestEntityTooLargeException,
  ResourceNotFoundException,
  ThrottlingException,
  UpdateThingShadowCommand,
} from '@aws-sdk/client-iot-data-plane';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalIotCore, startLocalIotCore } from '../../../local/iot/index.ts';
import { Device, dataPlaneClient, settle } from './support.ts';

let iot: LocalIotCore;
let data: IoTDataPlaneClient;
let device: Device;

const json = (payload: Uint8Array | undefined): Record<string, unknown> =>
  JSON.parse(Buffer.from(payload ?? new Uint8Array()).toString()) as Record<string, unknown>;
const body = (value: unknown): Uint8Array => Buffer.from(JSON.stringify(value));

beforeAll(async () => {
  iot = await startLocalIotCore();
  data = dataPlaneClient(iot.endpoints.iotData);
  device = await Device.connect(iot.endpoints.mqtt, 'http-1');
  await device.subscribe('$aws/things/http-1/shadow/#');
});

afterAll(async () => {
  data.destroy();
  await device.end();
  await iot.stop();
});

describe('data-plane shadow API', () => {
  it('UpdateThingShadow answers like /accepted and publishes the same delta and documents', async () => {
    const prefix = '$aws/things/http-1/shadow/name/ota';
    const from = device.received.length;
    const response = await data.send(
      new UpdateThingShadowCommand({
        thingName: 'http-1',
        shadowName: 'ota',
        payload: body({ state: { desired: { fw: '3.1' } }, clientToken: 'h-1' }),
      }),
    );
    expect(json(response.payload)).toMatchObject({
      state: { desired: { fw: '3.1' } },
      version: 1,
      clientToken: 'h-1',
    });
    const delta = await device.next(`${prefix}/update/delta`, from);
    const documents = await device.next(`${prefix}/update/documents`, from);

    // The same update over MQTT, on a second shadow, publishes messages of the same shape.
    const mqttPrefix = '$aws/things/http-1/shadow/name/ota2';
    const mqttFrom = device.received.length;
    await device.request(
      `${mqttPrefix}/update`,
      { state: { desired: { fw: '3.1' } }, clientToken: 'h-1' },
      `${mqttPrefix}/update/accepted`,
    );
    const mqttDelta = await device.next(`${mqttPrefix}/update/delta`, mqttFrom);
    const mqttDocuments = await device.next(`${mqttPrefix}/update/documents`, mqttFrom);
    const withoutTimes = (value: unknown): string =>
      JSON.stringify(value).replace(/"timestamp":\d+/g, '"timestamp":0');
    expect(withoutTimes(delta.body)).toBe(withoutTimes(mqttDelta.body));
    expect(withoutTimes(documents.body)).toBe(withoutTimes(mqttDocuments.body));
    // HTTP answers in the response, not on /accepted.
    expect(device.received.slice(from, mqttFrom).some((m) => m.topic === `${prefix}/update/accepted`)).toBe(
      false,
    );
  });

  it('GetThingShadow returns state, delta, metadata and version; DeleteThingShadow removes it', async () => {
    await data.send(
      new UpdateThingShadowCommand({
        thingName: 'http-1',
        payload: body({ state: { reported: { up: true } } }),
      }),
    );
    const got = json((await data.send(new GetThingShadowCommand({ thingName: 'http-1' }))).payload);
    expect(got).toMatchObject({
      state: { reported: { up: true } },
      version: 1,
      metadata: { reported: { up: { timestamp: expect.any(Number) } } },
    });
    const deleted = json((await data.send(new DeleteThingShadowCommand({ thingName: 'http-1' }))).payload);
    expect(deleted).toMatchObject({ version: 1, timestamp: expect.any(Number) });
    await expect(data.send(new GetThingShadowCommand({ thingName: 'http-1' }))).rejects.toBeInstanceOf(
      ResourceNotFoundException,
    );
  });

  it('ListNamedShadowsForThing pages through the names', async () => {
    for (const name of ['a', 'b', 'c']) {
      await data.send(
        new UpdateThingShadowCommand({
          thingName: 'lister',
          shadowName: name,
          payload: body({ state: { reported: { n: name } } }),
        }),
      );
    }
    const first = await data.send(new ListNamedShadowsForThingCommand({ thingName: 'lister', pageSize: 2 }));
    expect(first.results).toEqual(['a', 'b']);
    expect(first.nextToken).toBeDefined();
    const second = await data.send(
      new ListNamedShadowsForThingCommand({ thingName: 'lister', pageSize: 2, nextToken: first.nextToken }),
    );
    expect(second.results).toEqual(['c']);
    expect(second.nextToken).toBeUndefined();
    const none = await data.send(new ListNamedShadowsForThingCommand({ thingName: 'unknown-thing' }));
    expect(none.results).toEqual([]);
  });

  it.each([
    ['bad JSON', 'not json', InvalidRequestException, 'Invalid JSON'],
    [
      'a version conflict',
      JSON.stringify({ state: { reported: { a: 1 } }, version: 42 }),
      ConflictException,
      'Version conflict',
    ],
    [
      'a state too large',
      JSON.stringify({ state: { reported: { blob: 'x'.repeat(9000) } } }),
      RequestEntityTooLargeException,
      'The payload exceeds the maximum size allowed',
    ],
    [
      'a state too deep',
      JSON.stringify({ state: { reported: { a: { b: { c: { d: { e: { f: { g: 1 } } } } } } } } }),
      InvalidRequestException,
      'JSON contains too many levels of nesting; maximum is 6',
    ],
  ])('UpdateThingShadow with %s fails with the matching exception', async (_case, payload, type, message) => {
    await data.send(
      new UpdateThingShadowCommand({ thingName: 'errors', payload: body({ state: { reported: { a: 0 } } }) }),
    );
    const failure = data.send(
      new UpdateThingShadowCommand({ thingName: 'errors', payload: Buffer.from(payload) }),
    );
    await expect(failure).rejects.toBeInstanceOf(type);
    await expect(failure).rejects.toMatchObject({ message });
  });

  it('GetThingShadow of an unknown thing is ResourceNotFoundException', async () => {
    const failure = data.send(new GetThingShadowCommand({ thingName: 'no-such-thing', shadowName: 'ota' }));
    await expect(failure).rejects.toBeInstanceOf(ResourceNotFoundException);
    await expect(failure).rejects.toMatchObject({ message: "No shadow exists with name: 'ota'" });
  });

  it('refuses an invalid thing name', async () => {
    const failure = data.send(new GetThingShadowCommand({ thingName: 'bad name!' }));
    await expect(failure).rejects.toBeInstanceOf(InvalidRequestException);
  });
});

describe('data-plane Publish', () => {
  it('delivers to MQTT subscribers, the topic decoded from one path segment', async () => {
    await device.subscribe('ota/things/http-1/#');
    const from = device.received.length;
    await data.send(
      new PublishCommand({ topic: 'ota/things/http-1/urls/response', qos: 1, payload: body({ url: 'u' }) }),
    );
    const message = await device.next('ota/things/http-1/urls/response', from);
    expect(message.body).toEqual({ url: 'u' });
  });

  it('a Publish to a shadow update topic updates the shadow', async () => {
    const prefix = '$aws/things/http-1/shadow/name/via-publish';
    const from = device.received.length;
    await data.send(
      new PublishCommand({ topic: `${prefix}/update`, payload: body({ state: { desired: { x: 1 } } }) }),
    );
    await device.next(`${prefix}/update/accepted`, from);
    const got = json(
      (await data.send(new GetThingShadowCommand({ thingName: 'http-1', shadowName: 'via-publish' })))
        .payload,
    );
    expect(got.state).toEqual({ desired: { x: 1 }, delta: { x: 1 } });
  });
});

describe('rate limits', () => {
  let limited: LocalIotCore;
  let client: IoTDataPlaneClient;

  beforeAll(async () => {
    limited = await startLocalIotCore({ rateLimits: { thingPerSecond: 3, accountPerSecond: 1000 } });
    // No SDK retries, so the first 429 surfaces.
    client = dataPlaneClient(limited.endpoints.iotData, 1);
  });

  afterAll(async () => {
    client.destroy();
    await limited.stop();
  });

  it('answers ThrottlingException over HTTP past the per-thing rate, and not for other things', async () => {
    const update = (thingName: string) =>
      client.send(
        new UpdateThingShadowCommand({ thingName, payload: body({ state: { reported: { n: 1 } } }) }),
      );
    for (let i = 0; i < 3; i++) await update('busy');
    await expect(update('busy')).rejects.toBeInstanceOf(ThrottlingException);
    await expect(update('quiet')).resolves.toBeDefined();
  });

  it('answers 429 on /rejected over MQTT', async () => {
    const busy = await Device.connect(limited.endpoints.mqtt, 'busy-mqtt');
    await busy.subscribe('$aws/things/busy-mqtt/shadow/#');
    // Three gets fit the quota (404: no shadow yet); the fourth is throttled.
    for (let i = 0; i < 4; i++) busy.publish('$aws/things/busy-mqtt/shadow/get', { clientToken: `t${i}` });
    await settle(300);
    const rejected = busy
      .on('$aws/things/busy-mqtt/shadow/get/rejected')
      .map((m) => [m.body.clientToken, m.body.code]);
    expect(rejected).toEqual([
      ['t0', 404],
      ['t1', 404],
      ['t2', 404],
      ['t3', 429],
    ]);
    await busy.end();
  });

  it('is off by default', async () => {
    const updates = Array.from({ length: 50 }, () =>
      data.send(
        new UpdateThingShadowCommand({
          thingName: 'unlimited',
          payload: body({ state: { reported: { n: 1 } } }),
        }),
      ),
    );
    await expect(Promise.all(updates)).resolves.toHaveLength(50);
  });
});
