/**
 * Expansion: the deployment's target, page by page, into target pages (ADR 0040, "Target pages":
 * the devices to notify, by lane, each written as a row only when first acted on) and
 * `incompatible` rows (devices the fleet knows whose compatibility does not match the update).
 * The cursor is saved after every page, so a worker that stops or crashes resumes at the last
 * saved page: at worst one page is read twice, and written once (a page is never overwritten).
 */
import type { DeploymentRecord } from '../../adapters/deployment-store.ts';
import type { NewExecution } from '../../adapters/execution-store.ts';
import type { CompatibilitySet, DeviceProperties } from '../../domain/deployment/index.ts';
import { initialState, isCompatible } from '../../domain/deployment/index.ts';
import type { FanoutDeps } from './deps.ts';
import { shardOf } from './sharding.ts';

/**
 * Where the expansion is: source `s` of `sourcesOf(target)`, that source's page token, and the
 * number of target pages written so far (the next page's sequence number).
 */
export interface ExpansionCursor {
  readonly s: number;
  readonly t?: string;
  readonly p?: number;
}

type Source =
  | { readonly kind: 'things' }
  | { readonly kind: 'group'; readonly name: string }
  | { readonly kind: 'compatibility' };

/** Explicit things are written this many per page. */
export const THINGS_PAGE = 250;
/** Fleet items read per Scan page when the target names compatibility sets. */
export const FLEET_SCAN_PAGE = 500;

function sourcesOf(deployment: DeploymentRecord): Source[] {
  const { target } = deployment;
  return [
    ...(target.things.length > 0 ? [{ kind: 'things' as const }] : []),
    ...target.thingGroups.map((name) => ({ kind: 'group' as const, name })),
    ...(target.compatibility.length > 0 ? [{ kind: 'compatibility' as const }] : []),
  ];
}

export function encodeExpansionCursor(cursor: ExpansionCursor): string {
  return JSON.stringify(cursor);
}

/** A cursor this module wrote, or the start for anything else (a corrupt cursor re-expands: same rows). */
export function decodeExpansionCursor(text: string | undefined): ExpansionCursor {
  if (!text) return { s: 0 };
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value !== 'object' || value === null) return { s: 0 };
    const { s, t, p } = value as { s?: unknown; t?: unknown; p?: unknown };
    if (typeof s !== 'number' || !Number.isInteger(s) || s < 0) return { s: 0 };
    const pages = typeof p === 'number' && Number.isInteger(p) && p > 0 ? { p } : {};
    return typeof t === 'string' ? { s, t, ...pages } : { s, ...pages };
  } catch {
    return { s: 0 };
  }
}

interface TargetPage {
  /** Things with their known compatibility, when the page read it already. */
  readonly things: readonly { readonly thingName: string; readonly compatibility?: DeviceProperties }[];
  /** The cursor after this page; undefined when the target is exhausted. */
  readonly next: ExpansionCursor | undefined;
}

function advance(sources: readonly Source[], cursor: ExpansionCursor, token: string | undefined) {
  if (token !== undefined) return { s: cursor.s, t: token };
  return cursor.s + 1 < sources.length ? { s: cursor.s + 1 } : undefined;
}

/** The cursor after a page; its page count is set once the page's targets are written. */
function withPages(cursor: ExpansionCursor, pages: number): ExpansionCursor {
  return pages > 0 ? { ...cursor, p: pages } : cursor;
}

async function readTargetPage(
  deps: FanoutDeps,
  deployment: DeploymentRecord,
  cursor: ExpansionCursor,
): Promise<TargetPage> {
  const sources = sourcesOf(deployment);
  const source = sources[cursor.s];
  if (!source) return { things: [], next: undefined };
  if (source.kind === 'things') {
    const offset = Number(cursor.t ?? '0');
    const end = offset + THINGS_PAGE;
    const names = deployment.target.things.slice(offset, end);
    const token = end < deployment.target.things.length ? String(end) : undefined;
    return { things: names.map((thingName) => ({ thingName })), next: advance(sources, cursor, token) };
  }
  if (source.kind === 'group') {
    const page = await deps.registry.listThingsInGroup(source.name, cursor.t);
    return {
      things: page.thingNames.map((thingName) => ({ thingName })),
      next: advance(sources, cursor, page.nextToken),
    };
  }
  const page = await deps.fleet.scanCompatible(deployment.target.compatibility, {
    limit: FLEET_SCAN_PAGE,
    ...(cursor.t !== undefined ? { nextToken: cursor.t } : {}),
  });
  // A token the store no longer accepts restarts the scan: rewriting matched rows is harmless.
  if (!page.ok) return { things: [], next: { s: cursor.s } };
  return {
    things: page.value.items.map((item) => ({
      thingName: item.thingName,
      ...(item.compatibility ? { compatibility: item.compatibility } : {}),
    })),
    next: advance(sources, cursor, page.value.nextToken),
  };
}

/** Rows for one page: a device whose known compatibility misses every set of the update is `incompatible`. */
export async function executionsFor(
  deps: FanoutDeps,
  deployment: DeploymentRecord,
  page: TargetPage,
  updateCompatibility: readonly CompatibilitySet[],
): Promise<NewExecution[]> {
  const unknown = page.things.filter((t) => t.compatibility === undefined).map((t) => t.thingName);
  const known = unknown.length > 0 ? await deps.reads.compatibilityOf(unknown) : new Map();
  return page.things.map(({ thingName, compatibility }) => {
    const properties = compatibility ?? known.get(thingName);
    const compatible = properties === undefined || isCompatible(properties, updateCompatibility);
    return {
      thingName,
      updateId: deployment.updateId,
      state: initialState(compatible),
      shard: shardOf(thingName, deployment.shards),
    };
  });
}

export interface ExpansionStep {
  /** Devices this page targets (to notify, and incompatible). */
  readonly written: number;
  readonly next: ExpansionCursor | undefined;
}

/** The page's devices to notify, by lane; a thing in two sources of one page is listed once. */
function byLane(rows: readonly NewExecution[]): Map<number, string[]> {
  const lanes = new Map<number, string[]>();
  const seen = new Set<string>();
  for (const row of rows) {
    if (row.state !== 'queued' || seen.has(row.thingName)) continue;
    seen.add(row.thingName);
    lanes.set(row.shard, [...(lanes.get(row.shard) ?? []), row.thingName]);
  }
  return lanes;
}

/**
 * Reads one page of the target: writes its incompatible devices' rows, and the rest as the next
 * target page (a page written before, by an expansion that crashed, stays as it was: what the
 * source held then); the caller saves `next` as the checkpoint.
 */
export async function expandOnePage(
  deps: FanoutDeps,
  deployment: DeploymentRecord,
  cursor: ExpansionCursor,
  updateCompatibility: readonly CompatibilitySet[],
  now: number,
): Promise<ExpansionStep> {
  const page = await readTargetPage(deps, deployment, cursor);
  const rows = await executionsFor(deps, deployment, page, updateCompatibility);
  const incompatible = rows.filter((row) => row.state === 'incompatible');
  if (incompatible.length > 0)
    await deps.executions.putIncompatible(deployment.deploymentId, incompatible, now);
  // Every page of the source is one target page, even an empty one: a resumed expansion that
  // reads a page again meets the page it wrote then, and its numbering stays the same.
  const pages = cursor.p ?? 0;
  await deps.targets.put(deployment.deploymentId, pages, byLane(rows));
  return { written: rows.length, next: page.next && withPages(page.next, pages + 1) };
}
