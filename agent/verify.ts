import { decodeJwt } from 'jose';
import { isCompatible } from '../lambdas/domain/deployment/index.ts';
import {
  type FullUpdateManifest,
  isMiniManifest,
  type MiniUpdateManifest,
  parseUpdateManifest,
  type UpdateFile,
  type UpdateId,
} from '../lambdas/domain/manifest/index.ts';
import { err, ok, type Result } from '../lambdas/domain/result.ts';
import {
  type ManifestClaims,
  type SignatureError,
  type TrustedKey,
  verifyUpdateManifestSignature,
} from '../lambdas/domain/signing/index.ts';
import { type AgentError, type AgentErrorCode, agentError } from './codes.ts';
import type { DesiredOtaHint, SignedDeployment } from './desired.ts';
import type { ExpectedFile } from './downloader.ts';

/** An update whose signature, expiry, identity, compatibility and version all checked out. */
export interface VerifiedUpdate {
  readonly deploymentId: string;
  readonly attempt: number;
  readonly updateId: UpdateId;
  readonly manifest: FullUpdateManifest;
  readonly claims: ManifestClaims;
}

/** Why an update was refused, and the device state to report: `incompatible` or `failed`. */
export interface Refusal {
  readonly state: 'failed' | 'incompatible';
  readonly error: AgentError;
}

export interface VerifyOptions {
  readonly trustedKeys: readonly TrustedKey[];
  /** The device's compatibility properties. */
  readonly compatibility: Readonly<Record<string, string>>;
  readonly now: Date;
  /** Tolerated clock difference for the signature's iat/exp. @default 60 */
  readonly clockToleranceSeconds?: number;
  /** True when `updateId` is older than what is installed for its provider and name. */
  readonly isDowngrade?: (updateId: UpdateId) => boolean;
  /** Fetches the full manifest of a detached one, verified against the signed hash. */
  readonly fetchDetached: (fileId: string, expected: ExpectedFile) => Promise<Result<Uint8Array, AgentError>>;
}

const refuse = (
  code: AgentErrorCode,
  message: string,
  state: Refusal['state'] = 'failed',
): Result<never, Refusal> => err({ state, error: agentError(code, message, false) });

const fromSignature = (e: SignatureError): Result<never, Refusal> =>
  refuse(`SIGNATURE_${e.code}` as AgentErrorCode, e.message);

/**
 * Checks a desired deployment before anything else happens: the signature against the trusted keys
 * (and its expiry), that the signed manifest is the update the deployment names and was signed for
 * this deployment, the manifest's files against the signed ones, then compatibility, then that it is
 * not a downgrade (unless the signature says rollback). A detached manifest is fetched only after
 * its signature verified, and checked against the signed hash.
 */
export async function verifyDesired(
  desired: SignedDeployment,
  options: VerifyOptions,
): Promise<Result<VerifiedUpdate, Refusal>> {
  const shown = parseUpdateManifest(desired.manifest);
  if (!shown.ok)
    return refuse(
      'MANIFEST_INVALID',
      `${shown.error[0]?.path ?? ''} ${shown.error[0]?.message ?? ''}`.trim(),
    );
  const full = isMiniManifest(shown.value)
    ? await fullFromDetached(desired, shown.value, options)
    : ok({ text: desired.manifest as string | Uint8Array, manifest: shown.value });
  if (!full.ok) return full;
  const expectedUpdateId = updateIdOf(desired.updateId);
  const verified = await verifyUpdateManifestSignature({
    jws: desired.signature,
    manifest: full.value.text,
    trustedKeys: options.trustedKeys,
    now: options.now,
    ...(options.clockToleranceSeconds !== undefined
      ? { clockToleranceSeconds: options.clockToleranceSeconds }
      : {}),
    ...(expectedUpdateId ? { expectedUpdateId } : {}),
    manifestFiles: full.value.manifest.files,
  });
  if (!verified.ok) return fromSignature(verified.error);
  const claims = verified.value;
  if (!expectedUpdateId) return refuse('UPDATE_MISMATCH', 'desired.ota names no valid update id');
  if (claims.deploymentId !== undefined && claims.deploymentId !== desired.deploymentId) {
    return refuse('SIGNATURE_DEPLOYMENT_MISMATCH', 'the signature was made for another deployment');
  }
  const manifest = full.value.manifest;
  if (!isCompatible(options.compatibility, manifest.compatibility)) {
    return refuse('INCOMPATIBLE', 'the device matches none of the update compatibility sets', 'incompatible');
  }
  if (options.isDowngrade?.(manifest.updateId) && claims.rollback !== true) {
    return refuse(
      'DOWNGRADE_REFUSED',
      `a newer version of ${manifest.updateId.provider}/${manifest.updateId.name} is installed`,
    );
  }
  return ok({
    deploymentId: desired.deploymentId,
    attempt: desired.attempt,
    updateId: manifest.updateId,
    manifest,
    claims,
  });
}

function updateIdOf(hint: DesiredOtaHint['updateId']): UpdateId | undefined {
  return hint.provider && hint.name && hint.version
    ? { provider: hint.provider, name: hint.name, version: hint.version }
    : undefined;
}

/**
 * The full manifest of a detached one. The signature is verified first (against the mini manifest's
 * text, which fails only at the manifest comparison, after signature and expiry passed); then the
 * signed claims give the hash the fetched file must have.
 */
async function fullFromDetached(
  desired: SignedDeployment,
  mini: MiniUpdateManifest,
  options: VerifyOptions,
): Promise<Result<{ text: Uint8Array; manifest: FullUpdateManifest }, Refusal>> {
  const probe = await verifyUpdateManifestSignature({
    jws: desired.signature,
    manifest: desired.manifest,
    trustedKeys: options.trustedKeys,
    now: options.now,
    ...(options.clockToleranceSeconds !== undefined
      ? { clockToleranceSeconds: options.clockToleranceSeconds }
      : {}),
  });
  if (!probe.ok && probe.error.code !== 'MANIFEST_MISMATCH') return fromSignature(probe.error);
  // The signature verified in the call above; only now are its claims believed.
  const claims = decodeJwt(desired.signature) as unknown as ManifestClaims;
  const file: UpdateFile | undefined = mini.files[mini.detachedManifestFileId];
  if (!file) return refuse('MANIFEST_INVALID', 'the detached manifest file is not described');
  const bytes = await options.fetchDetached(mini.detachedManifestFileId, {
    sizeInBytes: file.sizeInBytes,
    sha256: claims.manifestSha256,
  });
  if (!bytes.ok) return err({ state: 'failed', error: bytes.error });
  const parsed = parseUpdateManifest(bytes.value);
  if (!parsed.ok || isMiniManifest(parsed.value))
    return refuse('MANIFEST_INVALID', 'the detached manifest is not a full manifest');
  return ok({ text: bytes.value, manifest: parsed.value });
}

/** The signed size and hash of a file, or a refusal: a file the signature does not cover is never fetched. */
export function signedFile(claims: ManifestClaims, fileId: string): Result<ExpectedFile, AgentError> {
  const claim = claims.files[fileId];
  if (!claim)
    return err(agentError('FILE_NOT_SIGNED', `file ${fileId} is not covered by the signature`, false));
  return ok({ sizeInBytes: claim.sizeInBytes, sha256: claim.sha256 });
}

/** True when every file of a (child) manifest has exactly its signed size and hash. */
export function filesAreSigned(claims: ManifestClaims, files: Readonly<Record<string, UpdateFile>>): boolean {
  const all = (fs: Readonly<Record<string, UpdateFile>>): boolean =>
    Object.entries(fs).every(([id, f]) => {
      const c = claims.files[id];
      return c?.sizeInBytes === f.sizeInBytes && c.sha256 === f.hashes.sha256 && all(f.relatedFiles ?? {});
    });
  return all(files);
}
