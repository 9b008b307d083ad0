import { DynamoDBStreamsClient } from '@aws-sdk/client-dynamodb-streams';
import type { DynamoDBStreamEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type CounterBatches, makeCounterBatches } from '../../../lambdas/adapters/counter-batches.ts';
import {
  type DeploymentStore,
  makeDeploymentStore,
  type NewDeployment,
} from '../../../lambdas/adapters/deployment-store.ts';
import { type ExecutionStore, makeExecutionStore } from '../../../lambdas/adapters/execution-store.ts';
import {
  type AbortCriterion,
  applyTransition,
  type ExecutionState,
  emptyCounters,
  parseDeploymentRequest,
} from '../../../lambdas/domain/deployment/index.ts';
import { type CountersStreamHandler, makeCountersStream } from '../../../lambdas/handlers/counters-stream.ts';
import { recordingObservability } from '../../../lambdas/observability.ts';
import { type StreamPoller, startStreamPoller } from '../../../local/streams.ts';
import { documentClient, dynamoDbClient } from '../import/support.ts';
import { createDeploymentTables, type DeploymentTables, putUpdate, uniqueName } from './api-support.ts';

const raw = dynamoDbClient(inject('ddbEndpoint'));
const db = documentClient(raw);
const streams = new DynamoDBStreamsClient({
  endpoint: inject('ddbEndpoint'),
  region: 'us-east-1',
  credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
});
const updateId = { provider: 'Contoso', name: 'Toaster', version: '3.0' };
let tables: DeploymentTables;
let deployments: DeploymentStore;
let executions: ExecutionStore;
let counterBatches: CounterBatches;
let poller: StreamPoller;
let obs: ReturnType<typeof recordingObservability>;
/** What the poller delivers goes here; each test swaps the handler it wants. */
let current: CountersStreamHandler;
const delivered: DynamoDBStreamEvent[] = [];
const pollerErrors: unknown[] = [];

beforeAll(async () => {
  tables = await createDeploymentTables(raw, 'ackcount');
  deployments = makeDeploymentStore({ db, tableName: tables.deployments, updatesTableName: tables.updates });
  executions = makeExecutionStore({ db, tableName: tables.executions });
  counterBatches = makeCounterBatches({ db, tableName: tables.deployments });
  await putUpdate(db, tables.updates, updateId);
  obs = recordingObservability();
  current = makeCountersStream({ counters: counterBatches, deployments, observability: obs });
  poller = await startStreamPoller({
    streams,
    tableName: tables.executions,
    handler: async (event) => {
      delivered.push(event);
      await current(event);
    },
    idleDelayMs: 20,
    retryDelayMs: 20,
    // As Lambda's batching window: records written together arrive in one batch even when a
    // loaded machine lets the poller read between two writes (the half-failed batch test needs it).
    maxBatchingWindowMs: 250,
    onError: (error) => pollerErrors.push(error),
  });
});

afterAll(async () => {
  await poller.stop();
  streams.destroy();
  raw.destroy();
});

async function createDeployment(abort: AbortCriterion[] = []): Promise<string> {
  const request = parseDeploymentRequest(
    { update: updateId, target: { things: ['t1'] }, policy: { abort } },
    Date.now(),
  );
  if (!request.ok) throw new Error('fixture request is invalid');
  const deployment: NewDeployment = {
    deploymentId: uniqueName('dep'),
    updateId,
    target: request.value.target,
    policy: request.value.policy,
    manifest: { inline: '{}', signature: 'a.b.c', keyId: 'k', expiresAt: '2030-02-01T00:00:00Z' },
    shards: 1,
  };
  const created = await deployments.create(deployment, Date.now());
  if (!created.ok) throw new Error(created.error.code);
  const rolling = await deployments.setStatus(deployment.deploymentId, 'rolling_out', Date.now());
  if (!rolling.ok) throw new Error(rolling.error.code);
  return deployment.deploymentId;
}

async function queue(deploymentId: string, count: number): Promise<string[]> {
  const things = Array.from({ length: count }, (_, i) => `thing-${String(i).padStart(3, '0')}`);
  await executions.batchPutQueued(
    deploymentId,
    things.map((thingName) => ({ thingName, updateId, state: 'queued' as const, shard: 0 })),
    Date.now(),
  );
  return things;
}

/** Walks an execution through `path` with conditional writes, as the handlers do. */
async function walk(deploymentId: string, thingName: string, path: readonly ExecutionState[]): Promise<void> {
  for (const to of path) {
    const execution = await executions.get(deploymentId, thingName);
    if (!execution) throw new Error(`${thingName} missing`);
    const reason =
      to === 'notified' ? 'notified' : to === 'canceled' ? 'canceled_by_operator' : 'device_report';
    const { next } = applyTransition(
      execution,
      to,
      reason,
      to === 'notified' ? { notifiedAt: Date.now() } : {},
    );
    const written = await executions.transition(execution, next, { at: Date.now(), reason });
    if (!written.ok) throw new Error(`${thingName}: conflict`);
  }
}

/** The truth the counters must equal: each state's population, read from the table. */
async function populations(deploymentId: string): Promise<Record<ExecutionState, number>> {
  const counts = emptyCounters();
  const page = await executions.listForDeployment(deploymentId, { limit: 1000 });
  if (!page.ok) throw new Error('listing failed');
  for (const item of page.value.items) counts[item.state]++;
  return counts;
}

async function countersOf(deploymentId: string) {
  await poller.caughtUp();
  return (await deployments.get(deploymentId))?.counters;
}

describe('counter projection from the executions stream', () => {
  it('keeps every state counter equal to its population', async () => {
    const deploymentId = await createDeployment();
    const things = await queue(deploymentId, 12);
    await Promise.all([
      ...things.slice(0, 4).map((t) => walk(deploymentId, t, ['notified', 'downloading', 'succeeded'])),
      ...things.slice(4, 6).map((t) => walk(deploymentId, t, ['notified', 'failed'])),
      ...things.slice(6, 8).map((t) => walk(deploymentId, t, ['canceled'])),
      walk(deploymentId, things[8] ?? '', ['notified', 'installing']),
    ]);

    const counters = await countersOf(deploymentId);
    expect(counters).toEqual(await populations(deploymentId));
    expect(counters).toMatchObject({
      queued: 3,
      succeeded: 4,
      failed: 2,
      canceled: 2,
      installing: 1,
      notified: 0,
    });
  });

  it('counts a redelivered batch once', async () => {
    const deploymentId = await createDeployment();
    const things = await queue(deploymentId, 5);
    await walk(deploymentId, things[0] ?? '', ['notified', 'succeeded']);
    const before = await countersOf(deploymentId);
    const redelivered = obs.counts.get('CountersBatchRedelivered') ?? 0;

    const mine = delivered.filter((event) =>
      event.Records.some((r) => r.dynamodb?.Keys?.deploymentId?.S === deploymentId),
    );
    expect(mine.length).toBeGreaterThan(0);
    for (const event of mine) await current(event);

    expect((await deployments.get(deploymentId))?.counters).toEqual(before);
    expect(obs.counts.get('CountersBatchRedelivered')).toBe(redelivered + mine.length);
    expect(before).toEqual(await populations(deploymentId));
  });

  it('after a batch failed half-way, its redelivery adds only what was not counted', async () => {
    const first = await createDeployment();
    const second = await createDeployment();
    let failSecondOnce = true;
    current = makeCountersStream({
      counters: {
        add: async (deploymentId, deltas, batch) => {
          if (deploymentId === second && failSecondOnce) {
            failSecondOnce = false;
            throw new Error('injected: throttled after the first deployment was counted');
          }
          return counterBatches.add(deploymentId, deltas, batch);
        },
      },
      deployments,
      observability: obs,
    });
    try {
      const redelivered = obs.counts.get('CountersBatchRedelivered') ?? 0;
      // One batch holding both deployments' records: written before the poller's next pass.
      await Promise.all([queue(first, 3), queue(second, 4)]);
      const [a, b] = [await countersOf(first), await countersOf(second)];
      expect(failSecondOnce).toBe(false);
      expect(pollerErrors.some((e) => String(e).includes('injected'))).toBe(true);
      const both = delivered.filter((event) => {
        const ids = new Set(event.Records.map((r) => r.dynamodb?.Keys?.deploymentId?.S));
        return ids.has(first) && ids.has(second);
      });
      // The failed batch (holding both deployments) came twice, unchanged; the first deployment's
      // part was refused the second time.
      const names = both.map((event) => event.Records.map((r) => r.eventID).join());
      expect(names.length - new Set(names).size).toBe(1);
      expect(obs.counts.get('CountersBatchRedelivered')).toBe(redelivered + 1);
      expect(a).toEqual(await populations(first));
      expect(b).toEqual(await populations(second));
      expect(a?.queued).toBe(3);
      expect(b?.queued).toBe(4);
    } finally {
      current = makeCountersStream({ counters: counterBatches, deployments, observability: obs });
    }
  });

  it('aborts the deployment when finished devices cross a failure threshold, with the numbers', async () => {
    const deploymentId = await createDeployment([
      { failureType: 'FAILED', thresholdPercent: 50, minFinishedDevices: 4 },
    ]);
    const things = await queue(deploymentId, 6);
    await Promise.all([
      walk(deploymentId, things[0] ?? '', ['notified', 'succeeded']),
      walk(deploymentId, things[1] ?? '', ['notified', 'failed']),
      walk(deploymentId, things[2] ?? '', ['notified', 'failed']),
    ]);
    await poller.caughtUp();
    expect((await deployments.get(deploymentId))?.status).toBe('rolling_out');

    await walk(deploymentId, things[3] ?? '', ['notified', 'succeeded']);
    await poller.caughtUp();
    const aborted = await deployments.get(deploymentId);
    expect(aborted?.status).toBe('aborted');
    expect(aborted?.abortReason).toContain('2 of 4 finished devices failed');
    expect(obs.counts.get('DeploymentAborted')).toBe(1);
  });

  it('does not abort below the threshold', async () => {
    const deploymentId = await createDeployment([
      { failureType: 'ANY_FAILURE', thresholdPercent: 50, minFinishedDevices: 4 },
    ]);
    const things = await queue(deploymentId, 4);
    await Promise.all([
      walk(deploymentId, things[0] ?? '', ['notified', 'succeeded']),
      walk(deploymentId, things[1] ?? '', ['notified', 'succeeded']),
      walk(deploymentId, things[2] ?? '', ['notified', 'succeeded']),
      walk(deploymentId, things[3] ?? '', ['notified', 'failed']),
    ]);
    await poller.caughtUp();
    expect((await deployments.get(deploymentId))?.status).toBe('rolling_out');
  });
});
