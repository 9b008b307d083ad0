import type { z } from 'zod';
import { compatibilitySetSchema } from '../manifest/import-schema.ts';

/**
 * One compatibility property set, the same shape and limits as in update manifests (1-5
 * properties). A device matches a set when it reports every property of the set with exactly
 * that value (case-sensitive: we do not guess at a normalisation the device did not ask for).
 */
export { compatibilitySetSchema };
export type CompatibilitySet = z.output<typeof compatibilitySetSchema>;

export type DeviceProperties = Readonly<Record<string, string>>;

/** True when the device has every property of `set` with the same value. */
export function matchesCompatibilitySet(device: DeviceProperties, set: CompatibilitySet): boolean {
  return Object.entries(set).every(([name, value]) => Object.hasOwn(device, name) && device[name] === value);
}

/**
 * True when the device matches at least one of the sets (sets are alternatives, properties within a
 * set all required). No sets at all means no constraint.
 */
export function isCompatible(device: DeviceProperties, sets: readonly CompatibilitySet[]): boolean {
  return sets.length === 0 || sets.some((set) => matchesCompatibilitySet(device, set));
}

/** True when both name the same properties with the same values (order aside). */
export function sameProperties(a: DeviceProperties, b: DeviceProperties): boolean {
  const names = Object.keys(a);
  return (
    names.length === Object.keys(b).length &&
    names.every((name) => Object.hasOwn(b, name) && b[name] === a[name])
  );
}
