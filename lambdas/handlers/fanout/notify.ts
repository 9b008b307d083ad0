/**
 * Notification of one shard: walk its share of the target pages in order (the devices there
 * without a row), then the devices a retry re-queued, within the rollout rate and the account
 * cap; send each device the desired document (UpdateThingShadow on `ota`), then write it
 * `notified` (for a device from the pages, its row's first write). The shadow write comes first
 * and the mark second, so a crash between them leaves the device waiting and the next worker
 * sends the identical document again (the agent treats it as one); no device is ever marked
 * notified without having been sent the document.
 */
import {
  type DeploymentRecord,
  deploymentStatuses,
  isActiveStatus,
} from '../../adapters/deployment-store.ts';
import {
  type ExecutionRecord,
  STATEMENTS_PER_BATCH,
  type TransitionEntry,
  type TransitionOutcome,
} from '../../adapters/execution-store.ts';
import {
  type DesiredDocument,
  isTerminal,
  notify,
  ownsDevice,
  planRollout,
  type RolloutBucket,
  supersede,
} from '../../domain/deployment/index.ts';
import { outcome } from '../../observability.ts';
import { type FanoutDeps, stopAtOf, type TimeBudget } from './deps.ts';
import { desiredDocumentFor } from './desired.ts';
import { mapWithConcurrency, refundRollout, shardRollout } from './sharding.ts';
import {
  decodeTargetPosition,
  encodeTargetPosition,
  readWaiting,
  type TargetPosition,
} from './target-walk.ts';

export type DeviceOutcome =
  | 'notified'
  /** Sent, but the execution changed meanwhile (canceled): nothing to mark. */
  | 'changed'
  /** A newer deployment owns the device: this execution was canceled, nothing sent. */
  | 'superseded'
  /** The shadow service kept refusing (429/5xx): the device stays queued for a later batch. */
  | 'throttled';

/** Looks a deployment up once per invocation: supersede checks ask about the same few. */
export function makeDeploymentCache(
  deps: Pick<FanoutDeps, 'deployments'>,
): (id: string) => Promise<DeploymentRecord | undefined> {
  const cache = new Map<string, Promise<DeploymentRecord | undefined>>();
  return (id) => {
    let found = cache.get(id);
    if (!found) {
      found = deps.deployments.get(id);
      cache.set(id, found);
    }
    return found;
  };
}

/** True when `a` was created after `b` (ties broken by id, so two workers always agree). */
function isNewer(a: DeploymentRecord, b: DeploymentRecord): boolean {
  if (a.createdAt !== b.createdAt) return a.createdAt > b.createdAt;
  return a.deploymentId > b.deploymentId;
}

/** Ends `execution` as superseded, re-reading once if it changed under us. */
async function supersedeExecution(deps: FanoutDeps, execution: ExecutionRecord, now: number): Promise<void> {
  let current: ExecutionRecord | undefined = execution;
  for (let attempt = 0; current && attempt < 3; attempt++) {
    const decision = supersede(current);
    if (decision.kind === 'unchanged') return;
    const written = await deps.executions.transition(current, decision.next, {
      at: now,
      reason: 'superseded',
    });
    if (written.ok) {
      deps.observability.logger.info('execution superseded', {
        deploymentId: current.deploymentId,
        thingName: current.thingName,
      });
      return;
    }
    current = written.error.current;
  }
}

/**
 * What the device's other executions (its newest few, through the `byThing` index: a read instead
 * of a fleet write per device) say about this one: whether a newer deployment owns the device
 * (`ownsDevice`), and otherwise the older ones still live. Undefined when the history cannot be read.
 */
async function othersOnDevice(
  deps: FanoutDeps,
  context: DeviceContext,
  thingName: string,
): Promise<{ readonly newerOwns: boolean; readonly older: readonly ExecutionRecord[] } | undefined> {
  const history = await deps.executions.listForThing(thingName, { limit: 10 });
  if (!history.ok) return undefined;
  const older: ExecutionRecord[] = [];
  for (const other of history.value.items) {
    if (other.deploymentId === context.deployment.deploymentId) continue;
    const otherDeployment = await context.deploymentOf(other.deploymentId);
    const newer = otherDeployment !== undefined && isNewer(otherDeployment, context.deployment);
    if (newer && ownsDevice(other)) return { newerOwns: true, older: [] };
    if (!newer && !isTerminal(other.state)) older.push(other);
  }
  return { newerOwns: false, older };
}

/**
 * A device runs one deployment at a time: the newest. Older live executions of this device are
 * superseded; when a newer deployment owns the device, this execution is the one superseded and
 * nothing is sent: a device still waiting on an older deployment's target page has no row the
 * newer one could supersede, so the older one gives way when it reaches it, even if the newer one
 * has ended there already.
 */
async function claimDevice(
  deps: FanoutDeps,
  context: DeviceContext,
  execution: ExecutionRecord,
): Promise<{ readonly claimed: boolean; readonly older: readonly ExecutionRecord[] }> {
  if (!context.othersActive) return { claimed: true, older: [] };
  const seen = await othersOnDevice(deps, context, execution.thingName);
  if (!seen) return { claimed: true, older: [] };
  return { claimed: !seen.newerOwns, older: seen.older };
}

export interface DeviceContext {
  readonly deployment: DeploymentRecord;
  readonly desiredFor: (attempt: number) => DesiredDocument;
  readonly deploymentOf: (id: string) => Promise<DeploymentRecord | undefined>;
  /**
   * Another deployment was active, or a newer one existed, when this batch began. When neither,
   * no device can be running another deployment nor be owned by a newer one, so the per-device
   * history read (an AWS request each) is skipped; a deployment that starts meanwhile claims its
   * devices itself, and `restoreNewer` repairs the one race left.
   */
  readonly othersActive: boolean;
}

/**
 * Whether a deployment other than `deployment` is active, or one newer than it exists, asked
 * once per batch (listings are newest first). A newer deployment stays newer, so once seen the
 * answer is yes for the rest of the invocation. One that is not active any more can only have
 * been missed if it started and ended between two checks, so only the first check reads the
 * ended statuses: the others read the active ones (three Queries).
 */
export interface OthersWatch {
  check(): Promise<boolean>;
}

export function watchOthers(
  deps: Pick<FanoutDeps, 'deployments'>,
  deployment: DeploymentRecord,
): OthersWatch {
  let newerSeen = false;
  let first = true;
  return {
    async check() {
      if (newerSeen) return true;
      let active = false;
      for (const status of deploymentStatuses) {
        const isActive = isActiveStatus(status);
        if (!isActive && !first) continue;
        const page = await deps.deployments.list({ status, limit: isActive ? 2 : 1 });
        if (!page.ok) return true;
        const others = page.value.items.filter((d) => d.deploymentId !== deployment.deploymentId);
        if (others.some((d) => isNewer(d, deployment))) newerSeen = true;
        if (isActive && others.length > 0) active = true;
      }
      first = false;
      return newerSeen || active;
    },
  };
}

/**
 * A newer deployment claimed the device between this worker's claim and its send, so the send
 * overwrote the newer document: send the newer deployment's document again (it is what the
 * device must run, and the same document it was already sent, which the agent treats as one).
 */
async function restoreNewer(deps: FanoutDeps, context: DeviceContext, thingName: string): Promise<void> {
  const history = await deps.executions.listForThing(thingName, { limit: 10 });
  if (!history.ok) return;
  const live = history.value.items.find(
    // The superseder sends before it supersedes, so its own row may still read `queued`.
    (e) => e.deploymentId !== context.deployment.deploymentId && !isTerminal(e.state),
  );
  const owner = live && (await context.deploymentOf(live.deploymentId));
  // Only a newer deployment still rolling out owns the device's document.
  if (!live || !owner || owner.status !== 'rolling_out' || !isNewer(owner, context.deployment)) return;
  const document = desiredDocumentFor({
    deploymentId: owner.deploymentId,
    attempt: live.attempt,
    updateId: owner.updateId,
  });
  if (!document.ok) return;
  const sent = await deps.shadows.update(thingName, document.value.document);
  deps.observability.logger.warn('restored a newer deployment’s document after a racing send', {
    deploymentId: context.deployment.deploymentId,
    newerDeploymentId: owner.deploymentId,
    thingName,
    restored: sent.ok,
  });
}

/**
 * The claim before the send could not see a deployment that was sending to the same device at
 * the same moment and had no row yet (devices wait on target pages unwritten). Looked at again
 * once this execution's row exists: when a newer deployment has written one, this execution gives
 * way and the newer document is sent again; an older one notified since this send began is
 * superseded, and this document is sent again (the last send is what the device runs). Returns
 * whether this execution gave way.
 */
async function lostRace(
  deps: FanoutDeps,
  context: DeviceContext,
  mine: ExecutionRecord,
  sendingAt: number,
): Promise<boolean> {
  const seen = await othersOnDevice(deps, context, mine.thingName);
  if (!seen) return false;
  if (seen.newerOwns) {
    await supersedeExecution(deps, mine, deps.now());
    await restoreNewer(deps, context, mine.thingName);
    return true;
  }
  let resend = false;
  for (const other of seen.older) {
    if (other.notifiedAt !== undefined && other.notifiedAt >= sendingAt) resend = true;
    await supersedeExecution(deps, other, deps.now());
  }
  if (resend) await deps.shadows.update(mine.thingName, context.desiredFor(mine.attempt).document);
  return false;
}

/** A device sent its document, waiting for its `notified` mark (written for the batch at once). */
interface SentDevice {
  readonly mark: TransitionEntry;
  readonly sendingAt: number;
}

const isSent = (result: DeviceOutcome | SentDevice): result is SentDevice => typeof result !== 'string';

/**
 * Claims the device and sends it the desired document (after superseding what is older on it);
 * the `notified` mark this owes is the caller's to write.
 */
async function sendToDevice(
  deps: FanoutDeps,
  context: DeviceContext,
  execution: ExecutionRecord,
): Promise<DeviceOutcome | SentDevice> {
  const { deployment } = context;
  const claim = await claimDevice(deps, context, execution);
  if (!claim.claimed) {
    await supersedeExecution(deps, execution, deps.now());
    return 'superseded';
  }
  const { document } = context.desiredFor(execution.attempt);
  const sendingAt = deps.now();
  const sent = await deps.shadows.update(execution.thingName, document);
  if (!sent.ok) {
    if (sent.error.code === 'THROTTLED' || sent.error.code === 'UNAVAILABLE') return 'throttled';
    // 409 cannot happen (no version lock) and 413 was ruled out when the document was built.
    throw new Error(`bug: UpdateThingShadow refused the desired document: ${sent.error.message}`);
  }
  const now = deps.now();
  let overwritten = false;
  for (const older of claim.older) {
    const fresh = await deps.executions.get(older.deploymentId, older.thingName);
    if (!fresh) continue;
    // Notified since this send began: the older deployment's send may have landed after ours.
    if (fresh.notifiedAt !== undefined && fresh.notifiedAt >= sendingAt && !isTerminal(fresh.state))
      overwritten = true;
    await supersedeExecution(deps, fresh, now);
  }
  if (overwritten) await deps.shadows.update(execution.thingName, document);
  const decision = notify(execution, now);
  if (!decision.ok) return 'changed';
  const extra = {
    at: now,
    reason: 'notified' as const,
    deadline: now + deployment.policy.deviceTimeoutSeconds * 1000,
  };
  return { mark: { current: execution, next: decision.value.next, extra }, sendingAt };
}

/** The mark on its own: for one the batch could not write. */
async function markAlone(
  deps: FanoutDeps,
  { current, next, extra }: TransitionEntry,
): Promise<TransitionOutcome> {
  deps.observability.count(outcome.batchWriteSentAlone);
  const written = await deps.executions.transition(current, next, extra);
  return written.ok
    ? { kind: 'applied', record: written.value }
    : { kind: 'refused', current: written.error.current };
}

/**
 * A refused mark that is this worker's own, landed by an attempt whose answer was lost (the
 * client's retry, or the mark sent alone after its batch): the row is what the mark wrote.
 */
function ownMark(mark: TransitionEntry, current: ExecutionRecord | undefined): current is ExecutionRecord {
  return (
    current !== undefined &&
    current.state === mark.next.state &&
    current.attempt === mark.next.attempt &&
    current.notifiedAt === mark.next.notifiedAt &&
    current.deadline === mark.extra.deadline
  );
}

/** What follows a device's mark: the race check, then its grant; or, refused, the newer document restored. */
async function afterMark(
  deps: FanoutDeps,
  context: DeviceContext,
  sent: SentDevice,
  marked: TransitionOutcome | undefined,
): Promise<DeviceOutcome> {
  let written = !marked || marked.kind === 'unsent' ? await markAlone(deps, sent.mark) : marked;
  if (written.kind === 'refused' && ownMark(sent.mark, written.current))
    written = { kind: 'applied', record: written.current };
  const { current } = sent.mark;
  if (written.kind === 'applied') {
    if (
      current.unwritten &&
      context.othersActive &&
      (await lostRace(deps, context, written.record, sent.sendingAt))
    )
      return 'superseded';
    // Only once the execution is live: a cancel or supersede that raced the send leaves the
    // device to ask the authorizer, which refuses it. The agent waits a moment for the grant.
    await deps.grants?.push(context.deployment, written.record);
    return 'notified';
  }
  if (written.kind === 'refused' && written.current?.reason === 'superseded')
    await restoreNewer(deps, context, current.thingName);
  return 'changed';
}

/** Marks a chunk of sent devices in one request, then finishes each (outcomes by batch index). */
async function markChunk(
  deps: FanoutDeps,
  context: DeviceContext,
  chunk: readonly { readonly index: number; readonly sent: SentDevice }[],
  outcomes: DeviceOutcome[],
): Promise<void> {
  const marked = await deps.executions.transitionMany(chunk.map(({ sent }) => sent.mark));
  await Promise.all(
    chunk.map(async ({ index, sent }, k) => {
      outcomes[index] = await afterMark(deps, context, sent, marked[k]);
    }),
  );
}

/**
 * Notifies a batch of devices: each is sent its document; as sends land, their `notified` marks
 * are written 25 to a request (ADR 0040, "Batched marks"), and each marked device then gets its
 * grant. A crash before a mark leaves its device waiting, and the next worker sends it the
 * identical document again.
 */
export async function notifyDevices(
  deps: FanoutDeps,
  context: DeviceContext,
  batch: readonly ExecutionRecord[],
): Promise<DeviceOutcome[]> {
  const outcomes = new Array<DeviceOutcome>(batch.length);
  const waiting: { index: number; sent: SentDevice }[] = [];
  const marking: Promise<void>[] = [];
  const markWaiting = (): void => {
    const chunk = waiting.splice(0, STATEMENTS_PER_BATCH);
    if (chunk.length === 0) return;
    const run = markChunk(deps, context, chunk, outcomes);
    // Awaited below with the others; a failure must not count as unhandled meanwhile.
    run.catch(() => {});
    marking.push(run);
  };
  await mapWithConcurrency(batch, deps.tuning.concurrency, async (execution, index) => {
    const result = await sendToDevice(deps, context, execution);
    if (!isSent(result)) {
      outcomes[index] = result;
      return;
    }
    waiting.push({ index, sent: result });
    if (waiting.length >= STATEMENTS_PER_BATCH) markWaiting();
  });
  while (waiting.length > 0) markWaiting();
  await Promise.all(marking);
  return outcomes;
}

/**
 * A batch sent without the supersede check (no other deployment then) checks once more after its
 * writes: a deployment that started meanwhile may have claimed one of these devices before its
 * row existed (it waited on its target page), and the two sends raced. Devices notified in the
 * batch are then looked at as `lostRace` does. A deployment that starts after this check finds
 * their rows and supersedes them itself. Returns whether another deployment was found.
 */
async function settleLateArrivals(
  deps: FanoutDeps,
  context: DeviceContext,
  others: OthersWatch,
  batch: readonly ExecutionRecord[],
  outcomes: readonly DeviceOutcome[],
  batchStartedAt: number,
): Promise<boolean> {
  if (!(await others.check())) return false;
  const checked = { ...context, othersActive: true };
  const sent = batch.filter((e, i) => e.unwritten && outcomes[i] === 'notified');
  await mapWithConcurrency(sent, deps.tuning.concurrency, async (execution) => {
    const row = await deps.executions.get(execution.deploymentId, execution.thingName);
    if (row?.state === 'notified') await lostRace(deps, checked, row, batchStartedAt);
  });
  return true;
}

/** How long the check after a batch answers for the next one (which checks again after its own writes). */
const QUIET_REUSE_MS = 1_000;

export interface ShardProgress {
  readonly notified: number;
  readonly superseded: number;
  readonly throttled: number;
}

export type ShardOutcome =
  | ({ readonly kind: 'finished' } & ShardProgress)
  /** The rate (or start time) holds the next batch back until `nextDueAt`. */
  | ({ readonly kind: 'waiting'; readonly nextDueAt: number } & ShardProgress)
  /** The invocation's time is up with work left. */
  | ({ readonly kind: 'out_of_time' } & ShardProgress)
  /** Another worker holds the lane, or the deployment is not rolling out. */
  | { readonly kind: 'skipped'; readonly reason: string };

interface Walk {
  /** Where the walk of the target pages goes on (saved as the lane's cursor). */
  position: TargetPosition;
  /** The walk passed the last target page; only the tail pass (retried devices) is left. */
  walked: boolean;
  buffer: ExecutionRecord[];
  /** The position after each buffered device from the pages (by thing name). */
  after: Map<string, TargetPosition>;
  /** Where the walk goes on once `buffer` is used up. */
  pageEnd: TargetPosition | undefined;
  /** The buffer came from the tail pass (the index), not the pages: the position stays. */
  fromTail: boolean;
  bucket: RolloutBucket | undefined;
}

/** Fills the buffer: the walk's next page, or once walked, queued devices found through the index. */
async function refill(
  deps: FanoutDeps,
  deployment: DeploymentRecord,
  shard: number,
  walk: Walk,
): Promise<void> {
  if (!walk.walked) {
    const read = await readWaiting(deps, deployment, shard, walk.position);
    if (!read.exhausted) {
      walk.buffer = read.waiting.map((w) => w.execution);
      walk.after = new Map(read.waiting.map((w) => [w.execution.thingName, w.after]));
      walk.pageEnd = read.pageEnd;
      walk.fromTail = false;
      if (walk.buffer.length === 0) walk.position = read.pageEnd;
      return;
    }
    // Past the last page: on to the tail pass at once.
    walk.walked = true;
  }
  // Retried devices were re-queued behind the cursor. The index lags its table, so each candidate
  // is re-read (strongly consistent) before anything is sent to it.
  const page = await deps.executions.queryByState(deployment.deploymentId, 'requeued', {
    limit: deps.tuning.scanPage,
  });
  const mine = page.items.filter((e) => e.shard === shard);
  const fresh = await Promise.all(mine.map((e) => deps.executions.get(e.deploymentId, e.thingName)));
  walk.buffer = fresh.filter((e): e is ExecutionRecord => e?.state === 'queued');
  walk.after = new Map();
  walk.pageEnd = undefined;
  walk.fromTail = true;
}

/**
 * Desired documents by attempt, built once each. They hold ids only, so a signature renewed by a
 * retry (deployments/renew-signature.ts) while this worker runs changes none of them: the
 * authorizer hands out the deployment's current signature with each authorization.
 */
function desiredCache(): (deployment: DeploymentRecord, attempt: number) => DesiredDocument {
  const built = new Map<number, DesiredDocument>();
  return (deployment, attempt) => {
    let document = built.get(attempt);
    if (!document) {
      const result = desiredDocumentFor({
        deploymentId: deployment.deploymentId,
        attempt,
        updateId: deployment.updateId,
      });
      if (!result.ok)
        throw new Error(`bug: the deployment's desired document does not fit: ${result.error.message}`);
      document = result.value;
      built.set(attempt, document);
    }
    return document;
  };
}

/**
 * Runs shard `shard` of a deployment until it is finished, waits longer than its time allows, or
 * its time is up (`budget`, deps.ts stopAtOf). The caller holds the lane's lease; checkpoints are
 * saved under it.
 */
export async function runShard(
  deps: FanoutDeps,
  initial: DeploymentRecord,
  shard: number,
  lease: {
    readonly owner: string;
    readonly cursor?: string;
    readonly done?: boolean;
    readonly bucket?: RolloutBucket;
  },
  budget: TimeBudget,
): Promise<ShardOutcome> {
  const lane = String(shard);
  const walk: Walk = {
    position: decodeTargetPosition(lease.cursor),
    walked: lease.done === true,
    buffer: [],
    after: new Map(),
    pageEnd: undefined,
    fromTail: false,
    bucket: lease.bucket,
  };
  const progress = { notified: 0, superseded: 0, throttled: 0 };
  let deployment = initial;
  const documents = desiredCache();
  const context: DeviceContext = {
    get deployment() {
      return deployment;
    },
    desiredFor: (attempt) => documents(deployment, attempt),
    deploymentOf: makeDeploymentCache(deps),
    othersActive: true,
  };
  let savedAt = 0;
  const others = watchOthers(deps, initial);
  /** When the check after the last batch found no other deployment. */
  let quietAt: number | undefined;
  let lastGrabAt = Number.NEGATIVE_INFINITY;
  let readAt = Number.NEGATIVE_INFINITY;

  const checkpoint = async (force: boolean): Promise<boolean> => {
    const now = deps.now();
    if (!force && now - savedAt < deps.tuning.checkpointEveryMs) return true;
    savedAt = now;
    const saved = await deps.deployments.saveFanoutCheckpoint(
      deployment.deploymentId,
      lane,
      {
        cursor: encodeTargetPosition(walk.position),
        ...(walk.bucket ? { bucket: walk.bucket } : {}),
        // Done once the walk's last page is read and sent: devices left in its buffer are found
        // again by walking on from the position (the index only holds retries for the tail pass).
        done: walk.walked && (walk.fromTail || walk.buffer.length === 0),
      },
      { owner: lease.owner, now },
    );
    return saved.ok;
  };

  for (;;) {
    const now = deps.now();
    const stopAt = stopAtOf(deps, budget);
    if (now >= stopAt) {
      await checkpoint(true);
      return { kind: 'out_of_time', ...progress };
    }
    // The deployment as it is (a cancel, the counters a ramp reads), read at most once per grab
    // interval: the waits between grabs would otherwise read it again and again.
    if (now - readAt >= deps.tuning.minGrabIntervalMs) {
      readAt = now;
      const fresh = await deps.deployments.get(deployment.deploymentId);
      if (fresh?.status !== 'rolling_out') {
        await checkpoint(true);
        return { kind: 'skipped', reason: `deployment is ${fresh?.status ?? 'gone'}` };
      }
      deployment = fresh;
    }
    if (walk.buffer.length === 0) {
      await refill(deps, deployment, shard, walk);
      if (walk.buffer.length === 0) {
        if (!walk.walked) continue;
        if (!(await checkpoint(true))) return { kind: 'skipped', reason: 'lease lost' };
        return { kind: 'finished', ...progress };
      }
    }
    const sinceGrab = now - lastGrabAt;
    if (sinceGrab < deps.tuning.minGrabIntervalMs) {
      await deps.sleep(Math.max(1, Math.min(deps.tuning.minGrabIntervalMs - sinceGrab, stopAt - now)));
      continue;
    }
    const plan = planRollout({
      rollout: shardRollout(deployment.policy.rollout, deployment.shards, shard),
      startAt: deployment.startAt,
      now,
      succeeded: deployment.counters.succeeded + deployment.counters.skipped,
      // While the walk goes on there are more devices than the buffer holds.
      remaining: walk.buffer.length + (walk.walked ? 0 : 1),
      accountCapPerSecond: deps.accountLimiter.capPerSecond,
      ...(walk.bucket ? { bucket: walk.bucket } : {}),
    });
    walk.bucket = plan.bucket;
    const wanted = Math.min(plan.notifyNow, walk.buffer.length, deps.tuning.maxGrab);
    if (wanted === 0) {
      const dueAt = plan.nextDueAt ?? now;
      if (dueAt - now > Math.min(deps.tuning.maxInProcessWaitMs, stopAt - now)) {
        await checkpoint(true);
        return { kind: 'waiting', nextDueAt: dueAt, ...progress };
      }
      await deps.sleep(Math.max(1, dueAt - now));
      continue;
    }
    lastGrabAt = now;
    // A fresh time: the reads since `now` was taken would otherwise age a restart of the bucket.
    const grant = await deps.accountLimiter.take(wanted, deps.now());
    if (grant.granted < plan.notifyNow)
      walk.bucket = refundRollout(walk.bucket, plan.notifyNow - grant.granted);
    if (grant.granted === 0) {
      await deps.sleep(Math.max(1, Math.min(grant.retryAfterMs, stopAt - now)));
      continue;
    }
    const batch = walk.buffer.splice(0, grant.granted);
    const batchStartedAt = deps.now();
    // A quiet answer from the check after the last batch still holds: this batch checks again after its writes.
    const quiet = quietAt !== undefined && deps.now() - quietAt < QUIET_REUSE_MS;
    const batchContext = { ...context, othersActive: quiet ? false : await others.check() };
    const outcomes = await notifyDevices(deps, batchContext, batch);
    quietAt = undefined;
    if (
      !batchContext.othersActive &&
      !(await settleLateArrivals(deps, context, others, batch, outcomes, batchStartedAt))
    )
      quietAt = deps.now();
    const throttled = batch.filter((_, i) => outcomes[i] === 'throttled');
    progress.notified += outcomes.filter((o) => o === 'notified').length;
    progress.superseded += outcomes.filter((o) => o === 'superseded').length;
    progress.throttled += throttled.length;
    if (throttled.length > 0) {
      // Back in front, and their credit back: they were not sent.
      walk.buffer.unshift(...throttled);
      walk.bucket = refundRollout(walk.bucket, throttled.length);
      deps.observability.logger.warn('shadow updates throttled; backing off', {
        deploymentId: deployment.deploymentId,
        throttled: throttled.length,
      });
    } else if (!walk.fromTail) {
      // Everything up to the batch's last device is handled; once the page is used up, up to its end.
      const last = batch.at(-1);
      const afterLast = last && walk.after.get(last.thingName);
      if (walk.buffer.length === 0 && walk.pageEnd) walk.position = walk.pageEnd;
      else if (afterLast) walk.position = afterLast;
    }
    if (!(await checkpoint(false))) return { kind: 'skipped', reason: 'lease lost' };
  }
}
