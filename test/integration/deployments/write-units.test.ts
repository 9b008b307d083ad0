import { DynamoDBStreamsClient } from '@aws-sdk/client-dynamodb-streams';
import type { DynamoDBStreamEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type Image, itemBytes, valueBytes, writeUnitsOfChange } from '../../../bench/write-units.ts';
import { makeExecutionStore, unwrittenExecution } from '../../../lambdas/adapters/execution-store.ts';
import { executionsTable } from '../../../lambdas/definitions/tables.ts';
import { forwardReport, notify } from '../../../lambdas/domain/deployment/index.ts';
import { startStreamPoller } from '../../../local/streams.ts';
import { documentClient, dynamoDbClient } from '../import/support.ts';
import { createDeploymentTables, type DeploymentTables, uniqueName } from './api-support.ts';

// The benchmark's meter of write units (bench/write-units.ts), which prices the PartiQL batches
// DynamoDB Local reports no capacity for, against what DynamoDB Local reports for the same
// changes made by single writes.
const endpoint = inject('ddbEndpoint');
const raw = dynamoDbClient(endpoint);
const reported: number[] = [];
raw.middlewareStack.add(
  (next) => async (args) => {
    (args.input as Record<string, unknown>).ReturnConsumedCapacity = 'TOTAL';
    const result = (await next(args)) as unknown as {
      output?: { ConsumedCapacity?: { CapacityUnits?: number } };
    };
    const units = result.output?.ConsumedCapacity?.CapacityUnits;
    if (units !== undefined) reported.push(units);
    return result as never;
  },
  { step: 'initialize', name: 'reportCapacity' },
);
const db = documentClient(raw);
const streams = new DynamoDBStreamsClient({
  endpoint,
  region: 'us-east-1',
  credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
});
let tables: DeploymentTables;
const updateId = { provider: 'Contoso', name: 'Toaster', version: '2.0' };

beforeAll(async () => {
  tables = await createDeploymentTables(dynamoDbClient(endpoint), 'units');
});

afterAll(() => {
  raw.destroy();
  streams.destroy();
});

describe('the benchmark’s write-unit meter', () => {
  it('sizes values as DynamoDB documents it', () => {
    expect(valueBytes({ S: 'héllo' })).toBe(6);
    // Leading and trailing zeros do not count: 1764024 is seven digits.
    expect(valueBytes({ N: '1764024000000' })).toBe(5);
    expect(valueBytes({ N: '-0.0012300' })).toBe(3);
    expect(valueBytes({ BOOL: true })).toBe(1);
    expect(valueBytes({ M: { ab: { S: 'xyz' } } })).toBe(3 + 1 + 2 + 3);
    expect(valueBytes({ L: [{ N: '7' }, { NULL: true }] })).toBe(3 + 1 + 2 + 1 + 1);
    expect(itemBytes({ pk: { S: 'abc' }, n: { N: '12' } })).toBe(2 + 3 + 1 + 2);
  });

  it('meters each change of an execution as DynamoDB Local reports the single write that made it', async () => {
    const executions = makeExecutionStore({ db, tableName: tables.executions });
    const deploymentId = uniqueName('dep');
    const thingName = uniqueName('dev');
    reported.length = 0;
    // Inserted as notified (two indexes entered), a report (index key changed), the end (index left).
    const waiting = unwrittenExecution(deploymentId, { thingName, updateId, shard: 3, targetPage: 1 });
    const marked = notify(waiting, Date.now());
    if (!marked.ok) throw new Error(marked.error.message);
    const inserted = await executions.transition(waiting, marked.value.next, {
      at: Date.now(),
      reason: 'notified',
      deadline: Date.now() + 60_000,
    });
    if (!inserted.ok) throw new Error('insert refused');
    const report = (state: string, seq: number) => ({
      ota: {
        state,
        deploymentId,
        attempt: 1,
        seq,
        updateId,
        ...(state === 'succeeded'
          ? { installedUpdateId: updateId, lastResult: { resultCode: 700, extendedResultCode: 0 } }
          : { progress: { step: 0, bytes: 10, totalBytes: 1024 } }),
      },
      reportedAt: Date.now(),
    });
    for (const [state, seq] of [
      ['downloading', 1],
      ['downloading', 2],
      ['succeeded', 3],
    ] as const) {
      const parsed = report(state, seq);
      const forward = forwardReport(parsed as never);
      if (!forward) throw new Error(`no forward move for ${state}`);
      const written = await executions.applyForwardReport(thingName, forward, { at: Date.now() });
      expect(written.ok).toBe(true);
    }
    expect(reported).toHaveLength(4);

    const metered: number[] = [];
    const poller = await startStreamPoller({
      streams,
      tableName: tables.executions,
      handler: async (event: DynamoDBStreamEvent) => {
        for (const record of event.Records) {
          const before = record.dynamodb?.OldImage as Image | undefined;
          const after = record.dynamodb?.NewImage as Image | undefined;
          if ((after ?? before)?.thingName?.S === thingName)
            metered.push(writeUnitsOfChange(executionsTable, before, after));
        }
      },
      idleDelayMs: 20,
    });
    await poller.caughtUp();
    await poller.stop();
    expect(metered).toEqual(reported);
    // The changes differ in what they cost: the meter is not answering one figure for all.
    expect(new Set(metered).size).toBeGreaterThan(1);
  });
});
