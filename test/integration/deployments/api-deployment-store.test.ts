import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  type DeploymentStore,
  EXPAND_LANE,
  makeDeploymentStore,
  type NewDeployment,
} from '../../../lambdas/adapters/deployment-store.ts';
import type { UpdateIdentity } from '../../../lambdas/adapters/update-store.ts';
import { parseDeploymentRequest } from '../../../lambdas/domain/deployment/index.ts';
import { documentClient, dynamoDbClient } from '../import/support.ts';
import {
  activeDeploymentsOf,
  createDeploymentTables,
  type DeploymentTables,
  putUpdate,
  uniqueName,
} from './api-support.ts';

const raw = dynamoDbClient(inject('ddbEndpoint'));
const db = documentClient(raw);
let tables: DeploymentTables;
let store: DeploymentStore;
const t0 = Date.parse('2030-01-01T00:00:00Z');

beforeAll(async () => {
  tables = await createDeploymentTables(raw, 'dstore');
  store = makeDeploymentStore({ db, tableName: tables.deployments, updatesTableName: tables.updates });
});

afterAll(() => raw.destroy());

async function readyUpdate(): Promise<UpdateIdentity> {
  const updateId = { provider: 'Contoso', name: uniqueName('Toaster'), version: '1.0' };
  await putUpdate(db, tables.updates, updateId);
  return updateId;
}

function newDeployment(updateId: UpdateIdentity, shards = 2): NewDeployment {
  const request = parseDeploymentRequest({ update: updateId, target: { things: ['t1'] } }, t0);
  if (!request.ok) throw new Error('fixture request is invalid');
  return {
    deploymentId: uniqueName('dep'),
    updateId,
    target: request.value.target,
    policy: request.value.policy,
    manifest: { inline: '{}', signature: 'a.b.c', keyId: 'k', expiresAt: '2030-02-01T00:00:00Z' },
    shards,
  };
}

describe('deployment store: create', () => {
  it('writes a scheduled deployment with zero counters, one lane per shard, and holds its update', async () => {
    const updateId = await readyUpdate();
    const created = await store.create(newDeployment(updateId, 3), t0);
    expect(created.ok).toBe(true);
    if (!created.ok) return;
    const stored = await store.get(created.value.deploymentId);
    expect(stored).toMatchObject({ status: 'scheduled', startAt: t0, holdsUpdate: true, shards: 3 });
    expect(stored?.counters.queued).toBe(0);
    expect(Object.keys(stored?.fanout ?? {}).sort()).toEqual(['0', '1', '2', EXPAND_LANE]);
    expect(await activeDeploymentsOf(db, tables.updates, updateId)).toBe(1);
  });

  it('refuses a second create with the same id and does not count the update twice', async () => {
    const updateId = await readyUpdate();
    const deployment = newDeployment(updateId);
    expect((await store.create(deployment, t0)).ok).toBe(true);
    const again = await store.create(deployment, t0 + 1);
    expect(again).toEqual({
      ok: false,
      error: { code: 'DEPLOYMENT_EXISTS', deploymentId: deployment.deploymentId },
    });
    expect(await activeDeploymentsOf(db, tables.updates, updateId)).toBe(1);
  });

  it('refuses an update that is not ready, writing nothing', async () => {
    const updateId = { provider: 'Contoso', name: uniqueName('Pending'), version: '1.0' };
    await putUpdate(db, tables.updates, updateId, 'pending');
    const deployment = newDeployment(updateId);
    const result = await store.create(deployment, t0);
    expect(result).toEqual({ ok: false, error: { code: 'UPDATE_NOT_READY', updateId } });
    expect(await store.get(deployment.deploymentId)).toBeUndefined();
  });
});

describe('deployment store: status', () => {
  it('moves forward only, stamps startedAt once, and treats a repeat as done', async () => {
    const created = await store.create(newDeployment(await readyUpdate()), t0);
    if (!created.ok) throw new Error('create failed');
    const id = created.value.deploymentId;
    const rolling = await store.setStatus(id, 'rolling_out', t0 + 1000);
    expect(rolling.ok && rolling.value.startedAt).toBe(new Date(t0 + 1000).toISOString());
    const repeat = await store.setStatus(id, 'rolling_out', t0 + 2000);
    expect(repeat.ok && repeat.value.startedAt).toBe(new Date(t0 + 1000).toISOString());
    const back = await store.setStatus(id, 'expanding', t0 + 3000);
    expect(back.ok ? undefined : back.error.code).toBe('DEPLOYMENT_STATUS_CONFLICT');
  });

  it('ends once and releases the update once, even when two callers end it at the same time', async () => {
    const updateId = await readyUpdate();
    const created = await store.create(newDeployment(updateId), t0);
    if (!created.ok) throw new Error('create failed');
    const id = created.value.deploymentId;
    const results = await Promise.all([
      store.end(id, { status: 'completed' }, t0 + 5000),
      store.recordAbort(id, '5 of 10 failed', t0 + 5000),
      store.end(id, { status: 'canceled' }, t0 + 5000),
    ]);
    expect(results.filter((r) => r.ok)).toHaveLength(1);
    expect(await activeDeploymentsOf(db, tables.updates, updateId)).toBe(0);
    const ended = await store.get(id);
    expect(ended).toMatchObject({ holdsUpdate: false, endedAt: new Date(t0 + 5000).toISOString() });
    expect(['completed', 'aborted', 'canceled']).toContain(ended?.status);
    const rolling = await store.setStatus(id, 'rolling_out', t0 + 6000);
    expect(rolling.ok ? undefined : rolling.error.code).toBe('DEPLOYMENT_STATUS_CONFLICT');
  });

  it('records the abort reason, and reopens an aborted deployment for a retry, holding the update again', async () => {
    const updateId = await readyUpdate();
    const created = await store.create(newDeployment(updateId), t0);
    if (!created.ok) throw new Error('create failed');
    const id = created.value.deploymentId;
    const aborted = await store.recordAbort(id, '6 of 10 failed', t0 + 1);
    expect(aborted.ok && aborted.value).toMatchObject({ status: 'aborted', abortReason: '6 of 10 failed' });
    const reopened = await store.reopen(id, t0 + 2);
    expect(reopened.ok && reopened.value).toMatchObject({ status: 'rolling_out', holdsUpdate: true });
    expect(reopened.ok && reopened.value.abortReason).toBeUndefined();
    expect(await activeDeploymentsOf(db, tables.updates, updateId)).toBe(1);
    const canceled = await store.end(id, { status: 'canceled' }, t0 + 3);
    expect(canceled.ok).toBe(true);
    const again = await store.reopen(id, t0 + 4);
    expect(again.ok ? undefined : again.error.code).toBe('DEPLOYMENT_STATUS_CONFLICT');
    expect(await activeDeploymentsOf(db, tables.updates, updateId)).toBe(0);
  });
});

describe('deployment store: listing', () => {
  it('pages through one status, newest first, and refuses a forged token', async () => {
    const updateId = await readyUpdate();
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const created = await store.create(newDeployment(updateId), t0 + i * 1000);
      if (!created.ok) throw new Error('create failed');
      ids.push(created.value.deploymentId);
      // Move them to a status no other test uses, so the listing sees exactly these three.
      await store.setStatus(created.value.deploymentId, 'expanding', t0);
    }
    const first = await store.list({ status: 'expanding', limit: 2 });
    if (!first.ok) throw new Error('list failed');
    expect(first.value.items.map((d) => d.deploymentId)).toEqual([ids[2], ids[1]]);
    expect(first.value.nextToken).toBeDefined();
    const second = await store.list({
      status: 'expanding',
      limit: 2,
      nextToken: first.value.nextToken ?? '',
    });
    if (!second.ok) throw new Error('list failed');
    expect(second.value.items.map((d) => d.deploymentId)).toEqual([ids[0]]);
    expect(second.value.nextToken).toBeUndefined();
    expect(await store.list({ limit: 2, nextToken: 'bm9wZQ' })).toEqual({
      ok: false,
      error: { code: 'INVALID_NEXT_TOKEN' },
    });
  });

  it('lists every status when none is named, walking all pages', async () => {
    const seen = new Set<string>();
    let nextToken: string | undefined;
    do {
      const page = await store.list({ limit: 3, ...(nextToken ? { nextToken } : {}) });
      if (!page.ok) throw new Error('list failed');
      for (const item of page.value.items) seen.add(item.deploymentId);
      nextToken = page.value.nextToken;
    } while (nextToken);
    const updateId = await readyUpdate();
    const created = await store.create(newDeployment(updateId), t0);
    if (!created.ok) throw new Error('create failed');
    const all = await store.list({ limit: 1000 });
    expect(all.ok && all.value.items.length).toBe(seen.size + 1);
  });
});

describe('deployment store: fan-out leases and checkpoints', () => {
  it('gives a lane to one worker at a time; a worker whose lease expired cannot save', async () => {
    const created = await store.create(newDeployment(await readyUpdate()), t0);
    if (!created.ok) throw new Error('create failed');
    const id = created.value.deploymentId;
    const a = { owner: 'worker-a', now: t0 };
    expect((await store.acquireLease(id, '0', a, t0 + 30_000)).ok).toBe(true);
    const b = await store.acquireLease(id, '0', { owner: 'worker-b', now: t0 + 1000 }, t0 + 31_000);
    expect(b).toMatchObject({
      ok: false,
      error: { code: 'LEASE_HELD', leaseOwner: 'worker-a', leaseUntil: t0 + 30_000 },
    });
    // Another lane is free.
    expect((await store.acquireLease(id, '1', { owner: 'worker-b', now: t0 }, t0 + 30_000)).ok).toBe(true);

    const saved = await store.saveFanoutCheckpoint(
      id,
      '0',
      { cursor: 'page-2', bucket: { credit: 5, at: t0 } },
      a,
    );
    expect(saved.ok).toBe(true);
    // Past the lease, worker b takes over; worker a's late save is refused and moves nothing.
    const later = t0 + 40_000;
    expect((await store.acquireLease(id, '0', { owner: 'worker-b', now: later }, later + 30_000)).ok).toBe(
      true,
    );
    const late = await store.saveFanoutCheckpoint(
      id,
      '0',
      { cursor: 'page-1' },
      { owner: 'worker-a', now: later },
    );
    expect(late.ok ? undefined : late.error.code).toBe('LEASE_HELD');
    await store.releaseLease(id, '0', 'worker-a');
    const lane = (await store.get(id))?.fanout['0'];
    expect(lane).toMatchObject({ cursor: 'page-2', bucket: { credit: 5, at: t0 }, leaseOwner: 'worker-b' });

    await store.releaseLease(id, '0', 'worker-b');
    const free = await store.acquireLease(id, '0', { owner: 'worker-c', now: later + 1 }, later + 2);
    expect(free.ok).toBe(true);
  });

  it('refuses leases on an ended deployment', async () => {
    const created = await store.create(newDeployment(await readyUpdate()), t0);
    if (!created.ok) throw new Error('create failed');
    await store.end(created.value.deploymentId, { status: 'canceled' }, t0);
    const lease = await store.acquireLease(
      created.value.deploymentId,
      EXPAND_LANE,
      { owner: 'w', now: t0 },
      t0 + 1,
    );
    expect(lease.ok ? undefined : lease.error.code).toBe('DEPLOYMENT_STATUS_CONFLICT');
  });
});

describe('deployment store: counters', () => {
  it('adds a batch once per stream shard and sequence number, comparing sequence numbers numerically', async () => {
    const created = await store.create(newDeployment(await readyUpdate()), t0);
    if (!created.ok) throw new Error('create failed');
    const id = created.value.deploymentId;
    const shard = 'shardId-00000001700000000000-abcdef01';
    expect((await store.addCounters(id, { queued: 3 }, { shardId: shard, lastSequence: '9' })).ok).toBe(true);
    // A redelivery and an older batch change nothing.
    const again = await store.addCounters(id, { queued: 3 }, { shardId: shard, lastSequence: '9' });
    expect(again.ok ? undefined : again.error.code).toBe('BATCH_ALREADY_APPLIED');
    const older = await store.addCounters(id, { queued: 1 }, { shardId: shard, lastSequence: '8' });
    expect(older.ok).toBe(false);
    // "10" > "9" as numbers although not as plain strings.
    expect(
      (await store.addCounters(id, { queued: -2, notified: 2 }, { shardId: shard, lastSequence: '10' })).ok,
    ).toBe(true);
    const other = '40000000000000000000000000000000000000001';
    expect(
      (
        await store.addCounters(
          id,
          { notified: -1, succeeded: 1 },
          { shardId: 'shard-2', lastSequence: other },
        )
      ).ok,
    ).toBe(true);
    const counters = (await store.get(id))?.counters;
    expect(counters).toMatchObject({ queued: 1, notified: 1, succeeded: 1, failed: 0 });
  });

  it('never creates a deployment item for an unknown deployment', async () => {
    const id = uniqueName('ghost');
    const result = await store.addCounters(id, { queued: 1 }, { shardId: 's', lastSequence: '1' });
    expect(result).toEqual({ ok: false, error: { code: 'DEPLOYMENT_NOT_FOUND', deploymentId: id } });
    expect(await store.get(id)).toBeUndefined();
  });
});
