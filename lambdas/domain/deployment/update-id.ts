import { z } from 'zod';

/**
 * An update's identity, with ADU's import rules (ADU-REFERENCE §6): provider and name 1-64 of
 * `[a-zA-Z0-9.-]`, version of 2 to 4 numeric parts, each at most 2147483647.
 */
const namePart = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[a-zA-Z0-9.-]+$/, 'must be 1-64 characters of a-z A-Z 0-9 . -');

const MAX_VERSION_PART = 2_147_483_647;

export const updateVersionSchema = z
  .string()
  .regex(/^\d+(?:\.\d+){1,3}$/, 'must have 2 to 4 numeric parts, as in 1.2 or 1.2.3.4')
  .refine((version) => version.split('.').every((part) => Number(part) <= MAX_VERSION_PART), {
    message: `each version part must be at most ${MAX_VERSION_PART}`,
  });

export const updateIdSchema = z.strictObject({
  provider: namePart,
  name: namePart,
  version: updateVersionSchema,
});

export type UpdateId = z.output<typeof updateIdSchema>;

/** Two update ids name the same update (ADU compares all three parts exactly). */
export function sameUpdateId(a: UpdateId, b: UpdateId): boolean {
  return a.provider === b.provider && a.name === b.name && a.version === b.version;
}

/** `provider/name/version`, for messages and logs. */
export function formatUpdateId(id: UpdateId): string {
  return `${id.provider}/${id.name}/${id.version}`;
}
