import {
  AddThingToThingGroupCommand,
  CreateThingCommand,
  CreateThingGroupCommand,
  IoTClient,
} from '@aws-sdk/client-iot';
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  type ExecutionRecord,
  type ExecutionStore,
  makeExecutionStore,
  type NewExecution,
  unwrittenExecution,
} from '../../../lambdas/adapters/execution-store.ts';
import { type FleetStore, makeFleetStore } from '../../../lambdas/adapters/fleet-store.ts';
import { makeThingRegistry } from '../../../lambdas/adapters/thing-registry.ts';
import { notify, retry } from '../../../lambdas/domain/deployment/index.ts';
import { shardOf } from '../../../lambdas/handlers/fanout/sharding.ts';
import { type LocalIotCore, startLocalIotCore } from '../../../local/iot/index.ts';
import { documentClient, dynamoDbClient } from '../import/support.ts';
import { createDeploymentTables, type DeploymentTables, uniqueName } from './api-support.ts';

const raw = dynamoDbClient(inject('ddbEndpoint'));
const db = documentClient(raw);
let tables: DeploymentTables;
let executions: ExecutionStore;
let fleet: FleetStore;
const t0 = Date.parse('2030-01-01T00:00:00Z');
const updateId = { provider: 'Contoso', name: 'Toaster', version: '1.0' };

beforeAll(async () => {
  tables = await createDeploymentTables(raw, 'estore');
  executions = makeExecutionStore({ db, tableName: tables.executions });
  fleet = makeFleetStore({ db, tableName: tables.fleet });
});

afterAll(() => raw.destroy());

function devices(count: number, shards = 4): NewExecution[] {
  return Array.from({ length: count }, (_, i) => {
    const thingName = `thing-${String(i).padStart(3, '0')}`;
    return { thingName, updateId, state: 'queued' as const, shard: shardOf(thingName, shards) };
  });
}

async function mustGet(deploymentId: string, thingName: string): Promise<ExecutionRecord> {
  const record = await executions.get(deploymentId, thingName);
  if (!record) throw new Error(`${thingName} missing`);
  return record;
}

/** A `transitionMany` entry: `current` notified at `at`, due by `deadline`. */
function notifiedEntry(current: ExecutionRecord, at: number, deadline: number) {
  const decision = notify(current, at);
  if (!decision.ok) throw new Error('not notifiable');
  return { current, next: decision.value.next, extra: { at, reason: 'notified' as const, deadline } };
}

describe('execution store', () => {
  it('writes more than one batch, ignores a device named twice, and serves per-state, per-shard pages', async () => {
    const deploymentId = uniqueName('dep');
    const all = devices(60);
    const first = all[0];
    if (!first) throw new Error('no devices');
    await executions.batchPutQueued(
      deploymentId,
      [...all, first, { ...first, thingName: 'odd-one', state: 'incompatible' }],
      t0,
    );

    const listed: string[] = [];
    let nextToken: string | undefined;
    do {
      const page = await executions.listForDeployment(deploymentId, {
        limit: 25,
        ...(nextToken ? { nextToken } : {}),
      });
      if (!page.ok) throw new Error('bad token');
      listed.push(...page.value.items.map((e) => e.thingName));
      nextToken = page.value.nextToken;
    } while (nextToken);
    expect(listed).toHaveLength(61);

    const incompatible = await executions.listForDeployment(deploymentId, {
      state: 'incompatible',
      limit: 10,
    });
    expect(incompatible.ok && incompatible.value.items.map((e) => e.thingName)).toEqual(['odd-one']);

    const shardTwo = all
      .filter((d) => d.shard === 2)
      .map((d) => d.thingName)
      .sort();
    const queuedInShard = await executions.queryByState(deploymentId, 'queued', { limit: 100, shard: 2 });
    expect(queuedInShard.items.map((e) => e.thingName)).toEqual(shardTwo);
    expect(queuedInShard.items[0]).toMatchObject({ state: 'queued', attempt: 1, updateId, shard: 2 });

    // Queued first attempts are read from the table: the incompatible row is filtered out of a page.
    const page = await executions.queryByState(deploymentId, 'queued', { limit: 7 });
    expect(page.items.map((e) => e.state)).toEqual(Array(6).fill('queued'));
    const rest = await executions.queryByState(deploymentId, 'queued', {
      limit: 100,
      ...(page.lastEvaluatedKey ? { exclusiveStartKey: page.lastEvaluatedKey } : {}),
    });
    expect(page.items.length + rest.items.length).toBe(60);
    expect(await executions.listForDeployment(deploymentId, { limit: 5, nextToken: 'e30' })).toEqual({
      ok: false,
      error: { code: 'INVALID_NEXT_TOKEN' },
    });
  });

  it('applies a transition once: the second writer of the same decision gets a conflict with the current record', async () => {
    const deploymentId = uniqueName('dep');
    await executions.batchPutQueued(deploymentId, devices(1), t0);
    const current = await mustGet(deploymentId, 'thing-000');
    const decision = notify(current, t0 + 1000);
    if (!decision.ok) throw new Error('not notifiable');
    const results = await Promise.all(
      Array.from({ length: 5 }, () =>
        executions.transition(current, decision.value.next, {
          at: t0 + 1000,
          reason: 'notified',
          deadline: t0 + 61_000,
        }),
      ),
    );
    expect(results.filter((r) => r.ok)).toHaveLength(1);
    const conflict = results.find((r) => !r.ok);
    expect(conflict?.ok === false && conflict.error).toMatchObject({
      code: 'EXECUTION_CONFLICT',
      current: { state: 'notified', notifiedAt: t0 + 1000, deadline: t0 + 61_000, reason: 'notified' },
    });
    // The state index follows the state.
    expect((await executions.queryByState(deploymentId, 'queued', { limit: 10 })).items).toHaveLength(0);
    expect((await executions.queryByState(deploymentId, 'notified', { limit: 10 })).items).toHaveLength(1);
  });

  it('writes many transitions in batches of statements: rows inserted or updated as one by one, refusals with the record as it is', async () => {
    const deploymentId = uniqueName('dep');
    const waiting = Array.from({ length: 28 }, (_, i) =>
      unwrittenExecution(deploymentId, { thingName: `w-${i}`, updateId, shard: 1, targetPage: 3 }),
    );
    await executions.batchPutQueued(
      deploymentId,
      [{ thingName: 'rowed', updateId, state: 'queued', shard: 2 }],
      t0,
    );
    const rowed = await mustGet(deploymentId, 'rowed');
    const taken = unwrittenExecution(deploymentId, { thingName: 'taken', updateId, shard: 1, targetPage: 3 });
    const entryOf = (current: ExecutionRecord) => notifiedEntry(current, t0 + 1000, t0 + 61_000);
    // `taken` got its row meanwhile (a cancel, say); `rowed` was notified by another worker.
    const takenAlready = await executions.transition(taken, entryOf(taken).next, entryOf(taken).extra);
    expect(takenAlready.ok).toBe(true);
    const ahead = await executions.transition(rowed, entryOf(rowed).next, entryOf(rowed).extra);
    expect(ahead.ok).toBe(true);
    const stale = await executions.transitionMany([entryOf(rowed), entryOf(taken)]);
    expect(stale.map((o) => o.kind)).toEqual(['refused', 'refused']);
    expect(stale[0]).toMatchObject({ current: { thingName: 'rowed', state: 'notified' } });
    expect(stale[1]).toMatchObject({ current: { thingName: 'taken', state: 'notified', targetPage: 3 } });

    const first = waiting[0] as ExecutionRecord;
    const outcomes = await executions.transitionMany([...waiting.map(entryOf), entryOf(first)]);
    expect(outcomes.slice(0, 28).every((o) => o.kind === 'applied')).toBe(true);
    expect(outcomes[28]).toEqual({ kind: 'unsent', code: 'SAME_EXECUTION_IN_BATCH' });
    for (const [i, outcome] of outcomes.slice(0, 28).entries()) {
      const stored = await mustGet(deploymentId, `w-${i}`);
      // The record the batch answers with is the row as written, as `transition` answers.
      expect(outcome.kind === 'applied' && outcome.record).toEqual(stored);
      expect(stored).toMatchObject({
        state: 'notified',
        shard: 1,
        targetPage: 3,
        deadline: t0 + 61_000,
        attempt: 1,
      });
    }
    // The same as a row written one by one, but for its name.
    const alone = await executions.transition(
      unwrittenExecution(deploymentId, { thingName: 'alone', updateId, shard: 1, targetPage: 3 }),
      entryOf(first).next,
      entryOf(first).extra,
    );
    const { thingName: _a, ...aloneRest } = alone.ok ? alone.value : ({} as ExecutionRecord);
    const { thingName: _b, ...batchRest } = await mustGet(deploymentId, 'w-0');
    expect(batchRest).toEqual(aloneRest);
    expect((await executions.queryByState(deploymentId, 'notified', { limit: 50 })).items).toHaveLength(31);
  });

  it('updates written rows in a batch as one by one: fields removed, the index moved, the record as stored', async () => {
    const deploymentId = uniqueName('dep');
    await executions.batchPutQueued(
      deploymentId,
      ['r-batch', 'r-alone'].map((thingName) => ({
        thingName,
        updateId,
        state: 'queued' as const,
        shard: 2,
      })),
      t0,
    );
    const entryOf = (current: ExecutionRecord) => notifiedEntry(current, t0 + 2000, t0 + 9000);
    const [batched] = await executions.transitionMany([entryOf(await mustGet(deploymentId, 'r-batch'))]);
    const aloneEntry = entryOf(await mustGet(deploymentId, 'r-alone'));
    const alone = await executions.transition(aloneEntry.current, aloneEntry.next, aloneEntry.extra);
    const stored = await mustGet(deploymentId, 'r-batch');
    expect(batched).toEqual({ kind: 'applied', record: stored });
    const { thingName: _a, ...aloneRest } = alone.ok ? alone.value : ({} as ExecutionRecord);
    const { thingName: _b, ...batchRest } = stored;
    expect(batchRest).toEqual(aloneRest);
    expect(stored).toMatchObject({ state: 'notified', notifiedAt: t0 + 2000, deadline: t0 + 9000 });
    // The moved row is found in its new index partition, as the single write's is.
    const notified = (await executions.queryByState(deploymentId, 'notified', { limit: 10 })).items;
    expect(notified.map((e) => e.thingName).sort()).toEqual(['r-alone', 'r-batch']);
    // Written again from the same read: refused, with the row as it is.
    const [again] = await executions.transitionMany([
      entryOf(batched?.kind === 'applied' ? { ...stored, state: 'queued' } : stored),
    ]);
    expect(again).toMatchObject({ kind: 'refused', current: { state: 'notified' } });
  });

  it('throws when a batch of statements fails as a whole, rather than leaving 25 writes to be sent one by one', async () => {
    const nowhere = makeExecutionStore({ db, tableName: `missing-${uniqueName('t')}` });
    const waiting = unwrittenExecution('dep', { thingName: 'x', updateId, shard: 0, targetPage: 0 });
    const decision = notify(waiting, t0);
    if (!decision.ok) throw new Error('not notifiable');
    await expect(
      nowhere.transitionMany([
        { current: waiting, next: decision.value.next, extra: { at: t0, reason: 'notified' } },
      ]),
    ).rejects.toThrow();
  });

  it('checks the shadow version it read, and a retry starts a clean attempt', async () => {
    const deploymentId = uniqueName('dep');
    await executions.batchPutQueued(deploymentId, devices(1), t0);
    const queued = await mustGet(deploymentId, 'thing-000');
    const notified = await executions.transition(
      queued,
      { ...queued, state: 'notified', notifiedAt: t0 },
      { at: t0 },
    );
    if (!notified.ok) throw new Error('notify failed');
    const failedReport = {
      ...notified.value,
      state: 'failed' as const,
      reportOrder: 7,
      reportedAt: t0 + 5,
    };
    const lastResult = { resultCode: 0, extendedResultCode: 42, resultDetails: 'step 1 failed' };
    const failed = await executions.transition(notified.value, failedReport, {
      at: t0 + 5,
      reason: 'device_report',
      lastResult,
    });
    if (!failed.ok) throw new Error('fail transition failed');
    // A decision made on the record before report 7 was applied is refused.
    const stale = await executions.transition(
      notified.value,
      { ...notified.value, state: 'downloading', reportOrder: 6 },
      { at: t0 + 6 },
    );
    expect(stale.ok).toBe(false);

    const again = retry(failed.value);
    if (!again.ok) throw new Error('not retryable');
    const requeued = await executions.transition(failed.value, again.value.next, {
      at: t0 + 10,
      reason: 'retry',
    });
    expect(requeued.ok && requeued.value).toMatchObject({
      state: 'queued',
      attempt: 2,
      reportOrder: 7,
      reason: 'retry',
    });
    expect(requeued.ok && requeued.value.notifiedAt).toBeUndefined();
    expect(requeued.ok && requeued.value.lastResult).toBeUndefined();
  });

  it('serves each state from its index partition (in-progress states share one, succeeded has none) with the full records', async () => {
    const deploymentId = uniqueName('dep');
    await executions.batchPutQueued(deploymentId, devices(3), t0);
    const move = async (thingName: string, state: 'notified' | 'downloading' | 'succeeded') => {
      const current = await mustGet(deploymentId, thingName);
      const lastResult = { resultCode: 700, extendedResultCode: 0, resultDetails: `${thingName} ${state}` };
      const moved = await executions.transition(current, { ...current, state }, { at: t0 + 1, lastResult });
      if (!moved.ok) throw new Error(`${thingName} did not move`);
    };
    await move('thing-000', 'notified');
    await move('thing-001', 'notified');
    await move('thing-001', 'downloading');
    await move('thing-002', 'notified');
    await move('thing-002', 'succeeded');

    const names = async (state: 'queued' | 'notified' | 'downloading' | 'succeeded') => {
      const listed = await executions.listForDeployment(deploymentId, { state, limit: 50 });
      if (!listed.ok) throw new Error('bad token');
      return listed.value.items.map((e) => [e.thingName, e.lastResult?.resultDetails]);
    };
    expect(await names('notified')).toEqual([['thing-000', 'thing-000 notified']]);
    expect(await names('downloading')).toEqual([['thing-001', 'thing-001 downloading']]);
    expect(await names('succeeded')).toEqual([['thing-002', 'thing-002 succeeded']]);
    expect(await names('queued')).toEqual([]);
    const atWork = await executions.queryByState(deploymentId, 'in_progress', { limit: 50 });
    expect(atWork.items.map((e) => [e.thingName, e.state])).toEqual([
      ['thing-000', 'notified'],
      ['thing-001', 'downloading'],
    ]);
    expect(atWork.lastEvaluatedKey).toBeUndefined();
    const downloading = await executions.queryByState(deploymentId, 'downloading', { limit: 50 });
    expect(downloading.items.map((e) => [e.thingName, e.attempt, e.createdAt])).toEqual([
      ['thing-001', 1, new Date(t0).toISOString()],
    ]);

    // What the index holds, read raw: one shared partition for work in progress, nothing for succeeded.
    const raw = await executions.get(deploymentId, 'thing-002');
    expect(raw).toMatchObject({ state: 'succeeded' });
    const item = await db.send(
      new GetCommand({ TableName: tables.executions, Key: { deploymentId, thingName: 'thing-001' } }),
    );
    expect(item.Item?.deploymentState).toBe(`${deploymentId}#active`);
    const done = await db.send(
      new GetCommand({ TableName: tables.executions, Key: { deploymentId, thingName: 'thing-002' } }),
    );
    expect(done.Item && 'deploymentState' in done.Item).toBe(false);
  });

  it('indexes no first attempt while queued, keeps retried devices and devices at work apart, and walks both where a selector spans them', async () => {
    const deploymentId = uniqueName('dep');
    await executions.batchPutQueued(deploymentId, devices(6), t0);
    const capacity: number[] = [];
    const counted = dynamoDbClient(inject('ddbEndpoint'));
    counted.middlewareStack.add(
      (next) => async (args) => {
        const input = args.input as Record<string, unknown>;
        input.ReturnConsumedCapacity = 'TOTAL';
        const out = await next(args);
        const consumed = (out.output as { ConsumedCapacity?: { CapacityUnits?: number } }).ConsumedCapacity;
        capacity.push(consumed?.CapacityUnits ?? Number.NaN);
        return out;
      },
      { step: 'initialize', name: 'consumedCapacity' },
    );
    const measured = makeExecutionStore({ db: documentClient(counted), tableName: tables.executions });
    const stateKeyOf = async (thingName: string) =>
      (await db.send(new GetCommand({ TableName: tables.executions, Key: { deploymentId, thingName } }))).Item
        ?.deploymentState;
    // thing-000 notified, then downloading: put into the partition of devices at work (the item
    // and one index put), then rewritten there in place (the item and one index write).
    const queued = await mustGet(deploymentId, 'thing-000');
    expect(await stateKeyOf('thing-000')).toBeUndefined();
    const notified = notify(queued, t0 + 1);
    if (!notified.ok) throw new Error('not notifiable');
    const marked = await measured.transition(queued, notified.value.next, { at: t0 + 1, reason: 'notified' });
    if (!marked.ok) throw new Error('not marked');
    expect(await stateKeyOf('thing-000')).toBe(`${deploymentId}#active`);
    const working = await measured.transition(
      marked.value,
      { ...marked.value, state: 'downloading' },
      { at: t0 + 2 },
    );
    expect(working.ok).toBe(true);
    expect(capacity).toEqual([2, 2]);
    counted.destroy();
    // thing-001 failed and retried: it waits apart, where the fan-out's tail pass looks.
    let current = await mustGet(deploymentId, 'thing-001');
    for (const state of ['notified', 'failed'] as const) {
      const moved = await executions.transition(current, { ...current, state }, { at: t0 + 2 });
      if (!moved.ok) throw new Error(`thing-001 did not move to ${state}`);
      current = moved.value;
    }
    const retried = retry(current);
    if (!retried.ok) throw new Error('not retryable');
    const requeued = await executions.transition(current, retried.value.next, {
      at: t0 + 3,
      reason: 'retry',
    });
    expect(requeued.ok && requeued.value).toMatchObject({ state: 'queued', attempt: 2 });
    expect(await stateKeyOf('thing-001')).toBe(`${deploymentId}#requeued`);

    const names = (page: { items: readonly ExecutionRecord[] }) => page.items.map((e) => e.thingName);
    expect(names(await executions.queryByState(deploymentId, 'requeued', { limit: 10 }))).toEqual([
      'thing-001',
    ]);
    // The sweeps' view holds devices at work only, never a queued backlog: one whole page.
    const atWork = await executions.queryByState(deploymentId, 'in_progress', { limit: 2 });
    expect(names(atWork)).toEqual(['thing-000']);
    expect(atWork.lastEvaluatedKey).toBeUndefined();
    // Walked page by page: `queued` from the table (first attempts and retried), `in_flight` across
    // the two index partitions, retried first.
    const walk = async (selector: 'queued' | 'in_flight') => {
      const found: string[] = [];
      let start: Parameters<ExecutionStore['queryByState']>[2]['exclusiveStartKey'];
      do {
        const page = await executions.queryByState(deploymentId, selector, {
          limit: 2,
          ...(start ? { exclusiveStartKey: start } : {}),
        });
        found.push(...names(page));
        start = page.lastEvaluatedKey;
      } while (start);
      return found;
    };
    expect(await walk('queued')).toEqual(['thing-001', 'thing-002', 'thing-003', 'thing-004', 'thing-005']);
    expect(await walk('in_flight')).toEqual(['thing-001', 'thing-000']);
    // The API's listing pages through the table with tokens (pages may be short).
    const listed: string[] = [];
    let nextToken: string | undefined;
    do {
      const page = await executions.listForDeployment(deploymentId, {
        state: 'queued',
        limit: 3,
        ...(nextToken ? { nextToken } : {}),
      });
      if (!page.ok) throw new Error('bad token');
      listed.push(...names(page.value));
      nextToken = page.value.nextToken;
    } while (nextToken);
    expect(listed).toEqual(['thing-001', 'thing-002', 'thing-003', 'thing-004', 'thing-005']);
  });

  it("lists a device's executions across deployments, newest first", async () => {
    const thing = uniqueName('device');
    const older = uniqueName('dep-a');
    const newer = uniqueName('dep-b');
    const device = { thingName: thing, updateId, state: 'queued' as const, shard: 0 };
    await executions.batchPutQueued(older, [device], t0);
    await executions.batchPutQueued(newer, [device], t0 + 60_000);
    const first = await executions.listForThing(thing, { limit: 1 });
    if (!first.ok) throw new Error('bad token');
    expect(first.value.items.map((e) => e.deploymentId)).toEqual([newer]);
    const second = await executions.listForThing(thing, { limit: 1, nextToken: first.value.nextToken ?? '' });
    expect(second.ok && second.value.items.map((e) => e.deploymentId)).toEqual([older]);
  });
});

describe('fleet store', () => {
  it('keeps the newest report whatever order reports arrive in', async () => {
    const thing = uniqueName('device');
    expect(
      await fleet.upsertReport(thing, {
        lastReportAt: t0 + 2000,
        installedUpdateId: updateId,
        compatibility: { model: 'x' },
      }),
    ).toEqual({ applied: true });
    expect(
      await fleet.upsertReport(thing, {
        lastReportAt: t0 + 1000,
        installedUpdateId: { ...updateId, version: '0.9' },
      }),
    ).toEqual({ applied: false });
    expect(await fleet.upsertReport(thing, { lastReportAt: t0 + 3000 })).toEqual({ applied: true });
    expect(await fleet.get(thing)).toMatchObject({
      installedUpdateId: updateId,
      compatibility: { model: 'x' },
      lastReportAt: t0 + 3000,
    });
  });

  it('scans the fleet page by page for devices matching a compatibility set', async () => {
    const model = uniqueName('model');
    for (let i = 0; i < 7; i++) {
      await fleet.upsertReport(uniqueName(`match-${i}`), {
        lastReportAt: t0,
        compatibility: { model, hw: 'v2' },
      });
    }
    await fleet.upsertReport(uniqueName('other-hw'), {
      lastReportAt: t0,
      compatibility: { model, hw: 'v1' },
    });
    await fleet.upsertReport(uniqueName('silent'), { lastReportAt: t0 });
    let matched = 0;
    let pages = 0;
    let nextToken: string | undefined;
    do {
      const page = await fleet.scanCompatible([{ model, hw: 'v2' }], {
        limit: 4,
        ...(nextToken ? { nextToken } : {}),
      });
      if (!page.ok) throw new Error('bad token');
      matched += page.value.items.length;
      pages++;
      nextToken = page.value.nextToken;
    } while (nextToken);
    expect(matched).toBe(7);
    expect(pages).toBeGreaterThan(1);
  });
});

describe('thing registry over the local IoT Core', () => {
  let iot: LocalIotCore;
  let client: IoTClient;

  beforeAll(async () => {
    iot = await startLocalIotCore({ ports: { mqtt: 0, mqtts: 0, iotData: 0, iot: 0 } });
    client = new IoTClient({
      endpoint: iot.endpoints.iot,
      region: 'us-east-1',
      credentials: { accessKeyId: 'x', secretAccessKey: 'x' },
    });
  });

  afterAll(async () => {
    client.destroy();
    await iot.stop();
  });

  it("pages through a group's members, child groups included, and tells an unknown group apart", async () => {
    await client.send(new CreateThingGroupCommand({ thingGroupName: 'kitchen' }));
    await client.send(
      new CreateThingGroupCommand({ thingGroupName: 'toasters', parentGroupName: 'kitchen' }),
    );
    const names = ['t-1', 't-2', 't-3', 't-4', 't-5'];
    for (const [i, thingName] of names.entries()) {
      await client.send(new CreateThingCommand({ thingName }));
      await client.send(
        new AddThingToThingGroupCommand({ thingName, thingGroupName: i < 2 ? 'kitchen' : 'toasters' }),
      );
    }
    const registry = makeThingRegistry({ iot: client, pageSize: 2 });
    const found: string[] = [];
    let nextToken: string | undefined;
    let pages = 0;
    do {
      const page = await registry.listThingsInGroup('kitchen', nextToken);
      expect(page.groupFound).toBe(true);
      found.push(...page.thingNames);
      nextToken = page.nextToken;
      pages++;
    } while (nextToken);
    expect(found.sort()).toEqual(names);
    expect(pages).toBe(3);
    expect(await registry.listThingsInGroup('no-such-group')).toEqual({ groupFound: false, thingNames: [] });
    expect(await registry.thingExists('t-3')).toBe(true);
    expect(await registry.thingExists('t-404')).toBe(false);
  });
});
