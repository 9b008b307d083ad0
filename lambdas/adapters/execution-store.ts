import { ConditionalCheckFailedException } from '@aws-sdk/client-dynamodb';
import {
  BatchExecuteStatementCommand,
  BatchWriteCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import { executionsTable } from '../definitions/tables.ts';
import {
  type CancelReason,
  type Execution,
  type ExecutionState,
  type ForwardReport,
  isInProgress,
  type LastResult,
  type ReportedProgress,
  type TransitionReason,
} from '../domain/deployment/index.ts';
import type { UpdateId } from '../domain/manifest/index.ts';
import { err, ok, type Result } from '../domain/result.ts';
import { batchGetItems } from './dynamodb.ts';
import { decodePageToken, encodePageToken, type PageKey, type PagePosition } from './page-token.ts';

/**
 * One execution (deployment × device) as stored: the domain's `Execution` plus what status pages
 * and sweeps read. Times the rules compare are epoch ms; `createdAt`/`updatedAt` are ISO text
 * because `createdAt` sorts the `byThing` index.
 */
export interface ExecutionRecord extends Execution {
  /** 0..N-1, a hash of the thing name: the fan-out lane that notifies this device. */
  readonly shard: number;
  readonly createdAt: string;
  readonly updatedAt: string;
  /** Why the execution got its current state. */
  readonly reason?: TransitionReason;
  /** Epoch ms when a notified device's time is up (notifiedAt + the policy's timeout). */
  readonly deadline?: number;
  readonly lastResult?: LastResult;
  readonly progress?: ReportedProgress;
  /**
   * The installed update the device reported last (at `reportedAt`). The device's installed update
   * is the newest of these and the fleet item's (ADR 0040, "Fleet facts").
   */
  readonly installedUpdateId?: UpdateId;
  /**
   * The execution exists only as a line of its deployment's target page (ADR 0040, "Target
   * pages"): a first attempt still waiting, never written. Its first transition inserts it.
   */
  readonly unwritten?: true;
  /** The target page the execution was first written from (absent for rows written otherwise). */
  readonly targetPage?: number;
}

/**
 * A targeted device's first attempt as it waits on its target page, before any row is written:
 * the domain decides on it as on any queued execution, and `transition` inserts it.
 */
export function unwrittenExecution(
  deploymentId: string,
  target: {
    readonly thingName: string;
    readonly updateId: UpdateId;
    readonly shard: number;
    readonly targetPage: number;
  },
): ExecutionRecord {
  return {
    deploymentId,
    thingName: target.thingName,
    updateId: target.updateId,
    state: 'queued',
    attempt: 1,
    shard: target.shard,
    targetPage: target.targetPage,
    createdAt: '',
    updatedAt: '',
    unwritten: true,
  };
}

/**
 * A device the expansion targets, as a row: `incompatible` when its compatibility does not match
 * (the others wait on target pages); `queued` rows are what tests seed.
 */
export interface NewExecution {
  readonly thingName: string;
  readonly updateId: UpdateId;
  readonly state: 'queued' | 'incompatible';
  readonly shard: number;
}

/** What a transition writes besides the domain's `next`: when, why, and the device's report. */
export interface TransitionExtra {
  /** Epoch ms of the write. */
  readonly at: number;
  readonly reason?: TransitionReason;
  readonly deadline?: number;
  readonly lastResult?: LastResult;
  readonly progress?: ReportedProgress;
  readonly installedUpdateId?: UpdateId;
}

/** One execution's transition, for `transitionMany`. */
export interface TransitionEntry {
  readonly current: ExecutionRecord;
  readonly next: Execution;
  readonly extra: TransitionExtra;
}

export type TransitionOutcome =
  | { readonly kind: 'applied'; readonly record: ExecutionRecord }
  /** The execution is not as it was read: as it is now (undefined when there is none). */
  | { readonly kind: 'refused'; readonly current: ExecutionRecord | undefined }
  /** Not written, for a reason the batch cannot settle: the caller writes it on its own. */
  | { readonly kind: 'unsent'; readonly code: string };

/** One report's forward move, for `applyForwardReports`. */
export interface ForwardEntry {
  readonly thingName: string;
  readonly report: ForwardReport;
  readonly extra: Omit<TransitionExtra, 'reason' | 'deadline'>;
}

export type ForwardOutcome =
  | { readonly kind: 'applied' }
  /** Its conditions did not hold: the execution as it is (undefined when there is none). */
  | { readonly kind: 'refused'; readonly current: ExecutionRecord | undefined }
  /**
   * Not written, for a reason a single write may get past (throttled, a passing fault, a second
   * entry for the same execution): the caller applies it on its own. A request that fails as a
   * whole, or a statement refused for any other reason, throws instead.
   */
  | { readonly kind: 'unsent'; readonly code: string };

/** The execution changed since it was read (another report, a sweep, an operator): re-read and decide again. */
export interface ExecutionConflict {
  readonly code: 'EXECUTION_CONFLICT';
  readonly deploymentId: string;
  readonly thingName: string;
  /** The execution as it is now; undefined when it does not exist. */
  readonly current: ExecutionRecord | undefined;
}

export interface ExecutionPage {
  readonly items: readonly ExecutionRecord[];
  /** Opaque; absent on the last page. */
  readonly nextToken?: string;
}

export interface InvalidNextToken {
  readonly code: 'INVALID_NEXT_TOKEN';
}

export interface StatePage {
  readonly items: readonly ExecutionRecord[];
  /** Pass back as `exclusiveStartKey`; absent on the last page. Opaque (a selector may walk two partitions). */
  readonly lastEvaluatedKey?: PagePosition;
}

export interface ExecutionStore {
  /** Writes the executions (BatchWriteItem, unprocessed items retried), unconditionally: for seeding rows. */
  batchPutQueued(deploymentId: string, executions: readonly NewExecution[], now: number): Promise<void>;
  /**
   * Writes `incompatible` rows for devices that have none (conditional puts): a device another
   * source listed, and the fan-out reached, keeps its row.
   */
  putIncompatible(deploymentId: string, executions: readonly NewExecution[], now: number): Promise<void>;
  /**
   * Takes back the `queued` count of a device listed again on target page `page` (a device in two
   * target groups) whose row was written otherwise: the row's `repeats` goes up by one, once per
   * page, and the counter projection reads that as one `queued` less (ADR 0040, "Target pages").
   */
  takeBackRepeat(deploymentId: string, thingName: string, page: number): Promise<void>;
  get(deploymentId: string, thingName: string): Promise<ExecutionRecord | undefined>;
  /** The executions of these things that have a row (strongly consistent), in no particular order. */
  getWritten(deploymentId: string, thingNames: readonly string[]): Promise<ExecutionRecord[]>;
  /**
   * One page of a deployment's executions the selector names, optionally of one shard, walked by
   * key: through `byDeploymentState`, or for `succeeded` (not indexed) the table's partition.
   * Filtered, so a page may be short, even empty, with more after it.
   */
  queryByState(
    deploymentId: string,
    state: StateSelector,
    options: { readonly limit: number; readonly exclusiveStartKey?: PagePosition; readonly shard?: number },
  ): Promise<StatePage>;
  /**
   * The API's listing: all of a deployment's executions, or those in one state (or the retried
   * devices waiting, `requeued`), by thing name.
   */
  listForDeployment(
    deploymentId: string,
    options: {
      readonly state?: ExecutionState | 'requeued';
      readonly limit: number;
      readonly nextToken?: string;
    },
  ): Promise<Result<ExecutionPage, InvalidNextToken>>;
  /** A device's executions, newest first (index `byThing`). */
  listForThing(
    thingName: string,
    options: { readonly limit: number; readonly nextToken?: string },
  ): Promise<Result<ExecutionPage, InvalidNextToken>>;
  /**
   * Writes `next` (the domain's result for `current`) if the execution is still as `current` was read:
   * same state, attempt and shadow version (ADR 0010); an `unwritten` one only if it still has no
   * row (its first write inserts it). Returns the record as written.
   */
  transition(
    current: ExecutionRecord,
    next: Execution,
    extra: TransitionExtra,
  ): Promise<Result<ExecutionRecord, ExecutionConflict>>;
  /**
   * `transition` for many executions, 25 to a request (PartiQL `BatchExecuteStatement`; a first
   * write is an `INSERT`, which refuses an item that exists): the fan-out's `notified` marks (ADR
   * 0040, "Batched marks"). One outcome per entry, in order, with the record as written.
   */
  transitionMany(entries: readonly TransitionEntry[]): Promise<TransitionOutcome[]>;
  /**
   * A device report's forward move in one request, written on the domain's conditions
   * (`forwardReport`) instead of on an execution read first. Returns the execution as it was
   * before the move, or the conflict with the execution as it is (from the same answer), for
   * `decideReport` to decide on.
   */
  applyForwardReport(
    thingName: string,
    report: ForwardReport,
    extra: Omit<TransitionExtra, 'reason' | 'deadline'>,
  ): Promise<Result<ExecutionRecord, ExecutionConflict>>;
  /**
   * Many reports' forward moves, 25 to a request (PartiQL `BatchExecuteStatement`, ADR 0040
   * "Batched acknowledgements"), each on `applyForwardReport`'s conditions and on the execution
   * having been notified (PartiQL has no `if_not_exists`, so the rare report that arrives before
   * its notification takes the read path). One outcome per entry, in order; a move that landed
   * answers nothing about the execution as it was.
   */
  applyForwardReports(entries: readonly ForwardEntry[]): Promise<ForwardOutcome[]>;
  /**
   * The device asked for download authorization (at `at`, epoch ms): a `notified` execution with
   * no cancel pending moves to `downloading` (reason `download_authorized`) and counts as heard
   * from. One conditional write that answers with the execution as it is afterwards, moved or not
   * (undefined when there is none): the authorizer's check and the device's progress in one
   * request, which spares the agent its `downloading` report (ADR 0040).
   */
  markDownloadStarted(
    deploymentId: string,
    thingName: string,
    at: number,
    /** The attempt the device asked for: another attempt's execution is not moved. */
    attempt?: number,
  ): Promise<ExecutionRecord | undefined>;
}

export interface ExecutionStoreOptions {
  /** A document client (lib-dynamodb) built with `removeUndefinedValues`. */
  readonly db: Pick<DynamoDBDocumentClient, 'send'>;
  readonly tableName: string;
  /** @default 'byDeploymentState' */
  readonly byDeploymentStateIndex?: string;
  /** @default 'byThing' */
  readonly byThingIndex?: string;
  /** Pauses before retrying unprocessed batch items (DynamoDB asks for exponential backoff). */
  readonly batchRetryDelaysMs?: readonly number[];
}

type Item = Record<string, unknown>;

/**
 * The `byDeploymentState` partition of an execution in `state` (ADR 0040, "Index writes"); none
 * for a first attempt's `queued` and for `succeeded`. A first attempt waits on its target page
 * with no row at all ("Target pages"; a `queued` attempt-1 row is only written by tests and by
 * versions before the pages), so its notification only puts one index item. The in-progress states share
 * one partition (`active`), so a report that moves a device along rewrites its index item in
 * place, and the sweeps that walk it read devices at work only. A retried device waits in
 * `requeued`, where the fan-out finds the few behind its cursor; `succeeded`, the bulk of a
 * healthy rollout, is read from the table itself, so ending well costs no index write but the
 * removal.
 */
export function deploymentStateKey(
  deploymentId: string,
  state: ExecutionState,
  attempt = 1,
): string | undefined {
  if (state === 'succeeded') return undefined;
  if (state === 'queued') return attempt > 1 ? `${deploymentId}#requeued` : undefined;
  return `${deploymentId}#${isInProgress(state) ? 'active' : state}`;
}

/**
 * What a state query selects: one state (`queued` and `succeeded` from the table, the others
 * from their index partition); every in-progress state at once (`in_progress`); the devices
 * re-queued by a retry (`requeued`); or what the index holds of the unfinished (`in_flight`:
 * retried devices waiting, then devices at work; a first attempt's queued row is not indexed).
 */
export type StateSelector = ExecutionState | 'in_progress' | 'requeued' | 'in_flight';

/** Where a selector's executions are: index partitions in walk order (or the table's), and the state filter. */
interface StateScan {
  /** Index partitions; undefined: the table's own partition of the deployment. */
  readonly partitions: readonly (string | undefined)[];
  readonly filter?: ExecutionState;
}

function scanOf(deploymentId: string, selector: StateSelector): StateScan {
  const requeued = `${deploymentId}#requeued`;
  const active = `${deploymentId}#active`;
  switch (selector) {
    case 'in_progress':
      return { partitions: [active] };
    case 'requeued':
      return { partitions: [requeued] };
    // Requeued before active: devices only move from the first to the second, so one pass that
    // walks them in this order meets a device that moves while it walks.
    case 'in_flight':
      return { partitions: [requeued, active] };
    case 'queued':
    case 'succeeded':
      return { partitions: [undefined], filter: selector };
    default:
      return { partitions: [deploymentStateKey(deploymentId, selector)], filter: selector };
  }
}

/** DynamoDB's BatchWriteItem limit. */
const BATCH_WRITE_MAX = 25;

const optionalNumber = (value: unknown): number | undefined =>
  typeof value === 'number' ? value : undefined;

export function executionFromItem(item: Item): ExecutionRecord {
  const record: Record<string, unknown> = {
    deploymentId: String(item.deploymentId),
    thingName: String(item.thingName),
    updateId: item.updateId as UpdateId,
    state: item.state as ExecutionState,
    attempt: Number(item.attempt ?? 1),
    shard: Number(item.shard ?? 0),
    createdAt: String(item.createdAt),
    updatedAt: String(item.updatedAt ?? item.createdAt),
    notifiedAt: optionalNumber(item.notifiedAt),
    cancelReason: item.cancelReason as CancelReason | undefined,
    reportOrder: optionalNumber(item.reportOrder),
    reportedAt: optionalNumber(item.reportedAt),
    reason: item.reason as TransitionReason | undefined,
    deadline: optionalNumber(item.deadline),
    lastResult: item.lastResult as LastResult | undefined,
    progress: item.progress as ReportedProgress | undefined,
    installedUpdateId: item.installedUpdateId as UpdateId | undefined,
    targetPage: optionalNumber(item.targetPage),
  };
  for (const key of Object.keys(record)) if (record[key] === undefined) delete record[key];
  return record as unknown as ExecutionRecord;
}

/** Fields of the domain's `Execution` a transition may change; an undefined one is removed (a retry clears `notifiedAt`). */
const MUTABLE_FIELDS = ['attempt', 'notifiedAt', 'cancelReason', 'reportOrder', 'reportedAt'] as const;
/** A new attempt starts clean: what the device reported for the last one no longer describes it. */
const CLEARED_ON_REQUEUE = ['deadline', 'lastResult', 'progress'] as const;

interface UpdateParts {
  readonly set: string[];
  readonly remove: string[];
  readonly names: Record<string, string>;
  readonly values: Record<string, unknown>;
}

type Put = (field: string, value: unknown) => void;

/** SET for a value, REMOVE for undefined; names and values by placeholder. */
function updateParts(): { readonly parts: UpdateParts; readonly put: Put } {
  const parts: UpdateParts = { set: [], remove: [], names: {}, values: {} };
  const put: Put = (field, value) => {
    parts.names[`#${field}`] = field;
    if (value === undefined) {
      parts.remove.push(`#${field}`);
    } else {
      parts.values[`:${field}`] = value;
      parts.set.push(`#${field} = :${field}`);
    }
  };
  return { parts, put };
}

function updateExpressionOf(parts: UpdateParts): string {
  return [
    `SET ${parts.set.join(', ')}`,
    ...(parts.remove.length > 0 ? [`REMOVE ${parts.remove.join(', ')}`] : []),
  ].join(' ');
}

/** The new state with its index partition (none for succeeded: the item leaves the sparse index), and when. */
function putState(put: Put, deploymentId: string, state: ExecutionState, at: number, attempt: number): void {
  put('state', state);
  put('deploymentState', deploymentStateKey(deploymentId, state, attempt));
  put('updatedAt', new Date(at).toISOString());
}

function putExtra(put: Put, extra: TransitionExtra): void {
  if (extra.reason !== undefined) put('reason', extra.reason);
  if (extra.deadline !== undefined) put('deadline', extra.deadline);
  if (extra.lastResult !== undefined) put('lastResult', extra.lastResult);
  if (extra.progress !== undefined) put('progress', extra.progress);
  if (extra.installedUpdateId !== undefined) {
    const { provider, name, version } = extra.installedUpdateId;
    put('installedUpdateId', { provider, name, version });
  }
}

function transitionUpdate(current: ExecutionRecord, next: Execution, extra: TransitionExtra): UpdateParts {
  const { parts, put } = updateParts();
  putTransition(put, { current, next, extra });
  return parts;
}

function putTransition(put: Put, { current, next, extra }: TransitionEntry): void {
  if (current.unwritten) putCreation(put, current, extra.at);
  putState(put, current.deploymentId, next.state, extra.at, next.attempt);
  for (const field of MUTABLE_FIELDS) put(field, next[field]);
  putExtra(put, extra);
  if (next.state === 'queued' && current.state !== 'queued') {
    for (const field of CLEARED_ON_REQUEUE) if (extra[field] === undefined) put(field, undefined);
  }
}

/** What a transition writes: each field's new value, undefined for one it removes. */
function transitionFields(entry: TransitionEntry): Map<string, unknown> {
  const fields = new Map<string, unknown>();
  putTransition((field, value) => fields.set(field, value), entry);
  return fields;
}

/** The record a transition leaves, worked out from what it wrote (a batch answers with nothing). */
function recordAfter(entry: TransitionEntry, fields: ReadonlyMap<string, unknown>): ExecutionRecord {
  const { unwritten: _, ...stored } = entry.current as ExecutionRecord & { unwritten?: boolean };
  const item: Item = entry.current.unwritten
    ? { deploymentId: stored.deploymentId, thingName: stored.thingName }
    : { ...stored };
  for (const [field, value] of fields) {
    if (value === undefined) delete item[field];
    else item[field] = value;
  }
  return executionFromItem(item);
}

/**
 * `transition` as one PartiQL statement: a first write an INSERT of the whole row (refused when
 * the row exists, as `attribute_not_exists` refuses it), any other an UPDATE on `transitionGuard`'s
 * conditions.
 */
export function transitionStatement(
  tableName: string,
  entry: TransitionEntry,
  fields: ReadonlyMap<string, unknown> = transitionFields(entry),
): PartiqlStatement {
  const { current } = entry;
  const parameters: unknown[] = [];
  if (current.unwritten) {
    const values = [
      ['deploymentId', current.deploymentId],
      ['thingName', current.thingName],
      ...[...fields].filter(([, value]) => value !== undefined),
    ] as const;
    const tuple = values.map(([field, value]) => {
      parameters.push(value);
      return `'${field.replaceAll("'", "''")}': ?`;
    });
    return {
      Statement: `INSERT INTO ${quoted(tableName)} VALUE {${tuple.join(', ')}}`,
      Parameters: parameters,
    };
  }
  const sets: string[] = [];
  const removes: string[] = [];
  for (const [field, value] of fields) {
    if (value === undefined) removes.push(`REMOVE ${quoted(field)}`);
    else {
      sets.push(`SET ${quoted(field)} = ?`);
      parameters.push(value);
    }
  }
  const where = ['"deploymentId" = ?', '"thingName" = ?', '"state" = ?', '"attempt" = ?'];
  parameters.push(current.deploymentId, current.thingName, current.state, current.attempt);
  if (current.reportOrder === undefined) where.push('"reportOrder" IS MISSING');
  else {
    where.push('"reportOrder" = ?');
    parameters.push(current.reportOrder);
  }
  return {
    Statement: `UPDATE ${quoted(tableName)} ${[...sets, ...removes].join(' ')} WHERE ${where.join(' AND ')}`,
    Parameters: parameters,
  };
}

/** The forward move of a report: the state, the report's order and time, its results; nothing else changes. */
function forwardReportUpdate(
  report: ForwardReport,
  extra: Omit<TransitionExtra, 'reason' | 'deadline'>,
): UpdateParts {
  const { parts, put } = updateParts();
  putState(put, report.deploymentId, report.to, extra.at, report.attempt);
  put('reportOrder', report.changes.reportOrder);
  put('reportedAt', report.changes.reportedAt);
  parts.names['#notifiedAt'] = 'notifiedAt';
  parts.set.push('#notifiedAt = if_not_exists(#notifiedAt, :reportedAt)');
  putExtra(put, { ...extra, reason: 'device_report' });
  return parts;
}

/** `forwardReport`'s conditions as a ConditionExpression over the stored item. */
function forwardReportCondition(report: ForwardReport): {
  readonly expression: string;
  readonly names: Record<string, string>;
  readonly values: Record<string, unknown>;
} {
  const names: Record<string, string> = {
    '#cur_state': 'state',
    '#cur_attempt': 'attempt',
    '#cur_order': 'reportOrder',
  };
  const values: Record<string, unknown> = { ':cur_attempt': report.attempt, ':cur_order': report.order };
  const states = report.from.map((state, i) => {
    values[`:cur_from${i}`] = state;
    return `:cur_from${i}`;
  });
  const terms = [
    `#cur_state IN (${states.join(', ')})`,
    '#cur_attempt = :cur_attempt',
    '(attribute_not_exists(#cur_order) OR #cur_order < :cur_order)',
  ];
  if (report.updateId) {
    // Exactly the named update: an equal id spelled otherwise takes the read path (sameUpdateId).
    Object.assign(names, {
      '#cur_update': 'updateId',
      '#cur_provider': 'provider',
      '#cur_name': 'name',
      '#cur_version': 'version',
    });
    Object.assign(values, {
      ':cur_provider': report.updateId.provider,
      ':cur_name': report.updateId.name,
      ':cur_version': report.updateId.version,
    });
    terms.push(
      '#cur_update.#cur_provider = :cur_provider',
      '#cur_update.#cur_name = :cur_name',
      '#cur_update.#cur_version = :cur_version',
    );
  }
  return { expression: terms.join(' AND '), names, values };
}

/** DynamoDB's limit of statements in one `BatchExecuteStatement`. */
export const STATEMENTS_PER_BATCH = 25;

/** A PartiQL statement with its parameters in the order of their `?`. */
export interface PartiqlStatement {
  readonly Statement: string;
  readonly Parameters: unknown[];
}

/** A statement's answer in a batch: written, refused (with the item, when it exists), or not run. */
type StatementAnswer =
  | { readonly kind: 'done' }
  | { readonly kind: 'refused'; readonly code: string; readonly item?: Item }
  | { readonly kind: 'unsent'; readonly code: string };

/** Refusals that mean the statement's condition did not hold. */
const REFUSALS = new Set(['ConditionalCheckFailed', 'DuplicateItem']);

/**
 * A statement's errors that a single write may get past: throttling, a passing fault, a
 * transaction on the item. Any other (access denied, a statement DynamoDB does not accept) is a
 * misconfiguration that one by one would only repeat, and is thrown.
 */
const SENT_ALONE = new Set([
  'ThrottlingError',
  'ProvisionedThroughputExceeded',
  'RequestLimitExceeded',
  'InternalServerError',
  'TransactionConflict',
]);

export class StatementRefusedError extends Error {
  override readonly name = 'StatementRefusedError';
  constructor(
    readonly code: string,
    detail: string | undefined,
  ) {
    super(`DynamoDB refused a PartiQL statement: ${code}${detail ? `: ${detail}` : ''}`);
  }
}

/** A PartiQL identifier: quoted, since `state`, `name` and others are reserved words. */
const quoted = (name: string): string => `"${name.replaceAll('"', '""')}"`;

/**
 * `forwardReportUpdate` and `forwardReportCondition` as one PartiQL UPDATE (parameters in the
 * order of their `?`), plus `notifiedAt IS NOT MISSING` in place of `if_not_exists`.
 */
export function forwardReportStatement(tableName: string, entry: ForwardEntry): PartiqlStatement {
  const { report, extra } = entry;
  const clauses: string[] = [];
  const parameters: unknown[] = [];
  const put: Put = (field, value) => {
    if (value === undefined) {
      clauses.push(`REMOVE ${quoted(field)}`);
      return;
    }
    clauses.push(`SET ${quoted(field)} = ?`);
    parameters.push(value);
  };
  putState(put, report.deploymentId, report.to, extra.at, report.attempt);
  put('reportOrder', report.changes.reportOrder);
  put('reportedAt', report.changes.reportedAt);
  putExtra(put, { ...extra, reason: 'device_report' });
  const where = [
    '"deploymentId" = ?',
    '"thingName" = ?',
    `"state" IN [${report.from.map(() => '?').join(', ')}]`,
    '"attempt" = ?',
    '("reportOrder" IS MISSING OR "reportOrder" < ?)',
    '"notifiedAt" IS NOT MISSING',
  ];
  parameters.push(report.deploymentId, entry.thingName, ...report.from, report.attempt, report.order);
  if (report.updateId) {
    where.push('"updateId"."provider" = ?', '"updateId"."name" = ?', '"updateId"."version" = ?');
    parameters.push(report.updateId.provider, report.updateId.name, report.updateId.version);
  }
  // SETs before REMOVEs, as PartiQL's UPDATE grammar has them.
  const ordered = [
    ...clauses.filter((c) => c.startsWith('SET')),
    ...clauses.filter((c) => c.startsWith('REMOVE')),
  ];
  return {
    Statement: `UPDATE ${quoted(tableName)} ${ordered.join(' ')} WHERE ${where.join(' AND ')}`,
    Parameters: parameters,
  };
}

interface Guard {
  readonly expression: string;
  readonly names: Record<string, string>;
  readonly values: Record<string, unknown>;
}

/**
 * Invariant (ADR 0010): a transition applies only to the execution its decision was made on:
 * same state, same attempt, same last applied report. A concurrent report, sweep or operator
 * command that got there first makes this one re-read and decide again.
 */
function transitionGuard(current: ExecutionRecord): Guard {
  const sawOrder = current.reportOrder !== undefined;
  return {
    expression: `#cur_state = :cur_state AND #cur_attempt = :cur_attempt AND ${
      sawOrder ? '#cur_order = :cur_order' : 'attribute_not_exists(#cur_order)'
    }`,
    names: { '#cur_state': 'state', '#cur_attempt': 'attempt', '#cur_order': 'reportOrder' },
    values: {
      ':cur_state': current.state,
      ':cur_attempt': current.attempt,
      ...(sawOrder ? { ':cur_order': current.reportOrder } : {}),
    },
  };
}

/** What a row holds from its start, set by the first write of an execution that waited on its target page. */
function putCreation(put: Put, current: ExecutionRecord, at: number): void {
  const { provider, name, version } = current.updateId;
  put('updateId', { provider, name, version });
  put('shard', current.shard);
  put('createdAt', new Date(at).toISOString());
  put('targetPage', current.targetPage);
}

/**
 * That first write creates the row only while there is none: a cancel, a supersede or another
 * worker may have written it since it was read.
 */
const insertGuard: Guard = {
  expression: 'attribute_not_exists(#cur_thing)',
  names: { '#cur_thing': 'thingName' },
  values: {},
};

export function makeExecutionStore(options: ExecutionStoreOptions): ExecutionStore {
  const { db, tableName } = options;
  const byDeploymentState =
    options.byDeploymentStateIndex ?? executionsTable.globalIndexes[1]?.indexName ?? 'byDeploymentState';
  const byThing = options.byThingIndex ?? executionsTable.globalIndexes[0]?.indexName ?? 'byThing';
  const retryDelays = options.batchRetryDelaysMs ?? [50, 100, 200, 400, 800, 1600, 3200];

  function toItem(deploymentId: string, execution: NewExecution, now: number): Item {
    const at = new Date(now).toISOString();
    const { provider, name, version } = execution.updateId;
    return {
      deploymentId,
      thingName: execution.thingName,
      updateId: { provider, name, version },
      state: execution.state,
      deploymentState: deploymentStateKey(deploymentId, execution.state),
      attempt: 1,
      shard: execution.shard,
      createdAt: at,
      updatedAt: at,
    };
  }

  async function writeBatch(requests: Item[]): Promise<void> {
    let pending = requests;
    for (let attempt = 0; pending.length > 0; attempt++) {
      const out = await db.send(new BatchWriteCommand({ RequestItems: { [tableName]: pending } }));
      pending = (out.UnprocessedItems?.[tableName] ?? []) as Item[];
      if (pending.length === 0) return;
      const delay = retryDelays[attempt];
      if (delay === undefined) {
        throw new Error(
          `BatchWriteItem left ${pending.length} item(s) unprocessed after ${attempt + 1} tries`,
        );
      }
      // Full jitter: concurrent workers that were throttled together do not retry together.
      await new Promise((resolve) => setTimeout(resolve, Math.random() * delay));
    }
  }

  async function batchPutQueued(
    deploymentId: string,
    executions: readonly NewExecution[],
    now: number,
  ): Promise<void> {
    // BatchWriteItem refuses a request naming one key twice (a thing in two target groups).
    const unique = [...new Map(executions.map((e) => [e.thingName, e])).values()];
    for (let i = 0; i < unique.length; i += BATCH_WRITE_MAX) {
      const requests = unique
        .slice(i, i + BATCH_WRITE_MAX)
        .map((execution) => ({ PutRequest: { Item: toItem(deploymentId, execution, now) } }));
      await writeBatch(requests);
    }
  }

  async function putIncompatible(
    deploymentId: string,
    executions: readonly NewExecution[],
    now: number,
  ): Promise<void> {
    const unique = [...new Map(executions.map((e) => [e.thingName, e])).values()];
    await Promise.all(
      unique.map((execution) =>
        db
          .send(
            new PutCommand({
              TableName: tableName,
              Item: toItem(deploymentId, { ...execution, state: 'incompatible' }, now),
              ConditionExpression: 'attribute_not_exists(thingName)',
            }),
          )
          .catch(ignoreConditionFailure),
      ),
    );
  }

  async function takeBackRepeat(deploymentId: string, thingName: string, page: number): Promise<void> {
    await db
      .send(
        new UpdateCommand({
          TableName: tableName,
          Key: { deploymentId, thingName },
          UpdateExpression: 'SET #repeats = if_not_exists(#repeats, :zero) + :one ADD #pages :page',
          ConditionExpression: 'attribute_exists(thingName) AND NOT contains(#pages, :listed)',
          ExpressionAttributeNames: { '#repeats': 'repeats', '#pages': 'repeatPages' },
          ExpressionAttributeValues: { ':zero': 0, ':one': 1, ':page': new Set([page]), ':listed': page },
        }),
      )
      .catch(ignoreConditionFailure);
  }

  async function get(deploymentId: string, thingName: string): Promise<ExecutionRecord | undefined> {
    const { Item } = await db.send(
      new GetCommand({ TableName: tableName, Key: { deploymentId, thingName }, ConsistentRead: true }),
    );
    return Item ? executionFromItem(Item) : undefined;
  }

  /** The items at `keys`, in that order (strongly consistent: an index lags its table); missing ones dropped. */
  async function getMany(keys: readonly Item[]): Promise<ExecutionRecord[]> {
    const keyOf = (item: Item): string => `${item.deploymentId}\u0000${item.thingName}`;
    const items = await batchGetItems(
      db,
      tableName,
      keys.map(({ deploymentId, thingName }) => ({ deploymentId, thingName })),
      { consistent: true, retryDelaysMs: retryDelays },
    );
    const found = new Map(items.map((item) => [keyOf(item), item]));
    return keys.flatMap((key) => {
      const item = found.get(keyOf(key));
      return item ? [executionFromItem(item)] : [];
    });
  }

  /**
   * One Query of a deployment's executions the selector names (`scanOf`): a page may hold fewer
   * than `limit` items, even none, and still have more after it, possibly in the next partition.
   */
  async function queryStatePage(
    deploymentId: string,
    selector: StateSelector,
    query: { readonly limit: number; readonly start?: PagePosition; readonly shard?: number },
  ): Promise<{ readonly items: Item[]; readonly next?: PagePosition }> {
    const scan = scanOf(deploymentId, selector);
    const part = query.start?.part ?? 0;
    const partition = scan.partitions[part];
    const conditions: string[] = [];
    const names: Record<string, string> = {};
    const values: Record<string, unknown> = { ':pk': partition ?? deploymentId };
    // Placeholders for the names too: `state` and `shard` are DynamoDB reserved words.
    const filterOn = (attribute: string, value: unknown): void => {
      conditions.push(`#${attribute} = :${attribute}`);
      names[`#${attribute}`] = attribute;
      values[`:${attribute}`] = value;
    };
    if (scan.filter) filterOn('state', scan.filter);
    if (query.shard !== undefined) filterOn('shard', query.shard);
    const out = await db.send(
      new QueryCommand({
        TableName: tableName,
        // The table's own partition is read strongly consistent (an index cannot be): a cancel's
        // walk must not pass a row written a moment before.
        ...(partition === undefined
          ? { KeyConditionExpression: 'deploymentId = :pk', ConsistentRead: true }
          : { IndexName: byDeploymentState, KeyConditionExpression: 'deploymentState = :pk' }),
        ...(conditions.length > 0
          ? { FilterExpression: conditions.join(' AND '), ExpressionAttributeNames: names }
          : {}),
        ExpressionAttributeValues: values,
        Limit: query.limit,
        ...(query.start?.key ? { ExclusiveStartKey: query.start.key } : {}),
      }),
    );
    const items = out.Items ?? [];
    if (out.LastEvaluatedKey) return { items, next: { part, key: out.LastEvaluatedKey as PageKey } };
    return part + 1 < scan.partitions.length ? { items, next: { part: part + 1 } } : { items };
  }

  async function queryByState(
    deploymentId: string,
    state: StateSelector,
    query: { readonly limit: number; readonly exclusiveStartKey?: PagePosition; readonly shard?: number },
  ): Promise<StatePage> {
    const page = await queryStatePage(deploymentId, state, {
      limit: query.limit,
      ...(query.exclusiveStartKey ? { start: query.exclusiveStartKey } : {}),
      ...(query.shard !== undefined ? { shard: query.shard } : {}),
    });
    const items = page.items.map(executionFromItem);
    return page.next ? { items, lastEvaluatedKey: page.next } : { items };
  }

  async function listForDeployment(
    deploymentId: string,
    query: {
      readonly state?: ExecutionState | 'requeued';
      readonly limit: number;
      readonly nextToken?: string;
    },
  ): Promise<Result<ExecutionPage, InvalidNextToken>> {
    const scan = query.state === undefined ? undefined : scanOf(deploymentId, query.state);
    const indexed = scan !== undefined && scan.partitions[0] !== undefined;
    const keyNames = indexed
      ? ['deploymentId', 'thingName', 'deploymentState']
      : ['deploymentId', 'thingName'];
    const start =
      query.nextToken === undefined
        ? undefined
        : decodePageToken(query.nextToken, keyNames, scan?.partitions.length ?? 1);
    if (query.nextToken !== undefined && start === undefined) return err({ code: 'INVALID_NEXT_TOKEN' });
    if (query.state === undefined) {
      const out = await db.send(
        new QueryCommand({
          TableName: tableName,
          KeyConditionExpression: 'deploymentId = :pk',
          ExpressionAttributeValues: { ':pk': deploymentId },
          Limit: query.limit,
          ...(start?.key ? { ExclusiveStartKey: start.key } : {}),
        }),
      );
      return ok(pageOf((out.Items ?? []).map(executionFromItem), out.LastEvaluatedKey));
    }
    const page = await queryStatePage(deploymentId, query.state, {
      limit: query.limit,
      ...(start ? { start } : {}),
    });
    // The index does not copy the device's results the listing shows: read the items themselves.
    const items = indexed ? await getMany(page.items) : page.items.map(executionFromItem);
    return ok(page.next ? { items, nextToken: encodePageToken(page.next) } : { items });
  }

  async function listForThing(
    thingName: string,
    query: { readonly limit: number; readonly nextToken?: string },
  ): Promise<Result<ExecutionPage, InvalidNextToken>> {
    const start =
      query.nextToken === undefined
        ? undefined
        : decodePageToken(query.nextToken, ['deploymentId', 'thingName', 'createdAt']);
    if (query.nextToken !== undefined && start?.key === undefined) return err({ code: 'INVALID_NEXT_TOKEN' });
    const out = await db.send(
      new QueryCommand({
        TableName: tableName,
        IndexName: byThing,
        KeyConditionExpression: 'thingName = :thing',
        ExpressionAttributeValues: { ':thing': thingName },
        ScanIndexForward: false,
        Limit: query.limit,
        ...(start?.key ? { ExclusiveStartKey: start.key } : {}),
      }),
    );
    // `byThing` holds keys only (a device's executions change often, its history is read rarely).
    return ok(pageOf(await getMany(out.Items ?? []), out.LastEvaluatedKey));
  }

  async function transition(
    current: ExecutionRecord,
    next: Execution,
    extra: TransitionExtra,
  ): Promise<Result<ExecutionRecord, ExecutionConflict>> {
    const parts = transitionUpdate(current, next, extra);
    const guard = current.unwritten ? insertGuard : transitionGuard(current);
    try {
      const { Attributes } = await db.send(
        new UpdateCommand({
          TableName: tableName,
          Key: { deploymentId: current.deploymentId, thingName: current.thingName },
          UpdateExpression: updateExpressionOf(parts),
          ConditionExpression: guard.expression,
          ExpressionAttributeNames: { ...parts.names, ...guard.names },
          ExpressionAttributeValues: { ...parts.values, ...guard.values },
          ReturnValues: 'ALL_NEW',
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
      return ok(executionFromItem(Attributes ?? {}));
    } catch (error) {
      return err(await conflictOf(error, current.deploymentId, current.thingName));
    }
  }

  /** A refused condition's answer carries the item as it is (ReturnValuesOnConditionCheckFailure). */
  async function conflictOf(
    error: unknown,
    deploymentId: string,
    thingName: string,
  ): Promise<ExecutionConflict> {
    if (!(error instanceof ConditionalCheckFailedException)) throw error;
    // No item in the answer: there is none, or an endpoint that does not return it; a read settles which.
    const current = error.Item
      ? executionFromItem(unmarshall(error.Item))
      : await get(deploymentId, thingName);
    return { code: 'EXECUTION_CONFLICT', deploymentId, thingName, current };
  }

  async function applyForwardReport(
    thingName: string,
    report: ForwardReport,
    extra: Omit<TransitionExtra, 'reason' | 'deadline'>,
  ): Promise<Result<ExecutionRecord, ExecutionConflict>> {
    const parts = forwardReportUpdate(report, extra);
    const condition = forwardReportCondition(report);
    try {
      const { Attributes } = await db.send(
        new UpdateCommand({
          TableName: tableName,
          Key: { deploymentId: report.deploymentId, thingName },
          UpdateExpression: updateExpressionOf(parts),
          ConditionExpression: condition.expression,
          ExpressionAttributeNames: { ...parts.names, ...condition.names },
          ExpressionAttributeValues: { ...parts.values, ...condition.values },
          ReturnValues: 'ALL_OLD',
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
      return ok(executionFromItem(Attributes ?? {}));
    } catch (error) {
      return err(await conflictOf(error, report.deploymentId, thingName));
    }
  }

  /**
   * Runs statements 25 to a request, each on its own: one answer per statement, in order. A
   * request that fails leaves its statements unsent; the caller writes them on their own.
   */
  async function runStatements(statements: readonly PartiqlStatement[]): Promise<StatementAnswer[]> {
    const answers: StatementAnswer[] = [];
    for (let start = 0; start < statements.length; start += STATEMENTS_PER_BATCH) {
      const chunk = statements.slice(start, start + STATEMENTS_PER_BATCH);
      answers.push(...(await runChunk(chunk)));
    }
    return answers;
  }

  /**
   * One request. When it fails as a whole (after the client's retries) it throws, as a single
   * write would: 25 writes one by one against a table that throttles would only add to it.
   */
  async function runChunk(chunk: readonly PartiqlStatement[]): Promise<StatementAnswer[]> {
    const answer = await db.send(
      new BatchExecuteStatementCommand({
        // An UPDATE's refusal carries the item; an INSERT's is refused as a duplicate, with none.
        Statements: chunk.map((statement) =>
          statement.Statement.startsWith('UPDATE ')
            ? { ...statement, ReturnValuesOnConditionCheckFailure: 'ALL_OLD' as const }
            : statement,
        ),
      }),
    );
    const responses = answer.Responses ?? [];
    return chunk.map((_, k): StatementAnswer => {
      const response = responses[k];
      if (!response) return { kind: 'unsent', code: 'NO_ANSWER' };
      const failure = response.Error;
      if (!failure) return { kind: 'done' };
      const code = failure.Code ?? 'UNKNOWN';
      if (REFUSALS.has(code))
        return { kind: 'refused', code, ...(failure.Item ? { item: failure.Item } : {}) };
      if (SENT_ALONE.has(code)) return { kind: 'unsent', code };
      throw new StatementRefusedError(code, failure.Message);
    });
  }

  /** Statements for entries with distinct keys; a second entry for a key is left `unsent`. */
  async function runDistinct<T, O>(
    entries: readonly T[],
    keyOf: (entry: T) => string,
    statementOf: (entry: T) => PartiqlStatement,
    outcomeOf: (entry: T, answer: StatementAnswer) => O | Promise<O>,
    unsent: (code: string) => O,
  ): Promise<O[]> {
    const outcomes = new Array<O>(entries.length);
    const seen = new Set<string>();
    const batchable: number[] = [];
    entries.forEach((entry, i) => {
      const key = keyOf(entry);
      // Two statements on one item in a batch would race each other: the second goes on its own.
      if (seen.has(key)) outcomes[i] = unsent('SAME_EXECUTION_IN_BATCH');
      else {
        seen.add(key);
        batchable.push(i);
      }
    });
    const answers = await runStatements(batchable.map((i) => statementOf(entries[i] as T)));
    await Promise.all(
      batchable.map(async (i, k) => {
        outcomes[i] = await outcomeOf(entries[i] as T, answers[k] ?? { kind: 'unsent', code: 'NO_ANSWER' });
      }),
    );
    return outcomes;
  }

  /** An INSERT's refusal carries no item; nor may an endpoint's: then a read settles what is there. */
  async function currentOf(
    refusal: { readonly item?: Item },
    deploymentId: string,
    thingName: string,
  ): Promise<ExecutionRecord | undefined> {
    return refusal.item ? executionFromItem(refusal.item) : get(deploymentId, thingName);
  }

  function applyForwardReports(entries: readonly ForwardEntry[]): Promise<ForwardOutcome[]> {
    return runDistinct(
      entries,
      (entry) => `${entry.report.deploymentId}\u0000${entry.thingName}`,
      (entry) => forwardReportStatement(tableName, entry),
      async (entry, answer): Promise<ForwardOutcome> => {
        if (answer.kind === 'done') return { kind: 'applied' };
        if (answer.kind === 'unsent') return answer;
        const current = await currentOf(answer, entry.report.deploymentId, entry.thingName);
        return { kind: 'refused', current };
      },
      (code) => ({ kind: 'unsent', code }),
    );
  }

  function transitionMany(entries: readonly TransitionEntry[]): Promise<TransitionOutcome[]> {
    const fieldsOf = new Map(entries.map((entry) => [entry, transitionFields(entry)]));
    return runDistinct(
      entries,
      (entry) => `${entry.current.deploymentId}\u0000${entry.current.thingName}`,
      (entry) => transitionStatement(tableName, entry, fieldsOf.get(entry)),
      async (entry, answer): Promise<TransitionOutcome> => {
        if (answer.kind === 'done')
          return { kind: 'applied', record: recordAfter(entry, fieldsOf.get(entry) ?? new Map()) };
        if (answer.kind === 'unsent') return answer;
        const current = await currentOf(answer, entry.current.deploymentId, entry.current.thingName);
        return { kind: 'refused', current };
      },
      (code) => ({ kind: 'unsent', code }),
    );
  }

  async function markDownloadStarted(
    deploymentId: string,
    thingName: string,
    at: number,
    attempt?: number,
  ): Promise<ExecutionRecord | undefined> {
    const { parts, put } = updateParts();
    putState(put, deploymentId, 'downloading', at, 1);
    put('reason', 'download_authorized');
    put('reportedAt', at);
    parts.names['#cur_state'] = 'state';
    parts.names['#cur_cancel'] = 'cancelReason';
    parts.values[':cur_notified'] = 'notified';
    const terms = ['#cur_state = :cur_notified', 'attribute_not_exists(#cur_cancel)'];
    if (attempt !== undefined) {
      parts.names['#cur_attempt'] = 'attempt';
      parts.values[':cur_attempt'] = attempt;
      terms.push('#cur_attempt = :cur_attempt');
    }
    try {
      const { Attributes } = await db.send(
        new UpdateCommand({
          TableName: tableName,
          Key: { deploymentId, thingName },
          UpdateExpression: updateExpressionOf(parts),
          ConditionExpression: terms.join(' AND '),
          ExpressionAttributeNames: parts.names,
          ExpressionAttributeValues: parts.values,
          ReturnValues: 'ALL_NEW',
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      );
      return executionFromItem(Attributes ?? {});
    } catch (error) {
      return (await conflictOf(error, deploymentId, thingName)).current;
    }
  }

  async function getWritten(deploymentId: string, thingNames: readonly string[]): Promise<ExecutionRecord[]> {
    return thingNames.length === 0
      ? []
      : getMany(thingNames.map((thingName) => ({ deploymentId, thingName })));
  }

  return {
    applyForwardReport,
    applyForwardReports,
    transitionMany,
    batchPutQueued,
    get,
    getWritten,
    putIncompatible,
    takeBackRepeat,
    markDownloadStarted,
    queryByState,
    listForDeployment,
    listForThing,
    transition,
  };
}

function pageOf(records: ExecutionRecord[], lastKey: Item | undefined): ExecutionPage {
  return lastKey
    ? { items: records, nextToken: encodePageToken({ part: 0, key: lastKey as PageKey }) }
    : { items: records };
}

function ignoreConditionFailure(error: unknown): void {
  if (!(error instanceof ConditionalCheckFailedException)) throw error;
}
