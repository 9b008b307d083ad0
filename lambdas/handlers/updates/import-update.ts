import { createHash } from 'node:crypto';
import type { ArtifactStore } from '../../adapters/artifact-store.ts';
import { fileObjectKey } from '../../adapters/artifact-store.ts';
import {
  type ChildLink,
  type NewUpdate,
  type StoredFile,
  type UpdateRecord,
  type UpdateStore,
  updateKey,
} from '../../adapters/update-store.ts';
import {
  type CheckedImportSet,
  canonicalManifestJson,
  checkImportSet,
  type ExistingUpdate,
  formatUpdateId,
  type ImportManifest,
  type ImportSet,
  parseImportRequest,
  referencedUpdateIds,
  type UpdateId,
  updateIdKey,
} from '../../domain/manifest/index.ts';
import { err, type Fault, ok, pointer, type Result } from '../../domain/result.ts';
import { type Problem, problem } from '../../http/problem.ts';
import { type UpdateView, updateView } from './views.ts';

export interface ImportDeps {
  readonly updates: UpdateStore;
  readonly artifacts: ArtifactStore;
  readonly uploadUrlTtlSeconds: number;
}

export interface ImportOutcome {
  /** True when this request created at least one update (201); false for an identical re-import (200). */
  readonly created: boolean;
  /** The parent first, then its children in request order. */
  readonly updates: readonly UpdateView[];
}

/** SHA-256 of the manifest's canonical JSON: what "identical re-import" compares. */
export function importDigest(manifest: ImportManifest): string {
  return createHash('sha256').update(canonicalManifestJson(manifest)).digest('base64');
}

/** Every file the device may download, related files (delta sources) included, with its manifest path. */
function storedFiles(manifest: ImportManifest): StoredFile[] {
  return manifest.files.flatMap((file, i) => [
    {
      filename: file.filename,
      sizeInBytes: file.sizeInBytes,
      sha256: file.hashes.sha256,
      objectKey: fileObjectKey(manifest.updateId, file.filename),
      manifestPath: pointer(['files', i]),
    },
    ...(file.relatedFiles ?? []).map((related, j) => ({
      filename: related.filename,
      sizeInBytes: related.sizeInBytes,
      sha256: related.hashes.sha256,
      objectKey: fileObjectKey(manifest.updateId, related.filename),
      manifestPath: pointer(['files', i, 'relatedFiles', j]),
    })),
  ]);
}

function childIds(manifest: ImportManifest): UpdateId[] {
  return manifest.instructions.steps.flatMap((step) => (step.type === 'reference' ? [step.updateId] : []));
}

function newUpdate(manifest: ImportManifest, referencedBy: readonly string[]): NewUpdate {
  return {
    updateId: manifest.updateId,
    importDigest: importDigest(manifest),
    importManifest: JSON.stringify(manifest),
    isDeployable: manifest.isDeployable,
    files: storedFiles(manifest),
    children: childIds(manifest),
    referencedBy,
  };
}

/** Where a manifest sits in the request body, for fault paths. */
function manifestPath(set: ImportSet, manifest: ImportManifest): string {
  const i = set.manifests.indexOf(manifest);
  return set.form === 'set' ? pointer(['manifests', i]) : '';
}

/** Stored children the set refers to, as the domain check wants them; deleting ones count as gone. */
async function existingReferences(
  set: ImportSet,
  updates: UpdateStore,
): Promise<Map<string, ExistingUpdate>> {
  const ids = referencedUpdateIds(set);
  if (ids.length === 0) return new Map();
  const found = await updates.getMany(ids);
  const existing = new Map<string, ExistingUpdate>();
  for (const [key, record] of found) {
    if (record.state === 'deleting') continue;
    existing.set(key, { updateId: record.updateId, hasReferenceSteps: record.children.length > 0 });
  }
  return existing;
}

interface ImportPlan {
  readonly toCreate: readonly NewUpdate[];
  readonly links: readonly ChildLink[];
}

/**
 * Decides what to write: manifests already stored identically are reused, a stored manifest that
 * differs is a conflict, and a new parent is linked to every child that is already stored.
 */
function planImport(
  set: ImportSet,
  checked: CheckedImportSet,
  stored: ReadonlyMap<string, UpdateRecord>,
): Result<ImportPlan, Problem> {
  const conflicts: Fault[] = [];
  const isNew = (m: ImportManifest): boolean => {
    const record = stored.get(updateIdKey(m.updateId));
    if (record === undefined) return true;
    if (record.importDigest !== importDigest(m)) {
      conflicts.push({
        path: `${manifestPath(set, m)}/updateId`,
        message: `update ${formatUpdateId(m.updateId)} was already imported with a different manifest (state ${record.state}); give this one a new version`,
      });
    }
    return false;
  };
  const parentKey = updateKey(checked.parent.updateId);
  const parentIsNew = isNew(checked.parent);
  const newChildren = checked.children.filter(isNew);
  if (conflicts.length > 0) {
    return err(
      problem('UPDATE_CONFLICT', 'An update with the same updateId but different content exists.', conflicts),
    );
  }
  const storedChildren = [
    ...checked.existingChildren,
    ...checked.children.filter((c) => !newChildren.includes(c)).map((c) => c.updateId),
  ];
  return ok({
    toCreate: [
      ...(parentIsNew ? [newUpdate(checked.parent, [])] : []),
      ...newChildren.map((c) => newUpdate(c, parentIsNew ? [parentKey] : [])),
    ],
    links: parentIsNew ? storedChildren.map((child) => ({ child, parent: checked.parent.updateId })) : [],
  });
}

async function presignUploads(
  records: readonly UpdateRecord[],
  deps: ImportDeps,
  now: Date,
): Promise<{ urls: Map<string, string>; expiresAt: Date }> {
  const urls = new Map<string, string>();
  for (const record of records) {
    if (record.state !== 'pending') continue;
    for (const file of record.files) {
      urls.set(file.objectKey, await deps.artifacts.presignUpload(file.objectKey, deps.uploadUrlTtlSeconds));
    }
  }
  return { urls, expiresAt: new Date(now.getTime() + deps.uploadUrlTtlSeconds * 1000) };
}

/**
 * POST /updates: validates one import manifest or a parent with its children, reserves the new
 * updates as `pending`, and answers a presigned PUT URL per file. Re-importing identical manifests
 * answers the same updates again (fresh URLs while pending); a different manifest under a stored
 * updateId is a conflict.
 */
export async function importUpdates(
  deps: ImportDeps,
  body: unknown,
  now: Date,
): Promise<Result<ImportOutcome, Problem>> {
  const parsed = parseImportRequest(body);
  if (!parsed.ok) return err(problem('MANIFEST_INVALID', 'The import manifest is not valid.', parsed.error));
  const set = parsed.value;
  const checked = checkImportSet(set, await existingReferences(set, deps.updates));
  if (!checked.ok)
    return err(
      problem('MANIFEST_INVALID', 'The updates in this request do not fit together.', checked.error),
    );
  const ordered = [checked.value.parent, ...checked.value.children];

  // Two attempts: a concurrent identical import that wins the race makes ours a re-import.
  for (let attempt = 0; ; attempt++) {
    const stored = await deps.updates.getMany(ordered.map((m) => m.updateId));
    const plan = planImport(set, checked.value, stored);
    if (!plan.ok) return plan;
    if (plan.value.toCreate.length > 0) {
      const reserved = await deps.updates.reserve(plan.value.toCreate, plan.value.links, now);
      if (!reserved.ok) {
        if (attempt === 0) continue;
        return err(conflictProblem(reserved.error));
      }
    }
    const records = await deps.updates.getMany(ordered.map((m) => m.updateId));
    const views = ordered.flatMap((m) => {
      const record = records.get(updateIdKey(m.updateId));
      return record ? [record] : [];
    });
    const uploads = await presignUploads(views, deps, now);
    return ok({
      created: plan.value.toCreate.length > 0,
      updates: views.map((r) => updateView(r, r.state === 'pending' ? uploads : undefined)),
    });
  }
}

function conflictProblem(error: {
  readonly code: string;
  readonly updateIds?: readonly UpdateId[];
}): Problem {
  const ids = (error.updateIds ?? []).map(formatUpdateId).join(', ');
  return problem(
    'UPDATE_CONFLICT',
    `The import conflicts with a concurrent change to ${ids || 'these updates'}: a referenced child is missing or being deleted, or the update was imported differently meanwhile.`,
  );
}
