import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { cancelRemaining } from '../../../lambdas/handlers/fanout/sweeps.ts';
import { makeFanoutWorker } from '../../../lambdas/handlers/fanout-worker.ts';
import { makeScheduler, type SchedulerDeps } from '../../../lambdas/handlers/scheduler.ts';
import { recordingObservability } from '../../../lambdas/observability.ts';
import { type LocalIotCore, startLocalIotCore } from '../../../local/iot/index.ts';
import { documentClient, dynamoDbClient } from '../import/support.ts';
import { activeDeploymentsOf, createDeploymentTables, type DeploymentTables } from './api-support.ts';
import {
  budget,
  createDeployment,
  executionsOf,
  type FanoutRig,
  fanoutRig,
  things,
  updateId,
} from './fanout-support.ts';

const ddb = dynamoDbClient(inject('ddbEndpoint'));
const doc = documentClient(ddb);
let tables: DeploymentTables;
let iot: LocalIotCore;
let rig: FanoutRig;

beforeAll(async () => {
  tables = await createDeploymentTables(ddb, 'scheduler');
  iot = await startLocalIotCore();
  rig = fanoutRig(ddb, tables, iot);
});

afterAll(async () => {
  rig.destroy();
  await iot.stop();
});

/** The scheduler on the same stores, with its clock `aheadMs` in the future. */
function scheduler(aheadMs = 0) {
  const deps: SchedulerDeps = {
    deployments: rig.deps.deployments,
    executions: rig.deps.executions,
    targets: rig.deps.targets,
    shadows: rig.deps.shadows,
    invoker: rig.invoker,
    observability: recordingObservability(),
    now: () => Date.now() + aheadMs,
    stopBeforeEndMs: 0,
  };
  return makeScheduler(deps);
}

async function notifyAll(deploymentId: string, until = 30_000): Promise<void> {
  const worker = makeFanoutWorker(rig.deps);
  const from = rig.invoker.calls.length;
  await worker({ deploymentId }, budget(until));
  for (const call of rig.invoker.calls.slice(from)) await worker(call.payload, budget(until));
}

describe('scheduler', () => {
  it('times out silent devices, then completes the deployment and releases its update', async () => {
    const deployment = await createDeployment(doc, tables, {
      target: { things: things('sched-timeout', 3) },
      policy: { deviceTimeoutSeconds: 5 },
    });
    await notifyAll(deployment.deploymentId);

    const early = await scheduler()({}, budget(20_000));
    expect(early.timedOut).toBe(0);
    expect((await rig.deps.deployments.get(deployment.deploymentId))?.status).toBe('rolling_out');

    const late = await scheduler(6_000)({}, budget(20_000));
    expect(late.timedOut).toBe(3);
    const rows = await executionsOf(doc, tables, deployment.deploymentId);
    expect(rows.map((r) => r.state)).toEqual(['timed_out', 'timed_out', 'timed_out']);
    // The expansion counted the three queued on their target page; no stream projection runs
    // here, so set what it would hold now. Until then the counters keep the deployment open.
    await scheduler(6_000)({}, budget(20_000));
    expect((await rig.deps.deployments.get(deployment.deploymentId))?.status).toBe('rolling_out');
    await doc.send(
      new UpdateCommand({
        TableName: tables.deployments,
        Key: { deploymentId: deployment.deploymentId },
        UpdateExpression: 'SET counters.queued = :zero, counters.timed_out = :three',
        ExpressionAttributeValues: { ':zero': 0, ':three': 3 },
      }),
    );

    await scheduler(6_000)({}, budget(20_000));
    expect((await rig.deps.deployments.get(deployment.deploymentId))?.status).toBe('completed');
    expect(await activeDeploymentsOf(doc, tables.updates, updateId)).toBe(0);
  });

  it('aborts on the counters, cancels queued devices and sends the cancel action to devices at work', async () => {
    const devices = things('sched-abort', 4);
    const deployment = await createDeployment(doc, tables, {
      target: { things: devices },
      policy: {
        rollout: { ratePerMinute: 60 },
        abort: [{ failureType: 'FAILED', thresholdPercent: 50, minFinishedDevices: 2 }],
      },
    });
    // One burst (1 device at 60/min) goes out; the rest stay queued.
    await makeFanoutWorker(rig.deps)({ deploymentId: deployment.deploymentId }, budget(5_000));
    await makeFanoutWorker(rig.deps)({ deploymentId: deployment.deploymentId, lane: '0' }, budget(300));
    // What the counters projection (the executions stream) would hold after two failures elsewhere.
    await doc.send(
      new UpdateCommand({
        TableName: tables.deployments,
        Key: { deploymentId: deployment.deploymentId },
        UpdateExpression: 'SET counters.failed = :two',
        ExpressionAttributeValues: { ':two': 2 },
      }),
    );

    const summary = await scheduler()({}, budget(20_000));

    expect(summary.aborted).toBe(1);
    const ended = await rig.deps.deployments.get(deployment.deploymentId);
    expect(ended).toMatchObject({ status: 'aborted' });
    expect(ended?.abortReason).toMatch(/2 of 2 finished devices failed/);
    const rows = await executionsOf(doc, tables, deployment.deploymentId);
    const atWork = rows.filter((r) => r.state === 'notified');
    expect(atWork).toHaveLength(1);
    expect(atWork[0]?.cancelReason).toBe('aborted');
    expect(rows.filter((r) => r.state === 'canceled' && r.reason === 'aborted')).toHaveLength(3);
    const shadow = iot.shadows.get(
      { thingName: atWork[0]?.thingName ?? '', shadowName: 'ota' },
      Buffer.alloc(0),
    );
    expect(shadow.ok && shadow.body.state).toMatchObject({ desired: { ota: { action: 'cancel' } } });
  });

  it('resumes a shard that has work and no live lease', async () => {
    const deployment = await createDeployment(doc, tables, { target: { things: things('sched-resume', 2) } });
    await makeFanoutWorker(rig.deps)({ deploymentId: deployment.deploymentId }, budget(5_000));
    const from = rig.invoker.calls.length;

    const summary = await scheduler()({}, budget(20_000));

    expect(summary.workersStarted).toBeGreaterThanOrEqual(1);
    expect(rig.invoker.calls.slice(from)).toContainEqual({
      name: 'fanoutWorker',
      payload: { deploymentId: deployment.deploymentId, lane: '0' },
    });
  });
});

describe('the cancel of an ended deployment’s waiting devices', () => {
  it('walks a page again next time when a device on it could not be written, so none stays queued', async () => {
    const devices = things('sched-flaky', 3);
    const deployment = await createDeployment(doc, tables, { target: { things: devices } });
    // Expanded (the devices wait on their page), then canceled before any is notified.
    await makeFanoutWorker(rig.deps)({ deploymentId: deployment.deploymentId }, budget(5_000));
    await rig.deps.deployments.end(deployment.deploymentId, { status: 'canceled' }, Date.now());
    let failures = 1;
    const flaky = {
      ...rig.deps.executions,
      transition: ((current, next, extra) => {
        if (current.unwritten && failures-- > 0) throw new Error('throttled');
        return rig.deps.executions.transition(current, next, extra);
      }) as typeof rig.deps.executions.transition,
    };
    const deps = (executions: typeof rig.deps.executions) => ({
      deployments: rig.deps.deployments,
      executions,
      targets: rig.deps.targets,
      shadows: rig.deps.shadows,
      invoker: rig.invoker,
      observability: recordingObservability(),
      now: Date.now,
    });
    const current = async () => {
      const found = await rig.deps.deployments.get(deployment.deploymentId);
      if (!found) throw new Error('gone');
      return found;
    };

    await cancelRemaining(deps(flaky), await current(), 'canceled_by_operator', Date.now() + 20_000);
    expect((await current()).cancelWalk?.done).not.toBe(true);
    expect((await executionsOf(doc, tables, deployment.deploymentId)).length).toBeLessThan(3);

    await cancelRemaining(
      deps(rig.deps.executions),
      await current(),
      'canceled_by_operator',
      Date.now() + 20_000,
    );
    const rows = await executionsOf(doc, tables, deployment.deploymentId);
    expect(rows.map((r) => r.state)).toEqual(['canceled', 'canceled', 'canceled']);
    expect((await current()).cancelWalk?.done).toBe(true);
  });
});
