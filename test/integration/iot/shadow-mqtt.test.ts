import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalIotCore, startLocalIotCore } from '../../../local/iot/index.ts';
import { Device } from './support.ts';

let iot: LocalIotCore;
let device: Device;
const classic = '$aws/things/mqtt-1/shadow';
const ota = '$aws/things/mqtt-1/shadow/name/ota';

beforeAll(async () => {
  iot = await startLocalIotCore();
  device = await Device.connect(iot.endpoints.mqtt, 'mqtt-1');
  await device.subscribe(`${classic}/#`);
});

afterAll(async () => {
  await device.end();
  await iot.stop();
});

describe('shadow over MQTT', () => {
  it('updates the classic shadow: accepted with clientToken, delta and documents', async () => {
    const from = device.received.length;
    const accepted = await device.request(
      `${classic}/update`,
      { state: { desired: { led: 'on' } }, clientToken: 'c-1' },
      `${classic}/update/+`,
    );
    expect(accepted.topic).toBe(`${classic}/update/accepted`);
    expect(accepted.body).toMatchObject({
      state: { desired: { led: 'on' } },
      version: 1,
      clientToken: 'c-1',
    });
    expect(accepted.body.metadata).toEqual({ desired: { led: { timestamp: expect.any(Number) } } });

    const delta = await device.next(`${classic}/update/delta`, from);
    expect(delta.body).toMatchObject({ version: 1, state: { led: 'on' }, clientToken: 'c-1' });
    const documents = await device.next(`${classic}/update/documents`, from);
    expect(documents.body).toMatchObject({
      previous: null,
      current: { state: { desired: { led: 'on' } }, version: 1 },
      clientToken: 'c-1',
    });
    // Timestamps are epoch seconds.
    expect(String(accepted.body.timestamp)).toHaveLength(10);
  });

  it('gets the shadow with its delta, and clears the delta once reported matches', async () => {
    const got = await device.request(`${classic}/get`, { clientToken: 'g-1' }, `${classic}/get/+`);
    expect(got.topic).toBe(`${classic}/get/accepted`);
    expect(got.body).toMatchObject({
      state: { desired: { led: 'on' }, delta: { led: 'on' } },
      version: 1,
      clientToken: 'g-1',
    });

    const from = device.received.length;
    await device.request(
      `${classic}/update`,
      { state: { reported: { led: 'on' } } },
      `${classic}/update/accepted`,
    );
    await device.next(`${classic}/update/documents`, from);
    expect(device.received.slice(from).some((m) => m.topic.endsWith('/update/delta'))).toBe(false);
    const after = await device.request(`${classic}/get`, {}, `${classic}/get/accepted`);
    expect(after.body.state).toEqual({ desired: { led: 'on' }, reported: { led: 'on' } });
  });

  it('drives a named shadow independently of the classic one', async () => {
    await device.subscribe(`${ota}/#`);
    const accepted = await device.request(
      `${ota}/update`,
      { state: { desired: { fw: '2.0' } } },
      `${ota}/update/accepted`,
    );
    expect(accepted.body.version).toBe(1);
    const got = await device.request(`${ota}/get`, {}, `${ota}/get/accepted`);
    expect(got.body.state).toEqual({ desired: { fw: '2.0' }, delta: { fw: '2.0' } });
    const deleted = await device.request(`${ota}/delete`, { clientToken: 'del' }, `${ota}/delete/+`);
    expect(deleted.topic).toBe(`${ota}/delete/accepted`);
    expect(deleted.body).toMatchObject({ version: 1, clientToken: 'del' });
    const missing = await device.request(`${ota}/get`, {}, `${ota}/get/+`);
    expect(missing.topic).toBe(`${ota}/get/rejected`);
    expect(missing.body).toMatchObject({ code: 404, message: "No shadow exists with name: 'ota'" });
    // Re-created soon after, the shadow continues the deleted one's version.
    const recreated = await device.request(
      `${ota}/update`,
      { state: { reported: { fw: '1.0' } } },
      `${ota}/update/accepted`,
    );
    expect(recreated.body.version).toBe(2);
  });

  it.each([
    ['bad JSON', '{"state":', 400, 'Invalid JSON'],
    ['a missing state', { clientToken: 'e-1' }, 400, 'Missing required node: state'],
    [
      'a version conflict',
      { state: { reported: { a: 1 } }, version: 99, clientToken: 'e-2' },
      409,
      'Version conflict',
    ],
    [
      'a state too large',
      { state: { reported: { blob: 'x'.repeat(9000) } } },
      413,
      'The payload exceeds the maximum size allowed',
    ],
    [
      'a state too deep',
      { state: { desired: { a: { b: { c: { d: { e: { f: { g: 1 } } } } } } } } },
      400,
      'JSON contains too many levels of nesting; maximum is 6',
    ],
  ])('rejects %s on /update/rejected, storing nothing', async (_case, body, code, message) => {
    const before = await device.request(`${classic}/get`, {}, `${classic}/get/accepted`);
    const rejected = await device.request(`${classic}/update`, body, `${classic}/update/+`);
    expect(rejected.topic).toBe(`${classic}/update/rejected`);
    expect(rejected.body).toMatchObject({ code, message, timestamp: expect.any(Number) });
    if (typeof body === 'object' && 'clientToken' in body)
      expect(rejected.body.clientToken).toBe(body.clientToken);
    const after = await device.request(`${classic}/get`, {}, `${classic}/get/accepted`);
    expect(after.body.version).toBe(before.body.version);
  });

  it('answers get and delete of a shadow that does not exist with 404 on /rejected', async () => {
    const never = '$aws/things/mqtt-1/shadow/name/never';
    await device.subscribe(`${never}/#`);
    const got = await device.request(`${never}/get`, { clientToken: 'n-1' }, `${never}/get/+`);
    expect(got).toMatchObject({
      topic: `${never}/get/rejected`,
      body: { code: 404, message: "No shadow exists with name: 'never'", clientToken: 'n-1' },
    });
    const deleted = await device.request(`${never}/delete`, {}, `${never}/delete/+`);
    expect(deleted).toMatchObject({ topic: `${never}/delete/rejected`, body: { code: 404 } });
  });
});

describe('device policy over MQTT', () => {
  it('closes the connection of a device that publishes to another thing’s shadow', async () => {
    const intruder = await Device.connect(iot.endpoints.mqtt, 'intruder');
    const closed = intruder.closed();
    intruder.publish('$aws/things/mqtt-1/shadow/update', { state: { desired: { led: 'off' } } });
    await closed;
    const got = await device.request(`${classic}/get`, {}, `${classic}/get/accepted`);
    expect(got.body.state).toMatchObject({ desired: { led: 'on' } });
    await intruder.end();
  });

  it('closes the connection of a device that subscribes with a wildcard in place of its name', async () => {
    const snoop = await Device.connect(iot.endpoints.mqtt, 'snoop');
    const closed = snoop.closed();
    snoop.client.subscribe('$aws/things/+/shadow/update/delta');
    await closed;
    await snoop.end();
  });

  it('lets a device use its own ota/things/<thing>/ topics', async () => {
    await device.subscribe('ota/things/mqtt-1/#');
    const echo = await device.request(
      'ota/things/mqtt-1/urls/request',
      { files: ['a'] },
      'ota/things/mqtt-1/urls/request',
    );
    expect(echo.body).toEqual({ files: ['a'] });
    expect(device.client.connected).toBe(true);
  });
});
