/**
 * The official AWS IoT Device SDK v2 (aws-crt) against the local broker, over mutual TLS with a
 * certificate issued for the thing, as a device would connect to AWS IoT Core.
 */
import { UpdateThingShadowCommand } from '@aws-sdk/client-iot-data-plane';
import { iot, iotshadow, type mqtt, mqtt as mqttModule } from 'aws-iot-device-sdk-v2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalIotCore, startLocalIotCore } from '../../../local/iot/index.ts';
import { dataPlaneClient } from './support.ts';

let core: LocalIotCore;
let connection: mqtt.MqttClientConnection;
let shadow: iotshadow.IotShadowClientv2;

beforeAll(async () => {
  core = await startLocalIotCore();
  const certificate = await core.issueClientCertificate('sdk-device');
  const port = Number(new URL(core.endpoints.mqtts).port);
  const config = iot.AwsIotMqttConnectionConfigBuilder.new_mtls_builder(certificate.cert, certificate.key)
    .with_certificate_authority(core.caCertificate)
    .with_endpoint('localhost')
    .with_port(port)
    .with_client_id('sdk-device')
    .with_clean_session(true)
    .build();
  connection = new mqttModule.MqttClient().new_connection(config);
  await connection.connect();
  shadow = iotshadow.IotShadowClientv2.newFromMqtt311(connection, {
    maxRequestResponseSubscriptions: 4,
    maxStreamingSubscriptions: 2,
    operationTimeoutInSeconds: 5,
  });
});

afterAll(async () => {
  shadow.close();
  await connection.disconnect();
  await core.stop();
});

describe('aws-iot-device-sdk-v2 IotShadowClientv2 on a named shadow', () => {
  it('receives a delta, reports, gets and deletes', async () => {
    const stream = shadow.createNamedShadowDeltaUpdatedStream({ thingName: 'sdk-device', shadowName: 'ota' });
    const subscribed = new Promise<void>((resolve) => stream.on('subscriptionStatus', () => resolve()));
    const delta = new Promise<iotshadow.model.ShadowDeltaUpdatedEvent>((resolve) =>
      stream.on('incomingPublish', (event) => resolve(event.message)),
    );
    stream.open();
    await subscribed;

    // The cloud side asks for a new firmware through the data-plane API.
    const data = dataPlaneClient(core.endpoints.iotData);
    await data.send(
      new UpdateThingShadowCommand({
        thingName: 'sdk-device',
        shadowName: 'ota',
        payload: Buffer.from(JSON.stringify({ state: { desired: { firmware: '2.0.0' } } })),
      }),
    );
    data.destroy();
    const received = await delta;
    expect(received.state).toEqual({ firmware: '2.0.0' });
    expect(received.version).toBe(1);
    stream.close();

    const updated = await shadow.updateNamedShadow({
      thingName: 'sdk-device',
      shadowName: 'ota',
      state: { reported: { firmware: '2.0.0' } },
    });
    expect(updated.version).toBe(2);
    expect(updated.state?.reported).toEqual({ firmware: '2.0.0' });

    const got = await shadow.getNamedShadow({ thingName: 'sdk-device', shadowName: 'ota' });
    expect(got.state?.desired).toEqual({ firmware: '2.0.0' });
    expect(got.state?.reported).toEqual({ firmware: '2.0.0' });
    expect(got.state?.delta).toBeUndefined();

    const deleted = await shadow.deleteNamedShadow({ thingName: 'sdk-device', shadowName: 'ota' });
    expect(deleted.version).toBe(2);
    await expect(shadow.getNamedShadow({ thingName: 'sdk-device', shadowName: 'ota' })).rejects.toMatchObject(
      {
        modeledError: { code: 404 },
      },
    );
  });
});
