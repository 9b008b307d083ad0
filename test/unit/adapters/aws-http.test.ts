import { PublishCommand, UpdateThingShadowCommand } from '@aws-sdk/client-iot-data-plane';
import { SignatureV4 } from '@smithy/signature-v4';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  type AwsHttpRequest,
  retryDelayMs,
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

describe('retries', () => {
  it('retries what is retryable up to the attempts, then throws the last error', async () => {
    const attempts: number[] = [];
    const failing = withRetries(
      3,
      () => true,
      async (n) => {
        attempts.push(n);
        throw new Error(`attempt ${n}`);
      },
      async () => {},
    );
    await expect(failing).rejects.toThrow('attempt 3');
    expect(attempts).toEqual([1, 2, 3]);
  });

  it('throws at once what is not retryable, and returns a success', async () => {
    let calls = 0;
    const refused = withRetries(
      5,
      () => false,
      async () => {
        calls++;
        throw new Error('refused');
      },
      async () => {},
    );
    await expect(refused).rejects.toThrow('refused');
    expect(calls).toBe(1);
    expect(
      await withRetries(
        5,
        () => true,
        async (n) => (n < 2 ? Promise.reject(new Error('x')) : n),
        async () => {},
      ),
    ).toBe(2);
  });

  it.each([
    [0, 0.999, 99],
    [3, 0.5, 400],
    [20, 0.999, 19_980],
  ])('full jitter: retry %i with random %f waits %i ms', (retry, random, expected) => {
    expect(retryDelayMs(retry, () => random)).toBe(expected);
  });
});
