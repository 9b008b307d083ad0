/**
 * Expansion: the deployment's target, page by page, into execution rows (`queued`, or
 * `incompatible` when the fleet knows the device's compatibility and it does not match the
 * update). The cursor is saved after every page, so a worker that stops or crashes resumes at the
 * last saved page: at worst one page is written twice, as the same rows.
 */
import type { DeploymentRecord } from '../../adapters/deployment-store.ts';
import type { NewExecution } from '../../adapters/execution-store.ts';
import type { CompatibilitySet, DeviceProperties } from '../../domain/deployment/index.ts';
import { initialState, isCompatible } from '../../domain/deployment/index.ts';
import type { FanoutDeps } from './deps.ts';
import { shardOf } from './sharding.ts';

/** Where the expansion is: source `s` of `sourcesOf(target)`, and that source's page token. */
export interface ExpansionCursor {
  readonly s: number;
  readonly t?: string;
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
    const { s, t } = value as { s?: unknown; t?: unknown };
    if (typeof s !== 'number' || !Number.isInteger(s) || s < 0) return { s: 0 };
    return typeof t === 'string' ? { s, t } : { s };
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
  readonly written: number;
  readonly next: ExpansionCursor | undefined;
}

/** Reads one page of the target and writes its rows; the caller saves `next` as the checkpoint. */
export async function expandOnePage(
  deps: FanoutDeps,
  deployment: DeploymentRecord,
  cursor: ExpansionCursor,
  updateCompatibility: readonly CompatibilitySet[],
  now: number,
): Promise<ExpansionStep> {
  const page = await readTargetPage(deps, deployment, cursor);
  const rows = await executionsFor(deps, deployment, page, updateCompatibility);
  if (rows.length > 0) await deps.executions.batchPutQueued(deployment.deploymentId, rows, now);
  return { written: rows.length, next: page.next };
}
