/**
 * The counter projection's pure part: a batch of executions-table stream records becomes, per
 * deployment, the sum of its records' `counterDeltas`. Records are read from the images directly
 * (two string attributes), so no unmarshalling of whole items.
 */
import { createHash } from 'node:crypto';
import type { DynamoDBRecord } from 'aws-lambda';
import {
  type CounterDeltas,
  counterDeltas,
  type ExecutionState,
  executionStates,
  isExecutionState,
} from '../../domain/deployment/index.ts';

type Image = NonNullable<NonNullable<DynamoDBRecord['dynamodb']>['NewImage']>;

/** One deployment's share of a batch. */
export interface DeploymentCounts {
  readonly deploymentId: string;
  /** Sum of the deltas of its records; states that did not change are absent. */
  readonly deltas: CounterDeltas;
  /** The stream records counted (for the batch's idempotency key). */
  readonly eventIds: readonly string[];
}

function stringAttribute(image: Image | undefined, name: string): string | undefined {
  return image?.[name]?.S;
}

function stateOf(image: Image | undefined): ExecutionState | undefined {
  const state = stringAttribute(image, 'state');
  return isExecutionState(state) ? state : undefined;
}

/**
 * The state a row was in before its INSERT: a device inserted past `queued` waited on a target
 * page, where the expansion counted it `queued` (ADR 0040, "Target pages"); a row inserted
 * `queued` or `incompatible` is counted from nothing.
 */
function insertedFrom(after: ExecutionState): ExecutionState | undefined {
  return after === 'queued' || after === 'incompatible' ? undefined : 'queued';
}

/** How many repeated listings of the device on target pages were taken back (`repeats`). */
function repeatsOf(image: Image | undefined): number {
  const value = Number(image?.repeats?.N ?? 0);
  return Number.isFinite(value) ? value : 0;
}

/**
 * The deltas of one record: INSERT creates, MODIFY moves, REMOVE (a TTL or a delete) takes one
 * away. A MODIFY that raises `repeats` also takes that many back from `queued`: a device listed on
 * another target page too, counted there, and written once (ADR 0040, "Target pages").
 */
export function recordDeltas(record: DynamoDBRecord): CounterDeltas {
  const change = record.dynamodb;
  const before = stateOf(change?.OldImage);
  const after = stateOf(change?.NewImage);
  if (record.eventName === 'REMOVE') return before ? { [before]: -1 } : {};
  if (!after) return {};
  if (record.eventName === 'INSERT') return counterDeltas(insertedFrom(after), after);
  const moved = counterDeltas(before, after);
  const repeats = repeatsOf(change?.NewImage) - repeatsOf(change?.OldImage);
  if (repeats <= 0) return moved;
  const queued = (moved.queued ?? 0) - repeats;
  return { ...moved, queued };
}

function addInto(sum: Partial<Record<ExecutionState, number>>, deltas: CounterDeltas): void {
  for (const state of executionStates) {
    const delta = deltas[state];
    if (delta) sum[state] = (sum[state] ?? 0) + delta;
  }
}

function withoutZeros(sum: Partial<Record<ExecutionState, number>>): CounterDeltas {
  return Object.fromEntries(Object.entries(sum).filter(([, value]) => value !== 0));
}

function deploymentIdOf(record: DynamoDBRecord): string | undefined {
  const change = record.dynamodb;
  return (
    stringAttribute(change?.Keys, 'deploymentId') ??
    stringAttribute(change?.NewImage, 'deploymentId') ??
    stringAttribute(change?.OldImage, 'deploymentId')
  );
}

/** Groups a batch by deployment; deployments whose records cancel out or change no state are left out. */
export function countsByDeployment(records: readonly DynamoDBRecord[]): DeploymentCounts[] {
  const groups = new Map<string, { sum: Partial<Record<ExecutionState, number>>; eventIds: string[] }>();
  for (const record of records) {
    const deploymentId = deploymentIdOf(record);
    if (!deploymentId) continue;
    const group = groups.get(deploymentId) ?? { sum: {}, eventIds: [] };
    groups.set(deploymentId, group);
    addInto(group.sum, recordDeltas(record));
    group.eventIds.push(record.eventID ?? record.dynamodb?.SequenceNumber ?? '');
  }
  return [...groups.entries()]
    .map(([deploymentId, { sum, eventIds }]) => ({ deploymentId, deltas: withoutZeros(sum), eventIds }))
    .filter((counts) => Object.keys(counts.deltas).length > 0);
}

/**
 * Names one deployment's part of one batch. A redelivered batch (Lambda retries the same records
 * after an error) gets the same key, so its counts are applied once; event ids are unique per
 * stream record, so two different batches never share one.
 */
export function batchKey(counts: DeploymentCounts): string {
  const hash = createHash('sha256');
  for (const id of counts.eventIds) hash.update(id).update('\n');
  return hash.digest('base64url').slice(0, 32);
}

/**
 * True when the deltas add finished devices (succeeded, skipped, failed, timed out): only then can
 * an abort criterion newly be met. A success counts too: it can bring the finished count up to a
 * criterion's minimum while the failure rate is already above its threshold.
 */
export function addsFinished(deltas: CounterDeltas): boolean {
  return (['succeeded', 'skipped', 'failed', 'timed_out'] as const).some((state) => (deltas[state] ?? 0) > 0);
}
