import { err, ok, type Result } from '../result.ts';
import type { UpdateId } from './update-id.ts';

/** The named shadow the whole protocol lives in. */
export const OTA_SHADOW_NAME = 'ota';

/** AWS counts desired + reported (metadata excluded) against 8 KB; an update past it is refused with 413. */
export const SHADOW_STATE_LIMIT_BYTES = 8192;
/** AWS refuses nesting deeper than 6 levels in desired or reported. */
export const SHADOW_MAX_DEPTH = 6;
/** What the agent may use for `reported.ota` (state, result codes per step, compatibility). */
export const REPORTED_OTA_BUDGET_BYTES = 3584;
/** What `desired.ota` may use; the rest of the 8 KB is margin for the envelopes and other keys. */
export const DESIRED_OTA_BUDGET_BYTES = 4096;

export type OtaAction = 'apply' | 'cancel';

/**
 * Where the device finds the update manifest when it is too large to travel inline: one of the
 * update's files, fetched through the same download authorization as the others. No URL: URLs are
 * per device and short-lived, minted on request.
 */
export interface ManifestReference {
  readonly fileId: string;
  /** Base64 SHA-256 of the manifest file. */
  readonly sha256: string;
  readonly sizeInBytes: number;
}

/**
 * `desired.ota`. Exactly one of `manifest` (the manifest's exact text: a string, so the shadow
 * service cannot reorder keys or reformat numbers under the signature) and `manifestRef`.
 * `signature` is the compact JWS made by lambdas/domain/signing; it binds the manifest and the
 * rollback flag, so nothing outside it need be trusted.
 */
export interface DesiredOta {
  readonly deploymentId: string;
  readonly attempt: number;
  readonly action: OtaAction;
  readonly updateId: UpdateId;
  readonly manifest?: string;
  readonly manifestRef?: ManifestReference;
  readonly signature: string;
}

export interface DesiredOtaInput {
  readonly deploymentId: string;
  readonly attempt: number;
  readonly updateId: UpdateId;
  /** The update manifest text exactly as signed. */
  readonly manifestText: string;
  /** The same manifest stored as a file, used when the text does not fit. */
  readonly detached: ManifestReference;
  readonly signature: string;
}

/** A shadow update request body. `null` deletes a key (shadow merge semantics). */
export interface ShadowUpdateDocument {
  readonly state: { readonly desired: { readonly ota: Record<string, unknown> | null } };
  /** Optimistic lock: the shadow service refuses the update (409) unless this is its current version. */
  readonly version?: number;
}

export interface DesiredDocument {
  readonly document: ShadowUpdateDocument;
  readonly delivery: 'inline' | 'detached';
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

/**
 * `desired.ota` for an apply, inline when the manifest fits the budget, else by reference. The
 * key not used is sent as `null`: shadows merge key by key, so a previous deployment's manifest
 * would otherwise survive beside this one's.
 */
export function buildDesiredOta(input: DesiredOtaInput): Result<DesiredDocument, DesiredTooLarge> {
  const base = {
    deploymentId: input.deploymentId,
    attempt: input.attempt,
    action: 'apply' as const,
    updateId: {
      provider: input.updateId.provider,
      name: input.updateId.name,
      version: input.updateId.version,
    },
    signature: input.signature,
  };
  const inline = { ...base, manifest: input.manifestText, manifestRef: null };
  const inlineBytes = jsonBytes(inline);
  if (inlineBytes <= DESIRED_OTA_BUDGET_BYTES) {
    return ok({ document: { state: { desired: { ota: inline } } }, delivery: 'inline', bytes: inlineBytes });
  }
  const { fileId, sha256, sizeInBytes } = input.detached;
  const detached = { ...base, manifest: null, manifestRef: { fileId, sha256, sizeInBytes } };
  const detachedBytes = jsonBytes(detached);
  if (detachedBytes <= DESIRED_OTA_BUDGET_BYTES) {
    return ok({
      document: { state: { desired: { ota: detached } } },
      delivery: 'detached',
      bytes: detachedBytes,
    });
  }
  return err({
    code: 'DESIRED_TOO_LARGE',
    message: `desired.ota needs ${detachedBytes} bytes even with a detached manifest; the budget is ${DESIRED_OTA_BUDGET_BYTES}`,
    bytes: detachedBytes,
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
