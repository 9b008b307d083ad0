/**
 * The port every signing key hides behind: a local PEM key in the local cloud, a KMS key
 * (ECC_NIST_P256) in AWS. ES256 only: ECDSA over P-256 with SHA-256.
 */
export interface Signer {
  /** Names the key in the JWS header (`kid`), so devices pick the right public key and keys can rotate. */
  readonly keyId: string;
  /**
   * Signs SHA-256(`data`) and returns the raw 64-byte R||S signature JWS wants (RFC 7518 §3.4),
   * not DER. Implementations may hash locally and sign the digest (KMS MessageType DIGEST).
   */
  sign(data: Uint8Array): Promise<Uint8Array>;
}

/** ES256 signature length: R and S, 32 bytes each. */
export const ES256_SIGNATURE_BYTES = 64;
