/**
 * Expected failures are values, not exceptions (STYLE.md): a function that can fail for a reason
 * the caller must handle returns a `Result`. Exceptions stay for bugs.
 */
export type Ok<T> = { readonly ok: true; readonly value: T };
export type Err<E> = { readonly ok: false; readonly error: E };
export type Result<T, E> = Ok<T> | Err<E>;

export function ok<T>(value: T): Ok<T> {
  return { ok: true, value };
}

export function err<E>(error: E): Err<E> {
  return { ok: false, error };
}

/** Applies `fn` to the value of a success; passes a failure through unchanged. */
export function mapResult<T, U, E>(result: Result<T, E>, fn: (value: T) => U): Result<U, E> {
  return result.ok ? ok(fn(result.value)) : result;
}

/** Chains a step that can fail itself; the first failure wins. */
export function andThen<T, U, E>(result: Result<T, E>, fn: (value: T) => Result<U, E>): Result<U, E> {
  return result.ok ? fn(result.value) : result;
}

/**
 * One fault found in an input: `path` is a JSON pointer (RFC 6901) into the input, "" for the
 * whole document; `message` says what is wrong in words a person can act on.
 */
export interface Fault {
  readonly path: string;
  readonly message: string;
}

/** Escapes one JSON-pointer reference token (RFC 6901: `~` → `~0`, `/` → `~1`). */
export function escapePointerToken(token: string | number): string {
  return String(token).replaceAll('~', '~0').replaceAll('/', '~1');
}

/** Builds a JSON pointer from path segments: `pointer(['instructions','steps',2])` → `/instructions/steps/2`. */
export function pointer(segments: readonly (string | number)[]): string {
  return segments.map((s) => `/${escapePointerToken(s)}`).join('');
}
