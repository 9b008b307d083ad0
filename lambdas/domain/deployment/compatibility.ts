import { z } from 'zod';

/**
 * One compatibility property set, as in ADU manifests (ADU-REFERENCE §6): 1-5 properties, names
 * 1-32 characters, values strings of 1-64 characters. A device matches a set when it reports
 * every property of the set with exactly that value (case-sensitive: we do not guess at
 * normalisation a device did not ask for).
 */
export const compatibilitySetSchema = z
  .record(z.string().min(1).max(32), z.string().min(1).max(64))
  .refine((set) => Object.keys(set).length >= 1 && Object.keys(set).length <= 5, {
    message: 'must have 1 to 5 properties',
  });

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
