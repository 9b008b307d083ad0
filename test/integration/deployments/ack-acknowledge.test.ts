import { IoTDataPlaneClient } from '@aws-sdk/client-iot-data-plane';
import type { SQSEvent } from 'aws-lambda';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { buildReportedOta } from '../../../agent/report.ts';
import {
  type ExecutionRecord,
  type ExecutionStore,
  makeExecutionStore,
} from '../../../lambdas/adapters/execution-store.ts';
import { type FleetStore, makeFleetStore } from '../../../lambdas/adapters/fleet-store.ts';
import { makeShadowWriter, type ShadowWriter } from '../../../lambdas/adapters/shadow-writer.ts';
import { type AcknowledgeHandler, makeAcknowledge } from '../../../lambdas/handlers/acknowledge.ts';
import {
  isReconcileDue,
  reconcileSilentExecutions,
  silenceThresholdFor,
} from '../../../lambdas/handlers/acknowledgements/reconcile.ts';
import { deviceView } from '../../../lambdas/handlers/deployments/views.ts';
import { recordingObservability } from '../../../lambdas/observability.ts';
import { type LocalIotCore, startLocalIotCore } from '../../../local/iot/index.ts';
import { documentClient, dynamoDbClient } from '../import/support.ts';
import { type DesiredOtaSeen, ScriptedDevice } from './ack-device.ts';
import {
  createDeploymentTables,
  type DeploymentTables,
  mustGetExecution,
  notifyExecutions,
  uniqueName,
} from './api-support.ts';

const raw = dynamoDbClient(inject('ddbEndpoint'));
const db = documentClient(raw);
const updateId = { provider: 'Contoso', name: 'Toaster', version: '2.0' };
let tables: DeploymentTables;
let executions: ExecutionStore;
let fleet: FleetStore;
let iot: LocalIotCore;
let iotData: IoTDataPlaneClient;
let shadows: ShadowWriter;
let obs: ReturnType<typeof recordingObservability>;
let ack: AcknowledgeHandler;
const devices: ScriptedDevice[] = [];

/** The rule's events: delivered to the handler, or held back (a lost or delayed event) when `holding`. */
const events: Record<string, unknown>[] = [];
let holding = false;

beforeAll(async () => {
  tables = await createDeploymentTables(raw, 'ack');
  executions = makeExecutionStore({ db, tableName: tables.executions });
  fleet = makeFleetStore({ db, tableName: tables.fleet });
  iot = await startLocalIotCore({
    // A short window: the tests wait for every report to land (rulesIdle), not for batches to fill.
    queueOptions: { maxBatchingWindowMs: 20 },
    // The rule sends each report to the acknowledgements queue; its batches come here, one rule
    // event per message body.
    resolveLambda: (name) =>
      name === 'acknowledge'
        ? async (batch) => {
            for (const record of (batch as SQSEvent).Records) {
              const event = JSON.parse(record.body) as Record<string, unknown>;
              events.push(event);
              if (!holding) await ack(event);
            }
          }
        : undefined,
  });
  iotData = new IoTDataPlaneClient({
    endpoint: iot.endpoints.iotData,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    maxAttempts: 1,
  });
  shadows = makeShadowWriter({ iotData });
});

beforeEach(() => {
  obs = recordingObservability();
  ack = makeAcknowledge({ executions, fleet, shadows, observability: obs });
  events.length = 0;
  holding = false;
});

afterAll(async () => {
  await Promise.all(devices.map((d) => d.end()));
  await iot.stop();
  iotData.destroy();
  raw.destroy();
});

async function device(prefix = 'thing'): Promise<ScriptedDevice> {
  const connected = await ScriptedDevice.connect(iot.endpoints.mqtt, uniqueName(prefix));
  devices.push(connected);
  return connected;
}

const mustGet = (deploymentId: string, thingName: string): Promise<ExecutionRecord> =>
  mustGetExecution(executions, deploymentId, thingName);

/** What the fan-out does for one device: the execution `notified`, the desired document written. */
async function sendDeployment(thingName: string, deploymentId = uniqueName('dep'), attempt = 1) {
  await notifyExecutions(executions, deploymentId, [thingName], updateId);
  await writeDesired(thingName, deploymentId, attempt);
  await iot.rulesIdle();
  return deploymentId;
}

async function writeDesired(thingName: string, deploymentId: string, attempt = 1): Promise<void> {
  const desired = {
    state: {
      desired: {
        ota: { deploymentId, attempt, action: 'apply' as const, updateId, manifest: '{}', signature: 'sig' },
      },
    },
  };
  const written = await shadows.update(thingName, desired);
  if (!written.ok) throw new Error(written.error.message);
}

async function work(d: ScriptedDevice): Promise<DesiredOtaSeen> {
  return d.waitForWork();
}

/** `state.reported.ota` of a rule event (the device's update request). */
function reportedOf(
  event: Record<string, unknown> | undefined,
): { state?: string; seq?: number } | undefined {
  const state = event?.state as { reported?: { ota?: { state?: string; seq?: number } } } | undefined;
  return state?.reported?.ota;
}

/** From now on, events are kept instead of delivered; those of earlier writes are forgotten. */
function hold(): void {
  holding = true;
  events.length = 0;
}

async function flushRules(): Promise<void> {
  await iot.rulesIdle();
}

/** A deployment sent to `d`, and its two reports (downloading, succeeded) held back, not delivered. */
async function heldReports(d: ScriptedDevice) {
  const deploymentId = await sendDeployment(d.thingName);
  const job = await work(d);
  hold();
  await d.downloading(job);
  await d.succeeded(job);
  await flushRules();
  const [downloadingEvent, succeededEvent] = events;
  return { deploymentId, downloadingEvent, succeededEvent };
}

describe('acknowledgement Lambda behind the device report rule', () => {
  it('moves the execution with the device, records results and the installed update, and trims desired at the end', async () => {
    const d = await device();
    const deploymentId = await sendDeployment(d.thingName);
    const job = await work(d);

    await d.downloading(job);
    await flushRules();
    const downloading = await mustGet(deploymentId, d.thingName);
    expect(downloading.state).toBe('downloading');
    expect(downloading.progress).toEqual({ step: 0, bytes: 0, totalBytes: 1024 });

    await d.succeeded(job);
    await flushRules();
    const done = await mustGet(deploymentId, d.thingName);
    expect(done.state).toBe('succeeded');
    expect(done.reason).toBe('device_report');
    expect(done.lastResult).toMatchObject({ resultCode: 700, stepResults: { step_0: { resultCode: 700 } } });
    expect((await fleet.get(d.thingName))?.installedUpdateId).toEqual(updateId);

    const shadow = await d.getShadow();
    expect(shadow?.desired?.ota).toBeUndefined();
    expect(shadow?.delta).toBeUndefined();
    expect(obs.counts.get('DeviceSucceeded')).toBe(1);
    expect(obs.counts.get('DesiredTrimmed')).toBe(1);
  });

  it('runs its action for device reports only, not for the service’s own desired writes and trims', async () => {
    const d = await device();
    const observed: Record<string, unknown>[] = [];
    events.length = 0;
    const deploymentId = await sendDeployment(d.thingName);
    observed.push(...events.splice(0));
    expect(observed).toEqual([]);

    const job = await work(d);
    await d.downloading(job);
    await d.succeeded(job);
    await flushRules();
    expect((await mustGet(deploymentId, d.thingName)).state).toBe('succeeded');
    // Two reports, two events: the fan-out's write and the trim never reach the rule.
    expect(events.map((e) => reportedOf(e)?.state)).toEqual(['downloading', 'succeeded']);
    expect(obs.counts.get('DesiredTrimmed')).toBe(1);
    await flushRules();
    expect(events).toHaveLength(2);
  });

  it('leaves desired alone when the device cleared it in its terminal report', async () => {
    const d = await device();
    const deploymentId = await sendDeployment(d.thingName);
    const job = await work(d);
    const afterDownloading = await d.downloading(job);
    await d.succeeded(job, {}, afterDownloading);
    await flushRules();
    expect((await mustGet(deploymentId, d.thingName)).state).toBe('succeeded');
    expect((await d.getShadow())?.desired?.ota).toBeUndefined();
    // The device's own clear closed the delta: the service wrote nothing more.
    expect(obs.counts.get('DesiredTrimmed')).toBeUndefined();
  });

  it('keeps a device that says succeeded without naming the deployed update in applying until it does', async () => {
    const d = await device();
    const deploymentId = await sendDeployment(d.thingName);
    const job = await work(d);

    await d.succeeded(job, { installedUpdateId: { provider: 'Contoso', name: 'Toaster', version: '1.0' } });
    await flushRules();
    expect((await mustGet(deploymentId, d.thingName)).state).toBe('applying');
    expect((await d.getShadow())?.desired?.ota).toBeDefined();

    // Every report is whole (state, ids): the rule sees the request, not the merged shadow.
    await d.succeeded(job, { installedUpdateId: { provider: 'contoso', name: 'toaster', version: '02.0' } });
    await flushRules();
    expect((await mustGet(deploymentId, d.thingName)).state).toBe('succeeded');
    expect((await d.getShadow())?.desired?.ota).toBeUndefined();
  });

  it('records a failed step with its result codes, trims desired and counts the failure', async () => {
    const d = await device();
    const deploymentId = await sendDeployment(d.thingName);
    const job = await work(d);

    await d.downloading(job);
    await d.failed(job, 1, 0x30000001);
    await flushRules();
    const failed = await mustGet(deploymentId, d.thingName);
    expect(failed.state).toBe('failed');
    expect(failed.lastResult).toMatchObject({
      resultCode: 0,
      extendedResultCode: 0x30000001,
      stepResults: {
        step_0: { resultCode: 700 },
        step_1: { resultCode: 0, extendedResultCode: 0x30000001, resultDetails: 'step 1 failed' },
      },
    });
    expect((await d.getShadow())?.desired?.ota).toBeUndefined();
    expect(obs.counts.get('DeviceFailed')).toBe(1);
    expect((await fleet.get(d.thingName))?.installedUpdateId).toBeUndefined();
  });

  it('applies a redelivered event once and ignores a late, older one', async () => {
    const d = await device();
    const { deploymentId, downloadingEvent, succeededEvent } = await heldReports(d);

    expect(await ack(succeededEvent)).toMatchObject({ kind: 'transition', to: 'succeeded', trimmed: true });
    expect(await ack(succeededEvent)).toMatchObject({ kind: 'duplicate', trimmed: false });
    expect(await ack(downloadingEvent)).toMatchObject({ kind: 'stale' });

    expect((await mustGet(deploymentId, d.thingName)).state).toBe('succeeded');
    expect(obs.counts.get('DuplicateReportIgnored')).toBe(1);
    expect(obs.counts.get('StaleReportIgnored')).toBe(1);
    expect(obs.counts.get('DeviceSucceeded')).toBe(1);
  });

  it('converges on the newest report when every event arrives at once, in reverse order', async () => {
    const d = await device();
    const deploymentId = await sendDeployment(d.thingName);
    const job = await work(d);
    hold();
    await d.downloading(job);
    await d.downloading(job, { state: 'installing' });
    await d.downloading(job, { state: 'applying' });
    await d.succeeded(job);
    await flushRules();
    expect(events).toHaveLength(4);

    const newest = reportedOf(events.at(-1))?.seq;
    await Promise.all([...events].reverse().map((event) => ack(event)));
    const final = await mustGet(deploymentId, d.thingName);
    expect(final.state).toBe('succeeded');
    expect(final.reportOrder).toBe(newest);
  });

  it('leaves a newer deployment’s desired document alone', async () => {
    const d = await device();
    const first = await sendDeployment(d.thingName);
    const job = await work(d);
    hold();
    await d.succeeded(job);
    await flushRules();
    const [lateEvent] = events;
    await writeDesired(d.thingName, 'dep-newer');

    expect(await ack(lateEvent)).toMatchObject({ kind: 'transition', to: 'succeeded', trimmed: false });
    expect((await mustGet(first, d.thingName)).state).toBe('succeeded');
    expect((await d.desiredOta())?.deploymentId).toBe('dep-newer');
  });

  it('trims at the shadow’s new version when the device wrote again after its terminal report', async () => {
    const d = await device();
    const deploymentId = await sendDeployment(d.thingName);
    const job = await work(d);
    hold();
    await d.failed(job);
    await d.reportMerged({ compatibility: { manufacturer: 'Contoso', model: 'Toaster' } });
    await flushRules();

    expect(await ack(events[0])).toMatchObject({ kind: 'transition', to: 'failed', trimmed: true });
    expect((await d.getShadow())?.desired?.ota).toBeUndefined();
    expect((await mustGet(deploymentId, d.thingName)).state).toBe('failed');
  });

  it('drops what is not a report on a known execution without throwing', async () => {
    const d = await device();
    await sendDeployment(d.thingName);

    expect(await ack({ hello: 'world' })).toEqual({ kind: 'event_invalid' });
    expect(await ack({ thingName: d.thingName, receivedAt: 1, state: { desired: {} } })).toEqual({
      kind: 'not_about_ota',
    });
    hold();
    await d.reportMerged({ state: 'exploding' });
    await d.reportMerged({ state: 'downloading', deploymentId: 'dep-unknown', attempt: 1 });
    await flushRules();
    expect(await ack(events[0])).toEqual({ kind: 'invalid' });
    expect(await ack(events[1])).toEqual({ kind: 'no_execution', deploymentId: 'dep-unknown' });
    expect(await ack(events[0])).toEqual({ kind: 'invalid' });
    expect(obs.counts.get('ReportInvalid')).toBe(2);
  });

  it('records a usual report with one conditional write and no read, and decides any other on the refused write’s answer', async () => {
    const counted = dynamoDbClient(inject('ddbEndpoint'));
    const sent: string[] = [];
    counted.middlewareStack.add(
      (next, context) => (args) => {
        sent.push(context.commandName ?? 'unknown');
        return next(args);
      },
      { step: 'initialize', name: 'countCommands' },
    );
    const countedExecutions = makeExecutionStore({
      db: documentClient(counted),
      tableName: tables.executions,
    });
    ack = makeAcknowledge({ executions: countedExecutions, fleet, shadows, observability: obs });
    const d = await device();
    const { deploymentId, downloadingEvent, succeededEvent } = await heldReports(d);
    const commandsOf = async (event: unknown) => {
      sent.length = 0;
      const outcome = await ack(event);
      return { outcome, commands: [...sent] };
    };

    const downloading = await commandsOf(downloadingEvent);
    expect(downloading.outcome).toMatchObject({ kind: 'transition', from: 'notified', to: 'downloading' });
    expect(downloading.commands).toEqual(['UpdateItemCommand']);
    const succeeded = await commandsOf(succeededEvent);
    expect(succeeded.outcome).toMatchObject({ kind: 'transition', from: 'downloading', to: 'succeeded' });
    expect(succeeded.commands).toEqual(['UpdateItemCommand']);
    // Redelivered and late: the refused write's answer is the execution to decide on; no read.
    const again = await commandsOf(succeededEvent);
    expect(again.outcome).toMatchObject({ kind: 'duplicate' });
    expect(again.commands).toEqual(['UpdateItemCommand']);
    const late = await commandsOf(downloadingEvent);
    expect(late.outcome).toMatchObject({ kind: 'stale' });
    expect(late.commands).toEqual(['UpdateItemCommand']);

    // Progress in the state the device is in costs one write too.
    const other = await device();
    const again2 = await sendDeployment(other.thingName);
    const otherJob = await work(other);
    holding = false;
    await other.downloading(otherJob);
    await flushRules();
    hold();
    await other.downloading(otherJob, { progress: { step: 0, bytes: 512, totalBytes: 1024 } });
    await flushRules();
    const progress = await commandsOf(events[0]);
    expect(progress.outcome).toMatchObject({ kind: 'progress', state: 'downloading' });
    expect(progress.commands).toEqual(['UpdateItemCommand']);
    expect(await mustGet(again2, other.thingName)).toMatchObject({
      state: 'downloading',
      progress: { bytes: 512 },
    });

    expect(await mustGet(deploymentId, d.thingName)).toMatchObject({
      state: 'succeeded',
      reason: 'device_report',
      installedUpdateId: updateId,
      attempt: 1,
    });
    counted.destroy();
  });

  it('starts the clock of a device that reports before the fan-out recorded its notification', async () => {
    const d = await device();
    const deploymentId = uniqueName('dep');
    await executions.batchPutQueued(
      deploymentId,
      [{ thingName: d.thingName, updateId, state: 'queued', shard: 0 }],
      Date.now(),
    );
    await writeDesired(d.thingName, deploymentId);
    const job = await work(d);
    const before = Date.now();
    await d.downloading(job);
    await flushRules();
    const record = await mustGet(deploymentId, d.thingName);
    expect(record.state).toBe('downloading');
    expect(record.notifiedAt).toBeGreaterThanOrEqual(before - 1000);
    expect(record.notifiedAt).toBe(record.reportedAt);
  });

  it('decides a report with no fast path, or for an execution that is not there, on a read', async () => {
    const d = await device();
    const deploymentId = await sendDeployment(d.thingName);
    const job = await work(d);
    const stored = await mustGet(deploymentId, d.thingName);
    // A device's late final word after the sweep timed it out: the refused write carries the execution.
    const timedOut = await executions.transition(
      stored,
      { ...stored, state: 'timed_out' },
      {
        at: Date.now(),
        reason: 'timeout',
      },
    );
    expect(timedOut.ok).toBe(true);
    await d.failed(job);
    await flushRules();
    expect(await mustGet(deploymentId, d.thingName)).toMatchObject({
      state: 'failed',
      reason: 'late_report',
    });

    // A report naming a deployment with no execution for this device.
    const stranger = await device();
    await writeDesired(stranger.thingName, uniqueName('dep'));
    const strangerJob = await work(stranger);
    hold();
    await stranger.downloading(strangerJob);
    await flushRules();
    expect(await ack(events[0])).toMatchObject({ kind: 'no_execution' });
  });

  it('ends an execution of a device the fleet knows with no fleet write, and the device view shows the new update', async () => {
    const d = await device();
    const properties = { manufacturer: 'Contoso', model: 'Toaster' };
    const before = { provider: 'Contoso', name: 'Toaster', version: '0.9' };
    await fleet.upsertReport(d.thingName, {
      lastReportAt: 1000,
      installedUpdateId: before,
      compatibility: properties,
    });
    const deploymentId = await sendDeployment(d.thingName);
    const job = await work(d);
    await d.downloading(job, { compatibility: properties, installedUpdateId: before });
    await d.succeeded(job, { compatibility: properties });
    await flushRules();

    expect((await mustGet(deploymentId, d.thingName)).state).toBe('succeeded');
    // Unchanged properties: the fleet item is as it was (no write), and the view takes the newer report.
    expect(await fleet.get(d.thingName)).toMatchObject({ lastReportAt: 1000, installedUpdateId: before });
    const history = await executions.listForThing(d.thingName, { limit: 10 });
    if (!history.ok) throw new Error('bad token');
    const view = deviceView(d.thingName, await fleet.get(d.thingName), history.value.items);
    expect(view).toMatchObject({ installedUpdateId: updateId, compatibility: properties });
    expect(Date.parse(String(view.lastReportAt))).toBeGreaterThan(1000);

    // Changed properties: the next end writes them (targeting reads them from the fleet).
    const again = await sendDeployment(d.thingName);
    const next = await work(d);
    await d.succeeded(next, { compatibility: { ...properties, model: 'Toaster2' } });
    await flushRules();
    expect((await mustGet(again, d.thingName)).state).toBe('succeeded');
    expect(await fleet.get(d.thingName)).toMatchObject({
      installedUpdateId: updateId,
      compatibility: { ...properties, model: 'Toaster2' },
    });
  });

  it('records a device’s compatibility in the fleet even when it reports no deployment', async () => {
    const d = await device();
    await d.reportMerged({ state: 'idle', compatibility: { manufacturer: 'Contoso', model: 'Toaster' } });
    await flushRules();
    expect((await fleet.get(d.thingName))?.compatibility).toEqual({
      manufacturer: 'Contoso',
      model: 'Toaster',
    });
  });

  it('records the idle report exactly as the agent sends it, ids cleared with null', async () => {
    const d = await device();
    const compatibility = { manufacturer: 'Contoso', model: 'Kettle' };
    await d.reportMerged(buildReportedOta({ state: 'idle', compatibility }));
    await flushRules();
    expect((await fleet.get(d.thingName))?.compatibility).toEqual(compatibility);
  });
});

describe('reconciliation sweep', () => {
  it('applies a report whose event was lost, and trims desired', async () => {
    const d = await device();
    const deploymentId = await sendDeployment(d.thingName);
    const job = await work(d);
    hold();
    await d.succeeded(job);
    await flushRules();
    const notified = await mustGet(deploymentId, d.thingName);
    expect(notified.state).toBe('notified');

    const deps = {
      executions,
      fleet,
      shadows,
      observability: obs,
      activeDeploymentIds: async () => [deploymentId],
    };
    const dueAt = (notified.notifiedAt ?? 0) + 5 * 60_000 + 1000;
    const swept = await reconcileSilentExecutions(deps, dueAt);
    expect(swept).toMatchObject({ shadowsRead: 1, corrected: 1, trimmed: 1, truncated: false });
    expect((await mustGet(deploymentId, d.thingName)).state).toBe('succeeded');
    expect((await d.getShadow())?.desired?.ota).toBeUndefined();
    expect((await fleet.get(d.thingName))?.installedUpdateId).toEqual(updateId);

    // Nothing left at work: the next sweep reads no shadow.
    expect(await reconcileSilentExecutions(deps, dueAt + 60_000)).toMatchObject({ shadowsRead: 0 });
  });

  it('does not read the shadow of a device heard from recently', async () => {
    const d = await device();
    const deploymentId = await sendDeployment(d.thingName);
    const swept = await reconcileSilentExecutions(
      { executions, fleet, shadows, observability: obs, activeDeploymentIds: async () => [deploymentId] },
      Date.now(),
    );
    expect(swept).toMatchObject({ examined: 1, shadowsRead: 0 });
  });

  it.each([
    // silence, due?  (threshold 5 min, one sweep a minute)
    [4 * 60_000, false],
    [5 * 60_000, true],
    [5.5 * 60_000, true],
    [6 * 60_000, false],
    [10 * 60_000 + 30_000, true],
    [15 * 60_000, false],
    [20 * 60_000, true],
  ])('reads a shadow silent for %i ms: %s', (silence, due) => {
    expect(isReconcileDue(silence, 5 * 60_000, 60_000)).toBe(due);
  });

  it('waits an eighth of the device’s time before the first read: a device at work is silent', () => {
    const notifiedAt = Date.parse('2026-11-24T08:00:00Z');
    const day = { notifiedAt, deadline: notifiedAt + 86_400_000 };
    expect(silenceThresholdFor(day, 5 * 60_000)).toBe(3 * 3_600_000);
    const threshold = silenceThresholdFor(day, 5 * 60_000);
    // A half-hour update is read never, not at 5, 10 and 20 minutes.
    for (const minutes of [5, 10, 20, 30])
      expect(isReconcileDue(minutes * 60_000, threshold, 60_000)).toBe(false);
    expect(isReconcileDue(3 * 3_600_000, threshold, 60_000)).toBe(true);
    // A short timeout keeps the sweep's own threshold; no deadline known, too.
    expect(silenceThresholdFor({ notifiedAt, deadline: notifiedAt + 600_000 }, 5 * 60_000)).toBe(5 * 60_000);
    expect(silenceThresholdFor({ notifiedAt }, 5 * 60_000)).toBe(5 * 60_000);
  });
});
