/**
 * The local cloud as `npm run cloud` starts it: endpoints.json names the STS beside the S3
 * endpoint, the S3 endpoint refuses unsigned requests, the download role can be assumed, and a
 * device's request on MQTT reaches the registered downloadAuthorizer through the real rule.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AssumeRoleCommand, STSClient } from '@aws-sdk/client-sts';
import mqtt from 'mqtt';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { downloadTopics } from '../../../lambdas/definitions/rules.ts';
import { type LocalCloud, localBucketName, startLocalCloud } from '../../../local/cloud.ts';
import { localS3Credentials } from '../../../local/s3.ts';
import { localDownloadRoleArn } from '../../../local/wiring/downloads.ts';

let dataDir: string;
let cloud: LocalCloud;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'shadow-ota-dl-cloud-'));
  cloud = await startLocalCloud({
    host: '127.0.0.1',
    dataDir,
    ephemeral: true,
    bare: true,
    ports: { api: 0, s3: 0, dynamodb: 0, mqtt: 0, mqtts: 0, iotData: 0, iot: 0 },
  });
});

afterAll(async () => {
  await cloud?.stop();
  await rm(dataDir, { recursive: true, force: true });
});

it('publishes the STS endpoint, enforces signatures on S3 and lets the download role be assumed', async () => {
  const published = JSON.parse(await readFile(cloud.endpointsFile, 'utf8')) as Record<string, unknown>;
  expect(published.sts).toBe(cloud.endpoints.sts);
  expect((await fetch(`${cloud.endpoints.s3}/${localBucketName}/anything`)).status).toBe(403);

  const sts = new STSClient({
    endpoint: cloud.endpoints.sts,
    region: cloud.region,
    credentials: localS3Credentials,
  });
  const session = await sts.send(
    new AssumeRoleCommand({ RoleArn: localDownloadRoleArn, RoleSessionName: 'check', DurationSeconds: 900 }),
  );
  sts.destroy();
  expect(session.Credentials?.AccessKeyId).toMatch(/^ASIA/);
});

it('routes a device’s download request through the rule to the authorizer, which answers on MQTT', async () => {
  const device = await mqtt.connectAsync(cloud.endpoints.mqtt, {
    clientId: 'wired-thing',
    reconnectPeriod: 0,
  });
  try {
    await device.subscribeAsync(downloadTopics.rejected('wired-thing'), { qos: 1 });
    const answer = new Promise<Record<string, unknown>>((resolve) =>
      device.once('message', (_topic, payload) =>
        resolve(JSON.parse(payload.toString()) as Record<string, unknown>),
      ),
    );
    await device.publishAsync(
      downloadTopics.request('wired-thing'),
      JSON.stringify({ deploymentId: 'dep-none', clientToken: 'wired-1' }),
      { qos: 1 },
    );
    expect(await answer).toMatchObject({ clientToken: 'wired-1', code: 'NO_ACTIVE_EXECUTION' });
  } finally {
    await device.endAsync();
  }
});
