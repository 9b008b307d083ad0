import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateThingCommand, DescribeThingCommand } from '@aws-sdk/client-iot';
import {
  DeleteThingShadowCommand,
  GetThingShadowCommand,
  UpdateThingShadowCommand,
} from '@aws-sdk/client-iot-data-plane';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalIotCore, startLocalIotCore } from '../../../local/iot/index.ts';
import { Device, dataPlaneClient, registryClient } from './support.ts';

describe('MQTT over mutual TLS', () => {
  let core: LocalIotCore;

  beforeAll(async () => {
    core = await startLocalIotCore();
  });

  afterAll(async () => {
    await core.stop();
  });

  it('connects a device whose certificate names the client id, under the device policy', async () => {
    const cert = await core.issueClientCertificate('tls-dev');
    const device = await Device.connect(core.endpoints.mqtts, 'tls-dev', {
      ca: core.caCertificate,
      cert: cert.cert,
      key: cert.key,
    });
    await device.subscribe('$aws/things/tls-dev/shadow/get/+');
    const rejected = await device.request(
      '$aws/things/tls-dev/shadow/get',
      {},
      '$aws/things/tls-dev/shadow/get/+',
    );
    expect(rejected.body.code).toBe(404);
    expect(cert.certificateId).toMatch(/^[0-9a-f]{64}$/);
    await device.end();
  });

  it('refuses a client id other than the certificate’s thing', async () => {
    const cert = await core.issueClientCertificate('tls-owner');
    const attempt = mqtt.connectAsync(core.endpoints.mqtts, {
      clientId: 'someone-else',
      ca: core.caCertificate,
      cert: cert.cert,
      key: cert.key,
      reconnectPeriod: 0,
    });
    await expect(attempt).rejects.toThrow(/Not authorized/);
  });

  it('refuses a connection without a client certificate', async () => {
    const attempt = mqtt.connectAsync(core.endpoints.mqtts, {
      clientId: 'anon',
      ca: core.caCertificate,
      reconnectPeriod: 0,
      connectTimeout: 2000,
    });
    await expect(attempt).rejects.toThrow();
  });
});

describe('persistence across restarts', () => {
  let dataDir: string;

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'local-iot-data-'));
  });

  afterAll(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  it('keeps shadows (and deleted versions), things and the CA in the data directory', async () => {
    const payload = (value: unknown) => Buffer.from(JSON.stringify(value));
    const first = await startLocalIotCore({ dataDir, flushIntervalMs: 50 });
    const data = dataPlaneClient(first.endpoints.iotData);
    const registry = registryClient(first.endpoints.iot);
    await registry.send(
      new CreateThingCommand({ thingName: 'kept', attributePayload: { attributes: { model: 'm' } } }),
    );
    for (let i = 1; i <= 3; i++) {
      await data.send(
        new UpdateThingShadowCommand({
          thingName: 'kept',
          shadowName: 'ota',
          payload: payload({ state: { reported: { n: i } } }),
        }),
      );
    }
    await data.send(
      new UpdateThingShadowCommand({
        thingName: 'gone',
        payload: payload({ state: { reported: { n: 1 } } }),
      }),
    );
    await data.send(new DeleteThingShadowCommand({ thingName: 'gone' }));
    data.destroy();
    registry.destroy();
    const ca = first.caCertificate;
    await first.stop();
    expect((await readFile(join(dataDir, 'shadows.jsonl'), 'utf8')).trim().split('\n')).toHaveLength(2);

    const second = await startLocalIotCore({ dataDir });
    const data2 = dataPlaneClient(second.endpoints.iotData);
    const registry2 = registryClient(second.endpoints.iot);
    const got = JSON.parse(
      Buffer.from(
        (await data2.send(new GetThingShadowCommand({ thingName: 'kept', shadowName: 'ota' }))).payload ?? [],
      ).toString(),
    ) as { state: unknown; version: number };
    expect(got).toMatchObject({ state: { reported: { n: 3 } }, version: 3 });
    const recreated = await data2.send(
      new UpdateThingShadowCommand({
        thingName: 'gone',
        payload: payload({ state: { reported: { n: 2 } } }),
      }),
    );
    expect(JSON.parse(Buffer.from(recreated.payload ?? []).toString())).toMatchObject({ version: 2 });
    expect((await registry2.send(new DescribeThingCommand({ thingName: 'kept' }))).attributes).toEqual({
      model: 'm',
    });
    expect(second.caCertificate).toBe(ca);
    data2.destroy();
    registry2.destroy();
    await second.stop();
  });
});
