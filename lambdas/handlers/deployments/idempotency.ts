/**
 * `Idempotency-Key` on `POST /deployments` (the IETF httpapi draft's header): a client that retries
 * a create after a timeout gets the deployment its first attempt made, never a second rollout to
 * the same fleet. The key names the deployment (its id is derived from the key), so the store's
 * "one id, one deployment" condition is the guard, with no extra item or read on the normal path;
 * the request's hash, stored with the deployment, tells a true replay from a reused key.
 */
import { createHash } from 'node:crypto';
import { canonicalJson } from '../../domain/manifest/index.ts';
import { err, ok, type Result } from '../../domain/result.ts';
import { type Problem, problem } from '../../http/problem.ts';

export const IDEMPOTENCY_HEADER = 'idempotency-key';
/** Printable ASCII without spaces or quotes, as the draft's sf-string allows and logs can carry. */
const KEY_PATTERN = /^[A-Za-z0-9._:~+/=-]{1,128}$/;

export interface Idempotency {
  readonly key: string;
  /** The deployment id this key creates, whoever asks first. */
  readonly deploymentId: string;
  readonly requestHash: string;
}

/** The key from the request headers (any case), or undefined without one; 400 for a malformed one. */
export function idempotencyOf(
  headers: Readonly<Record<string, string | undefined>> | undefined,
  body: unknown,
): Result<Idempotency | undefined, Problem> {
  const found = Object.entries(headers ?? {}).find(([name]) => name.toLowerCase() === IDEMPOTENCY_HEADER);
  const key = found?.[1];
  if (key === undefined) return ok(undefined);
  if (!KEY_PATTERN.test(key)) {
    return err(
      problem(
        'IDEMPOTENCY_KEY_INVALID',
        'Idempotency-Key must be 1 to 128 characters of A-Z a-z 0-9 . _ : ~ + / = -',
        [{ path: '/headers/idempotency-key', message: 'malformed' }],
      ),
    );
  }
  return ok({ key, deploymentId: deploymentIdForKey(key), requestHash: requestHashOf(body) });
}

/** A UUID-shaped id from the key (SHA-256, version nibble 5-like): the same key, the same deployment. */
export function deploymentIdForKey(key: string): string {
  const hex = createHash('sha256').update(`shadow-ota/deployment/${key}`).digest('hex');
  const variant = ((Number.parseInt(hex.charAt(16), 16) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-5${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

/** Key order and spacing do not make two requests different. */
export function requestHashOf(body: unknown): string {
  return createHash('sha256').update(canonicalJson(body)).digest('base64');
}
