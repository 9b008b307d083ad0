/** JSON values as the shadow service stores them, and the few helpers every shadow module needs. */
export type Json = null | boolean | number | string | Json[] | JsonObject;
export interface JsonObject {
  [key: string]: Json;
}

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function isEmptyObject(value: JsonObject): boolean {
  for (const _ in value) return false;
  return true;
}

/** Structural equality of two JSON values (key order does not matter, array order does). */
export function jsonEquals(a: Json | undefined, b: Json | undefined): boolean {
  if (a === b) return true;
  if (a === null || b === null || a === undefined || b === undefined) return false;
  if (typeof a !== 'object' || typeof b !== 'object') return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    return a.every((item, i) => jsonEquals(item, b[i]));
  }
  if (Array.isArray(b)) return false;
  const aKeys = Object.keys(a);
  if (aKeys.length !== Object.keys(b).length) return false;
  return aKeys.every((key) => key in b && jsonEquals(a[key], b[key]));
}

/** Nesting depth: a scalar is 0, `{a: 1}` is 1, `{a: {b: 1}}` is 2; arrays count as a level. */
export function nestingDepth(value: Json): number {
  if (value === null || typeof value !== 'object') return 0;
  let deepest = 0;
  const children = Array.isArray(value) ? value : Object.values(value);
  for (const child of children) deepest = Math.max(deepest, nestingDepth(child));
  return deepest + 1;
}
