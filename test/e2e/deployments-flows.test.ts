/**
 * Deployments end to end on the local cloud (in process, ports 0, ephemeral): an update imported
 * over the operator API, deployed, sent by the fan-out through the `ota` shadows, and scripted
 * devices on real MQTT connections reporting as the agent does; the acknowledgements, the
 * counters stream and the scheduler do the rest. Given / When / Then.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IoTClient } from '@aws-sdk/client-iot';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { outcome, recordingObservability } from '../../lambdas/observability.ts';
import { type LocalCloud, startLocalCloud } from '../../local/cloud.ts';
import { registerFleet } from '../../local/demo/operator.ts';
import { type DesiredOtaSeen, ScriptedDevice } from '../integration/deployments/ack-device.ts';
import { eventually } from './support/cloud.ts';
import { importManifest } from './support/updates.ts';

let cloud: LocalCloud;
let dataDir: string;
const devices: ScriptedDevice[] = [];
const updateId = { provider: 'Contoso', name: 'E2eFlows', version: '1.0' };
// Silent, and counting what the handlers count (duplicate and stale reports among it).
const quiet = recordingObservability();

type Json = Record<string, unknown>;

async function call(method: string, path: string, body?: unknown): Promise<{ status: number; body: Json }> {
  const res = await fetch(`${cloud.endpoints.api}${path}`, {
    method,
    headers: { 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Json) : {} };
}

async function importUpdate(): Promise<void> {
  const firmware = Buffer.from('firmware for the deployment flows\n');
  const imported = await call(
    'POST',
    '/updates',
    importManifest({
      updateId,
      compatibility: [{ manufacturer: 'contoso', model: 'e2e' }],
      steps: [
        {
          handler: 'microsoft/script:1',
          files: ['install.sh'],
          handlerProperties: { installedCriteria: '1.0' },
        },
      ],
      files: [{ filename: 'install.sh', content: firmware }],
    }),
  );
  expect(imported.status).toBe(201);
  const updates = imported.body.updates as { files: { uploadUrl: string }[] }[];
  const put = await fetch(updates[0]?.files[0]?.uploadUrl ?? '', { method: 'PUT', body: firmware });
  expect(put.status).toBe(200);
  const committed = await call(
    'POST',
    `/updates/${updateId.provider}/${updateId.name}/${updateId.version}/commit`,
  );
  expect(committed.status).toBe(200);
}

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'shadow-ota-e2e-flows-'));
  cloud = await startLocalCloud(
    {
      host: '127.0.0.1',
      dataDir,
      ephemeral: true,
      bare: true,
      schedulerIntervalMs: 0,
      ports: { api: 0, s3: 0, dynamodb: 0, mqtt: 0, mqtts: 0, iotData: 0, iot: 0 },
    },
    quiet,
  );
  await importUpdate();
});

afterAll(async () => {
  await Promise.all(devices.map((d) => d.end()));
  await cloud?.stop();
  await rm(dataDir, { recursive: true, force: true });
});

async function fleetOf(count: number, label: string): Promise<ScriptedDevice[]> {
  const run = randomUUID().slice(0, 6);
  const connected = await Promise.all(
    Array.from({ length: count }, (_, i) =>
      ScriptedDevice.connect(cloud.endpoints.mqtt, `${label}-${run}-${i}`),
    ),
  );
  devices.push(...connected);
  return connected;
}

async function deploy(things: readonly ScriptedDevice[], policy: Json = {}): Promise<string> {
  const created = await call('POST', '/deployments', {
    update: updateId,
    target: { things: things.map((d) => d.thingName) },
    policy: { abort: [], ...policy },
  });
  expect([201, 202]).toContain(created.status);
  return String(created.body.deploymentId);
}

/**
 * Device reports have landed: rule actions (the acknowledgements) and the counters stream. Not
 * the fan-out worker: at a slow rollout rate it waits for its next batch inside its invocation.
 */
async function settle(): Promise<void> {
  await cloud.iot.rulesIdle();
  await cloud.acknowledgements.countersCaughtUp();
}

async function deployment(id: string): Promise<Json> {
  return (await call('GET', `/deployments/${id}`)).body;
}

async function executionsOf(id: string): Promise<Record<string, Json>> {
  const listed = (await call('GET', `/deployments/${id}/devices?limit=100`)).body;
  const items = (listed.items ?? listed.devices ?? []) as Json[];
  return Object.fromEntries(items.map((item) => [String(item.thingName), item]));
}

/** A scheduler tick once everything settled, then settle again (what it changed is counted). */
async function tick(): Promise<void> {
  await settle();
  await cloud.fanout.tick();
  await settle();
}

const countsOf = (body: Json): Record<string, number> => body.counts as Record<string, number>;

describe('deployments end to end', () => {
  it('Given three devices, When they apply the update, Then all succeed, counters are exact, desired is trimmed, the fleet knows, and the deployment completes', async () => {
    const fleet = await fleetOf(3, 'happy');
    const id = await deploy(fleet);
    const jobs = await Promise.all(fleet.map((d) => d.waitForWork()));
    expect(jobs.every((job) => job.deploymentId === id && job.action === 'apply' && job.attempt === 1)).toBe(
      true,
    );

    await Promise.all(fleet.map((d, i) => d.downloading(jobs[i] as DesiredOtaSeen)));
    await settle();
    expect(countsOf(await deployment(id))).toMatchObject({ downloading: 3 });

    await Promise.all(fleet.map((d, i) => d.succeeded(jobs[i] as DesiredOtaSeen)));
    await tick();

    const done = await deployment(id);
    expect(done.status).toBe('completed');
    expect(countsOf(done)).toMatchObject({ succeeded: 3, queued: 0, notified: 0, downloading: 0 });
    expect(done.devices).toBe(3);
    for (const d of fleet) {
      const shadow = await d.getShadow();
      expect(shadow?.desired?.ota).toBeUndefined();
      expect(shadow?.delta).toBeUndefined();
      const view = (await call('GET', `/devices/${d.thingName}`)).body;
      expect(view.installedUpdateId).toEqual(updateId);
    }
  });

  it('Given devices listed twice (a thing group and the explicit list), Then each is sent once, counted once, and the deployment completes with exact counters', async () => {
    const fleet = await fleetOf(4, 'twice');
    const group = `twice-${randomUUID().slice(0, 6)}`;
    const iot = new IoTClient({
      endpoint: cloud.endpoints.iot,
      region: cloud.region,
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    });
    await registerFleet(
      iot,
      group,
      fleet.map((d) => d.thingName),
    );
    iot.destroy();
    // Two devices in both sources: the expansion lists them on two target pages.
    const created = await call('POST', '/deployments', {
      update: updateId,
      target: { things: fleet.slice(0, 2).map((d) => d.thingName), thingGroups: [group] },
      policy: { abort: [] },
    });
    expect(created.status).toBe(201);
    const id = String(created.body.deploymentId);
    const jobs = await Promise.all(fleet.map((d) => d.waitForWork()));
    await Promise.all(fleet.map((d, i) => d.succeeded(jobs[i] as DesiredOtaSeen)));
    await tick();
    const done = await eventually(
      () => deployment(id),
      (body) => body.status === 'completed',
    );
    expect(countsOf(done)).toMatchObject({ succeeded: 4, queued: 0, notified: 0 });
    expect(done.devices).toBe(4);
    // One delta each: the repeat was not sent again.
    const sentTo = (d: ScriptedDevice) =>
      d.deltas.filter(
        (delta) => (delta.state as Json | undefined)?.ota && JSON.stringify(delta).includes(id),
      );
    for (const d of fleet) expect(sentTo(d)).toHaveLength(1);
  });

  it('Given a device whose second step fails, Then its execution is failed with ADU result codes per step', async () => {
    const [good, bad] = await fleetOf(2, 'failing');
    if (!good || !bad) throw new Error('no devices');
    const id = await deploy([good, bad]);
    const [goodJob, badJob] = await Promise.all([good.waitForWork(), bad.waitForWork()]);
    await good.succeeded(goodJob);
    await bad.downloading(badJob);
    await bad.failed(badJob, 1, 0x30000001);
    await tick();

    const executions = await executionsOf(id);
    expect(executions[bad.thingName]).toMatchObject({
      state: 'failed',
      result: {
        resultCode: 0,
        extendedResultCode: 0x30000001,
        stepResults: {
          step_0: { resultCode: 700 },
          step_1: { resultCode: 0, extendedResultCode: 0x30000001 },
        },
      },
    });
    expect(executions[good.thingName]).toMatchObject({ state: 'succeeded' });
    const done = await deployment(id);
    expect(countsOf(done)).toMatchObject({ succeeded: 1, failed: 1 });
    expect(done.status).toBe('completed');
    expect((await bad.getShadow())?.desired?.ota).toBeUndefined();
  });

  it('Given a device that never answers, When its timeout passes, Then it is timed_out; a late success still counts', async () => {
    const [silent] = await fleetOf(1, 'silent');
    if (!silent) throw new Error('no device');
    const id = await deploy([silent], { deviceTimeoutSeconds: 5 });
    const job = await silent.waitForWork();
    await new Promise((resolve) => setTimeout(resolve, 5200));
    await tick();
    await tick();

    expect((await executionsOf(id))[silent.thingName]).toMatchObject({
      state: 'timed_out',
      reason: 'timeout',
    });
    const ended = await deployment(id);
    expect(countsOf(ended)).toMatchObject({ timed_out: 1, notified: 0 });
    expect(ended.status).toBe('completed');

    await silent.succeeded(job);
    await settle();
    expect((await executionsOf(id))[silent.thingName]).toMatchObject({
      state: 'succeeded',
      reason: 'late_report',
    });
    expect(countsOf(await deployment(id))).toMatchObject({ timed_out: 0, succeeded: 1 });
  });

  it('Given an abort criterion, When the failures reach it, Then the deployment is aborted and the devices not yet sent are canceled', async () => {
    const fleet = await fleetOf(4, 'abort');
    // One device a minute: the first is sent now, the others wait in the queue.
    const id = await deploy(fleet, {
      rollout: { ratePerMinute: 1 },
      abort: [{ failureType: 'FAILED', thresholdPercent: 100, minFinishedDevices: 1 }],
    });
    const first = await eventually(
      async () => {
        for (const d of fleet) if ((await d.desiredOta())?.deploymentId === id) return d;
        return undefined;
      },
      (d) => d !== undefined,
    );
    if (!first) throw new Error('nobody was sent the update');
    await first.failed(await first.waitForWork());
    await tick();

    const aborted = await deployment(id);
    expect(aborted.status).toBe('aborted');
    expect(String(aborted.abortReason)).toContain('1 of 1 finished devices failed');
    expect(countsOf(aborted)).toMatchObject({ failed: 1, canceled: 3, queued: 0 });
    for (const d of fleet.filter((x) => x !== first)) expect(await d.desiredOta()).toBeUndefined();
  });

  it('Given a rollout under way, When the operator cancels, Then queued devices are canceled and a working device is told to cancel and ends canceled', async () => {
    const fleet = await fleetOf(3, 'cancel');
    const id = await deploy(fleet, { rollout: { ratePerMinute: 1 } });
    const working = await eventually(
      async () => {
        for (const d of fleet) if ((await d.desiredOta())?.deploymentId === id) return d;
        return undefined;
      },
      (d) => d !== undefined,
    );
    if (!working) throw new Error('nobody was sent the update');
    const job = await working.waitForWork();
    await working.downloading(job);
    await settle();

    const canceled = await call('POST', `/deployments/${id}/cancel`);
    expect(canceled.status).toBeLessThan(300);
    await settle();
    const told = await eventually(
      () => working.desiredOta(),
      (ota) => ota?.action === 'cancel',
    );
    expect(told?.deploymentId).toBe(id);

    await working.canceled(job);
    await tick();
    const executions = await executionsOf(id);
    expect(executions[working.thingName]).toMatchObject({
      state: 'canceled',
      reason: 'canceled_by_operator',
    });
    const ended = await deployment(id);
    expect(ended.status).toBe('canceled');
    expect(countsOf(ended)).toMatchObject({ canceled: 3, queued: 0, downloading: 0 });
    expect((await working.getShadow())?.desired?.ota).toBeUndefined();
  });

  it('Given a failed device, When the operator retries, Then it gets attempt 2 and succeeds', async () => {
    const [device] = await fleetOf(1, 'retry');
    if (!device) throw new Error('no device');
    const id = await deploy([device]);
    await device.failed(await device.waitForWork());
    await tick();
    expect((await deployment(id)).status).toBe('completed');

    const retried = await call('POST', `/deployments/${id}/retry`);
    expect(retried.status).toBeLessThan(300);
    const second = await eventually(
      () => device.desiredOta(),
      (ota) => ota?.attempt === 2,
    );
    if (!second) throw new Error('no second attempt');
    await device.downloading(second);
    await device.succeeded(second);
    await tick();

    expect((await executionsOf(id))[device.thingName]).toMatchObject({ state: 'succeeded', attempt: 2 });
    const done = await deployment(id);
    expect(countsOf(done)).toMatchObject({ succeeded: 1, failed: 0, queued: 0 });
    expect(done.status).toBe('completed');
  });

  it('Given a device at work on one deployment, When a newer deployment targets it, Then the older execution is canceled as superseded', async () => {
    const [device] = await fleetOf(1, 'supersede');
    if (!device) throw new Error('no device');
    const older = await deploy([device]);
    const oldJob = await device.waitForWork();
    await device.downloading(oldJob);
    await settle();

    const newer = await deploy([device]);
    const newJob = await eventually(
      () => device.desiredOta(),
      (ota) => ota?.deploymentId === newer,
    );
    if (!newJob) throw new Error('the newer deployment never arrived');
    await settle();
    expect((await executionsOf(older))[device.thingName]).toMatchObject({
      state: 'canceled',
      reason: 'superseded',
    });

    await device.downloading(newJob);
    await device.succeeded(newJob);
    await tick();
    expect((await executionsOf(newer))[device.thingName]).toMatchObject({ state: 'succeeded' });
    expect((await executionsOf(older))[device.thingName]).toMatchObject({ state: 'canceled' });
    expect(countsOf(await deployment(older))).toMatchObject({ canceled: 1, downloading: 0 });
  });

  it('Given reports delivered twice and out of order, Then each counts once and the newest wins', async () => {
    const [device] = await fleetOf(1, 'reorder');
    if (!device) throw new Error('no device');
    const id = await deploy([device]);
    const job = await device.waitForWork();
    await device.downloading(job);
    const downloadingSeq = device.lastSeq;
    await device.succeeded(job);
    const succeededSeq = device.lastSeq;
    await settle();
    const before = countsOf(await deployment(id));

    // The rule's messages again, as SQS may deliver them: the final one twice, then an older one.
    const event = (seq: number, state: string): Json => ({
      thingName: device.thingName,
      receivedAt: Date.now(),
      state: {
        reported: {
          ota: {
            state,
            deploymentId: job.deploymentId,
            attempt: 1,
            updateId,
            seq,
            ...(state === 'succeeded' ? { installedUpdateId: updateId } : {}),
          },
        },
      },
    });
    const queue = cloud.iot.queues.get('acknowledgements');
    const ignored = () =>
      [outcome.duplicateReportIgnored, outcome.staleReportIgnored].map((o) => quiet.counts.get(o) ?? 0);
    const [duplicates = 0, stale = 0] = ignored();
    for (const body of [event(succeededSeq, 'succeeded'), event(downloadingSeq, 'downloading')]) {
      expect(queue?.send(JSON.stringify(body))).toMatchObject({ ok: true });
    }
    await settle();

    expect((await executionsOf(id))[device.thingName]).toMatchObject({ state: 'succeeded' });
    expect(countsOf(await deployment(id))).toEqual(before);
    expect(before).toMatchObject({ succeeded: 1, downloading: 0 });
    // Both were answered as done, one a duplicate and one stale, not failed until the dead letters.
    expect(ignored()).toEqual([duplicates + 1, stale + 1]);
    expect(cloud.deadLetters()).toEqual([]);
  });
});
