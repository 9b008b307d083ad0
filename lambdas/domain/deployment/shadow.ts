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
 * What `desired.ota` may use: whatever the reported budget and the margin leave of the 8 KB. The
 * document is a few hundred bytes (ids only: the signed manifest travels with the download
 * authorization), so this is a bound that is checked, not a size that is planned for.
 */
export const DESIRED_OTA_BUDGET_BYTES =
  SHADOW_STATE_LIMIT_BYTES - REPORTED_OTA_BUDGET_BYTES - SHADOW_ENVELOPE_MARGIN_BYTES;

/**
 * AWS meters a shadow operation per started 1 KB of its document: the fan-out's desired
 * document is kept within one (a test checks the largest ids against it).
 */
export const SHADOW_OP_METERING_BYTES = 1024;

export type OtaAction = 'apply' | 'cancel';

/**
 * `desired.ota` of an apply: which deployment and attempt the device should run, and the update
 * it names. No manifest and no signature: the device gets the signed manifest with its download
 * authorization, which it must ask for anyway, and trusts nothing here until that verifies. So the
 * document stays a few hundred bytes: one metered shadow operation to write, instead of two or
 * three with a manifest and its JWS inline (ADR 0010, "Sizes").
 */
export interface DesiredOta {
  readonly deploymentId: string;
  readonly attempt: number;
  readonly action: OtaAction;
  readonly updateId: UpdateId;
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
}

/** A shadow update request body. `null` deletes a key (shadow merge semantics). */
export interface ShadowUpdateDocument {
  readonly state: { readonly desired: { readonly ota: Partial<DesiredOta> | null } };
  /** Optimistic lock: the shadow service refuses the update (409) unless this is its current version. */
  readonly version?: number;
}

export interface DesiredDocument {
  readonly document: ShadowUpdateDocument;
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

function desiredOta(input: DesiredOtaInput): DesiredOta {
  const { provider, name, version } = input.updateId;
  return {
    deploymentId: input.deploymentId,
    attempt: input.attempt,
    action: 'apply',
    updateId: { provider, name, version },
    job: { deploymentId: input.deploymentId, attempt: input.attempt, updateId: { provider, name, version } },
  };
}

/**
 * The shadow update that sends a deployment to a device: `desired.ota` replaced whole (every key
 * it has is written). Refused only for ids too long for the shadow, which the API's limits keep
 * out; real ids make a few hundred bytes.
 */
export function buildDesiredOta(input: DesiredOtaInput): Result<DesiredDocument, DesiredTooLarge> {
  const ota = desiredOta(input);
  const bytes = jsonBytes(ota);
  if (bytes <= DESIRED_OTA_BUDGET_BYTES) return ok({ document: { state: { desired: { ota } } }, bytes });
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
