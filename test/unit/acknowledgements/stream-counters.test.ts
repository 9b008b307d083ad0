import type { DynamoDBRecord } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import {
  addsFinished,
  batchKey,
  countsByDeployment,
  recordDeltas,
} from '../../../lambdas/handlers/acknowledgements/stream-counters.ts';

type Event = 'INSERT' | 'MODIFY' | 'REMOVE';

function record(
  event: Event,
  id: string,
  before?: string,
  after?: string,
  eventID = `${id}-${event}`,
): DynamoDBRecord {
  const image = (state: string) => ({ deploymentId: { S: id }, state: { S: state } });
  return {
    eventID,
    eventName: event,
    dynamodb: {
      Keys: { deploymentId: { S: id } },
      ...(before ? { OldImage: image(before) } : {}),
      ...(after ? { NewImage: image(after) } : {}),
    },
  };
}

describe('the counter projection of one stream record', () => {
  it('counts a row inserted queued or incompatible from nothing', () => {
    expect(recordDeltas(record('INSERT', 'd', undefined, 'queued'))).toEqual({ queued: 1 });
    expect(recordDeltas(record('INSERT', 'd', undefined, 'incompatible'))).toEqual({ incompatible: 1 });
  });

  it('moves a row inserted past queued out of queued: it waited on a target page, counted there', () => {
    expect(recordDeltas(record('INSERT', 'd', undefined, 'notified'))).toEqual({ queued: -1, notified: 1 });
    expect(recordDeltas(record('INSERT', 'd', undefined, 'canceled'))).toEqual({ queued: -1, canceled: 1 });
  });

  it('takes a repeated listing back from queued when a modify raises the row’s repeats', () => {
    const repeat = record('MODIFY', 'd', 'notified', 'notified');
    const change = repeat.dynamodb ?? {};
    if (change.OldImage) change.OldImage.repeats = { N: '1' };
    if (change.NewImage) change.NewImage.repeats = { N: '2' };
    expect(recordDeltas(repeat)).toEqual({ queued: -1 });
    const moved = record('MODIFY', 'd', 'notified', 'succeeded');
    if (moved.dynamodb?.NewImage) moved.dynamodb.NewImage.repeats = { N: '1' };
    expect(recordDeltas(moved)).toEqual({ notified: -1, succeeded: 1, queued: -1 });
  });

  it('moves a modified row between its states, and takes a removed one away', () => {
    expect(recordDeltas(record('MODIFY', 'd', 'notified', 'succeeded'))).toEqual({
      notified: -1,
      succeeded: 1,
    });
    expect(recordDeltas(record('MODIFY', 'd', 'notified', 'notified'))).toEqual({});
    expect(recordDeltas(record('REMOVE', 'd', 'failed'))).toEqual({ failed: -1 });
  });
});

describe('a batch of records', () => {
  it('sums per deployment and leaves out deployments whose records cancel out', () => {
    const counts = countsByDeployment([
      record('INSERT', 'a', undefined, 'notified', '1'),
      record('INSERT', 'a', undefined, 'notified', '2'),
      record('MODIFY', 'a', 'notified', 'succeeded', '3'),
      record('MODIFY', 'b', 'notified', 'downloading', '4'),
      record('MODIFY', 'b', 'downloading', 'notified', '5'),
    ]);
    expect(counts).toEqual([
      { deploymentId: 'a', deltas: { queued: -2, notified: 1, succeeded: 1 }, eventIds: ['1', '2', '3'] },
    ]);
    const [a] = counts;
    if (!a) throw new Error('no counts');
    expect(batchKey(a)).toBe(batchKey({ ...a }));
    expect(batchKey(a)).not.toBe(batchKey({ ...a, eventIds: ['1', '2', '4'] }));
    expect(addsFinished(a.deltas)).toBe(true);
    expect(addsFinished({ queued: -1, notified: 1 })).toBe(false);
  });
});
