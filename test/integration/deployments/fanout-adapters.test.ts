import { randomUUID } from 'node:crypto';
import { ProvisionedThroughputExceededException } from '@aws-sdk/client-dynamodb';
import {
  IoTDataPlaneClient,
  ServiceUnavailableException,
  UpdateThingShadowCommand,
} from '@aws-sdk/client-iot-data-plane';
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  ACCOUNT_RATE_ITEM_KEY,
  accountRateSchedule,
  makeAccountRateLimiter,
} from '../../../lambdas/adapters/account-rate-limiter.ts';
import { makeLambdaFunctionInvoker } from '../../../lambdas/adapters/function-invoker.ts';
import { backoffDelayMs, defaultBackoff, makeShadowWriter } from '../../../lambdas/adapters/shadow-writer.ts';
import { deploymentsTable } from '../../../lambdas/definitions/tables.ts';
import { type LocalIotCore, startLocalIotCore } from '../../../local/iot/index.ts';
import { ensureTable } from '../../../local/tables.ts';
import { documentClient, dynamoDbClient } from '../import/support.ts';

const dummyAws = { region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } };
const desired = (n: number) => ({ state: { desired: { ota: { deploymentId: `d-${n}`, attempt: 1 } } } });

describe('shadow writer', () => {
  let iot: LocalIotCore;
  let iotData: IoTDataPlaneClient;

  beforeAll(async () => {
    // Three requests per second per thing: the fourth within a second is a 429, as in AWS.
    iot = await startLocalIotCore({ rateLimits: { thingPerSecond: 3 } });
    iotData = new IoTDataPlaneClient({ ...dummyAws, endpoint: iot.endpoints.iotData, maxAttempts: 1 });
  });
  afterAll(async () => {
    iotData.destroy();
    await iot.stop();
  });

  it('writes the ota named shadow and returns its version', async () => {
    const writer = makeShadowWriter({ iotData });
    const first = await writer.update('writer-thing-1', desired(1));
    const second = await writer.update('writer-thing-1', desired(2));
    expect(first).toEqual({ ok: true, value: { version: 1, attempts: 1 } });
    expect(second).toMatchObject({ ok: true, value: { version: 2 } });
    const read = await writer.get('writer-thing-1');
    expect(read).toMatchObject({
      ok: true,
      value: { version: 2, state: { desired: desired(2).state.desired } },
    });
  });

  it('reads a thing without an ota shadow as undefined', async () => {
    expect(await makeShadowWriter({ iotData }).get('writer-nobody')).toEqual({ ok: true, value: undefined });
  });

  it('backs off on 429 until the shadow service accepts, with every write landing once', async () => {
    const retries: number[] = [];
    const writer = makeShadowWriter({
      iotData,
      backoff: { maxAttempts: 10, baseDelayMs: 100, maxDelayMs: 800 },
      onRetry: (_thing, code, delay) => {
        expect(code).toBe('THROTTLED');
        retries.push(delay);
      },
    });
    const results = await Promise.all([1, 2, 3, 4, 5, 6].map((n) => writer.update('writer-hot', desired(n))));
    expect(results.every((r) => r.ok)).toBe(true);
    expect(retries.length).toBeGreaterThan(0);
    const versions = results.map((r) => (r.ok ? r.value.version : 0)).sort((a, b) => a - b);
    expect(versions).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('gives up with THROTTLED after its attempts, never throwing', async () => {
    const writer = makeShadowWriter({ iotData, backoff: { maxAttempts: 1, baseDelayMs: 1, maxDelayMs: 1 } });
    const results = await Promise.all([1, 2, 3, 4, 5].map((n) => writer.update('writer-hotter', desired(n))));
    expect(results.filter((r) => !r.ok).map((r) => !r.ok && r.error.code)).toContain('THROTTLED');
  });

  it('maps a version mismatch to VERSION_CONFLICT', async () => {
    const writer = makeShadowWriter({ iotData });
    await writer.update('writer-locked', desired(1));
    const stale = await writer.update('writer-locked', { ...desired(2), version: 99 });
    expect(stale).toMatchObject({
      ok: false,
      error: { code: 'VERSION_CONFLICT', thingName: 'writer-locked' },
    });
  });

  it('retries a 5xx (injected: the local service never fails) and reports UNAVAILABLE when it persists', async () => {
    const failing = mockClient(IoTDataPlaneClient);
    const unavailable = new ServiceUnavailableException({
      message: 'down',
      $metadata: { httpStatusCode: 503 },
    });
    failing.on(UpdateThingShadowCommand).rejects(unavailable);
    const client = new IoTDataPlaneClient({ ...dummyAws });
    const writer = makeShadowWriter({
      iotData: client,
      backoff: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 2 },
    });
    const result = await writer.update('writer-5xx', desired(1));
    expect(result).toMatchObject({ ok: false, error: { code: 'UNAVAILABLE' } });
    expect(failing.commandCalls(UpdateThingShadowCommand)).toHaveLength(3);
    failing.restore();
  });

  it.each([
    [0, 0.999, 49],
    [3, 0.5, 200],
    [10, 0.999, 1998],
  ])('full jitter: retry %i with random %f waits %i ms', (retry, random, expected) => {
    expect(backoffDelayMs(retry, defaultBackoff, () => random)).toBe(expected);
  });
});

describe('account rate limiter', () => {
  const db = documentClient(dynamoDbClient(inject('ddbEndpoint')));
  const tableName = `deployments-fanout-adapters-${randomUUID().slice(0, 8)}`;

  beforeAll(async () => {
    await ensureTable(dynamoDbClient(inject('ddbEndpoint')), deploymentsTable, tableName);
  });

  it('grants one second of the cap at most, then refills at the cap', async () => {
    const limiter = makeAccountRateLimiter({ db, tableName, capPerSecond: 10 });
    const t0 = 1_000_000;
    expect(await limiter.take(25, t0)).toEqual({ granted: 10, retryAfterMs: 100 });
    expect(await limiter.take(1, t0)).toEqual({ granted: 0, retryAfterMs: 100 });
    expect((await limiter.take(10, t0 + 350)).granted).toBe(3);
    expect((await limiter.take(100, t0 + 10_000)).granted).toBe(10);
  });

  it('never grants more than the cap allows to workers racing on the one item', async () => {
    const key = `${tableName}-race`;
    await ensureTable(dynamoDbClient(inject('ddbEndpoint')), deploymentsTable, key);
    const limiter = makeAccountRateLimiter({ db, tableName: key, capPerSecond: 50, maxRaces: 50 });
    const now = 5_000_000;
    const grants = await Promise.all(Array.from({ length: 20 }, () => limiter.take(7, now)));
    const total = grants.reduce((sum, g) => sum + g.granted, 0);
    expect(total).toBeLessThanOrEqual(50);
    expect(total).toBeGreaterThan(0);
  });

  it('takes from a bucket left by the token-bucket version (milliTokens, at) as from an idle one', async () => {
    const key = `${tableName}-upgrade`;
    await ensureTable(dynamoDbClient(inject('ddbEndpoint')), deploymentsTable, key);
    await db.send(
      new PutCommand({
        TableName: key,
        Item: { deploymentId: ACCOUNT_RATE_ITEM_KEY, milliTokens: 0, at: 9_000_000, capPerSecond: 4 },
      }),
    );
    const limiter = makeAccountRateLimiter({ db, tableName: key, capPerSecond: 4 });
    expect(await limiter.take(2, 9_000_000)).toEqual({ granted: 2, retryAfterMs: 0 });
    const { Item } = await db.send(
      new GetCommand({ TableName: key, Key: { deploymentId: ACCOUNT_RATE_ITEM_KEY } }),
    );
    expect(Item).toMatchObject({
      deploymentId: ACCOUNT_RATE_ITEM_KEY,
      tatUs: 9_000_500_000,
      capPerSecond: 4,
    });
    // A worker of the token-bucket version still running finds an empty bucket that never refills.
    expect(Item?.milliTokens).toBe(0);
    expect(Item?.at).toBeGreaterThan(Date.now() + 100 * 365 * 86_400_000);
  });

  it('takes exactly what fits, in one refused grab and one that lands, when a token costs a fraction of a millisecond', async () => {
    const key = `${tableName}-fraction`;
    await ensureTable(dynamoDbClient(inject('ddbEndpoint')), deploymentsTable, key);
    let requests = 0;
    const counted = {
      send: ((command: never) => {
        requests++;
        return db.send(command);
      }) as typeof db.send,
    };
    // 300/s: a token costs 3,334 µs (rounded up), so a full bucket holds 299.
    const limiter = makeAccountRateLimiter({ db: counted, tableName: key, capPerSecond: 300 });
    const t0 = 1_700_000_000_000;
    expect((await limiter.take(300, t0)).granted).toBe(299);
    requests = 0;
    // 10 ms later: (1,010,000 − 996,866) / 3,334 = 3.9, so 3 fit.
    expect(await limiter.take(5, t0 + 10)).toEqual({ granted: 3, retryAfterMs: 1 });
    expect(requests).toBe(2);
  });

  it('answers "not now" when DynamoDB cannot answer, instead of sending a stale grab again', async () => {
    let requests = 0;
    const throttled = {
      send: (() => {
        requests++;
        return Promise.reject(
          new ProvisionedThroughputExceededException({ message: 'slow down', $metadata: {} }),
        );
      }) as typeof db.send,
    };
    const limiter = makeAccountRateLimiter({ db: throttled, tableName, capPerSecond: 10 });
    expect(await limiter.take(3, 1_000_000)).toEqual({ granted: 0, retryAfterMs: 100 });
    expect(requests).toBe(1);
  });

  it('keeps the cap over time for workers taking at once: at most one second of it plus the time passed', async () => {
    const key = `${tableName}-steady`;
    await ensureTable(dynamoDbClient(inject('ddbEndpoint')), deploymentsTable, key);
    const limiter = makeAccountRateLimiter({ db, tableName: key, capPerSecond: 100, maxRaces: 50 });
    const t0 = 7_000_000;
    let total = 0;
    for (let step = 0; step <= 20; step++) {
      const now = t0 + step * 50;
      const grants = await Promise.all(Array.from({ length: 4 }, () => limiter.take(9, now)));
      total += grants.reduce((sum, g) => sum + g.granted, 0);
    }
    // One second's depth at t0, then 100/s for the 1,000 ms that pass: 200 at most, and all of it
    // taken, since the workers ask for more than the cap.
    expect(total).toBe(200);
  });

  it.each([
    [undefined, 0, 4],
    [100_000, 350_000, 4],
    [1_000_000, 250_000, 1],
    [1_100_000, 100_000, 0],
    [1_500_000, 1_000_000, 2],
  ])('with the bucket at tat %j µs, at %i µs %i tokens fit (cap 4/s)', (tat, now, expected) => {
    expect(accountRateSchedule(4).fitting(tat, now)).toBe(expected);
  });
});

describe('Lambda function invoker', () => {
  it('invokes the configured function asynchronously with the JSON payload', async () => {
    // No local Lambda service exists; the mock records the request the SDK would send.
    const lambda = mockClient(LambdaClient);
    lambda.on(InvokeCommand).resolves({ StatusCode: 202 });
    const invoker = makeLambdaFunctionInvoker({
      lambda: new LambdaClient({ ...dummyAws }),
      functionNames: { fanoutWorker: 'arn:aws:lambda:us-east-1:123456789012:function:fanout' },
    });
    await invoker.invoke('fanoutWorker', { deploymentId: 'd-1' });
    const [call] = lambda.commandCalls(InvokeCommand);
    expect(call?.args[0].input).toMatchObject({
      FunctionName: 'arn:aws:lambda:us-east-1:123456789012:function:fanout',
      InvocationType: 'Event',
    });
    expect(JSON.parse(new TextDecoder().decode(call?.args[0].input.Payload as Uint8Array))).toEqual({
      deploymentId: 'd-1',
    });
    await expect(invoker.invoke('scheduler', {})).rejects.toThrow(/scheduler/);
    lambda.restore();
  });
});
