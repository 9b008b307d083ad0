import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type ExecutionStore, unwrittenExecution } from '../../../lambdas/adapters/execution-store.ts';
import { makeShadowWriter } from '../../../lambdas/adapters/shadow-writer.ts';
import type { FanoutDeps } from '../../../lambdas/handlers/fanout/deps.ts';
import { desiredDocumentFor } from '../../../lambdas/handlers/fanout/desired.ts';
import { makeFanoutWorker, type WorkerOutcome } from '../../../lambdas/handlers/fanout-worker.ts';
import { outcome, recordingObservability } from '../../../lambdas/observability.ts';
import { type LocalIotCore, startLocalIotCore } from '../../../local/iot/index.ts';
import { documentClient, dynamoDbClient } from '../import/support.ts';
import { createDeploymentTables, type DeploymentTables } from './api-support.ts';
import {
  budget,
  createDeployment,
  executionsOf,
  type FanoutRig,
  fanoutRig,
  putFleetCompatibility,
  registerGroup,
  targetPagesOf,
  things,
} from './fanout-support.ts';

const ddb = dynamoDbClient(inject('ddbEndpoint'));
const doc = documentClient(ddb);
let tables: DeploymentTables;
let iot: LocalIotCore;
let observer: MqttClient;
/** Epoch ms at which the shadow service published each thing's `documents`: the send times. */
const sends: { thing: string; at: number }[] = [];
const rigs: FanoutRig[] = [];

beforeAll(async () => {
  tables = await createDeploymentTables(ddb, 'fanout');
  iot = await startLocalIotCore({ adminClientIds: ['observer'] });
  observer = await mqtt.connectAsync(iot.endpoints.mqtt, { clientId: 'observer', reconnectPeriod: 0 });
  await observer.subscribeAsync('$aws/things/+/shadow/name/ota/update/documents', { qos: 0 });
  observer.on('message', (topic) => sends.push({ thing: topic.split('/')[2] ?? '', at: Date.now() }));
});

afterAll(async () => {
  for (const rig of rigs) rig.destroy();
  await observer.endAsync(true);
  await iot.stop();
});

function rig(options: Parameters<typeof fanoutRig>[3] = {}, core: LocalIotCore = iot): FanoutRig {
  const made = fanoutRig(ddb, tables, core, options);
  rigs.push(made);
  return made;
}

/** Runs the expand lane, then every shard lane, following re-invocations until none is asked for. */
async function runAll(
  deps: FanoutDeps,
  deploymentId: string,
  invoker: FanoutRig['invoker'],
): Promise<WorkerOutcome[]> {
  const worker = makeFanoutWorker(deps);
  const outcomes: WorkerOutcome[] = [await worker({ deploymentId }, budget(60_000))];
  for (let i = 0; i < invoker.calls.length; i++) {
    const call = invoker.calls[i];
    if (call) outcomes.push(await worker(call.payload, budget(60_000)));
  }
  return outcomes;
}

/** Most sends in any window of `windowMs`, sliding over the recorded send times. */
function maxInWindow(times: readonly number[], windowMs: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let most = 0;
  for (let i = 0, j = 0; j < sorted.length; j++) {
    while ((sorted[j] ?? 0) - (sorted[i] ?? 0) >= windowMs) i++;
    most = Math.max(most, j - i + 1);
  }
  return most;
}

describe('fan-out worker: expansion', () => {
  it('expands a thing group of several pages and explicit things; a known mismatch is incompatible', async () => {
    const { deps, invoker, iotClient } = rig({ groupPageSize: 3 });
    const members = things('grp-a', 7);
    await registerGroup(iotClient, 'fanout-group-a', members);
    await putFleetCompatibility(doc, tables, 'grp-a-0003', { manufacturer: 'contoso', model: 'kettle' });
    await putFleetCompatibility(doc, tables, 'grp-a-0004', { manufacturer: 'contoso', model: 'toaster' });
    const deployment = await createDeployment(doc, tables, {
      target: { thingGroups: ['fanout-group-a'], things: ['solo-1', 'grp-a-0000'] },
    });

    const outcome = await makeFanoutWorker(deps)({ deploymentId: deployment.deploymentId }, budget(30_000));

    expect(outcome).toMatchObject({ kind: 'expanded', shardsStarted: 1 });
    // Only the incompatible device has a row; the others wait on target pages, each listed once
    // per page (grp-a-0000 is on the explicit page and on the group's first).
    const rows = await executionsOf(doc, tables, deployment.deploymentId);
    expect(rows.map((r) => [r.thingName, r.state, r.shard])).toEqual([['grp-a-0003', 'incompatible', 0]]);
    const pages = await targetPagesOf(doc, tables, deployment.deploymentId);
    expect(pages).toEqual([
      ['solo-1', 'grp-a-0000'],
      ['grp-a-0000', 'grp-a-0001', 'grp-a-0002'],
      ['grp-a-0004', 'grp-a-0005'],
      ['grp-a-0006'],
    ]);
    // Counted queued once per listing, until the fan-out takes the repeat back.
    expect((await deps.deployments.get(deployment.deploymentId))?.counters).toMatchObject({ queued: 8 });
    expect((await deps.deployments.get(deployment.deploymentId))?.status).toBe('rolling_out');
    expect(invoker.calls).toEqual([
      { name: 'fanoutWorker', payload: { deploymentId: deployment.deploymentId, lane: '0' } },
    ]);
  });
});

describe('fan-out worker: expansion of a canceled deployment', () => {
  it('stops expanding after the page during which the deployment was canceled', async () => {
    const { deps, iotClient } = rig({ groupPageSize: 3 });
    const members = things('grp-c', 9);
    await registerGroup(iotClient, 'fanout-group-c', members);
    const deployment = await createDeployment(doc, tables, { target: { thingGroups: ['fanout-group-c'] } });
    let pages = 0;
    const canceling: FanoutDeps = {
      ...deps,
      registry: {
        async listThingsInGroup(group, nextToken) {
          const page = await deps.registry.listThingsInGroup(group, nextToken);
          if (++pages === 1)
            await deps.deployments.end(deployment.deploymentId, { status: 'canceled' }, Date.now());
          return page;
        },
      },
    };

    const outcome = await makeFanoutWorker(canceling)(
      { deploymentId: deployment.deploymentId },
      budget(30_000),
    );

    expect(outcome).toMatchObject({ kind: 'skipped', reason: 'deployment is canceled' });
    expect(pages).toBe(1);
    expect(await targetPagesOf(doc, tables, deployment.deploymentId)).toEqual([
      ['grp-c-0000', 'grp-c-0001', 'grp-c-0002'],
    ]);
  });
});

describe('fan-out worker: notification', () => {
  it('resumes after a crash and after running out of time: every device notified once, one identical desired document', async () => {
    // Small batches, one at a time: a 120 ms budget then runs out long before 40 devices are done.
    const { deps, invoker } = rig({ tuning: { maxGrab: 5, concurrency: 1 } });
    const devices = things('crash', 40);
    const deployment = await createDeployment(doc, tables, {
      target: { things: devices },
      policy: { rollout: { ratePerMinute: 6000 } },
    });
    await makeFanoutWorker(deps)({ deploymentId: deployment.deploymentId }, budget(30_000));

    const notifiedWrites = new Map<string, number>();
    const countMark = (thingName: string) =>
      notifiedWrites.set(thingName, (notifiedWrites.get(thingName) ?? 0) + 1);
    // Marks are written a batch at a time, or alone when the batch could not write one.
    const counting: Pick<ExecutionStore, 'transition' | 'transitionMany'> = {
      async transition(current, next, extra) {
        const written = await deps.executions.transition(current, next, extra);
        if (written.ok && next.state === 'notified') countMark(current.thingName);
        return written;
      },
      async transitionMany(entries) {
        const outcomes = await deps.executions.transitionMany(entries);
        entries.forEach((entry, i) => {
          if (outcomes[i]?.kind === 'applied' && entry.next.state === 'notified')
            countMark(entry.current.thingName);
        });
        return outcomes;
      },
    };
    let sent = 0;
    const crashing: FanoutDeps = {
      ...deps,
      executions: { ...deps.executions, ...counting },
      shadows: {
        get: deps.shadows.get,
        async update(thing, document) {
          const result = await deps.shadows.update(thing, document);
          // The process dies after 7 sends, before their executions are marked notified.
          if (++sent === 7) throw new Error('simulated crash');
          return result;
        },
      },
    };
    await expect(
      makeFanoutWorker(crashing)({ deploymentId: deployment.deploymentId, lane: '0' }, budget(1500)),
    ).rejects.toThrow('simulated crash');

    const resumed: FanoutDeps = { ...deps, executions: { ...deps.executions, ...counting } };
    const outcomes: WorkerOutcome[] = [];
    // The crashed worker's lease holds the lane until its invocation would have ended.
    for (let run = 0; run < 200; run++) {
      // A tiny budget: each run stops after a batch or two, leaving the rest to the next one.
      const outcome = await makeFanoutWorker(resumed)(
        { deploymentId: deployment.deploymentId, lane: '0' },
        budget(120),
      );
      outcomes.push(outcome);
      if (outcome.kind === 'shard' && outcome.outcome.kind === 'finished') break;
      if (outcome.kind === 'skipped') await new Promise((resolve) => setTimeout(resolve, 100));
    }

    expect(outcomes.at(-1)).toMatchObject({ kind: 'shard', outcome: { kind: 'finished' } });
    expect(
      outcomes.filter((o) => o.kind === 'shard' && o.outcome.kind === 'out_of_time').length,
    ).toBeGreaterThan(0);
    const rows = await executionsOf(doc, tables, deployment.deploymentId);
    expect(rows.every((r) => r.state === 'notified' && r.notifiedAt !== undefined)).toBe(true);
    expect([...notifiedWrites.keys()].sort()).toEqual(devices);
    expect([...notifiedWrites.values()].every((n) => n === 1)).toBe(true);
    const expected = desiredDocumentFor({
      deploymentId: deployment.deploymentId,
      attempt: 1,
      updateId: deployment.updateId,
    });
    if (!expected.ok) throw new Error('fixture too large');
    for (const thing of devices) {
      const shadow = await iot.shadows.get({ thingName: thing, shadowName: 'ota' }, Buffer.alloc(0));
      expect(shadow.ok && shadow.body.state).toMatchObject({
        desired: expected.value.document.state.desired,
      });
    }
    expect(invoker.calls.some((c) => (c.payload as { lane?: string }).lane === '0')).toBe(true);
  });
});

describe('fan-out worker: rate, account cap, throttling, supersede', () => {
  it('keeps to the rollout rate: at most rate·w + burst sends in any window w', async () => {
    const { deps, invoker } = rig();
    const devices = things('rate', 20);
    const deployment = await createDeployment(doc, tables, {
      target: { things: devices },
      // 5 devices per second, bursts of 5.
      policy: { rollout: { ratePerMinute: 300 } },
    });
    await runAll(deps, deployment.deploymentId, invoker);

    const times = sends.filter((s) => devices.includes(s.thing)).map((s) => s.at);
    expect(times).toHaveLength(20);
    // One device of slack for the time between the worker's send and the broker's publish.
    for (const windowMs of [500, 1000, 2000]) {
      expect(maxInWindow(times, windowMs)).toBeLessThanOrEqual((5 * windowMs) / 1000 + 5 + 1);
    }
    // 20 devices at 5/s after a burst of 5 take at least 3 s: the rate was applied, not just allowed.
    expect(Math.max(...times) - Math.min(...times)).toBeGreaterThanOrEqual(2800);
  });

  it('hands over at its next step when the invocation is cut short, and does nothing with no time', async () => {
    const { deps, invoker } = rig();
    const devices = things('cut', 6);
    const deployment = await createDeployment(doc, tables, {
      target: { things: devices },
      // One device a second: the lane would take about 5 s, waiting in-process between devices.
      policy: { rollout: { ratePerMinute: 60 } },
    });
    await makeFanoutWorker(deps)({ deploymentId: deployment.deploymentId }, budget(30_000));
    const lane = { deploymentId: deployment.deploymentId, lane: '0' };
    // A context whose time ends early, as the local cloud's does when it stops.
    let cut = false;
    const full = budget(60_000);
    const cuttable = { getRemainingTimeInMillis: () => (cut ? 0 : full.getRemainingTimeInMillis()) };
    setTimeout(() => {
      cut = true;
    }, 1500);
    const calls = invoker.calls.length;

    const outcome = await makeFanoutWorker(deps)(lane, cuttable);

    expect(outcome).toMatchObject({ kind: 'shard', outcome: { kind: 'out_of_time' }, reinvoked: true });
    const notified = (await executionsOf(doc, tables, deployment.deploymentId)).filter(
      (r) => r.state === 'notified',
    );
    expect(notified.length).toBeGreaterThan(0);
    expect(notified.length).toBeLessThan(devices.length);
    expect(invoker.calls.slice(calls)).toEqual([{ name: 'fanoutWorker', payload: lane }]);
    // The re-invocation it asked for, given no time at all, leaves the lane as it is.
    expect(await makeFanoutWorker(deps)(lane, { getRemainingTimeInMillis: () => 0 })).toEqual({
      kind: 'skipped',
      reason: 'no time left',
    });
    expect(invoker.calls.length).toBe(calls + 1);
  });

  it('keeps two deployments together under the account cap', async () => {
    const first = rig({ cap: 8 });
    const second = rig({ cap: 8 });
    const a = things('cap-a', 12);
    const b = things('cap-b', 12);
    const [da, db] = await Promise.all([
      createDeployment(doc, tables, { target: { things: a }, policy: { rollout: { ratePerMinute: 6000 } } }),
      createDeployment(doc, tables, { target: { things: b }, policy: { rollout: { ratePerMinute: 6000 } } }),
    ]);
    await Promise.all([
      runAll(first.deps, da.deploymentId, first.invoker),
      runAll(second.deps, db.deploymentId, second.invoker),
    ]);

    const times = sends.filter((s) => a.includes(s.thing) || b.includes(s.thing)).map((s) => s.at);
    expect(times).toHaveLength(24);
    for (const windowMs of [500, 1000, 2000]) {
      expect(maxInWindow(times, windowMs)).toBeLessThanOrEqual((8 * windowMs) / 1000 + 8 + 1);
    }
    expect(Math.max(...times) - Math.min(...times)).toBeGreaterThanOrEqual(1800);
  });

  it('counts a device notified when its mark landed but the answer was lost, and writes a mark the batch left unsent on its own', async () => {
    // Batches of 6: two of them.
    const { deps, invoker } = rig({ tuning: { maxGrab: 6 } });
    const devices = things('lost-answer', 12);
    const deployment = await createDeployment(doc, tables, {
      target: { things: devices },
      policy: { rollout: { ratePerMinute: 6000 } },
    });
    let batches = 0;
    const executions: FanoutDeps['executions'] = {
      ...deps.executions,
      async transitionMany(entries) {
        batches++;
        // The first batch lands, its answer is lost, and it is sent again: refused, by its own write.
        if (batches === 1) await deps.executions.transitionMany(entries);
        const outcomes = await deps.executions.transitionMany(entries.slice(batches === 2 ? 1 : 0));
        // The second batch's first mark comes back throttled: it is written on its own.
        return batches === 2 ? [{ kind: 'unsent', code: 'ThrottlingError' }, ...outcomes] : outcomes;
      },
    };
    const observability = recordingObservability();
    const outcomes = await runAll({ ...deps, executions, observability }, deployment.deploymentId, invoker);

    expect(batches).toBeGreaterThanOrEqual(2);
    const notified = outcomes.reduce(
      (sum, o) => sum + (o.kind === 'shard' && 'notified' in o.outcome ? o.outcome.notified : 0),
      0,
    );
    expect(notified).toBe(12);
    const rows = await executionsOf(doc, tables, deployment.deploymentId);
    expect(rows.filter((r) => r.state === 'notified')).toHaveLength(12);
    expect(observability.counts.get(outcome.batchWriteSentAlone)).toBe(1);
  });

  it('backs off when the shadow service answers 429 and still notifies every device', async () => {
    const limited = await startLocalIotCore({ rateLimits: { accountPerSecond: 5 } });
    try {
      let retries = 0;
      const made = fanoutRig(ddb, tables, limited, {});
      rigs.push(made);
      const deps: FanoutDeps = {
        ...made.deps,
        shadows: makeShadowWriter({
          iotData: made.iotData,
          backoff: { maxAttempts: 10, baseDelayMs: 100, maxDelayMs: 800 },
          onRetry: () => retries++,
        }),
      };
      const devices = things('throttle', 15);
      const deployment = await createDeployment(doc, tables, {
        target: { things: devices },
        policy: { rollout: { ratePerMinute: 6000 } },
      });
      await runAll(deps, deployment.deploymentId, made.invoker);

      const rows = await executionsOf(doc, tables, deployment.deploymentId);
      expect(rows.filter((r) => r.state === 'notified')).toHaveLength(15);
      expect(retries).toBeGreaterThan(0);
    } finally {
      await limited.stop();
    }
  });

  it('supersedes an older deployment on the device, and never overwrites a newer one', async () => {
    const { deps, invoker } = rig();
    const t0 = Date.now();
    const older = await createDeployment(doc, tables, { target: { things: ['super-1'] } }, t0 - 2000);
    await runAll(deps, older.deploymentId, invoker);
    const newer = await createDeployment(doc, tables, { target: { things: ['super-1'] } }, t0);
    await runAll(deps, newer.deploymentId, invoker);

    const [olderRow] = await executionsOf(doc, tables, older.deploymentId);
    const [newerRow] = await executionsOf(doc, tables, newer.deploymentId);
    expect(olderRow).toMatchObject({ state: 'canceled', reason: 'superseded' });
    expect(newerRow).toMatchObject({ state: 'notified' });

    // A deployment created before the newer one reaches the device late: it loses, nothing is sent.
    const late = await createDeployment(doc, tables, { target: { things: ['super-1'] } }, t0 - 1000);
    await runAll(deps, late.deploymentId, invoker);
    const [lateRow] = await executionsOf(doc, tables, late.deploymentId);
    expect(lateRow).toMatchObject({ state: 'canceled', reason: 'superseded' });
    const shadow = iot.shadows.get({ thingName: 'super-1', shadowName: 'ota' }, Buffer.alloc(0));
    expect(shadow.ok && shadow.body.state).toMatchObject({
      desired: { ota: { deploymentId: newer.deploymentId } },
    });
  });
});

describe('fan-out worker: the supersede check only while another deployment is active', () => {
  /** A rig on tables of its own: no other test's deployment is active there. */
  async function isolatedRig(
    name: string,
  ): Promise<{ readonly tables: DeploymentTables; readonly made: FanoutRig }> {
    const own = await createDeploymentTables(ddb, name);
    const made = fanoutRig(ddb, own, iot);
    rigs.push(made);
    return { tables: own, made };
  }

  /** The rig's deps with every device-history read counted. */
  function countingHistory(made: FanoutRig): { deps: FanoutDeps; reads: () => number } {
    let reads = 0;
    const executions: FanoutDeps['executions'] = {
      ...made.deps.executions,
      listForThing(thingName, options) {
        reads++;
        return made.deps.executions.listForThing(thingName, options);
      },
    };
    return { deps: { ...made.deps, executions }, reads: () => reads };
  }

  it('reads no device history for a lone deployment, and does once another is active', async () => {
    const { tables: lone, made } = await isolatedRig('fanout-lone');
    const { deps, reads } = countingHistory(made);
    const t0 = Date.now();
    const older = await createDeployment(doc, lone, { target: { things: ['lone-1', 'lone-2'] } }, t0 - 2000);
    await runAll(deps, older.deploymentId, made.invoker);
    expect(reads()).toBe(0);
    expect((await executionsOf(doc, lone, older.deploymentId)).map((r) => r.state)).toEqual([
      'notified',
      'notified',
    ]);

    const newer = await createDeployment(doc, lone, { target: { things: ['lone-1'] } }, t0);
    await runAll(deps, newer.deploymentId, made.invoker);
    expect(reads()).toBeGreaterThan(0);
    const olderRows = await executionsOf(doc, lone, older.deploymentId);
    expect(olderRows.find((r) => r.thingName === 'lone-1')).toMatchObject({
      state: 'canceled',
      reason: 'superseded',
    });
  });

  it('sends its document again when an older deployment, blind to it, sent and marked the device during its send', async () => {
    const { tables: raceTables, made } = await isolatedRig('fanout-race-older');
    const t0 = Date.now();
    const older = await createDeployment(doc, raceTables, { target: { things: ['race-2'] } }, t0 - 2000);
    const newer = await createDeployment(doc, raceTables, { target: { things: ['race-2'] } }, t0);
    const worker = makeFanoutWorker(made.deps);
    await worker({ deploymentId: older.deploymentId }, budget(30_000));
    await worker({ deploymentId: newer.deploymentId }, budget(30_000));
    const laneOf = (id: string) =>
      made.invoker.calls.find((c) => (c.payload as { deploymentId: string }).deploymentId === id)?.payload;
    const olderLane = laneOf(older.deploymentId);
    const newerLane = laneOf(newer.deploymentId);
    if (!olderLane || !newerLane) throw new Error('lanes not started');

    // The older worker's listing of active deployments lags (the index is eventually consistent):
    // it sees no other deployment, so it reads no device history and sends.
    const blind: FanoutDeps = {
      ...made.deps,
      deployments: { ...made.deps.deployments, list: async () => ({ ok: true, value: { items: [] } }) },
    };
    let raced = false;
    const racing: FanoutDeps = {
      ...made.deps,
      shadows: {
        ...made.deps.shadows,
        async update(thingName, document) {
          const result = await made.deps.shadows.update(thingName, document);
          if (!raced) {
            raced = true;
            await makeFanoutWorker(blind)(olderLane, budget(30_000));
          }
          return result;
        },
      },
    };
    await makeFanoutWorker(racing)(newerLane, budget(30_000));

    expect(raced).toBe(true);
    const [olderRow] = await executionsOf(doc, raceTables, older.deploymentId);
    const [newerRow] = await executionsOf(doc, raceTables, newer.deploymentId);
    expect(olderRow).toMatchObject({ state: 'canceled', reason: 'superseded' });
    expect(newerRow).toMatchObject({ state: 'notified' });
    const shadow = iot.shadows.get({ thingName: 'race-2', shadowName: 'ota' }, Buffer.alloc(0));
    expect(shadow.ok && shadow.body.state).toMatchObject({
      desired: { ota: { deploymentId: newer.deploymentId } },
    });
  });

  /**
   * An older and a newer deployment of one device, in their own tables: the older one expanded
   * (the device waits on its page, no row) with its lane not yet run, the newer one created.
   */
  async function olderExpandedWithNewer(label: string, thingName: string) {
    const { tables: lateTables, made } = await isolatedRig(label);
    const t0 = Date.now();
    const older = await createDeployment(doc, lateTables, { target: { things: [thingName] } }, t0 - 2000);
    const newer = await createDeployment(doc, lateTables, { target: { things: [thingName] } }, t0);
    await makeFanoutWorker(made.deps)({ deploymentId: older.deploymentId }, budget(30_000));
    const olderLane = made.invoker.calls.at(-1)?.payload;
    if (!olderLane) throw new Error('no lane started');
    made.invoker.calls.length = 0;
    return { lateTables, made, older, newer, olderLane };
  }

  it('gives way without sending when it reaches a device a newer deployment already ended on', async () => {
    const { lateTables, made, older, newer, olderLane } = await olderExpandedWithNewer(
      'fanout-late',
      'late-1',
    );
    // The newer one runs and ends.
    await runAll(made.deps, newer.deploymentId, made.invoker);
    const [newerRow] = await executionsOf(doc, lateTables, newer.deploymentId);
    if (!newerRow) throw new Error('newer not notified');
    const ended = await made.deps.executions.transition(
      newerRow,
      { ...newerRow, state: 'succeeded', reportOrder: 2, reportedAt: Date.now() },
      { at: Date.now(), reason: 'device_report' },
    );
    expect(ended.ok).toBe(true);
    await made.deps.deployments.end(newer.deploymentId, { status: 'completed' }, Date.now());
    const sends: string[] = [];
    const counting: FanoutDeps = {
      ...made.deps,
      shadows: {
        ...made.deps.shadows,
        update(thingName, document) {
          sends.push(thingName);
          return made.deps.shadows.update(thingName, document);
        },
      },
    };

    await makeFanoutWorker(counting)(olderLane, budget(30_000));

    expect(sends).toEqual([]);
    const [olderRow] = await executionsOf(doc, lateTables, older.deploymentId);
    expect(olderRow).toMatchObject({ state: 'canceled', reason: 'superseded', targetPage: 0 });
  });

  it('still sends to a device that a newer deployment was canceled before reaching', async () => {
    const { lateTables, made, older, newer, olderLane } = await olderExpandedWithNewer(
      'fanout-unreached',
      'unreached-1',
    );
    // The newer one is canceled while the device still waits on its page: its cancel writes the
    // device's row `canceled`, never notified.
    const waiting = unwrittenExecution(newer.deploymentId, {
      thingName: 'unreached-1',
      updateId: newer.updateId,
      shard: 0,
      targetPage: 0,
    });
    const canceledRow = await made.deps.executions.transition(
      waiting,
      { ...waiting, state: 'canceled' },
      { at: Date.now(), reason: 'canceled_by_operator' },
    );
    expect(canceledRow.ok).toBe(true);
    await made.deps.deployments.end(newer.deploymentId, { status: 'canceled' }, Date.now());

    await makeFanoutWorker(made.deps)(olderLane, budget(30_000));

    const [olderRow] = await executionsOf(doc, lateTables, older.deploymentId);
    expect(olderRow).toMatchObject({ state: 'notified' });
    const shadow = iot.shadows.get({ thingName: 'unreached-1', shadowName: 'ota' }, Buffer.alloc(0));
    expect(shadow.ok && shadow.body.state).toMatchObject({
      desired: { ota: { deploymentId: older.deploymentId } },
    });
  });

  it('sends the newer document again when a newer deployment claimed the device during its own send', async () => {
    const { tables: raceTables, made } = await isolatedRig('fanout-race');
    const t0 = Date.now();
    const older = await createDeployment(doc, raceTables, { target: { things: ['race-1'] } }, t0 - 2000);
    const worker = makeFanoutWorker(made.deps);
    await worker({ deploymentId: older.deploymentId }, budget(30_000));
    const lane = made.invoker.calls.at(-1)?.payload;
    if (!lane) throw new Error('no lane started');

    // The older worker has decided to send (no other deployment was active); before its write
    // lands, a newer deployment claims the device and sends its own document.
    let newerId = '';
    const racing: FanoutDeps = {
      ...made.deps,
      shadows: {
        ...made.deps.shadows,
        async update(thingName, document) {
          if (!newerId) {
            const newer = await createDeployment(doc, raceTables, { target: { things: ['race-1'] } }, t0);
            newerId = newer.deploymentId;
            await runAll(made.deps, newer.deploymentId, made.invoker);
          }
          return made.deps.shadows.update(thingName, document);
        },
      },
    };
    await makeFanoutWorker(racing)(lane, budget(30_000));

    const [olderRow] = await executionsOf(doc, raceTables, older.deploymentId);
    expect(olderRow).toMatchObject({ state: 'canceled', reason: 'superseded' });
    const shadow = iot.shadows.get({ thingName: 'race-1', shadowName: 'ota' }, Buffer.alloc(0));
    expect(shadow.ok && shadow.body.state).toMatchObject({ desired: { ota: { deploymentId: newerId } } });
  });
});
