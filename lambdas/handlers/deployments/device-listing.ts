/**
 * `GET /deployments/{id}/devices`: the devices still waiting on a deployment's target pages (ADR
 * 0040, "Target pages"), which are `queued` without a row, and its executions with rows. The
 * listing walks the pages (lane after lane, from where each lane's fan-out is) and the rows (the
 * store's token), in one opaque token.
 */
import type { DeploymentRecord } from '../../adapters/deployment-store.ts';
import type { ExecutionRecord } from '../../adapters/execution-store.ts';
import type { ExecutionState } from '../../domain/deployment/index.ts';
import { err, ok, type Result } from '../../domain/result.ts';
import {
  decodeLanePosition,
  decodeTargetPosition,
  encodeLanePosition,
  type LanePosition,
  readWaiting,
} from '../fanout/target-walk.ts';
import type { DeploymentsDeps } from './deps.ts';

export interface DeviceListing {
  readonly items: readonly ExecutionRecord[];
  readonly nextToken?: string;
}

/** Which part of the listing a token continues: the rows (with the store's token), or the pages. */
type Phase = { readonly rows: string | undefined } | { readonly waiting: LanePosition | undefined };

/** Pages read at most per request, so one with few waiting devices still answers quickly (a short page). */
const MAX_PAGE_READS = 20;

function encodeToken(phase: Phase): string {
  const value =
    'rows' in phase ? { r: phase.rows ?? '' } : { w: phase.waiting ? encodeLanePosition(phase.waiting) : '' };
  return Buffer.from(JSON.stringify(value), 'utf8').toString('base64url');
}

function decodeToken(token: string): Phase | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
    if (typeof value !== 'object' || value === null) return undefined;
    const { r, w } = value as { r?: unknown; w?: unknown };
    if (typeof r === 'string') return { rows: r === '' ? undefined : r };
    if (typeof w !== 'string') return undefined;
    if (w === '') return { waiting: undefined };
    const waiting = decodeLanePosition(w);
    return waiting ? { waiting } : undefined;
  } catch {
    return undefined;
  }
}

type ListingDeps = Pick<DeploymentsDeps, 'executions' | 'targets'>;

/** Devices still waiting from `start`; `next` is where the walk goes on, undefined at its end. */
async function listWaiting(
  deps: ListingDeps,
  deployment: DeploymentRecord,
  start: LanePosition | undefined,
  limit: number,
): Promise<{ readonly items: ExecutionRecord[]; readonly next: LanePosition | undefined }> {
  const items: ExecutionRecord[] = [];
  const laneStart = (lane: number) => decodeTargetPosition(deployment.fanout[String(lane)]?.cursor);
  let at: LanePosition | undefined = start ?? { lane: 0, position: laneStart(0) };
  for (let reads = 0; at && reads < MAX_PAGE_READS && items.length < limit; reads++) {
    if (at.lane >= deployment.shards) return { items, next: undefined };
    const read = await readWaiting(deps, deployment, at.lane, at.position, { uncountRepeats: false });
    if (read.exhausted) {
      at =
        at.lane + 1 < deployment.shards ? { lane: at.lane + 1, position: laneStart(at.lane + 1) } : undefined;
      continue;
    }
    const taken = read.waiting.slice(0, limit - items.length);
    items.push(...taken.map((w) => w.execution));
    const last = taken.at(-1);
    at =
      taken.length < read.waiting.length && last
        ? { lane: at.lane, position: last.after }
        : { lane: at.lane, position: read.pageEnd };
  }
  return { items, next: at };
}

async function listRows(
  deps: ListingDeps,
  deploymentId: string,
  state: ExecutionState | undefined,
  token: string | undefined,
  limit: number,
): Promise<
  Result<{ readonly items: readonly ExecutionRecord[]; readonly next?: string }, 'INVALID_NEXT_TOKEN'>
> {
  // Queued rows are retried devices (first attempts wait on the pages): their index partition.
  const selector = state === 'queued' ? 'requeued' : state;
  const page = await deps.executions.listForDeployment(deploymentId, {
    limit,
    ...(selector !== undefined ? { state: selector } : {}),
    ...(token !== undefined ? { nextToken: token } : {}),
  });
  if (!page.ok) return err('INVALID_NEXT_TOKEN');
  // The index lags its table: a device notified a moment ago may still be in `requeued`.
  const items = state === undefined ? page.value.items : page.value.items.filter((e) => e.state === state);
  return ok({ items, ...(page.value.nextToken ? { next: page.value.nextToken } : {}) });
}

/**
 * One page of the listing: the waiting devices and then the rows in the state (for `queued`, the
 * retried devices; for no state, all); for another state, its rows. A
 * page that ends one part with room left goes on into the next; one that stops short within a
 * part answers as it is (a page may be short and still have a token).
 */
export async function listDevices(
  deps: ListingDeps,
  deployment: DeploymentRecord,
  query: { readonly state?: ExecutionState; readonly limit: number; readonly nextToken?: string },
): Promise<Result<DeviceListing, 'INVALID_NEXT_TOKEN'>> {
  const { state, limit } = query;
  // Waiting devices first: one the fan-out writes while the listing goes on moves from the pages
  // into the rows ahead of the rows' cursor, so it is listed once or twice, never missed.
  const order: readonly ('rows' | 'waiting')[] =
    state === 'queued' || state === undefined ? ['waiting', 'rows'] : ['rows'];
  const start: Phase = order[0] === 'waiting' ? { waiting: undefined } : { rows: undefined };
  let phase: Phase | undefined = query.nextToken === undefined ? start : decodeToken(query.nextToken);
  if (!phase || !order.includes('rows' in phase ? 'rows' : 'waiting')) return err('INVALID_NEXT_TOKEN');
  const items: ExecutionRecord[] = [];
  while (phase && items.length < limit) {
    const part = await listPart(deps, deployment, state, phase, limit - items.length);
    if (!part.ok) return part;
    items.push(...part.value.items);
    // A part that stopped short (a filtered Query, or its page reads spent) answers as it is:
    // one request reads a bounded amount.
    if (part.value.next) return ok({ items, nextToken: encodeToken(part.value.next) });
    const following: 'rows' | 'waiting' | undefined =
      order[order.indexOf('rows' in phase ? 'rows' : 'waiting') + 1];
    phase =
      following === undefined
        ? undefined
        : following === 'rows'
          ? { rows: undefined }
          : { waiting: undefined };
  }
  return ok(phase ? { items, nextToken: encodeToken(phase) } : { items });
}

/** Up to `limit` devices of one part of the listing; `next` continues the part, absent at its end. */
async function listPart(
  deps: ListingDeps,
  deployment: DeploymentRecord,
  state: ExecutionState | undefined,
  phase: Phase,
  limit: number,
): Promise<
  Result<{ readonly items: readonly ExecutionRecord[]; readonly next?: Phase }, 'INVALID_NEXT_TOKEN'>
> {
  if ('waiting' in phase) {
    const waiting = await listWaiting(deps, deployment, phase.waiting, limit);
    return ok({ items: waiting.items, ...(waiting.next ? { next: { waiting: waiting.next } } : {}) });
  }
  const rows = await listRows(deps, deployment.deploymentId, state, phase.rows, limit);
  if (!rows.ok) return rows;
  return ok({ items: rows.value.items, ...(rows.value.next ? { next: { rows: rows.value.next } } : {}) });
}
