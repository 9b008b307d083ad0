import type { z } from 'zod';
import { type Fault, pointer } from '../result.ts';

export type { Fault } from '../result.ts';

/** Every property name the manifests know, to suggest the right spelling of an unknown key. */
const knownProperties = [
  '$schema',
  'updateId',
  'provider',
  'name',
  'version',
  'isDeployable',
  'compatibility',
  'instructions',
  'steps',
  'type',
  'description',
  'handler',
  'files',
  'handlerProperties',
  'installedCriteria',
  'filename',
  'sizeInBytes',
  'hashes',
  'sha256',
  'properties',
  'relatedFiles',
  'downloadHandler',
  'id',
  'createdDateTime',
  'manifestVersion',
  'detachedManifestFileId',
];

function spellingHint(key: string): string {
  const match = knownProperties.find((k) => k !== key && k.toLowerCase() === key.toLowerCase());
  return match ? ` (did you mean "${match}"?)` : '';
}

function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

function lastSegment(path: readonly PropertyKey[]): string {
  const last = path.at(-1);
  return last === undefined ? 'the document' : typeof last === 'number' ? `item ${last}` : String(last);
}

/**
 * Turns zod issues into faults with JSON-pointer paths under `base`. Checks in our schemas carry
 * their own messages; the generic cases (missing, wrong type, unknown key) get one here.
 */
export function faultsFromIssues(
  issues: readonly z.core.$ZodIssue[],
  base: readonly (string | number)[] = [],
): Fault[] {
  return issues.flatMap((issue): Fault[] => {
    const segments = [...base, ...issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p))];
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => ({
        path: pointer([...segments, key]),
        message: `unknown property "${key}"${spellingHint(key)}: remove it`,
      }));
    }
    if (issue.code === 'invalid_type' && issue.message.startsWith('Invalid input')) {
      const what = lastSegment(issue.path);
      const message =
        issue.input === undefined
          ? `${what} is required`
          : `${what} must be ${issue.expected === 'object' ? 'an object' : issue.expected === 'array' ? 'an array' : `a ${issue.expected}`}, not ${describeType(issue.input)}`;
      return [{ path: pointer(segments), message }];
    }
    return [{ path: pointer(segments), message: issue.message }];
  });
}

/** Orders faults by path so reports are stable and easy to read; duplicates are dropped. */
export function sortFaults(faults: readonly Fault[]): Fault[] {
  const seen = new Set<string>();
  return faults
    .filter((f) => {
      const key = `${f.path}\n${f.message}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    })
    .sort((a, b) => comparePaths(a.path, b.path));
}

function comparePaths(a: string, b: string): number {
  const pa = a.split('/');
  const pb = b.split('/');
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const x = pa[i] ?? '';
    const y = pb[i] ?? '';
    if (x === y) continue;
    const nx = Number(x);
    const ny = Number(y);
    if (x !== '' && y !== '' && Number.isInteger(nx) && Number.isInteger(ny)) return nx - ny;
    return x < y ? -1 : 1;
  }
  return pa.length - pb.length;
}
