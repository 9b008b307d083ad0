/**
 * Opaque pagination tokens for the API: a DynamoDB `LastEvaluatedKey` (plus, for listings that
 * walk several partitions, the partition's position) as base64url JSON. Decoding checks the shape
 * against the attributes the caller expects, so a forged or mangled token is a value, not a crash.
 */
export type PageKey = Readonly<Record<string, string>>;

export interface PagePosition {
  /** Index of the partition being walked, for listings over several (0 otherwise). */
  readonly part: number;
  readonly key?: PageKey;
}

export function encodePageToken(position: PagePosition): string {
  return Buffer.from(JSON.stringify({ p: position.part, k: position.key }), 'utf8').toString('base64url');
}

/** The position, or undefined when the token is not one this listing issued (`keyNames` are its key attributes). */
export function decodePageToken(
  token: string,
  keyNames: readonly string[],
  parts = 1,
): PagePosition | undefined {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const { p, k } = value as { p?: unknown; k?: unknown };
  if (typeof p !== 'number' || !Number.isInteger(p) || p < 0 || p >= parts) return undefined;
  if (k === undefined) return { part: p };
  if (typeof k !== 'object' || k === null) return undefined;
  const entries = Object.entries(k);
  const valid =
    entries.length === keyNames.length &&
    entries.every(([name, v]) => keyNames.includes(name) && typeof v === 'string');
  return valid ? { part: p, key: k as PageKey } : undefined;
}
