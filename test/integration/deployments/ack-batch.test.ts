import { randomUUID } from 'node:crypto';
import { IoTDataPlaneClient } from '@aws-sdk/client-iot-data-plane';
import type { SQSEvent } from 'aws-lambda';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import {
  type ExecutionRecord,
  type ExecutionStore,
  makeExecutionStore,
} from '../../../lambdas/adapters/execution-store.ts';
import { type FleetStore, makeFleetStore } from '../../../lambdas/adapters/fleet-store.ts';
import { makeShadowWriter, type ShadowWriter } from '../../../lambdas/adapters/shadow-writer.ts';
import { makeAcknowledgeQueue } from '../../../lambdas/handlers/acknowledge.ts';
import { outcome, recordingObservability } from '../../../lambdas/observability.ts';
import { type LocalIotCore, startLocalIotCore } from '../../../local/iot/index.ts';
import { documentClient, dynamoDbClient } from '../import/support.ts';
import { aduResult } from './ack-device.ts';
import {
  createDeploymentTables,
  type DeploymentTables,
  mustGetExecution,
  notifyExecutions,
  uniqueName,
} from './api-support.ts';
import { dummyAws } from './fanout-support.ts';

// The acknowledgement function as the queue's event source mapping invokes it: a batch of rule
// events, applied with batched requests against DynamoDB Local and the local IoT Core's shadows.
const raw = dynamoDbClient(inject('ddbEndpoint'));
const db = documentClient(raw);
const updateId = { provider: 'Contoso', name: 'Toaster', version: '2.0' };
const sent: string[] = [];
const counting = {
  send: ((command: { constructor: { name: string } }) => {
    sent.push(command.constructor.name);
    return db.send(command as never);
  }) as typeof db.send,
};
let tables: DeploymentTables;
let executions: ExecutionStore;
let fleet: FleetStore;
let iot: LocalIotCore;
let iotData: IoTDataPlaneClient;
let shadows: ShadowWriter;
let obs: ReturnType<typeof recordingObservability>;

beforeAll(async () => {
  tables = await createDeploymentTables(raw, 'ackbatch');
  executions = makeExecutionStore({ db: counting, tableName: tables.executions });
  fleet = makeFleetStore({ db: counting, tableName: tables.fleet });
  iot = await startLocalIotCore({ rules: [] });
  iotData = new IoTDataPlaneClient({ ...dummyAws, endpoint: iot.endpoints.iotData, maxAttempts: 1 });
  shadows = makeShadowWriter({ iotData });
});

beforeEach(() => {
  obs = recordingObservability();
  sent.length = 0;
});

afterAll(async () => {
  await iot.stop();
  iotData.destroy();
  raw.destroy();
});

/** Devices with a notified execution of one deployment, known to the fleet with their properties. */
async function notifiedDevices(count: number, deploymentId = uniqueName('dep')) {
  const things = Array.from({ length: count }, () => uniqueName('dev'));
  await notifyExecutions(executions, deploymentId, things, updateId);
  for (const thingName of things) {
    await fleet.upsertReport(thingName, { compatibility: { model: 'toaster' }, lastReportAt: 1 });
  }
  sent.length = 0;
  return { deploymentId, things };
}

const mustGet = (deploymentId: string, thingName: string): Promise<ExecutionRecord> =>
  mustGetExecution(executions, deploymentId, thingName);

let seq = Date.now();

/** A device's update request as the rule sends it: the request, its thing name, when it came. */
function ruleEvent(thingName: string, ota: Record<string, unknown>, clearsDesired = false) {
  seq += 1;
  return {
    state: {
      reported: { ota: { attempt: 1, updateId, ...ota, seq } },
      ...(clearsDesired ? { desired: { ota: null } } : {}),
    },
    thingName,
    receivedAt: Date.now(),
  };
}

const succeeded = (deploymentId: string, compatibility = { model: 'toaster' }) => ({
  state: 'succeeded',
  deploymentId,
  installedUpdateId: updateId,
  compatibility,
  progress: null,
  lastResult: { resultCode: aduResult.applySuccess, extendedResultCode: 0 },
});

const downloading = (deploymentId: string) => ({
  state: 'downloading',
  deploymentId,
  progress: { step: 0, bytes: 0, totalBytes: 1024 },
});

/** An SQS event of these message bodies, as the event source mapping delivers it. */
function sqsEvent(bodies: readonly unknown[]): SQSEvent {
  return {
    Records: bodies.map((body) => ({
      messageId: randomUUID(),
      receiptHandle: randomUUID(),
      body: typeof body === 'string' ? body : JSON.stringify(body),
      attributes: {
        ApproximateReceiveCount: '1',
        SentTimestamp: String(Date.now()),
        SenderId: 'iot',
        ApproximateFirstReceiveTimestamp: String(Date.now()),
      },
      messageAttributes: {},
      md5OfBody: '',
      eventSource: 'aws:sqs',
      eventSourceARN: 'arn:aws:sqs:us-east-1:123456789012:acknowledgements',
      awsRegion: 'us-east-1',
    })),
  };
}

const handler = (overrides: Partial<Parameters<typeof makeAcknowledgeQueue>[0]> = {}) =>
  makeAcknowledgeQueue({ executions, fleet, shadows, observability: obs, ...overrides });

describe('acknowledgement function on a queue batch', () => {
  it('writes 30 usual reports with two PartiQL batches and reads the fleet once, with no other request', async () => {
    const { deploymentId, things } = await notifiedDevices(30);
    const answer = await handler()(
      sqsEvent(things.map((thingName) => ruleEvent(thingName, succeeded(deploymentId), true))),
    );
    expect(answer.batchItemFailures).toEqual([]);
    expect(sent).toEqual(['BatchExecuteStatementCommand', 'BatchExecuteStatementCommand', 'BatchGetCommand']);
    for (const thingName of things) {
      expect(await mustGet(deploymentId, thingName)).toMatchObject({
        state: 'succeeded',
        reason: 'device_report',
        installedUpdateId: updateId,
        lastResult: { resultCode: aduResult.applySuccess },
      });
    }
    expect(obs.counts.get(outcome.deviceSucceeded) ?? 0).toBe(30);
  });

  it('writes the fleet only for a device whose properties changed', async () => {
    const { deploymentId, things } = await notifiedDevices(2);
    const [same, moved] = things as [string, string];
    await handler()(
      sqsEvent([
        ruleEvent(same, succeeded(deploymentId), true),
        ruleEvent(moved, succeeded(deploymentId, { model: 'toaster-2' }), true),
      ]),
    );
    expect(sent.filter((command) => command === 'UpdateCommand' || command === 'PutCommand')).toHaveLength(1);
    expect((await fleet.get(moved))?.compatibility).toEqual({ model: 'toaster-2' });
    expect((await fleet.get(same))?.compatibility).toEqual({ model: 'toaster' });
  });

  it('applies a second report of a device in the batch after the first, and decides refused moves on their answer', async () => {
    const { deploymentId, things } = await notifiedDevices(3);
    const [twice, done, stranger] = things as [string, string, string];
    await handler()(sqsEvent([ruleEvent(done, succeeded(deploymentId), true)]));
    const lateForDone = ruleEvent(done, downloading(deploymentId));
    // `lateForDone` is older than the success already recorded: its seq came first.
    const staleSeq = (lateForDone.state.reported.ota as { seq: number }).seq - 10_000;
    (lateForDone.state.reported.ota as { seq: number }).seq = staleSeq;
    sent.length = 0;
    const answer = await handler()(
      sqsEvent([
        ruleEvent(twice, downloading(deploymentId)),
        ruleEvent(twice, succeeded(deploymentId), true),
        lateForDone,
        ruleEvent(stranger, downloading(uniqueName('other-dep'))),
      ]),
    );
    expect(answer.batchItemFailures).toEqual([]);
    expect(await mustGet(deploymentId, twice)).toMatchObject({
      state: 'succeeded',
      installedUpdateId: updateId,
    });
    expect(await mustGet(deploymentId, done)).toMatchObject({ state: 'succeeded' });
    expect(await mustGet(deploymentId, stranger)).toMatchObject({ state: 'notified' });
    // One batch for the first of each; the second report of `twice` on its own, after it.
    expect(sent[0]).toBe('BatchExecuteStatementCommand');
    expect(sent.filter((c) => c === 'BatchExecuteStatementCommand')).toHaveLength(1);
    expect(sent).toContain('UpdateCommand');
  });

  it('changes nothing when the same batch is delivered again', async () => {
    const { deploymentId, things } = await notifiedDevices(3);
    const event = sqsEvent(things.map((thingName) => ruleEvent(thingName, succeeded(deploymentId), true)));
    await handler()(event);
    const before = await Promise.all(things.map((thingName) => mustGet(deploymentId, thingName)));
    obs = recordingObservability();
    const again = await handler()(event);
    expect(again.batchItemFailures).toEqual([]);
    expect(await Promise.all(things.map((thingName) => mustGet(deploymentId, thingName)))).toEqual(before);
    expect(obs.counts.get(outcome.duplicateReportIgnored) ?? 0).toBe(3);
    expect(obs.counts.get(outcome.deviceSucceeded) ?? 0).toBe(0);
  });

  it('trims desired when the device left it, and fails only the message whose trim could not be written', async () => {
    const { deploymentId, things } = await notifiedDevices(2);
    const [kept, broken] = things as [string, string];
    for (const thingName of things) {
      const written = await shadows.update(thingName, {
        state: { desired: { ota: { deploymentId, attempt: 1, action: 'apply', updateId } } },
      });
      expect(written.ok).toBe(true);
    }
    const failingShadows: ShadowWriter = {
      ...shadows,
      update: (thingName, document) =>
        thingName === broken
          ? Promise.reject(new Error('shadow service down'))
          : shadows.update(thingName, document),
    };
    const event = sqsEvent(things.map((thingName) => ruleEvent(thingName, succeeded(deploymentId))));
    const answer = await handler({ shadows: failingShadows })(event);
    expect(answer.batchItemFailures).toEqual([{ itemIdentifier: event.Records[1]?.messageId }]);
    const keptShadow = await shadows.get(kept);
    expect(keptShadow.ok && keptShadow.value?.state.desired?.ota).toBeFalsy();
    const brokenShadow = await shadows.get(broken);
    expect(brokenShadow.ok && brokenShadow.value?.state.desired?.ota).toMatchObject({ deploymentId });
    // Delivered again: the execution is recorded already, and the trim it still owes is made.
    const again = await handler()(sqsEvent([event.Records[1]?.body]));
    expect(again.batchItemFailures).toEqual([]);
    const trimmed = await shadows.get(broken);
    expect(trimmed.ok && trimmed.value?.state.desired?.ota).toBeFalsy();
    expect(await mustGet(deploymentId, broken)).toMatchObject({ state: 'succeeded' });
  });

  it('starts the clock of a device that reports before its notification was recorded (the read path)', async () => {
    const deploymentId = uniqueName('dep');
    const thingName = uniqueName('dev');
    await executions.batchPutQueued(
      deploymentId,
      [{ thingName, updateId, state: 'queued', shard: 0 }],
      Date.now(),
    );
    sent.length = 0;
    const event = ruleEvent(thingName, downloading(deploymentId));
    const answer = await handler()(sqsEvent([event]));
    expect(answer.batchItemFailures).toEqual([]);
    const requests = [...sent];
    const record = await mustGet(deploymentId, thingName);
    expect(record).toMatchObject({
      state: 'downloading',
      notifiedAt: event.receivedAt,
      reportedAt: event.receivedAt,
    });
    // Refused in the batch (no notifiedAt), then decided on the item the refusal carried: no read.
    expect(requests).toEqual(['BatchExecuteStatementCommand', 'UpdateCommand']);
  });

  it('applies a report the batch left unsent (throttled) on its own, and counts it', async () => {
    const { deploymentId, things } = await notifiedDevices(3);
    const throttledOnce: ExecutionStore = {
      ...executions,
      async applyForwardReports(entries) {
        const outcomes = await executions.applyForwardReports(entries.slice(1));
        return [{ kind: 'unsent', code: 'ThrottlingError' }, ...outcomes];
      },
    };
    const answer = await handler({ executions: throttledOnce })(
      sqsEvent(things.map((thingName) => ruleEvent(thingName, succeeded(deploymentId), true))),
    );
    expect(answer.batchItemFailures).toEqual([]);
    for (const thingName of things)
      expect(await mustGet(deploymentId, thingName)).toMatchObject({ state: 'succeeded' });
    expect(obs.counts.get(outcome.batchWriteSentAlone)).toBe(1);
    expect(sent).toContain('UpdateCommand');
  });

  it('writes the fleet on a redelivery when the first delivery ended the execution but failed its fleet write', async () => {
    const { deploymentId, things } = await notifiedDevices(2);
    const [moved, other] = things as [string, string];
    let failures = 0;
    const flakyFleet: FleetStore = {
      ...fleet,
      upsertReport(thingName, facts) {
        if (thingName === moved && failures++ === 0) return Promise.reject(new Error('throttled'));
        return fleet.upsertReport(thingName, facts);
      },
    };
    const event = sqsEvent([
      ruleEvent(moved, succeeded(deploymentId, { model: 'toaster-3' }), true),
      ruleEvent(other, succeeded(deploymentId), true),
    ]);
    const first = await handler({ fleet: flakyFleet })(event);
    expect(first.batchItemFailures).toEqual([{ itemIdentifier: event.Records[0]?.messageId }]);
    expect(await mustGet(deploymentId, moved)).toMatchObject({ state: 'succeeded' });
    expect((await fleet.get(moved))?.compatibility).toEqual({ model: 'toaster' });
    // SQS delivers it again: a duplicate for the execution, which still owes the fleet its facts.
    const again = await handler({ fleet: flakyFleet })(sqsEvent([event.Records[0]?.body]));
    expect(again.batchItemFailures).toEqual([]);
    expect((await fleet.get(moved))?.compatibility).toEqual({ model: 'toaster-3' });
  });

  it('drops a message that is not a device report, and applies the rest', async () => {
    const { deploymentId, things } = await notifiedDevices(1);
    const answer = await handler()(
      sqsEvent(['not json', { hello: 'world' }, ruleEvent(things[0] as string, downloading(deploymentId))]),
    );
    expect(answer.batchItemFailures).toEqual([]);
    expect(await mustGet(deploymentId, things[0] as string)).toMatchObject({ state: 'downloading' });
  });
});
