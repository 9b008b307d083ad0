/**
 * Target pages on DynamoDB Local (ADR 0040, "Target pages"): written and counted once, read by
 * lane, repeats taken back once; and the walk that reads them skips devices with a row.
 */
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { makeDeploymentStore } from '../../../lambdas/adapters/deployment-store.ts';
import { makeExecutionStore, unwrittenExecution } from '../../../lambdas/adapters/execution-store.ts';
import { makeTargetPages } from '../../../lambdas/adapters/target-pages.ts';
import { notify } from '../../../lambdas/domain/deployment/index.ts';
import {
  decodeLanePosition,
  decodeTargetPosition,
  encodeLanePosition,
  encodeTargetPosition,
  findWaiting,
  readWaiting,
} from '../../../lambdas/handlers/fanout/target-walk.ts';
import { documentClient, dynamoDbClient } from '../import/support.ts';
import { createDeploymentTables, type DeploymentTables } from './api-support.ts';
import { createDeployment } from './fanout-support.ts';

const raw = dynamoDbClient(inject('ddbEndpoint'));
const db = documentClient(raw);
let tables: DeploymentTables;

beforeAll(async () => {
  tables = await createDeploymentTables(raw, 'tpages');
});

afterAll(() => raw.destroy());

function stores() {
  return {
    targets: makeTargetPages({ db, tableName: tables.deployments }),
    executions: makeExecutionStore({ db, tableName: tables.executions }),
    deployments: makeDeploymentStore({ db, tableName: tables.deployments, updatesTableName: tables.updates }),
  };
}

describe('target pages', () => {
  it('writes a page once and counts its things queued once, however often it is put', async () => {
    const { targets, deployments } = stores();
    const { deploymentId } = await createDeployment(db, tables, { target: { things: ['a', 'b', 'c'] } });
    const lanes = new Map([
      [0, ['a', 'b']],
      [1, ['c']],
    ]);
    expect(await targets.put(deploymentId, 0, lanes)).toBe(true);
    expect(await targets.put(deploymentId, 0, new Map([[0, ['other']]]))).toBe(false);
    expect((await deployments.get(deploymentId))?.counters.queued).toBe(3);
    expect(await targets.readLane(deploymentId, 0, 0)).toEqual(['a', 'b']);
    expect(await targets.readLane(deploymentId, 0, 1)).toEqual(['c']);
    expect(await targets.readLane(deploymentId, 0, 2)).toEqual([]);
    expect(await targets.readLane(deploymentId, 1, 0)).toBeUndefined();
    await expect(targets.put('no-such-deployment', 0, lanes)).rejects.toThrow(/does not exist/);
  });
});

describe('the walk of a lane’s pages', () => {
  it('hands out the devices without a row, with the position after each, takes a repeat back once, and finds a waiting device', async () => {
    const stored = stores();
    const deployment = await createDeployment(db, tables, { target: { things: ['w1', 'w2', 'w3'] } });
    const id = deployment.deploymentId;
    await stored.targets.put(id, 0, new Map([[0, ['w1', 'w2', 'w3']]]));
    await stored.targets.put(id, 1, new Map([[0, ['w2', 'w4']]]));
    // w2 is notified from page 0: its row exists.
    const w2 = unwrittenExecution(id, {
      thingName: 'w2',
      updateId: deployment.updateId,
      shard: 0,
      targetPage: 0,
    });
    const decision = notify(w2, Date.now());
    if (!decision.ok) throw new Error('not notifiable');
    const written = await stored.executions.transition(w2, decision.value.next, {
      at: Date.now(),
      reason: 'notified',
    });
    expect(written.ok && written.value).toMatchObject({ state: 'notified', targetPage: 0, shard: 0 });
    // A second insert of the same device is a conflict carrying the row.
    const again = await stored.executions.transition(w2, decision.value.next, { at: Date.now() });
    expect(!again.ok && again.error.current?.state).toBe('notified');

    const first = await readWaiting(stored, deployment, 0, { page: 0, index: 1 });
    expect(first.waiting.map((w) => [w.execution.thingName, w.after])).toEqual([
      ['w3', { page: 0, index: 3 }],
    ]);
    expect(first.waiting[0]?.execution).toMatchObject({ unwritten: true, state: 'queued', attempt: 1 });
    expect([first.pageEnd, first.exhausted]).toEqual([{ page: 1, index: 0 }, false]);
    // Page 1 lists w2 again: handed out no more, and its count taken back once (the row's
    // `repeats`, which the counter projection reads as one queued less), however often it is read.
    const second = await readWaiting(stored, deployment, 0, first.pageEnd);
    await readWaiting(stored, deployment, 0, first.pageEnd);
    expect(second.waiting.map((w) => w.execution.thingName)).toEqual(['w4']);
    const repeated = await db.send(
      new GetCommand({
        TableName: tables.executions,
        Key: { deploymentId: id, thingName: 'w2' },
        ConsistentRead: true,
      }),
    );
    expect(repeated.Item).toMatchObject({ repeats: 1, state: 'notified' });
    // A listing's read changes nothing.
    await readWaiting(stored, deployment, 0, { page: 2, index: 0 }, { uncountRepeats: false });
    expect((await readWaiting(stored, deployment, 0, second.pageEnd)).exhausted).toBe(true);

    expect(await findWaiting(stored, deployment, 'w4')).toMatchObject({ thingName: 'w4', targetPage: 1 });
    expect(await findWaiting(stored, deployment, 'nobody')).toBeUndefined();
  });

  it('encodes positions it can read back, and reads anything else as the start', () => {
    expect(decodeTargetPosition(encodeTargetPosition({ page: 12, index: 3 }))).toEqual({
      page: 12,
      index: 3,
    });
    expect(decodeTargetPosition('thing-0042')).toEqual({ page: 0, index: 0 });
    expect(decodeTargetPosition(undefined)).toEqual({ page: 0, index: 0 });
    const at = { lane: 3, position: { page: 9, index: 250 } };
    expect(decodeLanePosition(encodeLanePosition(at))).toEqual(at);
    expect(decodeLanePosition('garbage')).toBeUndefined();
    // Fixed width: later positions sort later as text (the cancel's cursor only moves forward).
    expect(encodeLanePosition({ lane: 2, position: { page: 10, index: 0 } }) > encodeLanePosition(at)).toBe(
      false,
    );
    expect(encodeLanePosition({ lane: 3, position: { page: 10, index: 0 } }) > encodeLanePosition(at)).toBe(
      true,
    );
  });
});
