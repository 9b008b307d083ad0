import type { UpdateId } from '../manifest/index.ts';
import { err, ok, type Result } from '../result.ts';

/** The named shadow the whole protocol lives in. */
export const OTA_SHADOW_NAME = 'ota';

/** AWS counts desired + reported (metadata excluded) against 8 KB; an update past it is refused with 413. */
export const SHADOW_STATE_LIMIT_BYTES = 8192;
/** AWS refuses nesting deeper than 6 levels in desired or reported. */
export const SHADOW_MAX_DEPTH = 6;
/**
 * What the agent may use for `reported.ota`: state, ids, progress, result codes per step,
 * compatibility. Result codes of ten steps fit; their detail texts are cut to make room
 * (`fitReportedOta`).
 */
export const REPORTED_OTA_BUDGET_BYTES = 1792;
/**
 * Room for the `{"desired":{"ota":...},"reported":{"ota":...}}` envelopes (about 40 bytes) and a
 * short key besides `ota`: the shadow is ours alone, so 192 bytes (it was 256 before `job`).
 */
export const SHADOW_ENVELOPE_MARGIN_BYTES = 192;
/**
 * What `desired.ota` may use: whatever the reported budget and the margin leave of the 8 KB. It
 * holds a manifest inlined at the manifest module's limit (3 KB) with the JWS for 20 files (2.8 KB).
 */
export const DESIRED_OTA_BUDGET_BYTES =
  SHADOW_STATE_LIMIT_BYTES - REPORTED_OTA_BUDGET_BYTES - SHADOW_ENVELOPE_MARGIN_BYTES;

export type OtaAction = 'apply' | 'cancel';

/**
 * An update manifest as it travels in the shadow (lambdas/domain/manifest `toShadowManifest`):
 * its exact canonical text, either the full manifest or, when detached, the mini manifest whose one
 * file is the full manifest (file id, size, SHA-256: a reference with no URL, fetched through the
 * same download authorization as the update's files).
 */
export interface ManifestText {
  readonly kind: 'inline' | 'detached';
  readonly text: string;
}

/**
 * `desired.ota`. `manifest` is text, not an object, so the shadow service cannot reorder keys or
 * reformat numbers under the signature. `signature` is the compact JWS made by
 * lambdas/domain/signing; it binds the full manifest's hash, every file's size and hash, and the
 * deployment's rollback flag, so the device need trust nothing else here.
 */
export interface DesiredOta {
  readonly deploymentId: string;
  readonly attempt: number;
  readonly action: OtaAction;
  readonly updateId: UpdateId;
  readonly manifest: string;
  readonly signature: string;
  /**
   * The ids again, under a key the device never reports. A delta leaves out every desired leaf
   * equal to its reported twin, and the agent echoes `deploymentId`, `attempt` and `updateId`: a
   * new attempt, or a new deployment of the same update, would arrive without them and cost the
   * device a shadow GET (a shadow operation and two messages). `job` is always in the delta.
   */
  readonly job: DesiredJob;
}

export interface DesiredJob {
  readonly deploymentId: string;
  readonly attempt: number;
  readonly updateId: UpdateId;
}

export interface DesiredOtaInput {
  readonly deploymentId: string;
  readonly attempt: number;
  readonly updateId: UpdateId;
  readonly manifest: ManifestText;
  /** The detached form, used when `manifest` is inline and the document would not fit. */
  readonly detachedFallback?: ManifestText;
  readonly signature: string;
}

/** A shadow update request body. `null` deletes a key (shadow merge semantics). */
export interface ShadowUpdateDocument {
  readonly state: { readonly desired: { readonly ota: Partial<DesiredOta> | null } };
  /** Optimistic lock: the shadow service refuses the update (409) unless this is its current version. */
  readonly version?: number;
}

export interface DesiredDocument {
  readonly document: ShadowUpdateDocument;
  readonly delivery: ManifestText['kind'];
  /** UTF-8 size of `desired.ota` as sent. */
  readonly bytes: number;
}

export interface DesiredTooLarge {
  readonly code: 'DESIRED_TOO_LARGE';
  readonly message: string;
  readonly bytes: number;
  readonly limit: number;
}

/** UTF-8 byte length of a value's JSON text, as the shadow service counts it. */
export function jsonBytes(value: unknown): number {
  return new TextEncoder().encode(JSON.stringify(value)).length;
}

/** Nesting depth: a scalar is 0, `{}` or `[]` is 1, `{a:{}}` is 2. */
export function jsonDepth(value: unknown): number {
  if (typeof value !== 'object' || value === null) return 0;
  const children = Array.isArray(value) ? value : Object.values(value);
  return 1 + children.reduce<number>((deepest, child) => Math.max(deepest, jsonDepth(child)), 0);
}

function desiredOta(input: DesiredOtaInput, manifest: ManifestText): DesiredOta {
  const { provider, name, version } = input.updateId;
  return {
    deploymentId: input.deploymentId,
    attempt: input.attempt,
    action: 'apply',
    updateId: { provider, name, version },
    manifest: manifest.text,
    signature: input.signature,
    job: { deploymentId: input.deploymentId, attempt: input.attempt, updateId: { provider, name, version } },
  };
}

/**
 * The shadow update that sends a deployment to a device: `desired.ota` replaced whole. Every key
 * is written, so nothing of an earlier deployment's document survives the key-by-key merge. When
 * the inline manifest would push the document past its budget, the detached form is used instead.
 */
export function buildDesiredOta(input: DesiredOtaInput): Result<DesiredDocument, DesiredTooLarge> {
  const candidates = [input.manifest, ...(input.detachedFallback ? [input.detachedFallback] : [])];
  let bytes = 0;
  for (const manifest of candidates) {
    const ota = desiredOta(input, manifest);
    bytes = jsonBytes(ota);
    if (bytes <= DESIRED_OTA_BUDGET_BYTES) {
      return ok({ document: { state: { desired: { ota } } }, delivery: manifest.kind, bytes });
    }
  }
  return err({
    code: 'DESIRED_TOO_LARGE',
    message: `desired.ota needs ${bytes} bytes; the budget is ${DESIRED_OTA_BUDGET_BYTES}`,
    bytes,
    limit: DESIRED_OTA_BUDGET_BYTES,
  });
}

/**
 * Switches a device at work to `cancel`. Locked to the shadow version in which the caller saw this
 * deployment's desired document: without the lock, a newer deployment's document could get this
 * one's cancel merged into it.
 */
export function buildCancelDocument(expectedVersion: number): ShadowUpdateDocument {
  return { state: { desired: { ota: { action: 'cancel' } } }, version: expectedVersion };
}

/**
 * Clears `desired.ota` once the execution is terminal, so no delta stands (the device never
 * echoes the manifest, so the delta would never close by itself). Version-locked for the same
 * reason as the cancel: a late acknowledgement must not erase a newer deployment's document.
 */
export function buildTrimDocument(expectedVersion: number): ShadowUpdateDocument {
  return { state: { desired: { ota: null } }, version: expectedVersion };
}

/**
 * True when a shadow's `desired.ota` (whatever is there) is this deployment's, for this attempt
 * or an earlier one: only then may the caller cancel or trim it.
 */
export function desiredBelongsTo(desiredOta: unknown, deploymentId: string, attempt: number): boolean {
  if (typeof desiredOta !== 'object' || desiredOta === null) return false;
  if (!('deploymentId' in desiredOta) || !('attempt' in desiredOta)) return false;
  const found = desiredOta.attempt;
  return desiredOta.deploymentId === deploymentId && typeof found === 'number' && found <= attempt;
}
