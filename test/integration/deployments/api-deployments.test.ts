import { randomUUID } from 'node:crypto';
import { IoTDataPlaneClient } from '@aws-sdk/client-iot-data-plane';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { makeArtifactStore } from '../../../lambdas/adapters/artifact-store.ts';
import { type DeploymentStore, makeDeploymentStore } from '../../../lambdas/adapters/deployment-store.ts';
import {
  type ExecutionStore,
  makeExecutionStore,
  unwrittenExecution,
} from '../../../lambdas/adapters/execution-store.ts';
import { type FleetStore, makeFleetStore } from '../../../lambdas/adapters/fleet-store.ts';
import { generateLocalSigningKey, makeLocalKeySigner } from '../../../lambdas/adapters/local-key-signer.ts';
import { makeShadowWriter, type ShadowWriter } from '../../../lambdas/adapters/shadow-writer.ts';
import { makeTargetPages, type TargetPages } from '../../../lambdas/adapters/target-pages.ts';
import { makeUpdateStore } from '../../../lambdas/adapters/update-store.ts';
import { apiRoutes } from '../../../lambdas/definitions/api.ts';
import { type ExecutionState, retry } from '../../../lambdas/domain/deployment/index.ts';
import { verifyUpdateManifestSignature } from '../../../lambdas/domain/signing/index.ts';
import { cancelExecutions } from '../../../lambdas/handlers/deployments/control.ts';
import { defaultTuning } from '../../../lambdas/handlers/deployments/deps.ts';
import {
  type DeploymentsApiHandler,
  type DeploymentsApiOptions,
  makeDeploymentsApi,
} from '../../../lambdas/handlers/deployments-api.ts';
import { shardOf } from '../../../lambdas/handlers/fanout/sharding.ts';
import { makeUpdatesApi, type UpdatesApiHandler } from '../../../lambdas/handlers/updates-api.ts';
import { matchRoute } from '../../../lambdas/http/router.ts';
import { recordingObservability } from '../../../lambdas/observability.ts';
import { type RunningApiServer, startApiServer } from '../../../local/api-server.ts';
import { makeFunctionRegistry } from '../../../local/functions.ts';
import { toHttpApiEvent } from '../../../local/http-api-event.ts';
import { type LocalIotCore, startLocalIotCore } from '../../../local/iot/index.ts';
import {
  type FixtureFile,
  file,
  importManifest,
  type UpdateIdFixture,
  uid,
  updatePath,
} from '../import/fixtures.ts';
import { documentClient, dynamoDbClient, startTestS3, type TestS3 } from '../import/support.ts';
import {
  activeDeploymentsOf,
  createDeploymentTables,
  type DeploymentTables,
  uniqueName,
} from './api-support.ts';

const raw = dynamoDbClient(inject('ddbEndpoint'));
const db = documentClient(raw);
const key = generateLocalSigningKey();
const registry = makeFunctionRegistry();
let apiOptions: DeploymentsApiOptions;
/** What the fan-out worker was started with: the registry runs a recorder in its place. */
const workerEvents: unknown[] = [];
let tables: DeploymentTables;
let s3: TestS3;
let iot: LocalIotCore;
let iotData: IoTDataPlaneClient;
let shadows: ShadowWriter;
let deployments: DeploymentStore;
let executions: ExecutionStore;
let targets: TargetPages;
let fleet: FleetStore;
let updatesApi: UpdatesApiHandler;
let api: DeploymentsApiHandler;
let server: RunningApiServer;

beforeAll(async () => {
  [tables, s3, iot] = await Promise.all([
    createDeploymentTables(raw, 'api'),
    startTestS3('artifacts-deploy'),
    startLocalIotCore({ ports: { mqtt: 0, mqtts: 0, iotData: 0, iot: 0 } }),
  ]);
  iotData = new IoTDataPlaneClient({
    endpoint: iot.endpoints.iotData,
    region: 'us-east-1',
    credentials: { accessKeyId: 'x', secretAccessKey: 'x' },
    maxAttempts: 1,
  });
  shadows = makeShadowWriter({ iotData });
  const updates = makeUpdateStore({ db, tableName: tables.updates });
  const artifacts = makeArtifactStore({ s3: s3.client, bucket: s3.bucket });
  const signer = makeLocalKeySigner({ privateKeyPem: key.privateKeyPem });
  deployments = makeDeploymentStore({ db, tableName: tables.deployments, updatesTableName: tables.updates });
  executions = makeExecutionStore({ db, tableName: tables.executions });
  targets = makeTargetPages({ db, tableName: tables.deployments });
  fleet = makeFleetStore({ db, tableName: tables.fleet });
  registry.register('fanoutWorker', (event: unknown) => {
    workerEvents.push(event);
  });
  updatesApi = makeUpdatesApi({
    updates,
    artifacts,
    signer,
    uploadUrlTtlSeconds: 300,
    signatureTtlSeconds: 3600,
    observability: recordingObservability(),
  });
  apiOptions = {
    deployments,
    executions,
    targets,
    fleet,
    updates,
    artifacts,
    signer,
    shadows,
    invoker: registry,
    observability: recordingObservability(),
    tuning: { executionsPerRequest: 50 },
  };
  api = makeDeploymentsApi(apiOptions);
  server = await startApiServer({
    host: '127.0.0.1',
    port: 0,
    functions: { updatesApi, deploymentsApi: api },
  });
});

afterAll(async () => {
  await server.stop();
  iotData.destroy();
  await Promise.all([iot.stop(), s3.stop()]);
  raw.destroy();
});

/** The fields of response bodies the tests read; the rest is checked with `toMatchObject`. */
interface Body {
  readonly [field: string]: unknown;
  readonly deploymentId?: string;
  readonly code?: string;
  readonly status?: string;
  readonly state?: string;
  readonly errors?: readonly { readonly path: string; readonly message: string }[];
  readonly nextToken?: string;
  readonly deployments?: readonly { readonly deploymentId: string }[];
  readonly devices?: readonly { readonly thingName: string }[];
  readonly executions?: readonly { readonly deploymentId: string }[];
  readonly updates?: readonly {
    readonly files: readonly { readonly filename: string; readonly uploadUrl: string }[];
  }[];
}

interface Reply {
  readonly status: number;
  readonly headers: Record<string, string | number | boolean>;
  readonly body: Body;
}

/** Sends one request as API Gateway would: matched route, payload 2.0 event, through the handler. */
function fail(message: string): never {
  throw new Error(message);
}

async function call(
  method: string,
  url: string,
  body?: unknown,
  headers: Readonly<Record<string, string>> = {},
): Promise<Reply> {
  const path = url.split('?')[0] ?? url;
  const route = matchRoute(apiRoutes, method, path);
  if (!route) throw new Error(`no route for ${method} ${path}`);
  const handler = route.routeKey.includes('/updates') ? updatesApi : api;
  const event = toHttpApiEvent(
    {
      method,
      url,
      rawHeaders: ['content-type', 'application/json', ...Object.entries(headers).flat()],
      body: Buffer.from(body === undefined ? '' : JSON.stringify(body)),
      sourceIp: '127.0.0.1',
      protocol: 'HTTP/1.1',
    },
    route,
    new Date(),
  );
  const result = await handler(event);
  return {
    status: result.statusCode,
    headers: result.headers ?? {},
    body: result.body ? (JSON.parse(result.body) as Body) : {},
  };
}

/** Imports, uploads and commits an update through the updates API: a ready update as operators make one. */
async function readyUpdate(
  id: UpdateIdFixture,
  options: {
    readonly references?: readonly UpdateIdFixture[];
    readonly isDeployable?: boolean;
    readonly commit?: boolean;
  } = {},
): Promise<void> {
  const files: FixtureFile[] = [file(`${id.name}.sh`, `echo ${id.name}`)];
  const imported = await call('POST', '/updates', importManifest(id, files, options));
  expect(imported.status).toBe(201);
  for (const f of imported.body.updates?.[0]?.files ?? []) {
    const content = files.find((x) => x.name === f.filename)?.content;
    expect((await fetch(f.uploadUrl, { method: 'PUT', body: content })).status).toBe(200);
  }
  if (options.commit === false) return;
  expect((await call('POST', `${updatePath(id)}/commit`)).status).toBe(200);
}

async function deploy(id: UpdateIdFixture, policy: Record<string, unknown> = {}): Promise<string> {
  const created = await call('POST', '/deployments', { update: id, target: { things: ['thing-a'] }, policy });
  expect(created.status).toBe(201);
  return created.body.deploymentId ?? '';
}

/** Puts executions in given states, as the fan-out and acknowledgements would leave them. */
/** Target pages written so far per deployment (the next page's number). */
const pagesWritten = new Map<string, number>();

/**
 * Lists `things` on the deployment's next target page, as the expansion does (each counted
 * `queued`); returns the page's number.
 */
async function seedPage(deploymentId: string, things: readonly string[]): Promise<number> {
  const deployment = await deploymentNow(deploymentId);
  const lanes = new Map<number, string[]>();
  for (const thing of things) {
    const lane = shardOf(thing, deployment.shards);
    lanes.set(lane, [...(lanes.get(lane) ?? []), thing]);
  }
  const page = pagesWritten.get(deploymentId) ?? 0;
  pagesWritten.set(deploymentId, page + 1);
  await targets.put(deploymentId, page, lanes);
  return page;
}

/** Devices in `states`: all listed on a target page; those past `queued` written from it, as the fan-out does. */
async function seedExecutions(
  deploymentId: string,
  id: UpdateIdFixture,
  states: Readonly<Record<string, ExecutionState>>,
): Promise<void> {
  const now = Date.now();
  const deployment = await deploymentNow(deploymentId);
  const page = await seedPage(deploymentId, Object.keys(states));
  for (const [thingName, state] of Object.entries(states)) {
    if (state === 'queued') continue;
    const queued = unwrittenExecution(deploymentId, {
      thingName,
      updateId: id,
      shard: shardOf(thingName, deployment.shards),
      targetPage: page,
    });
    const notified = await executions.transition(
      queued,
      { ...queued, state: 'notified', notifiedAt: now },
      { at: now, reason: 'notified' },
    );
    if (!notified.ok) throw new Error('notify failed');
    if (state === 'notified') continue;
    const result =
      state === 'failed'
        ? {
            resultCode: 0,
            extendedResultCode: 0x30000001,
            resultDetails: 'install.sh exited 2',
            stepResults: { step_0: { resultCode: 0, extendedResultCode: 2, resultDetails: 'exit 2' } },
          }
        : undefined;
    const ended = await executions.transition(
      notified.value,
      { ...notified.value, state, reportOrder: 3, reportedAt: now },
      {
        at: now,
        reason: state === 'timed_out' ? 'timeout' : 'device_report',
        ...(result ? { lastResult: result } : {}),
      },
    );
    if (!ended.ok) throw new Error('transition failed');
  }
}

/** Writes the deployment's desired document to a device's ota shadow, as the fan-out does. */
async function notifyShadow(thingName: string, deploymentId: string): Promise<void> {
  const written = await shadows.update(thingName, {
    state: {
      desired: { ota: { deploymentId, attempt: 1, action: 'apply' } },
    },
  });
  expect(written.ok).toBe(true);
}

async function desiredOta(thingName: string): Promise<Record<string, unknown> | undefined> {
  const read = await shadows.get(thingName);
  if (!read.ok) throw new Error(read.error.message);
  return read.value?.state.desired?.ota as Record<string, unknown> | undefined;
}

describe('POST /deployments', () => {
  it('stores a scheduled deployment with a per-deployment signature, holds the update and starts the fan-out', async () => {
    const id = uid(uniqueName('Toaster'));
    await readyUpdate(id);
    const before = Date.now();
    const created = await call('POST', '/deployments', {
      update: id,
      target: { things: ['thing-a', 'thing-b'] },
      policy: { rollback: true, deviceTimeoutSeconds: 600 },
    });
    expect(created.status).toBe(201);
    const deploymentId = created.body.deploymentId ?? '';
    expect(created.headers.location).toBe(`/deployments/${deploymentId}`);
    expect(created.body).toMatchObject({
      status: 'scheduled',
      updateId: id,
      target: { things: ['thing-a', 'thing-b'] },
      devices: 0,
      counts: { queued: 0, succeeded: 0 },
    });

    const stored = await deployments.get(deploymentId);
    if (!stored) throw new Error('not stored');
    const claims = await verifyUpdateManifestSignature({
      jws: stored.manifest.signature,
      manifest: stored.manifest.inline,
      trustedKeys: [key.publicJwk],
      now: new Date(),
      expectedUpdateId: id,
    });
    expect(claims.ok && claims.value).toMatchObject({ deploymentId, rollback: true });
    // The signature outlives the device timeout plus the margin (7 days by default).
    expect(claims.ok && claims.value.exp * 1000).toBeGreaterThanOrEqual(
      before + (600 + 7 * 86_400) * 1000 - 1000,
    );
    expect(stored.manifest.detached).toContain('detachedManifestFileId');

    expect(await activeDeploymentsOf(db, tables.updates, id)).toBe(1);
    expect((await call('DELETE', updatePath(id))).body.code).toBe('UPDATE_IN_USE');
    await registry.idle();
    expect(workerEvents).toContainEqual({ deploymentId });
  });

  it('answers 400 naming every faulty field, and stores nothing', async () => {
    const refused = await call('POST', '/deployments', {
      update: { provider: 'Contoso', name: 'Toaster', version: 'one' },
      target: {},
      policy: { rollout: { ratePerMinut: 5 } },
    });
    expect(refused.status).toBe(400);
    expect(refused.body.code).toBe('DEPLOYMENT_REQUEST_INVALID');
    const paths = (refused.body.errors ?? []).map((e) => e.path);
    expect(paths).toEqual(
      expect.arrayContaining(['/update/version', '/target', '/policy/rollout/ratePerMinut']),
    );
    const malformed = await call('POST', '/deployments');
    expect(malformed.status).toBe(400);
  });

  it('answers 404 for an unknown or not-ready update and 409 for a child update', async () => {
    const unknown = await call('POST', '/deployments', { update: uid('Nobody'), target: { things: ['t'] } });
    expect([unknown.status, unknown.body.code]).toEqual([404, 'UPDATE_NOT_FOUND']);

    const pending = uid(uniqueName('Pending'));
    await readyUpdate(pending, { commit: false });
    const notReady = await call('POST', '/deployments', { update: pending, target: { things: ['t'] } });
    expect([notReady.status, notReady.body.code]).toEqual([404, 'UPDATE_NOT_READY']);

    const child = uid(uniqueName('Child'));
    const parent = uid(uniqueName('Parent'));
    await readyUpdate(child, { isDeployable: false, commit: false });
    await readyUpdate(parent, { references: [child] });
    const refused = await call('POST', '/deployments', { update: child, target: { things: ['t'] } });
    expect([refused.status, refused.body.code]).toEqual([409, 'UPDATE_NOT_DEPLOYABLE']);
    // The parent deploys, its signature binding the child's files too.
    const deploymentId = await deploy(parent);
    expect(await activeDeploymentsOf(db, tables.updates, parent)).toBe(1);
    expect(await activeDeploymentsOf(db, tables.updates, child)).toBe(0);
    expect((await deployments.get(deploymentId))?.manifest.signature).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
  });
});

describe('POST /deployments with an Idempotency-Key', () => {
  it('creates one deployment however often the same request is sent, and refuses the key for another body', async () => {
    const id = uid(uniqueName('Idempotent'));
    await readyUpdate(id);
    const key = `retry-${randomUUID()}`;
    const request = { update: id, target: { things: ['thing-a'] }, policy: { deviceTimeoutSeconds: 600 } };
    const started = workerEvents.length;

    const first = await call('POST', '/deployments', request, { 'Idempotency-Key': key });
    expect(first.status).toBe(201);
    const deploymentId = first.body.deploymentId ?? '';
    expect(first.headers['idempotent-replayed']).toBeUndefined();

    // The same request again, its keys in another order: the same deployment, nothing new started.
    const reordered = { policy: request.policy, target: request.target, update: request.update };
    const again = await call('POST', '/deployments', reordered, { 'idempotency-key': key });
    expect(again.status).toBe(201);
    expect(again.body.deploymentId).toBe(deploymentId);
    expect(again.headers.location).toBe(`/deployments/${deploymentId}`);
    expect(again.headers['idempotent-replayed']).toBe('true');
    expect(workerEvents.length - started).toBe(1);

    const other = await call(
      'POST',
      '/deployments',
      { ...request, target: { things: ['thing-b'] } },
      {
        'Idempotency-Key': key,
      },
    );
    expect(other.status).toBe(422);
    expect(other.body.code).toBe('IDEMPOTENCY_KEY_REUSED');
    expect((await deployments.get(deploymentId))?.target).toMatchObject({ things: ['thing-a'] });

    const fresh = await call('POST', '/deployments', request, { 'Idempotency-Key': `${key}-2` });
    expect(fresh.status).toBe(201);
    expect(fresh.body.deploymentId).not.toBe(deploymentId);
  });

  it('answers 400 naming the header for a malformed key, and creates nothing', async () => {
    const id = uid(uniqueName('BadKey'));
    await readyUpdate(id);
    const started = workerEvents.length;
    const refused = await call(
      'POST',
      '/deployments',
      { update: id, target: { things: ['thing-a'] } },
      {
        'Idempotency-Key': 'has spaces and "quotes"',
      },
    );
    expect(refused.status).toBe(400);
    expect(refused.body).toMatchObject({
      code: 'IDEMPOTENCY_KEY_INVALID',
      errors: [{ path: '/headers/idempotency-key' }],
    });
    expect(workerEvents.length).toBe(started);
  });
});

describe('status', () => {
  it('lists deployments page by page, filters by status, and refuses a bad status or token', async () => {
    const id = uid(uniqueName('Listed'));
    await readyUpdate(id);
    const ids = [await deploy(id), await deploy(id), await deploy(id)];
    await Promise.all(ids.map((d) => deployments.setStatus(d, 'expanding', Date.now())));
    const first = await call('GET', '/deployments?status=expanding&limit=2');
    expect(first.status).toBe(200);
    const second = await call(
      'GET',
      `/deployments?status=expanding&limit=2&nextToken=${first.body.nextToken}`,
    );
    const listed = [...(first.body.deployments ?? []), ...(second.body.deployments ?? [])].map(
      (d) => d.deploymentId,
    );
    expect(listed.sort()).toEqual([...ids].sort());
    expect(second.body.nextToken).toBeUndefined();
    expect((await call('GET', '/deployments?status=done')).body.errors).toEqual([
      { path: '/status', message: expect.stringContaining('rolling_out') },
    ]);
    expect((await call('GET', '/deployments?nextToken=garbage')).body.code).toBe('INVALID_NEXT_TOKEN');
    expect((await call('GET', '/deployments?limit=0')).status).toBe(400);
  });

  it('shows counts, rates and the abort reason of one deployment; 404 for an unknown one', async () => {
    const id = uid(uniqueName('Counted'));
    await readyUpdate(id);
    const deploymentId = await deploy(id);
    await deployments.addCounters(
      deploymentId,
      { succeeded: 3, failed: 1, queued: 2 },
      { shardId: 's', lastSequence: '1' },
    );
    await deployments.recordAbort(deploymentId, '1 of 4 finished devices failed', Date.now());
    const shown = await call('GET', `/deployments/${deploymentId}`);
    expect(shown.body).toMatchObject({
      status: 'aborted',
      abortReason: '1 of 4 finished devices failed',
      devices: 6,
      counts: { succeeded: 3, failed: 1, queued: 2 },
      rates: { succeeded: 75, failed: 25, anyFailure: 25, completed: 66.7 },
    });
    expect(shown.body.endedAt).toBeDefined();
    expect((await call('GET', '/deployments/no-such-deployment')).status).toBe(404);
  });

  it('lists the devices of a deployment by state with result codes and step results, page by page', async () => {
    const id = uid(uniqueName('Devices'));
    await readyUpdate(id);
    const deploymentId = await deploy(id);
    await seedExecutions(deploymentId, id, {
      d1: 'queued',
      d2: 'queued',
      d3: 'queued',
      d4: 'failed',
      d5: 'succeeded',
    });
    const failed = await call('GET', `/deployments/${deploymentId}/devices?state=failed`);
    expect(failed.body.devices).toEqual([
      expect.objectContaining({
        thingName: 'd4',
        state: 'failed',
        result: expect.objectContaining({
          extendedResultCode: 0x30000001,
          stepResults: { step_0: expect.objectContaining({ extendedResultCode: 2 }) },
        }),
      }),
    ]);
    const page = await call('GET', `/deployments/${deploymentId}/devices?state=queued&limit=2`);
    const rest = await call(
      'GET',
      `/deployments/${deploymentId}/devices?state=queued&limit=2&nextToken=${page.body.nextToken}`,
    );
    expect([...(page.body.devices ?? []), ...(rest.body.devices ?? [])].map((d) => d.thingName)).toEqual([
      'd1',
      'd2',
      'd3',
    ]);
    expect((await call('GET', `/deployments/${deploymentId}/devices`)).body.devices).toHaveLength(5);
    expect((await call('GET', `/deployments/${deploymentId}/devices?state=bogus`)).status).toBe(400);
    expect((await call('GET', '/deployments/nope/devices')).status).toBe(404);
  });

  it("shows a device's installed update and its executions, newest first", async () => {
    const id = uid(uniqueName('History'));
    await readyUpdate(id);
    const thing = uniqueName('dev');
    const older = await deploy(id);
    await seedExecutions(older, id, { [thing]: 'failed' });
    const newer = await deploy(id);
    await seedExecutions(newer, id, { [thing]: 'notified' });
    await fleet.upsertReport(thing, {
      lastReportAt: Date.now(),
      installedUpdateId: id,
      compatibility: { model: 'toaster' },
    });
    const shown = await call('GET', `/devices/${thing}`);
    expect(shown.body).toMatchObject({
      thingName: thing,
      installedUpdateId: id,
      compatibility: { model: 'toaster' },
      current: { deploymentId: newer, state: 'notified' },
    });
    expect(shown.body.executions?.map((e) => e.deploymentId)).toEqual([newer, older]);
    expect((await call('GET', '/devices/never-seen')).status).toBe(404);
  });
});

describe('cancel', () => {
  it('ends the deployment, cancels queued devices, sends cancel to devices at work, and releases the update', async () => {
    const id = uid(uniqueName('Canceled'));
    await readyUpdate(id);
    const deploymentId = await deploy(id);
    const other = await deploy(id);
    const [working, elsewhere] = [uniqueName('working'), uniqueName('elsewhere')];
    await seedExecutions(deploymentId, id, {
      q1: 'queued',
      q2: 'queued',
      [working]: 'notified',
      [elsewhere]: 'notified',
      done: 'succeeded',
      r1: 'failed',
    });
    // A retried device waits in its own index partition: the cancel finds it there too.
    const failed = await executions.get(deploymentId, 'r1');
    const retried = failed && retry(failed);
    if (!failed || !retried?.ok) throw new Error('r1 not retryable');
    expect(
      (await executions.transition(failed, retried.value.next, { at: Date.now(), reason: 'retry' })).ok,
    ).toBe(true);
    await notifyShadow(working, deploymentId);
    // A newer deployment already took this device's shadow: its document must not be touched.
    await notifyShadow(elsewhere, other);

    const canceled = await call('POST', `/deployments/${deploymentId}/cancel`);
    expect(canceled.status).toBe(200);
    expect(canceled.body).toMatchObject({
      status: 'canceled',
      cancel: { canceled: 3, cancelRequested: 2, remaining: false },
    });
    expect((await executions.get(deploymentId, 'q1'))?.state).toBe('canceled');
    expect(await executions.get(deploymentId, 'r1')).toMatchObject({ state: 'canceled', attempt: 2 });
    expect(await executions.get(deploymentId, working)).toMatchObject({
      state: 'notified',
      cancelReason: 'canceled_by_operator',
    });
    expect(await desiredOta(working)).toMatchObject({ deploymentId, action: 'cancel' });
    expect(await desiredOta(elsewhere)).toMatchObject({ deploymentId: other, action: 'apply' });
    expect((await executions.get(deploymentId, 'done'))?.state).toBe('succeeded');
    expect(await activeDeploymentsOf(db, tables.updates, id)).toBe(1); // `other` still holds it

    const again = await call('POST', `/deployments/${deploymentId}/cancel`);
    expect([again.status, again.body.status]).toEqual([200, 'canceled']);
    await deployments.end(other, { status: 'completed' }, Date.now());
    expect(await activeDeploymentsOf(db, tables.updates, id)).toBe(0);
    const ended = await call('POST', `/deployments/${other}/cancel`);
    expect([ended.status, ended.body.code]).toEqual([409, 'DEPLOYMENT_NOT_ACTIVE']);
    expect((await call('POST', '/deployments/nope/cancel')).status).toBe(404);
  });

  it('answers 202 and hands the rest to the fan-out worker when a deployment is larger than one request', async () => {
    const id = uid(uniqueName('Large'));
    await readyUpdate(id);
    const deploymentId = await deploy(id);
    const states = Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`big-${i}`, 'queued' as const]));
    await seedExecutions(deploymentId, id, states);
    workerEvents.length = 0;
    const canceled = await call('POST', `/deployments/${deploymentId}/cancel`);
    expect(canceled.status).toBe(202);
    expect(canceled.body.cancel).toMatchObject({ canceled: 50, remaining: true });
    await registry.idle();
    expect(workerEvents).toContainEqual({ deploymentId });
    const left = await call('GET', `/deployments/${deploymentId}/devices?state=queued&limit=100`);
    expect(left.body.devices).toHaveLength(10);
  });
});

/** A deployment with `count` queued devices named `<prefix>-NN`. */
async function queuedDeployment(label: string, prefix: string, count: number) {
  const id = uid(uniqueName(label));
  await readyUpdate(id);
  const deploymentId = await deploy(id);
  const names = Array.from({ length: count }, (_, i) => `${prefix}-${String(i).padStart(2, '0')}`);
  await seedExecutions(deploymentId, id, Object.fromEntries(names.map((n) => [n, 'queued' as const])));
  return { id, deploymentId, names };
}

async function deploymentNow(deploymentId: string) {
  const found = await deployments.get(deploymentId);
  if (!found) throw new Error('deployment gone');
  return found;
}

describe('cancel of a deployment larger than one request', () => {
  it('continues where the last pass stopped, never reading a canceled device again', async () => {
    const { deploymentId, names } = await queuedDeployment('Resumed', 'big', 60);
    await deployments.end(deploymentId, { status: 'canceled' }, Date.now());
    // Which devices each pass looks up on the target pages: where it took the walk up.
    const looked: string[] = [];
    const spied: ExecutionStore = {
      ...executions,
      getWritten: (dep, things) => {
        looked.push(...things);
        return executions.getWritten(dep, things);
      },
    };
    const deps = {
      executions: spied,
      targets,
      deployments,
      shadows,
      tuning: { ...defaultTuning, concurrency: 4 },
    };
    const current = () => deploymentNow(deploymentId);

    const first = await cancelExecutions(deps, await current(), 'canceled_by_operator', Date.now(), 25);
    expect(first).toEqual({ canceled: 25, cancelRequested: 0, remaining: true });
    expect((await current()).cancelWalk).toEqual({
      cursor: expect.stringMatching(/^c\d{4}\.\d{7}\.\d{6}$/),
      done: false,
    });
    const canceledFirst: string[] = [];
    for (const name of names)
      if ((await executions.get(deploymentId, name))?.state === 'canceled') canceledFirst.push(name);
    expect(canceledFirst).toHaveLength(25);
    looked.length = 0;
    const second = await cancelExecutions(deps, await current(), 'canceled_by_operator', Date.now(), 100);
    expect(second).toEqual({ canceled: 35, cancelRequested: 0, remaining: false });
    expect(looked.filter((name) => canceledFirst.includes(name))).toEqual([]);
    expect((await current()).cancelWalk).toMatchObject({ done: true });
    // A walk that is done reads no target page at all.
    looked.length = 0;
    expect(await cancelExecutions(deps, await current(), 'canceled_by_operator', Date.now(), 100)).toEqual({
      canceled: 0,
      cancelRequested: 0,
      remaining: false,
    });
    expect(looked).toEqual([]);
    for (const name of names) expect((await executions.get(deploymentId, name))?.state).toBe('canceled');
  });
});

describe('cancel while the expansion still runs', () => {
  it('saves no cursor until the expansion is over, so a page it writes late is canceled too', async () => {
    const { deploymentId } = await queuedDeployment('Expanding', 'exp', 30);
    const lease = await deployments.acquireLease(
      deploymentId,
      'expand',
      { owner: 'expander', now: Date.now() },
      Date.now() + 60_000,
    );
    expect(lease.ok).toBe(true);
    await deployments.end(deploymentId, { status: 'canceled' }, Date.now());
    const deps = { executions, targets, deployments, shadows, tuning: { ...defaultTuning, concurrency: 4 } };
    const current = () => deploymentNow(deploymentId);

    expect(
      await cancelExecutions(deps, await current(), 'canceled_by_operator', Date.now(), 100),
    ).toMatchObject({
      canceled: 30,
      remaining: false,
    });
    expect((await current()).cancelWalk).toBeUndefined();
    // The expansion, still holding its lease, writes one more page.
    await seedPage(deploymentId, ['exp-00a']);
    await deployments.releaseLease(deploymentId, 'expand', 'expander');
    expect(
      await cancelExecutions(deps, await current(), 'canceled_by_operator', Date.now(), 100),
    ).toMatchObject({
      canceled: 1,
      remaining: false,
    });
    expect((await executions.get(deploymentId, 'exp-00a'))?.state).toBe('canceled');
    expect((await current()).cancelWalk).toMatchObject({ done: true });
  });
});

describe('retry', () => {
  it('re-queues failed and timed-out devices as a new attempt and reopens a completed deployment', async () => {
    const id = uid(uniqueName('Retried'));
    await readyUpdate(id);
    const deploymentId = await deploy(id);
    await seedExecutions(deploymentId, id, { f1: 'failed', t1: 'timed_out', ok1: 'succeeded' });
    await deployments.end(deploymentId, { status: 'completed' }, Date.now());
    expect(await activeDeploymentsOf(db, tables.updates, id)).toBe(0);
    workerEvents.length = 0;

    const retried = await call('POST', `/deployments/${deploymentId}/retry`);
    expect(retried.status).toBe(200);
    expect(retried.body).toMatchObject({ status: 'rolling_out', retry: { requeued: 2, remaining: false } });
    expect(await executions.get(deploymentId, 'f1')).toMatchObject({
      state: 'queued',
      attempt: 2,
      reason: 'retry',
    });
    expect(await executions.get(deploymentId, 't1')).toMatchObject({ state: 'queued', attempt: 2 });
    expect((await executions.get(deploymentId, 'f1'))?.lastResult).toBeUndefined();
    // Retried devices are listed queued (from their index partition, after the target pages).
    const queued = await call('GET', `/deployments/${deploymentId}/devices?state=queued`);
    expect((queued.body.devices ?? []).map((d) => d.thingName).sort()).toEqual(['f1', 't1']);
    expect((await executions.get(deploymentId, 'ok1'))?.state).toBe('succeeded');
    expect(await activeDeploymentsOf(db, tables.updates, id)).toBe(1);
    await registry.idle();
    expect(workerEvents).toContainEqual({ deploymentId });

    const nothing = await call('POST', `/deployments/${deploymentId}/retry`);
    expect([nothing.status, nothing.body.code]).toEqual([409, 'NOTHING_TO_RETRY']);
  });
});

describe('retry long after the deployment was created', () => {
  it('renews a signature that would expire before the new attempt ends, and the new one verifies', async () => {
    const id = uid(uniqueName('LateRetry'));
    await readyUpdate(id);
    const deploymentId = await deploy(id, { deviceTimeoutSeconds: 600 });
    await seedExecutions(deploymentId, id, { late1: 'failed' });
    const before = await deployments.get(deploymentId);
    if (!before) throw new Error('not stored');

    // Eight days on: the first signature (600 s + a week's margin) is about to lapse.
    const later = Date.now() + 8 * 24 * 3600_000;
    const lateApi = makeDeploymentsApi({ ...apiOptions, now: () => later });
    const event = toHttpApiEvent(
      {
        method: 'POST',
        url: `/deployments/${deploymentId}/retry`,
        rawHeaders: [],
        body: Buffer.alloc(0),
        sourceIp: '127.0.0.1',
        protocol: 'HTTP/1.1',
      },
      matchRoute(apiRoutes, 'POST', `/deployments/${deploymentId}/retry`) ?? fail('no route'),
      new Date(later),
    );
    expect((await lateApi(event)).statusCode).toBe(200);

    const after = await deployments.get(deploymentId);
    expect(after?.manifest.signature).not.toBe(before.manifest.signature);
    const claims = await verifyUpdateManifestSignature({
      jws: after?.manifest.signature ?? '',
      manifest: after?.manifest.inline ?? '',
      trustedKeys: [key.publicJwk],
      now: new Date(later + 600_000),
      expectedUpdateId: id,
    });
    expect(claims.ok && claims.value.deploymentId).toBe(deploymentId);
    expect((await executions.get(deploymentId, 'late1'))?.state).toBe('queued');
  });

  it('keeps a signature that outlives the new attempt', async () => {
    const id = uid(uniqueName('EarlyRetry'));
    await readyUpdate(id);
    const deploymentId = await deploy(id, { deviceTimeoutSeconds: 600 });
    await seedExecutions(deploymentId, id, { early1: 'failed' });
    const before = await deployments.get(deploymentId);
    expect((await call('POST', `/deployments/${deploymentId}/devices/early1/retry`)).status).toBe(200);
    expect((await deployments.get(deploymentId))?.manifest.signature).toBe(before?.manifest.signature);
  });
});

describe('one device in a deployment', () => {
  it('cancels and retries one device, refusing what its state does not allow', async () => {
    const id = uid(uniqueName('OneDevice'));
    await readyUpdate(id);
    const deploymentId = await deploy(id);
    await seedExecutions(deploymentId, id, { waiting: 'queued', broken: 'failed', fine: 'succeeded' });
    const canceled = await call('POST', `/deployments/${deploymentId}/devices/waiting/cancel`);
    expect([canceled.status, canceled.body.state, canceled.body.reason]).toEqual([
      200,
      'canceled',
      'canceled_by_operator',
    ]);
    const again = await call('POST', `/deployments/${deploymentId}/devices/waiting/cancel`);
    expect([again.status, again.body.code]).toEqual([409, 'NOT_CANCELABLE']);

    const retried = await call('POST', `/deployments/${deploymentId}/devices/broken/retry`);
    expect(retried.body).toMatchObject({ state: 'queued', attempt: 2 });
    const refused = await call('POST', `/deployments/${deploymentId}/devices/fine/retry`);
    expect([refused.status, refused.body.code]).toEqual([409, 'NOT_RETRYABLE']);
    expect((await call('POST', `/deployments/${deploymentId}/devices/stranger/cancel`)).body.code).toBe(
      'EXECUTION_NOT_FOUND',
    );
  });
});

describe('over the local HTTP server', () => {
  it('creates a deployment and reads it back through real HTTP requests', async () => {
    const id = uid(uniqueName('Http'));
    await readyUpdate(id);
    const created = await fetch(`${server.endpoint}/deployments`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ update: id, target: { thingGroups: ['kitchen'] } }),
    });
    expect(created.status).toBe(201);
    const location = created.headers.get('location');
    const shown = await fetch(`${server.endpoint}${location}`);
    expect(shown.status).toBe(200);
    expect(await shown.json()).toMatchObject({ status: 'scheduled', target: { thingGroups: ['kitchen'] } });
  });
});
