import type { z } from 'zod';
import { type Fault, pointer } from '../result.ts';

/**
 * Turns every zod issue into a `Fault` with a JSON pointer. An unrecognized key is reported at
 * the key itself (`/policy/ratePerMinut`), not at its parent, so the operator sees which field to fix.
 */
export function faultsFromZod(error: z.ZodError): Fault[] {
  return error.issues.flatMap((issue): Fault[] => {
    const path = issue.path.map((segment) => (typeof segment === 'number' ? segment : String(segment)));
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => ({ path: pointer([...path, key]), message: 'unknown field' }));
    }
    return [{ path: pointer(path), message: issue.message }];
  });
}
