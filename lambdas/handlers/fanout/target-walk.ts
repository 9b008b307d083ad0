/**
 * Reading a lane's share of the target pages (ADR 0040, "Target pages"): the devices still
 * waiting there are those without an execution row. The lane that notifies them and the cancel
 * that ends them walk the same pages, each from its own position.
 */
import type { DeploymentRecord } from '../../adapters/deployment-store.ts';
import {
  type ExecutionRecord,
  type ExecutionStore,
  unwrittenExecution,
} from '../../adapters/execution-store.ts';
import type { TargetPages } from '../../adapters/target-pages.ts';
import { shardOf } from './sharding.ts';

/** A place in a lane's walk of the pages: entry `index` of page `page`. */
export interface TargetPosition {
  readonly page: number;
  readonly index: number;
}

export const TARGET_START: TargetPosition = { page: 0, index: 0 };

const POSITION = /^p(\d+)\.(\d+)$/;

export function encodeTargetPosition(position: TargetPosition): string {
  return `p${position.page}.${position.index}`;
}

/** A position this module wrote, or the start for anything else (walking again from the top skips what has rows). */
export function decodeTargetPosition(text: string | undefined): TargetPosition {
  const match = text === undefined ? null : POSITION.exec(text);
  if (!match) return TARGET_START;
  return { page: Number(match[1]), index: Number(match[2]) };
}

/** A place in the walk of all lanes' pages, lane after lane. */
export interface LanePosition {
  readonly lane: number;
  readonly position: TargetPosition;
}

const LANE_POSITION = /^c(\d{4})\.(\d{7})\.(\d{6})$/;

export function decodeLanePosition(text: string | undefined): LanePosition | undefined {
  const match = text === undefined ? null : LANE_POSITION.exec(text);
  if (!match) return undefined;
  return { lane: Number(match[1]), position: { page: Number(match[2]), index: Number(match[3]) } };
}

/** Fixed-width numbers, so positions compare as text (the cancel's cursor only moves forward). */
export function encodeLanePosition(at: LanePosition): string {
  const { lane, position } = at;
  return `c${String(lane).padStart(4, '0')}.${String(position.page).padStart(7, '0')}.${String(position.index).padStart(6, '0')}`;
}

export interface WaitingTarget {
  readonly execution: ExecutionRecord;
  /** The position just after this device. */
  readonly after: TargetPosition;
}

export interface TargetRead {
  /** Devices from `from` to the page's end that have no row yet, in page order. */
  readonly waiting: readonly WaitingTarget[];
  /** Where the walk goes on: the next page's start. */
  readonly pageEnd: TargetPosition;
  /** No page at `from.page`: the lane's walk is over (once the expansion is done). */
  readonly exhausted: boolean;
}

export interface TargetWalkDeps {
  readonly targets: Pick<TargetPages, 'readLane'>;
  readonly executions: Pick<ExecutionStore, 'getWritten' | 'takeBackRepeat'>;
}

/**
 * The devices of `lane` on page `from.page`, from entry `from.index`, that still wait. A device
 * whose row was written from an earlier page is listed here again (two target groups): a walk
 * that acts on the devices (`uncountRepeats`) takes its `queued` count back, once.
 */
export async function readWaiting(
  deps: TargetWalkDeps,
  deployment: Pick<DeploymentRecord, 'deploymentId' | 'updateId'>,
  lane: number,
  from: TargetPosition,
  options: { readonly uncountRepeats: boolean } = { uncountRepeats: true },
): Promise<TargetRead> {
  const id = deployment.deploymentId;
  const pageEnd = { page: from.page + 1, index: 0 };
  const things = await deps.targets.readLane(id, from.page, lane);
  if (things === undefined) return { waiting: [], pageEnd: from, exhausted: true };
  const candidates = things.slice(from.index);
  const rows = new Map((await deps.executions.getWritten(id, candidates)).map((e) => [e.thingName, e]));
  // Written from another page (its first listing) or otherwise (incompatible): this listing's count goes.
  if (options.uncountRepeats) {
    const repeats = [...rows.values()].filter((row) => row.targetPage !== from.page);
    await Promise.all(repeats.map((row) => deps.executions.takeBackRepeat(id, row.thingName, from.page)));
  }
  const waiting: WaitingTarget[] = [];
  for (const [offset, thingName] of candidates.entries()) {
    if (rows.has(thingName)) continue;
    waiting.push({
      execution: unwrittenExecution(id, {
        thingName,
        updateId: deployment.updateId,
        shard: lane,
        targetPage: from.page,
      }),
      after: { page: from.page, index: from.index + offset + 1 },
    });
  }
  return { waiting, pageEnd, exhausted: false };
}

/**
 * A device still waiting on the target pages (no row: the caller looked), found on its lane's
 * pages: the execution an operator command acts on before the fan-out reaches it. Reads the
 * lane's pages in order from where its fan-out is (a device listed before that has a row), so it
 * finds the device's first listing still waiting.
 */
export async function findWaiting(
  deps: { readonly targets: Pick<TargetPages, 'readLane'> },
  deployment: Pick<DeploymentRecord, 'deploymentId' | 'updateId' | 'shards' | 'fanout'>,
  thingName: string,
): Promise<ExecutionRecord | undefined> {
  const lane = shardOf(thingName, deployment.shards);
  const from = decodeTargetPosition(deployment.fanout[String(lane)]?.cursor);
  // Pages are read FIND_CHUNK at a time, so a device far down a large deployment is found (or
  // not) within an API request's time.
  for (let first = from.page; ; first += FIND_CHUNK) {
    const pages = Array.from({ length: FIND_CHUNK }, (_, i) => first + i);
    const read = await Promise.all(
      pages.map((page) => deps.targets.readLane(deployment.deploymentId, page, lane)),
    );
    for (const [i, things] of read.entries()) {
      if (things === undefined) return undefined;
      if (things.includes(thingName)) {
        return unwrittenExecution(deployment.deploymentId, {
          thingName,
          updateId: deployment.updateId,
          shard: lane,
          targetPage: first + i,
        });
      }
    }
  }
}

const FIND_CHUNK = 16;
