/** Signing and verification of update manifests (ES256 compact JWS) behind the `Signer` port. */
export { derToRawEcdsaSignature, rawToDerEcdsaSignature } from './der.ts';
export type {
  FileClaim,
  ManifestClaims,
  SignatureError,
  SignatureErrorCode,
  SignManifestInput,
  TrustedKey,
  VerifyManifestInput,
} from './jws.ts';
export {
  MANIFEST_JWS_TYPE,
  manifestClaims,
  signatureExpiry,
  signUpdateManifest,
  verifyUpdateManifestSignature,
} from './jws.ts';
export type { Signer } from './signer.ts';
export { ES256_SIGNATURE_BYTES } from './signer.ts';
