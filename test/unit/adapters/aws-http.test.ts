import * as dynamodbModel from '@aws-sdk/client-dynamodb';
import { DynamoDBServiceException } from '@aws-sdk/client-dynamodb';
import { PublishCommand, UpdateThingShadowCommand } from '@aws-sdk/client-iot-data-plane';
import { SignatureV4 } from '@smithy/signature-v4';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  type AwsHttpRequest,
  RetryBudget,
  retryDelayMs,
  retryKindOf,
  serviceErrorOf,
  signedHeaders,
  withRetries,
} from '../../../lambdas/adapters/aws-http.ts';
import { iotDataRequestOf } from '../../../lambdas/adapters/fast-iot-data.ts';
import { NodeSha256 } from '../../../local/sts/sigv4.ts';

const credentials = {
  accessKeyId: 'AKIDEXAMPLE',
  secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY',
  sessionToken: 'token/with+chars',
};
const at = new Date('2026-11-24T12:34:56Z');

/** The SDK's own signer's Authorization for the same request and headers: the reference. */
async function sdkAuthorization(
  origin: string,
  signingName: string,
  request: AwsHttpRequest,
  headers: Record<string, string>,
): Promise<string> {
  const url = new URL(`${origin}${request.path}`);
  const signer = new SignatureV4({
    credentials,
    region: 'eu-west-1',
    service: signingName,
    sha256: NodeSha256,
    applyChecksum: false,
  });
  const signed = await signer.sign(
    {
      method: request.method,
      protocol: url.protocol,
      hostname: url.hostname,
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers: Object.fromEntries(Object.entries(headers).filter(([name]) => name !== 'Authorization')),
      ...(request.body === undefined ? {} : { body: request.body }),
    },
    { signingDate: at },
  );
  return String(signed.headers.authorization);
}

afterEach(() => {
  vi.useRealTimers();
});

describe('signed requests', () => {
  const dataPlane = 'https://abc-ats.iot.eu-west-1.amazonaws.com';
  it.each<[string, string, string, AwsHttpRequest]>([
    [
      'a DynamoDB JSON request',
      'https://dynamodb.eu-west-1.amazonaws.com',
      'dynamodb',
      {
        method: 'POST',
        path: '/',
        headers: {
          'content-type': 'application/x-amz-json-1.0',
          'x-amz-target': 'DynamoDB_20120810.UpdateItem',
        },
        body: '{"TableName":"t"}',
      },
    ],
    [
      'a shadow update of a thing whose name needs encoding',
      dataPlane,
      'iotdata',
      iotDataRequestOf(
        new UpdateThingShadowCommand({
          thingName: 'pump:7',
          shadowName: 'ota',
          payload: new TextEncoder().encode('{"state":{}}'),
        }),
      ),
    ],
    [
      'a publish to a topic with slashes, with its query',
      dataPlane,
      'iotdata',
      iotDataRequestOf(
        new PublishCommand({
          topic: 'ota/things/pump-7/download/accepted',
          qos: 1,
          contentType: 'application/json',
          payload: new TextEncoder().encode('{}'),
        }),
      ),
    ],
  ])('signs %s exactly as the SDK signer does', async (_name, origin, signingName, request) => {
    vi.useFakeTimers({ now: at, toFake: ['Date'] });
    const headers = signedHeaders({ origin, region: 'eu-west-1', signingName }, request, credentials);
    expect(headers['X-Amz-Security-Token']).toBe(credentials.sessionToken);
    expect(headers.Authorization).toBe(await sdkAuthorization(origin, signingName, request, headers));
  });

  it('encodes a topic as one path label, as the SDK does', () => {
    const request = iotDataRequestOf(new PublishCommand({ topic: 'a/b c', qos: 0, payload: '' }));
    expect(request.path).toBe('/topics/a%2Fb%20c?qos=0');
  });

  it('refuses publish options it would otherwise drop', () => {
    expect(() =>
      iotDataRequestOf(new PublishCommand({ topic: 't', retain: false, responseTopic: 'r' })),
    ).toThrow(/responseTopic/);
  });
});

/** A service error as the lean clients throw them. */
function serviceError(name: string, status: number, headers: Record<string, string> = {}) {
  return serviceErrorOf(
    { exports: dynamodbModel, base: DynamoDBServiceException },
    { status, headers: { 'x-amzn-errortype': name, ...headers }, body: Buffer.from('{}') },
    1,
  );
}

const noSleep = async () => {};

describe('retries', () => {
  it('retries what is retryable up to the attempts, then throws the last error', async () => {
    const attempts: number[] = [];
    const failing = withRetries(
      async (n) => {
        attempts.push(n);
        throw Object.assign(new Error(`attempt ${n}`), { code: 'ECONNRESET' });
      },
      { maxAttempts: 3, sleep: noSleep },
    );
    await expect(failing).rejects.toThrow('attempt 3');
    expect(attempts).toEqual([1, 2, 3]);
  });

  it('throws at once what is not retryable, and returns a success', async () => {
    let calls = 0;
    const refused = withRetries(
      async () => {
        calls++;
        throw serviceError('ConditionalCheckFailedException', 400);
      },
      { maxAttempts: 5, sleep: noSleep },
    );
    await expect(refused).rejects.toBeInstanceOf(dynamodbModel.ConditionalCheckFailedException);
    expect(calls).toBe(1);
    const flaky = async (n: number) => (n < 2 ? Promise.reject(serviceError('InternalServerError', 500)) : n);
    expect(await withRetries(flaky, { maxAttempts: 5, sleep: noSleep })).toBe(2);
  });

  it.each([
    ['ThrottlingException', 400, 'throttling'],
    ['ProvisionedThroughputExceededException', 400, 'throttling'],
    ['TransactionInProgressException', 400, 'throttling'],
    ['LimitExceededException', 400, 'throttling'],
    ['Whatever', 429, 'throttling'],
    ['ServiceUnavailable', 503, 'transient'],
    ['InternalServerError', 500, 'transient'],
    ['NotImplemented', 501, undefined],
    ['ValidationException', 400, undefined],
    ['ConditionalCheckFailedException', 400, undefined],
  ])('classifies %s (%i) as %s', (name, status, kind) => {
    expect(retryKindOf(serviceError(name, status))).toBe(kind);
  });

  it.each([
    ['ECONNRESET', 'transient'],
    ['UND_ERR_SOCKET', 'transient'],
    ['UND_ERR_HEADERS_TIMEOUT', 'transient'],
    ['UND_ERR_CLOSED', undefined],
    ['UND_ERR_INVALID_ARG', undefined],
  ])('classifies a network error %s as %s', (code, kind) => {
    expect(retryKindOf(Object.assign(new Error(code), { code }))).toBe(kind);
  });

  it('classifies an error by the connection error that caused it', () => {
    const cause = Object.assign(new Error('reset'), { code: 'ECONNRESET' });
    expect(retryKindOf(new Error('fetch failed', { cause }))).toBe('transient');
  });

  it.each([
    ['transient', 0, 0.999, 49],
    ['transient', 3, 0.5, 200],
    ['throttling', 0, 0.5, 500],
    ['throttling', 2, 0.999, 3_996],
    ['transient', 20, 0.999, 19_980],
  ] as const)('full jitter: a %s retry %i with random %f waits %i ms', (kind, retry, random, expected) => {
    expect(retryDelayMs(kind, retry, () => random)).toBe(expected);
  });

  it("backs off from the service's own transient base (DynamoDB's 25 ms)", () => {
    expect(retryDelayMs('transient', 2, () => 0.999, undefined, 25)).toBe(99);
    expect(retryDelayMs('throttling', 0, () => 0.5, undefined, 25)).toBe(500);
  });

  it('takes x-amz-retry-after (ms) as a hint too', async () => {
    const waits: number[] = [];
    await withRetries(
      async (n) =>
        n === 1
          ? Promise.reject(serviceError('ThrottlingException', 400, { 'x-amz-retry-after': '1500' }))
          : n,
      {
        maxAttempts: 2,
        random: () => 0,
        sleep: async (ms) => {
          waits.push(ms);
        },
      },
    );
    expect(waits).toEqual([1_500]);
  });

  it('waits for a Retry-After hint, but at most 5 s past its own backoff', async () => {
    const waits: number[] = [];
    const sleep = async (ms: number) => {
      waits.push(ms);
    };
    const throttled = (seconds: string) =>
      serviceError('ThrottlingException', 400, { 'retry-after': seconds });
    const hints = ['2', '60'];
    await withRetries(async (n) => (n <= hints.length ? Promise.reject(throttled(hints[n - 1] ?? '')) : n), {
      maxAttempts: 3,
      sleep,
      random: () => 0,
    });
    expect(waits).toEqual([2_000, 5_000]);
  });

  it("stops retrying when the client's retry budget is spent, and refills it on success", async () => {
    const budget = new RetryBudget();
    const failing = () =>
      withRetries(async () => Promise.reject(serviceError('InternalServerError', 500)), {
        maxAttempts: 3,
        budget,
        sleep: noSleep,
      });
    let attempts = 0;
    const counted = () =>
      withRetries(
        async () => {
          attempts++;
          throw serviceError('InternalServerError', 500);
        },
        { maxAttempts: 3, budget, sleep: noSleep },
      );
    while (budget.capacity >= RetryBudget.COST.transient) await failing().catch(() => undefined);
    await expect(counted()).rejects.toThrow();
    expect(attempts).toBe(1);
    const before = budget.capacity;
    await withRetries(async () => 'ok', { maxAttempts: 3, budget });
    expect(budget.capacity).toBe(before + 1);
  });
});
