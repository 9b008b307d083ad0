import { createHash } from 'node:crypto';
import { compactVerify, decodeJwt, decodeProtectedHeader, errors, importJWK, type JWK } from 'jose';
import { canonicalJson } from '../manifest/canonical.ts';
import { type UpdateId, updateIdKey } from '../manifest/update-id.ts';
import type { FullUpdateManifest, UpdateFile } from '../manifest/update-schema.ts';
import { err, ok, type Result } from '../result.ts';
import { ES256_SIGNATURE_BYTES, type Signer } from './signer.ts';

/** `typ` of our manifest JWS: a JWT whose claims describe one update manifest. */
export const MANIFEST_JWS_TYPE = 'shadow-ota-manifest+jwt';

/** Size and hash of one file, as signed: what a device checks a download against. */
export interface FileClaim {
  readonly sizeInBytes: number;
  readonly sha256: string;
}

/**
 * What the signature binds. `manifestSha256` pins the exact manifest bytes (canonical JSON, the
 * FULL manifest even when it travels detached); `files` repeats every file's size and hash so a
 * device can check a download without trusting anything else; `iat`/`exp` bound its life. Extra
 * claims (deploymentId, rollback, ...) ride along without a format change.
 */
export interface ManifestClaims {
  readonly updateId: UpdateId;
  readonly manifestSha256: string;
  readonly files: Readonly<Record<string, FileClaim>>;
  readonly iat: number;
  readonly exp: number;
  readonly [extra: string]: unknown;
}

const reservedClaims = ['updateId', 'manifestSha256', 'files', 'iat', 'exp'] as const;

export interface SignManifestInput {
  readonly manifest: FullUpdateManifest;
  /** The children's derived manifests: their files are bound too (devices fetch them under the parent). */
  readonly children?: readonly FullUpdateManifest[];
  readonly signer: Signer;
  readonly now: Date;
  readonly ttlSeconds: number;
  /** Added to the payload; cannot replace the reserved claims above. */
  readonly extraClaims?: Readonly<Record<string, unknown>>;
}

function base64url(bytes: Uint8Array | string): string {
  return Buffer.from(bytes).toString('base64url');
}

function sha256Base64(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('base64');
}

function fileClaims(files: Readonly<Record<string, UpdateFile>>): [string, FileClaim][] {
  return Object.entries(files).flatMap(([id, f]) => [
    [id, { sizeInBytes: f.sizeInBytes, sha256: f.hashes.sha256 }] as [string, FileClaim],
    ...fileClaims(f.relatedFiles ?? {}),
  ]);
}

/** Claims for a manifest (and its children) at `now`; exported so tests and tools can inspect them. */
export function manifestClaims(input: Omit<SignManifestInput, 'signer'>): ManifestClaims {
  const iat = Math.floor(input.now.getTime() / 1000);
  const files = Object.fromEntries([
    ...fileClaims(input.manifest.files),
    ...(input.children ?? []).flatMap((c) => fileClaims(c.files)),
  ]);
  return {
    ...input.extraClaims,
    updateId: input.manifest.updateId,
    manifestSha256: sha256Base64(canonicalJson(input.manifest)),
    files,
    iat,
    exp: iat + input.ttlSeconds,
  };
}

/** Signs an update manifest: ES256 compact JWS with `kid`, over the claims above. */
export async function signUpdateManifest(input: SignManifestInput): Promise<string> {
  const header = { alg: 'ES256', kid: input.signer.keyId, typ: MANIFEST_JWS_TYPE };
  const payload = manifestClaims(input);
  const signingInput = `${base64url(JSON.stringify(header))}.${base64url(canonicalJson(payload))}`;
  const signature = await input.signer.sign(new TextEncoder().encode(signingInput));
  if (signature.length !== ES256_SIGNATURE_BYTES) {
    throw new Error(
      `signer ${input.signer.keyId} returned ${signature.length} bytes, not a raw ES256 signature`,
    );
  }
  return `${signingInput}.${base64url(signature)}`;
}

export type SignatureErrorCode =
  | 'MALFORMED'
  | 'UNSUPPORTED_ALGORITHM'
  | 'UNKNOWN_KEY'
  | 'BAD_SIGNATURE'
  | 'EXPIRED'
  | 'NOT_YET_VALID'
  | 'MANIFEST_MISMATCH'
  | 'UPDATE_MISMATCH'
  | 'FILES_MISMATCH';

export interface SignatureError {
  readonly code: SignatureErrorCode;
  readonly message: string;
}

/** A public key a verifier trusts: a P-256 public JWK that carries its `kid`. */
export type TrustedKey = JWK & { readonly kid: string };

export interface VerifyManifestInput {
  readonly jws: string;
  /** The manifest exactly as received (canonical JSON text or its bytes): the full one, also when detached. */
  readonly manifest: string | Uint8Array;
  readonly trustedKeys: readonly TrustedKey[];
  readonly now: Date;
  /** When set, the claims must name this update (the one the deployment says). */
  readonly expectedUpdateId?: UpdateId;
  /** Tolerated clock difference for iat/exp, in seconds. */
  readonly clockToleranceSeconds?: number;
  /** When set, the manifest's files must equal the signed ones (pass the parsed manifest's files). */
  readonly manifestFiles?: Readonly<Record<string, UpdateFile>>;
}

const fail = (code: SignatureErrorCode, message: string): Result<never, SignatureError> =>
  err({ code, message });

/**
 * Verifies a manifest signature and returns its claims. Order matters: the signature is checked
 * before anything in the payload is believed.
 */
export async function verifyUpdateManifestSignature(
  input: VerifyManifestInput,
): Promise<Result<ManifestClaims, SignatureError>> {
  const header = readHeader(input.jws);
  if (!header.ok) return header;
  const key = input.trustedKeys.find((k) => k.kid === header.value.kid);
  if (!key) return fail('UNKNOWN_KEY', `no trusted key has kid "${header.value.kid}"`);
  const verified = await verifySignature(input.jws, key);
  if (!verified.ok) return verified;
  const claims = readClaims(verified.value);
  if (!claims.ok) return claims;
  return checkClaims(claims.value, input);
}

function readHeader(jws: string): Result<{ kid: string }, SignatureError> {
  try {
    const header = decodeProtectedHeader(jws);
    if (header.alg !== 'ES256')
      return fail('UNSUPPORTED_ALGORITHM', `alg must be ES256, not ${String(header.alg)}`);
    if (typeof header.kid !== 'string' || header.kid === '')
      return fail('MALFORMED', 'the JWS header names no key (kid)');
    return ok({ kid: header.kid });
  } catch {
    return fail('MALFORMED', 'not a compact JWS');
  }
}

async function verifySignature(jws: string, key: TrustedKey): Promise<Result<Uint8Array, SignatureError>> {
  try {
    const publicKey = await importJWK({ kty: key.kty, crv: key.crv, x: key.x, y: key.y }, 'ES256');
    const { payload } = await compactVerify(jws, publicKey, { algorithms: ['ES256'] });
    return ok(payload);
  } catch (e) {
    if (e instanceof errors.JWSSignatureVerificationFailed)
      return fail('BAD_SIGNATURE', 'the signature does not verify');
    if (e instanceof errors.JOSEAlgNotAllowed || e instanceof errors.JOSENotSupported) {
      return fail('UNSUPPORTED_ALGORITHM', 'the key or algorithm is not ES256 on P-256');
    }
    return fail('MALFORMED', `the JWS cannot be verified: ${e instanceof Error ? e.message : String(e)}`);
  }
}

function readClaims(payload: Uint8Array): Result<ManifestClaims, SignatureError> {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder().decode(payload));
  } catch {
    return fail('MALFORMED', 'the JWS payload is not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    return fail('MALFORMED', 'the JWS payload is not an object');
  const c = value as Record<string, unknown>;
  const missing = reservedClaims.filter((k) => c[k] === undefined);
  if (missing.length > 0) return fail('MALFORMED', `the JWS payload lacks ${missing.join(', ')}`);
  if (typeof c.iat !== 'number' || typeof c.exp !== 'number' || typeof c.manifestSha256 !== 'string') {
    return fail('MALFORMED', 'iat and exp must be numbers and manifestSha256 a string');
  }
  return ok(c as ManifestClaims);
}

function checkClaims(
  claims: ManifestClaims,
  input: VerifyManifestInput,
): Result<ManifestClaims, SignatureError> {
  const now = Math.floor(input.now.getTime() / 1000);
  const tolerance = input.clockToleranceSeconds ?? 60;
  if (now > claims.exp + tolerance)
    return fail('EXPIRED', `the signature expired at ${new Date(claims.exp * 1000).toISOString()}`);
  if (claims.iat > now + tolerance)
    return fail('NOT_YET_VALID', 'the signature was issued in the future: check the clock');
  if (sha256Base64(input.manifest) !== claims.manifestSha256) {
    return fail('MANIFEST_MISMATCH', 'the manifest is not the one that was signed');
  }
  if (input.expectedUpdateId && !sameUpdate(claims.updateId, input.expectedUpdateId)) {
    return fail('UPDATE_MISMATCH', 'the signed manifest is for another update');
  }
  if (input.manifestFiles && !filesMatch(claims.files, input.manifestFiles)) {
    return fail('FILES_MISMATCH', "the manifest's files differ from the signed sizes and hashes");
  }
  return ok(claims);
}

function sameUpdate(a: unknown, b: UpdateId): boolean {
  if (typeof a !== 'object' || a === null) return false;
  const { provider, name, version } = a as Record<string, unknown>;
  if (typeof provider !== 'string' || typeof name !== 'string' || typeof version !== 'string') return false;
  return updateIdKey({ provider, name, version }) === updateIdKey(b);
}

function filesMatch(
  signed: Readonly<Record<string, FileClaim>>,
  files: Readonly<Record<string, UpdateFile>>,
): boolean {
  return fileClaims(files).every(
    ([id, f]) => signed[id]?.sizeInBytes === f.sizeInBytes && signed[id]?.sha256 === f.sha256,
  );
}

/**
 * When a signature we made expires (its `exp`, epoch seconds), read without verifying: for the
 * service deciding whether to sign again, never for trusting anything. Undefined when unreadable.
 */
export function signatureExpiry(jws: string): number | undefined {
  try {
    const { exp } = decodeJwt(jws);
    return typeof exp === 'number' ? exp : undefined;
  } catch {
    return undefined;
  }
}
