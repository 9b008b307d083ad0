import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { IoTDataPlaneClient } from '@aws-sdk/client-iot-data-plane';
import { describe, expect, it } from 'vitest';
import { documentClient } from '../../../lambdas/adapters/dynamodb.ts';
import { withoutSdkRequestLog } from '../../../lambdas/adapters/sdk-clients.ts';
import { makeShadowWriter } from '../../../lambdas/adapters/shadow-writer.ts';

const steps = (client: { middlewareStack: { identify(): string[] } }): string[] =>
  client.middlewareStack.identify();
const hasLogStep = (client: { middlewareStack: { identify(): string[] } }): boolean =>
  steps(client).some((step) => step.startsWith('loggerMiddleware'));

describe('withoutSdkRequestLog', () => {
  it('takes the request log step out and keeps every other step', () => {
    const client = new DynamoDBClient({ region: 'us-east-1' });
    const before = steps(client);
    expect(hasLogStep(client)).toBe(true);
    expect(withoutSdkRequestLog(client)).toBe(client);
    expect(hasLogStep(client)).toBe(false);
    expect(steps(client)).toEqual(before.filter((step) => !step.startsWith('loggerMiddleware')));
    client.destroy();
  });

  it('is applied to the clients the hot paths send through', () => {
    const dynamodb = new DynamoDBClient({ region: 'us-east-1' });
    documentClient(dynamodb);
    expect(hasLogStep(dynamodb)).toBe(false);
    const iotData = new IoTDataPlaneClient({ region: 'us-east-1' });
    makeShadowWriter({ iotData });
    expect(hasLogStep(iotData)).toBe(false);
    dynamodb.destroy();
    iotData.destroy();
  });

  it('leaves a test double without a middleware stack alone', () => {
    const double = { send: async () => ({}) };
    expect(withoutSdkRequestLog(double)).toBe(double);
  });
});
