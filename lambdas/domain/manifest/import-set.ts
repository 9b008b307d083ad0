import { err, type Fault, ok, pointer, type Result } from '../result.ts';
import { canonicalJson } from './canonical.ts';
import { sortFaults } from './faults.ts';
import { parseImportManifest } from './import-manifest.ts';
import type { ImportManifest, ReferenceStep } from './import-schema.ts';
import { parseJsonText } from './json-text.ts';
import { limits } from './limits.ts';
import { formatUpdateId, type UpdateId, updateIdKey } from './update-id.ts';

/**
 * What one import request carries: a single manifest, or a parent with child manifests
 * (`{ "manifests": [parent, ...children] }`, as ADU imports them together). In set form every
 * fault path starts with `/manifests/<i>`.
 */
export interface ImportSet {
  readonly form: 'single' | 'set';
  readonly manifests: readonly ImportManifest[];
}

/** What the check needs to know about an update already in the store. */
export interface ExistingUpdate {
  readonly updateId: UpdateId;
  readonly hasReferenceSteps: boolean;
}

/** The outcome of a successful check: who is the parent, which children come along or exist already. */
export interface CheckedImportSet {
  readonly parent: ImportManifest;
  /** Children imported in this request, in request order. */
  readonly children: readonly ImportManifest[];
  /** Children the parent references that were imported earlier. */
  readonly existingChildren: readonly UpdateId[];
}

/** At most one parent plus one child per reference step. */
const maxManifestsPerSet = 1 + limits.steps.max;

/** Phase 1 (pure, no store): parses and validates every manifest of a request body. */
export function parseImportRequest(body: unknown): Result<ImportSet, Fault[]> {
  const parsed = typeof body === 'string' || body instanceof Uint8Array ? parseJsonText(body) : ok(body);
  if (!parsed.ok) return parsed;
  const value = parsed.value;
  if (isSetForm(value)) return parseSet(value.manifests);
  const single = parseImportManifest(value);
  return single.ok ? ok({ form: 'single', manifests: [single.value] }) : single;
}

function isSetForm(value: unknown): value is { manifests: unknown } {
  return (
    typeof value === 'object' &&
    value !== null &&
    !Array.isArray(value) &&
    'manifests' in value &&
    !('updateId' in value)
  );
}

function parseSet(manifests: unknown): Result<ImportSet, Fault[]> {
  if (!Array.isArray(manifests) || manifests.length === 0 || manifests.length > maxManifestsPerSet) {
    return err([
      {
        path: '/manifests',
        message: `manifests must be an array of 1 to ${maxManifestsPerSet} import manifests: the parent first, then its children`,
      },
    ]);
  }
  const results = manifests.map((m, i) => ({ i, result: parseImportManifest(m) }));
  const faults = results.flatMap(({ i, result }) => (result.ok ? [] : prefixFaults(result.error, i)));
  const valid = results.flatMap(({ result }) => (result.ok ? [result.value] : []));
  const duplicates = duplicateIdFaults(
    results.flatMap(({ i, result }) => (result.ok ? [{ i, m: result.value }] : [])),
  );
  const all = [...faults, ...duplicates];
  return all.length > 0 ? err(sortFaults(all)) : ok({ form: 'set', manifests: valid });
}

function prefixFaults(faults: readonly Fault[], index: number): Fault[] {
  return faults.map((f) => ({ path: `${pointer(['manifests', index])}${f.path}`, message: f.message }));
}

function duplicateIdFaults(entries: readonly { i: number; m: ImportManifest }[]): Fault[] {
  const first = new Map<string, number>();
  return entries.flatMap(({ i, m }) => {
    const key = updateIdKey(m.updateId);
    const at = first.get(key);
    if (at === undefined) {
      first.set(key, i);
      return [];
    }
    return [
      {
        path: pointer(['manifests', i, 'updateId']),
        message: `update ${formatUpdateId(m.updateId)} is already in /manifests/${at}`,
      },
    ];
  });
}

function referenceSteps(m: ImportManifest): { index: number; step: ReferenceStep }[] {
  return m.instructions.steps.flatMap((step, index) => (step.type === 'reference' ? [{ index, step }] : []));
}

/** Summarises a stored manifest for `checkImportSet`. */
export function existingUpdateOf(manifest: ImportManifest): ExistingUpdate {
  return { updateId: manifest.updateId, hasReferenceSteps: referenceSteps(manifest).length > 0 };
}

/**
 * The updates a set refers to that it does not carry itself: the caller looks these up in the
 * store and passes what it found to `checkImportSet`. Deduplicated by `updateIdKey`.
 */
export function referencedUpdateIds(set: ImportSet): UpdateId[] {
  const inSet = new Set(set.manifests.map((m) => updateIdKey(m.updateId)));
  const found = new Map<string, UpdateId>();
  for (const m of set.manifests) {
    for (const { step } of referenceSteps(m)) {
      const key = updateIdKey(step.updateId);
      if (!inSet.has(key) && !found.has(key)) found.set(key, step.updateId);
    }
  }
  return [...found.values()];
}

/**
 * Phase 2: checks how the manifests of a set relate, given the referenced updates already in the
 * store (`existing`, keyed by `updateIdKey`). Exactly one parent (the manifest nobody references),
 * every other manifest referenced by it, no child with reference steps, no dangling reference.
 */
export function checkImportSet(
  set: ImportSet,
  existing: ReadonlyMap<string, ExistingUpdate>,
): Result<CheckedImportSet, Fault[]> {
  const base = (i: number): (string | number)[] => (set.form === 'set' ? ['manifests', i] : []);
  const parents = parentCandidates(set);
  if (parents.length !== 1) return err([parentCountFault(set, parents)]);
  const parentIndex = parents[0] ?? 0;
  const parent = set.manifests[parentIndex];
  if (!parent) return err([{ path: '', message: 'the request holds no manifest' }]);
  const inSet = new Map(set.manifests.map((m, i) => [updateIdKey(m.updateId), i]));

  const faults: Fault[] = [];
  if (set.form === 'set' && !parent.isDeployable) {
    faults.push({
      path: pointer([...base(parentIndex), 'isDeployable']),
      message: 'the parent of a set (the manifest no other references) must be deployable',
    });
  }
  const existingChildren: UpdateId[] = [];
  set.manifests.forEach((m, i) => {
    for (const { index, step } of referenceSteps(m)) {
      const path = pointer([...base(i), 'instructions', 'steps', index, 'updateId']);
      const key = updateIdKey(step.updateId);
      if (i !== parentIndex) {
        faults.push({
          path: pointer([...base(i), 'instructions', 'steps', index]),
          message: `update ${formatUpdateId(m.updateId)} is a child (${formatUpdateId(parent.updateId)} refers to it), and a child update may not contain reference steps`,
        });
        continue;
      }
      if (inSet.has(key)) continue;
      const stored = existing.get(key);
      if (!stored) {
        faults.push({
          path,
          message: `refers to update ${formatUpdateId(step.updateId)}, which is neither in this request nor imported: import it first or send it with this one`,
        });
      } else if (stored.hasReferenceSteps) {
        faults.push({
          path,
          message: `update ${formatUpdateId(step.updateId)} has reference steps itself, so it cannot be a child: only one level of references is allowed`,
        });
      } else {
        existingChildren.push(stored.updateId);
      }
    }
  });
  if (faults.length > 0) return err(sortFaults(faults));
  const children = set.manifests.filter((_, i) => i !== parentIndex);
  return ok({ parent, children, existingChildren });
}

/** Manifests that no other manifest of the set refers to. */
function parentCandidates(set: ImportSet): number[] {
  const referenced = new Set(
    set.manifests.flatMap((m) => referenceSteps(m).map(({ step }) => updateIdKey(step.updateId))),
  );
  return set.manifests.flatMap((m, i) => (referenced.has(updateIdKey(m.updateId)) ? [] : [i]));
}

function parentCountFault(set: ImportSet, parents: readonly number[]): Fault {
  if (parents.length === 0) {
    return {
      path: '/manifests',
      message:
        'every manifest is referenced by another, so there is no parent: references may not form a cycle',
    };
  }
  const list = parents.map(
    (i) =>
      `/manifests/${i} (${formatUpdateId(set.manifests[i]?.updateId ?? { provider: '?', name: '?', version: '?' })})`,
  );
  return {
    path: '/manifests',
    message: `a set needs exactly one parent, but ${list.join(', ')} are referenced by no other manifest: send each child only with the parent that refers to it`,
  };
}

/** Canonical JSON of a validated manifest: equal for two imports that mean the same update. */
export function canonicalManifestJson(manifest: ImportManifest): string {
  return canonicalJson(manifest);
}

/** Whether two validated manifests are identical (a repeated import of the same update is then harmless). */
export function isSameManifest(a: ImportManifest, b: ImportManifest): boolean {
  return canonicalManifestJson(a) === canonicalManifestJson(b);
}
