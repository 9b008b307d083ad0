import type { Fault } from '../domain/result.ts';

/**
 * Every error code the operator API answers with, and its HTTP status: the one table the edge
 * consults (STYLE.md). Codes are a stable interface for clients; statuses follow from them.
 */
export const problemStatus = {
  BAD_JSON: 400,
  BAD_REQUEST: 400,
  MANIFEST_INVALID: 400,
  REFERENCE_NOT_FOUND: 400,
  INVALID_NEXT_TOKEN: 400,
  ROUTE_NOT_FOUND: 404,
  UPDATE_NOT_FOUND: 404,
  UPDATE_CONFLICT: 409,
  UPDATE_IN_USE: 409,
  UPDATE_NOT_PENDING: 409,
  FILE_MISSING: 409,
  FILE_SIZE_MISMATCH: 409,
  FILE_HASH_MISMATCH: 409,
  FILES_NOT_VERIFIED: 409,
  DEPLOYMENT_REQUEST_INVALID: 400,
  IDEMPOTENCY_KEY_INVALID: 400,
  /** The key was used before with another request body (IETF httpapi idempotency draft: 422). */
  IDEMPOTENCY_KEY_REUSED: 422,
  DEPLOYMENT_NOT_FOUND: 404,
  EXECUTION_NOT_FOUND: 404,
  DEVICE_NOT_FOUND: 404,
  UPDATE_NOT_READY: 404,
  UPDATE_NOT_DEPLOYABLE: 409,
  DEPLOYMENT_NOT_ACTIVE: 409,
  DEPLOYMENT_CONFLICT: 409,
  NOT_CANCELABLE: 409,
  NOT_RETRYABLE: 409,
  NOTHING_TO_RETRY: 409,
  PAYLOAD_TOO_LARGE: 413,
  INTERNAL: 500,
} as const;

export type ProblemCode = keyof typeof problemStatus;

/** The one error body the API renders: `{ code, message, errors?: [{ path, message }] }`. */
export interface Problem {
  readonly code: ProblemCode;
  readonly message: string;
  readonly errors?: readonly Fault[];
}

export function problem(code: ProblemCode, message: string, errors?: readonly Fault[]): Problem {
  return errors === undefined || errors.length === 0 ? { code, message } : { code, message, errors };
}

export function statusOf(code: ProblemCode): number {
  return problemStatus[code];
}
