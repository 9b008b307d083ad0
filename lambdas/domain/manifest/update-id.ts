import { z } from 'zod';
import { limits, providerOrNamePattern, versionPattern } from './limits.ts';

const providerOrName = (field: 'provider' | 'name') =>
  z
    .string({ error: (i) => (i.input === undefined ? `${field} is required` : `${field} must be a string`) })
    .min(limits.providerOrNameLength.min, { error: `${field} must not be empty` })
    .max(limits.providerOrNameLength.max, {
      error: `${field} is too long: at most ${limits.providerOrNameLength.max} characters`,
    })
    .regex(providerOrNamePattern, {
      error: `${field} may contain only letters, digits, '.' and '-'`,
    });

/** Version: 2 to 4 dot-separated numbers, each 0..2147483647 (leading zeros are not significant). */
export const versionSchema = z
  .string({ error: (i) => (i.input === undefined ? 'version is required' : 'version must be a string') })
  .regex(versionPattern, {
    error: 'version must be 2 to 4 dot-separated numbers, e.g. "1.0" or "2024.1.15"',
    // The checks below parse the parts as BigInt, which throws on a non-numeric version.
    abort: true,
  })
  .refine((v) => versionParts(v).length <= limits.versionParts.max, {
    error: `version has too many parts: at most ${limits.versionParts.max}, e.g. "1.2.3.4"`,
    abort: true,
  })
  .refine((v) => versionParts(v).every((p) => p <= BigInt(limits.versionPartMax)), {
    error: `each version part must be at most ${limits.versionPartMax}`,
  });

export const updateIdSchema = z.strictObject(
  { provider: providerOrName('provider'), name: providerOrName('name'), version: versionSchema },
  { error: (i) => (i.input === undefined ? 'updateId is required' : 'updateId must be an object') },
);

/** ADU update identity: who made it (provider), which class of update (name), which version. */
export type UpdateId = z.infer<typeof updateIdSchema>;

function versionParts(version: string): bigint[] {
  return version.split('.').map((p) => BigInt(p));
}

/** The version with leading zeros dropped from every part ("1.02" → "1.2"), as ADU compares them. */
export function normalizeVersion(version: string): string {
  return version
    .split('.')
    .map((p) => p.replace(/^0+(?=\d)/, ''))
    .join('.');
}

/**
 * Canonical string key of an update identity, for maps, store keys and duplicate checks:
 * `provider/name/version`, provider and name lower-cased, version normalised. Two ids with the
 * same key are the same update (ADR 0001 explains why identity is case-insensitive).
 * `/` cannot occur inside the parts (their character set excludes it), so the key is unambiguous.
 */
export function updateIdKey(id: UpdateId): string {
  return `${id.provider.toLowerCase()}/${id.name.toLowerCase()}/${normalizeVersion(id.version)}`;
}

/** `provider/name/version` as the operator wrote it, for messages. */
export function formatUpdateId(id: UpdateId): string {
  return `${id.provider}/${id.name}/${id.version}`;
}

/** Compares two versions numerically part by part (missing parts count as 0): -1, 0 or 1. */
export function compareVersions(a: string, b: string): -1 | 0 | 1 {
  const pa = versionParts(a);
  const pb = versionParts(b);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? 0n;
    const y = pb[i] ?? 0n;
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}
