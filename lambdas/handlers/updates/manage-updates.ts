import type { ArtifactStore } from '../../adapters/artifact-store.ts';
import {
  type StoreConflict,
  type UpdateIdentity,
  type UpdateState,
  type UpdateStore,
  updateStates,
} from '../../adapters/update-store.ts';
import { formatUpdateId } from '../../domain/manifest/index.ts';
import { err, type Fault, ok, type Result } from '../../domain/result.ts';
import { type Problem, problem } from '../../http/problem.ts';
import { type UpdateView, updateView } from './views.ts';

export interface ManageDeps {
  readonly updates: UpdateStore;
  readonly artifacts: ArtifactStore;
}

export async function getUpdate(deps: ManageDeps, id: UpdateIdentity): Promise<Result<UpdateView, Problem>> {
  const record = await deps.updates.get(id);
  if (!record) return err(problem('UPDATE_NOT_FOUND', `Update ${formatUpdateId(id)} does not exist.`));
  return ok(updateView(record));
}

export const listLimits = { default: 25, max: 100 } as const;

export interface ListQuery {
  readonly limit?: string;
  readonly nextToken?: string;
  readonly state?: string;
}

/** Reads `limit` and `state` from the query string; every bad parameter is named. */
function parseListQuery(query: ListQuery): Result<{ limit: number; state?: UpdateState }, Fault[]> {
  const faults: Fault[] = [];
  let limit: number = listLimits.default;
  if (query.limit !== undefined) {
    limit = Number(query.limit);
    if (!/^\d+$/.test(query.limit) || limit < 1 || limit > listLimits.max) {
      faults.push({ path: '/limit', message: `limit must be a whole number from 1 to ${listLimits.max}` });
    }
  }
  const state = updateStates.find((s) => s === query.state);
  if (query.state !== undefined && state === undefined) {
    faults.push({ path: '/state', message: `state must be one of ${updateStates.join(', ')}` });
  }
  if (faults.length > 0) return err(faults);
  return ok(state ? { limit, state } : { limit });
}

export interface UpdateList {
  readonly items: readonly UpdateView[];
  readonly nextToken?: string;
}

/** GET /updates?limit=&state=&nextToken=: a page of updates, newest first within each state. */
export async function listUpdates(deps: ManageDeps, query: ListQuery): Promise<Result<UpdateList, Problem>> {
  const parsed = parseListQuery(query);
  if (!parsed.ok) return err(problem('BAD_REQUEST', 'The query parameters are not valid.', parsed.error));
  const page = await deps.updates.list({
    ...parsed.value,
    ...(query.nextToken !== undefined ? { nextToken: query.nextToken } : {}),
  });
  if (!page.ok) {
    return err(
      problem('INVALID_NEXT_TOKEN', 'nextToken was not issued by this API for this query.', [
        {
          path: '/nextToken',
          message: 'pass the nextToken of the previous page unchanged, with the same state',
        },
      ]),
    );
  }
  return ok({
    items: page.value.items.map((r) => updateView(r)),
    ...(page.value.nextToken ? { nextToken: page.value.nextToken } : {}),
  });
}

function deleteProblem(id: UpdateIdentity, conflict: StoreConflict): Problem {
  if (conflict.code === 'UPDATE_IN_USE') {
    return problem('UPDATE_IN_USE', `Update ${formatUpdateId(id)} is in use: ${conflict.reason}.`);
  }
  return problem('UPDATE_NOT_FOUND', `Update ${formatUpdateId(id)} does not exist.`);
}

/**
 * DELETE /updates/{provider}/{name}/{version}: refused while a deployment or a parent uses the
 * update. Marks it `deleting` first, so a DELETE interrupted halfway is finished by the next one.
 */
export async function deleteUpdate(deps: ManageDeps, id: UpdateIdentity): Promise<Result<void, Problem>> {
  const begun = await deps.updates.beginDelete(id);
  if (!begun.ok) return err(deleteProblem(id, begun.error));
  const record = begun.value;
  const keys = [
    ...record.files.map((f) => f.objectKey),
    ...(record.updateManifest ? [record.updateManifest.objectKey] : []),
  ];
  await deps.artifacts.deleteObjects(keys);
  await deps.updates.finishDelete(record);
  return ok(undefined);
}
