import type { ArtifactStore, ObjectFault } from '../../adapters/artifact-store.ts';
import type {
  ReadyCommit,
  StoredFile,
  StoredUpdateManifest,
  UpdateIdentity,
  UpdateRecord,
  UpdateStore,
} from '../../adapters/update-store.ts';
import { updateKey } from '../../adapters/update-store.ts';
import { formatUpdateId, type ImportManifest, parseImportManifest } from '../../domain/manifest/index.ts';
import { deriveUpdateManifest } from '../../domain/manifest/update-manifest.ts';
import type { FullUpdateManifest } from '../../domain/manifest/update-schema.ts';
import { err, type Fault, ok, type Result } from '../../domain/result.ts';
import { type Problem, type ProblemCode, problem } from '../../http/problem.ts';
import { type UpdateView, updateView } from './views.ts';

/** Writes an update's derived manifest and its signature where devices and deployments find them. */
export interface ManifestPublisher {
  /** `children`: the derived manifests of the children it references (their files are signed too). */
  publish(
    manifest: FullUpdateManifest,
    children: readonly FullUpdateManifest[],
    now: Date,
  ): Promise<StoredUpdateManifest>;
}

export interface CommitDeps {
  readonly updates: UpdateStore;
  readonly artifacts: ArtifactStore;
  readonly publisher: ManifestPublisher;
  /** Objects verified at once: each is one streaming GET. */
  readonly verifyConcurrency?: number;
}

export interface CommitOutcome {
  /** The update first, then its children. */
  readonly updates: readonly UpdateView[];
}

/** The stored import manifest, typed again; it was valid when stored, so a failure is a bug. */
export function storedImportManifest(record: UpdateRecord): ImportManifest {
  const parsed = parseImportManifest(JSON.parse(record.importManifest) as unknown);
  if (!parsed.ok)
    throw new Error(`Stored import manifest of ${updateKey(record.updateId)} no longer validates`);
  return parsed.value;
}

/** Runs `work` over `items` with at most `limit` in flight; results keep the input order. */
async function mapLimited<T, R>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await work(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

const faultCodes: Record<ObjectFault['kind'], ProblemCode> = {
  missing: 'FILE_MISSING',
  size: 'FILE_SIZE_MISMATCH',
  hash: 'FILE_HASH_MISMATCH',
};

function describeFault(record: UpdateRecord, file: StoredFile, fault: ObjectFault): string {
  const what = `${file.filename} of ${formatUpdateId(record.updateId)}`;
  switch (fault.kind) {
    case 'missing':
      return `${what} has not been uploaded`;
    case 'size':
      return `${what} is ${fault.actualSize} bytes, but the manifest declares ${file.sizeInBytes}`;
    case 'hash':
      return `${what} has SHA-256 ${fault.actualSha256}, but the manifest declares ${file.sha256}`;
  }
}

/** Checks every file of every pending update; answers every fault at once, each naming its file. */
async function verifyFiles(
  pending: readonly UpdateRecord[],
  deps: CommitDeps,
): Promise<Result<void, Problem>> {
  const checks = pending.flatMap((record) => record.files.map((file) => ({ record, file })));
  const outcomes = await mapLimited(checks, deps.verifyConcurrency ?? 4, async ({ record, file }) => ({
    record,
    file,
    result: await deps.artifacts.verifyObject(file.objectKey, {
      sizeInBytes: file.sizeInBytes,
      sha256: file.sha256,
    }),
  }));
  const faults = outcomes.flatMap(({ record, file, result }) =>
    result.ok
      ? []
      : [
          {
            kind: result.error.kind,
            filename: file.filename,
            fault: { path: file.manifestPath, message: describeFault(record, file, result.error) },
          },
        ],
  );
  if (faults.length === 0) return ok(undefined);
  const kinds = new Set(faults.map((f) => f.kind));
  const code: ProblemCode = kinds.size === 1 ? faultCodes[faults[0]!.kind] : 'FILES_NOT_VERIFIED';
  const names = faults.map((f) => f.filename).join(', ');
  return err(
    problem(
      code,
      `Not committed: ${names} did not verify; the update stays pending.`,
      faults.map((f): Fault => f.fault),
    ),
  );
}

/**
 * Derives every manifest of the set (children first: a parent carries its children's manifests as
 * files) and publishes the pending ones.
 */
async function publishManifests(
  set: readonly UpdateRecord[],
  pending: readonly UpdateRecord[],
  deps: CommitDeps,
  now: Date,
): Promise<ReadyCommit[]> {
  const pendingKeys = new Set(pending.map((r) => updateKey(r.updateId)));
  const derived = new Map<string, FullUpdateManifest>();
  const ordered = [...set].sort((a, b) => a.children.length - b.children.length);
  const commits: ReadyCommit[] = [];
  for (const record of ordered) {
    const result = deriveUpdateManifest(storedImportManifest(record), derived);
    if (!result.ok) {
      throw new Error(
        `Deriving ${updateKey(record.updateId)}: ${result.error.map((f) => f.message).join('; ')}`,
      );
    }
    derived.set(updateKey(record.updateId), result.value);
    if (pendingKeys.has(updateKey(record.updateId))) {
      const children = record.children.flatMap((c) => derived.get(updateKey(c)) ?? []);
      const updateManifest = await deps.publisher.publish(result.value, children, now);
      commits.push({ updateId: record.updateId, updateManifest });
    }
  }
  return commits;
}

/** The update and the children it references, in that order. */
async function loadSet(id: UpdateIdentity, updates: UpdateStore): Promise<Result<UpdateRecord[], Problem>> {
  const record = await updates.get(id);
  if (!record) return err(problem('UPDATE_NOT_FOUND', `Update ${formatUpdateId(id)} does not exist.`));
  if (record.state === 'deleting') {
    return err(problem('UPDATE_NOT_PENDING', `Update ${formatUpdateId(id)} is being deleted.`));
  }
  const children = await updates.getMany(record.children);
  const missing = record.children.filter((c) => {
    const state = children.get(updateKey(c))?.state;
    return state !== 'pending' && state !== 'ready';
  });
  if (missing.length > 0) {
    throw new Error(
      `Update ${updateKey(id)} references missing children: ${missing.map(updateKey).join(', ')}`,
    );
  }
  return ok([record, ...record.children.map((c) => children.get(updateKey(c)) as UpdateRecord)]);
}

/**
 * POST /updates/{provider}/{name}/{version}/commit: verifies every uploaded file (size and SHA-256,
 * streamed), then derives, signs and writes the update manifests and marks the update and its
 * pending children `ready` together. Committing a ready update again answers it unchanged.
 */
export async function commitUpdate(
  deps: CommitDeps,
  id: UpdateIdentity,
  now: Date,
): Promise<Result<CommitOutcome, Problem>> {
  const loaded = await loadSet(id, deps.updates);
  if (!loaded.ok) return loaded;
  const set = loaded.value;
  const pending = set.filter((r) => r.state === 'pending');
  if (pending.length > 0) {
    const verified = await verifyFiles(pending, deps);
    if (!verified.ok) return verified;
    const commits = await publishManifests(set, pending, deps, now);
    const marked = await deps.updates.markReady(commits, now);
    // Losing the race to a concurrent commit of the same files is fine; anything else is a conflict.
    if (!marked.ok) {
      const again = await loadSet(id, deps.updates);
      if (!again.ok || again.value.some((r) => r.state !== 'ready')) {
        return err(
          problem('UPDATE_NOT_PENDING', `Update ${formatUpdateId(id)} changed while it was being committed.`),
        );
      }
      return ok({ updates: again.value.map((r) => updateView(r)) });
    }
  }
  const final = await loadSet(id, deps.updates);
  if (!final.ok) return final;
  return ok({ updates: final.value.map((r) => updateView(r)) });
}
