/**
 * Device Shadow semantics as AWS IoT documents them (../../../../shared/IOT-CORE.md): request
 * validation, merge with `null` deletes, per-leaf metadata, delta, versions, limits and AWS's error
 * codes and messages. Pure: no I/O, the clock comes in as `nowSeconds`.
 */
import { err, ok, pointer, type Result } from '../../../lambdas/domain/result.ts';
import { isEmptyObject, isJsonObject, type Json, type JsonObject, jsonEquals, nestingDepth } from './json.ts';

export const shadowLimits = {
  /** desired + reported after the merge, metadata excluded. */
  maxStateBytes: 8 * 1024,
  maxDepth: 6,
  maxClientTokenBytes: 64,
  /** A shadow re-created within this time continues the deleted one's version. */
  versionMemorySeconds: 48 * 3600,
} as const;

/** AWS's shadow error: HTTP-like `code`, AWS's `message`; `path` points into the request. */
export interface ShadowError {
  readonly code: 400 | 401 | 403 | 404 | 409 | 413 | 415 | 429 | 500;
  readonly message: string;
  readonly path: string;
}

export const shadowErrors = {
  invalidJson: { code: 400, message: 'Invalid JSON' },
  missingState: { code: 400, message: 'Missing required node: state' },
  stateNotObject: { code: 400, message: 'State node must be an object' },
  desiredNotObject: { code: 400, message: 'Desired node must be an object' },
  reportedNotObject: { code: 400, message: 'Reported node must be an object' },
  invalidVersion: { code: 400, message: 'Invalid version' },
  invalidClientToken: { code: 400, message: 'Invalid clientToken' },
  invalidNode: { code: 400, message: 'State contains an invalid node' },
  tooDeep: {
    code: 400,
    message: `JSON contains too many levels of nesting; maximum is ${shadowLimits.maxDepth}`,
  },
  versionConflict: { code: 409, message: 'Version conflict' },
  tooLarge: { code: 413, message: 'The payload exceeds the maximum size allowed' },
  unsupportedEncoding: {
    code: 415,
    message: 'Unsupported documented encoding; supported encoding is UTF-8',
  },
  throttled: { code: 429, message: 'Too Many Requests' },
} as const satisfies Record<string, Omit<ShadowError, 'path'>>;

function fail(kind: keyof typeof shadowErrors, path = ''): { ok: false; error: ShadowError } {
  return err({ ...shadowErrors[kind], path });
}

export function noShadowError(shadowName: string): ShadowError {
  return { code: 404, message: `No shadow exists with name: '${shadowName}'`, path: '' };
}

export interface ShadowSections {
  readonly desired?: JsonObject;
  readonly reported?: JsonObject;
}

/** A stored shadow: metadata mirrors state, with `{timestamp}` at every leaf. */
export interface StoredShadow {
  readonly state: ShadowSections;
  readonly metadata: ShadowSections;
  readonly version: number;
}

/** What is left of a deleted shadow: enough to continue its version if it comes back soon. */
export interface ShadowTombstone {
  readonly version: number;
  readonly deletedAt: number;
}

type Section = 'desired' | 'reported';
const sections: readonly Section[] = ['desired', 'reported'];

/** A validated update request; `state: null` clears all state (the shadow itself survives). */
export interface UpdateRequest {
  readonly state: { readonly desired?: JsonObject | null; readonly reported?: JsonObject | null } | null;
  readonly clientToken?: string;
  readonly version?: number;
}

/** A validated get or delete request (its payload may be empty). */
export interface PlainRequest {
  readonly clientToken?: string;
  readonly version?: number;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Decodes and parses a request payload: 415 when not UTF-8, 400 when not a JSON object. */
export function parsePayload(
  payload: Uint8Array,
  allowEmpty: boolean,
): Result<Record<string, unknown>, ShadowError> {
  let text: string;
  try {
    text = utf8.decode(payload);
  } catch {
    return fail('unsupportedEncoding');
  }
  if (allowEmpty && text.trim() === '') return ok({});
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return fail('invalidJson');
  }
  return isJsonObject(parsed) ? ok(parsed) : fail('invalidJson');
}

function validateCommon(body: Record<string, unknown>): Result<PlainRequest, ShadowError> {
  const { clientToken, version } = body;
  if (clientToken !== undefined) {
    const valid =
      typeof clientToken === 'string' && Buffer.byteLength(clientToken) <= shadowLimits.maxClientTokenBytes;
    if (!valid) return fail('invalidClientToken', '/clientToken');
  }
  if (version !== undefined) {
    if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 0) {
      return fail('invalidVersion', '/version');
    }
  }
  return ok({
    ...(typeof clientToken === 'string' ? { clientToken } : {}),
    ...(typeof version === 'number' ? { version } : {}),
  });
}

export function parsePlainRequest(payload: Uint8Array): Result<PlainRequest, ShadowError> {
  const body = parsePayload(payload, true);
  return body.ok ? validateCommon(body.value) : body;
}

/** The clientToken of a request that failed validation, when one can still be read (AWS echoes it). */
export function readClientToken(payload: Uint8Array): string | undefined {
  try {
    const body: unknown = JSON.parse(utf8.decode(payload));
    if (isJsonObject(body) && typeof body.clientToken === 'string') return body.clientToken;
  } catch {
    // not JSON: no token to echo
  }
  return undefined;
}

function findNullInArray(value: Json, path: (string | number)[]): string | undefined {
  if (Array.isArray(value)) {
    for (const [i, item] of value.entries()) {
      if (item === null) return pointer([...path, i]);
      const found = findNullInArray(item, [...path, i]);
      if (found) return found;
    }
  } else if (isJsonObject(value)) {
    for (const [key, item] of Object.entries(value)) {
      const found = findNullInArray(item, [...path, key]);
      if (found) return found;
    }
  }
  return undefined;
}

function validateSection(value: unknown, section: Section): Result<JsonObject | null, ShadowError> {
  const path = ['state', section];
  if (value === null) return ok(null);
  if (!isJsonObject(value))
    return fail(section === 'desired' ? 'desiredNotObject' : 'reportedNotObject', pointer(path));
  if (nestingDepth(value) > shadowLimits.maxDepth) return fail('tooDeep', pointer(path));
  // AWS refuses null inside arrays: null means "delete" and an array element cannot be deleted.
  const nullAt = findNullInArray(value, path);
  if (nullAt) return fail('invalidNode', nullAt);
  return ok(value);
}

export function parseUpdateRequest(payload: Uint8Array): Result<UpdateRequest, ShadowError> {
  const body = parsePayload(payload, false);
  if (!body.ok) return body;
  const common = validateCommon(body.value);
  if (!common.ok) return common;
  if (!('state' in body.value)) return fail('missingState', '/state');
  const state = body.value.state;
  if (state === null) return ok({ ...common.value, state: null });
  if (!isJsonObject(state)) return fail('stateNotObject', '/state');
  const parsed: { desired?: JsonObject | null; reported?: JsonObject | null } = {};
  for (const key of Object.keys(state)) {
    if (key !== 'desired' && key !== 'reported') return fail('invalidNode', pointer(['state', key]));
    const section = validateSection(state[key], key);
    if (!section.ok) return section;
    parsed[key] = section.value;
  }
  return ok({ ...common.value, state: parsed });
}

/** Metadata for the leaves of a request value: `{timestamp}` per leaf, per array element. */
function leafMetadata(value: Json, timestamp: number): Json {
  if (Array.isArray(value)) return value.map((item) => leafMetadata(item, timestamp));
  if (isJsonObject(value)) return requestMetadata(value, timestamp);
  return { timestamp };
}

function requestMetadata(value: JsonObject, timestamp: number): JsonObject {
  const out: JsonObject = {};
  for (const [key, item] of Object.entries(value)) {
    out[key] = item === null ? { timestamp } : leafMetadata(item, timestamp);
  }
  return out;
}

interface Merged {
  readonly state: JsonObject | undefined;
  readonly metadata: JsonObject | undefined;
}

/**
 * Merges `patch` into a section, metadata alongside: objects merge key by key, `null` deletes,
 * arrays and scalars replace. Objects left empty disappear. Inputs are never mutated, so the
 * previous document stays intact for `/documents`.
 */
function mergeSection(
  state: JsonObject | undefined,
  metadata: JsonObject | undefined,
  patch: JsonObject,
  timestamp: number,
): Merged {
  const nextState: JsonObject = { ...state };
  const nextMeta: JsonObject = { ...metadata };
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) {
      delete nextState[key];
      delete nextMeta[key];
    } else if (isJsonObject(value)) {
      const current = nextState[key];
      const wasObject = isJsonObject(current);
      const currentMeta = nextMeta[key];
      const merged = mergeSection(
        wasObject ? current : undefined,
        wasObject && isJsonObject(currentMeta) ? currentMeta : undefined,
        value,
        timestamp,
      );
      if (merged.state === undefined) {
        delete nextState[key];
        delete nextMeta[key];
      } else {
        nextState[key] = merged.state;
        nextMeta[key] = merged.metadata ?? {};
      }
    } else {
      nextState[key] = value;
      nextMeta[key] = leafMetadata(value, timestamp);
    }
  }
  return isEmptyObject(nextState)
    ? { state: undefined, metadata: undefined }
    : { state: nextState, metadata: nextMeta };
}

/** Every leaf of `desired` that differs from `reported`; whole arrays when they differ. */
export function computeDelta(
  desired: JsonObject | undefined,
  reported: JsonObject | undefined,
): JsonObject | undefined {
  if (!desired) return undefined;
  const delta: JsonObject = {};
  for (const [key, want] of Object.entries(desired)) {
    const have = reported?.[key];
    if (isJsonObject(want)) {
      if (isJsonObject(have)) {
        const nested = computeDelta(want, have);
        if (nested) delta[key] = nested;
      } else {
        delta[key] = want;
      }
    } else if (!jsonEquals(want, have)) {
      delta[key] = want;
    }
  }
  return isEmptyObject(delta) ? undefined : delta;
}

/** The desired metadata of the delta's leaves. */
function deltaMetadata(delta: JsonObject, desiredMeta: JsonObject | undefined): JsonObject {
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(delta)) {
    const meta = desiredMeta?.[key];
    if (meta === undefined) continue;
    out[key] = isJsonObject(value) && isJsonObject(meta) ? deltaMetadata(value, meta) : meta;
  }
  return out;
}

/** Paths a request wrote: `true` where it set a leaf, an array or null; nested where it set an object. */
type Touched = true | { [key: string]: Touched };

function touchedPaths(into: { [key: string]: Touched }, patch: JsonObject): void {
  for (const [key, value] of Object.entries(patch)) {
    const existing = into[key];
    if (existing === true) continue;
    if (isJsonObject(value)) {
      const nested: { [key: string]: Touched } = existing ?? {};
      touchedPaths(nested, value);
      into[key] = nested;
    } else {
      into[key] = true;
    }
  }
}

/** The part of a delta that lies on paths the request wrote (AWS's delta "contains only the changes requested"). */
function deltaOnTouchedPaths(delta: JsonObject, touched: { [key: string]: Touched }): JsonObject | undefined {
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(delta)) {
    const mark = touched[key];
    if (mark === undefined) continue;
    if (mark === true || !isJsonObject(value)) {
      out[key] = value;
    } else {
      const nested = deltaOnTouchedPaths(value, mark);
      if (nested) out[key] = nested;
    }
  }
  return isEmptyObject(out) ? undefined : out;
}

function sectionsOf(desired: JsonObject | undefined, reported: JsonObject | undefined): ShadowSections {
  return { ...(desired ? { desired } : {}), ...(reported ? { reported } : {}) };
}

function withToken<T extends object>(doc: T, clientToken: string | undefined): T & { clientToken?: string } {
  return clientToken === undefined ? doc : { ...doc, clientToken };
}

export interface UpdateOutcome {
  readonly shadow: StoredShadow;
  /** Payload of `/update/accepted` (and the HTTP response body). */
  readonly accepted: JsonObject;
  /** Payload of `/update/delta`, when the update left a difference on the paths it wrote. */
  readonly delta?: JsonObject;
  /** Payload of `/update/documents`. */
  readonly documents: JsonObject;
}

export interface ShadowSlot {
  readonly shadow?: StoredShadow;
  readonly tombstone?: ShadowTombstone;
}

/** The version a new or updated shadow continues from: its own, or a recently deleted one's. */
function baseVersion(slot: ShadowSlot, nowSeconds: number): number {
  if (slot.shadow) return slot.shadow.version;
  const tomb = slot.tombstone;
  if (tomb && nowSeconds - tomb.deletedAt <= shadowLimits.versionMemorySeconds) return tomb.version;
  return 0;
}

function snapshot(shadow: StoredShadow): JsonObject {
  return { state: { ...shadow.state }, metadata: { ...shadow.metadata }, version: shadow.version };
}

export function applyUpdate(
  slot: ShadowSlot,
  request: UpdateRequest,
  nowSeconds: number,
): Result<UpdateOutcome, ShadowError> {
  const current = slot.shadow;
  const version = baseVersion(slot, nowSeconds);
  if (request.version !== undefined && request.version !== version)
    return fail('versionConflict', '/version');

  const next = mergeState(current, request, nowSeconds);
  if (Buffer.byteLength(JSON.stringify(next.state)) > shadowLimits.maxStateBytes)
    return fail('tooLarge', '/state');

  const shadow: StoredShadow = { ...next, version: version + 1 };
  const clientToken = request.clientToken;
  const requestState = request.state;
  const acceptedMetadata: JsonObject = {};
  if (requestState) {
    for (const section of sections) {
      const patch = requestState[section];
      if (patch) acceptedMetadata[section] = requestMetadata(patch, nowSeconds);
    }
  }
  const accepted = withToken(
    { state: requestState, metadata: acceptedMetadata, version: shadow.version, timestamp: nowSeconds },
    clientToken,
  );
  const documents = withToken(
    { previous: current ? snapshot(current) : null, current: snapshot(shadow), timestamp: nowSeconds },
    clientToken,
  );
  const delta = updateDelta(shadow, request);
  return ok({
    shadow,
    accepted,
    documents,
    ...(delta
      ? {
          delta: withToken(
            {
              version: shadow.version,
              timestamp: nowSeconds,
              state: delta,
              metadata: deltaMetadata(delta, shadow.metadata.desired),
            },
            clientToken,
          ),
        }
      : {}),
  });
}

function mergeState(
  current: StoredShadow | undefined,
  request: UpdateRequest,
  nowSeconds: number,
): Omit<StoredShadow, 'version'> {
  if (request.state === null) return { state: {}, metadata: {} };
  const state: { desired?: JsonObject; reported?: JsonObject } = { ...current?.state };
  const metadata: { desired?: JsonObject; reported?: JsonObject } = { ...current?.metadata };
  for (const section of sections) {
    const patch = request.state[section];
    if (patch === undefined) continue;
    const merged =
      patch === null
        ? { state: undefined, metadata: undefined }
        : mergeSection(state[section], metadata[section], patch, nowSeconds);
    if (merged.state === undefined) {
      delete state[section];
      delete metadata[section];
    } else {
      state[section] = merged.state;
      metadata[section] = merged.metadata ?? {};
    }
  }
  return { state, metadata };
}

function updateDelta(shadow: StoredShadow, request: UpdateRequest): JsonObject | undefined {
  const delta = computeDelta(shadow.state.desired, shadow.state.reported);
  if (!delta || request.state === null) return undefined;
  const touched: { [key: string]: Touched } = {};
  for (const section of sections) {
    const patch = request.state[section];
    // A whole section set to null touches every path of the delta.
    if (patch === null) return delta;
    if (patch) touchedPaths(touched, patch);
  }
  return deltaOnTouchedPaths(delta, touched);
}

/** The GET response: full state with `delta`, metadata, version. */
export function getDocument(shadow: StoredShadow, nowSeconds: number, clientToken?: string): JsonObject {
  const delta = computeDelta(shadow.state.desired, shadow.state.reported);
  return withToken(
    {
      state: { ...sectionsOf(shadow.state.desired, shadow.state.reported), ...(delta ? { delta } : {}) },
      metadata: { ...shadow.metadata },
      version: shadow.version,
      timestamp: nowSeconds,
    },
    clientToken,
  );
}

export interface DeleteOutcome {
  readonly tombstone: ShadowTombstone;
  readonly accepted: JsonObject;
}

export function applyDelete(
  shadow: StoredShadow | undefined,
  shadowName: string,
  request: PlainRequest,
  nowSeconds: number,
): Result<DeleteOutcome, ShadowError> {
  if (!shadow) return err(noShadowError(shadowName));
  if (request.version !== undefined && request.version !== shadow.version)
    return fail('versionConflict', '/version');
  return ok({
    tombstone: { version: shadow.version, deletedAt: nowSeconds },
    accepted: withToken({ version: shadow.version, timestamp: nowSeconds }, request.clientToken),
  });
}

/** The error document AWS sends on `/rejected` and as an HTTP error body. */
export function errorDocument(error: ShadowError, nowSeconds: number, clientToken?: string): JsonObject {
  return withToken({ code: error.code, message: error.message, timestamp: nowSeconds }, clientToken);
}
