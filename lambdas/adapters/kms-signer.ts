import { createHash, createPublicKey } from 'node:crypto';
import { GetPublicKeyCommand, type KMSClient, SignCommand } from '@aws-sdk/client-kms';
import { derToRawEcdsaSignature, type Signer, type TrustedKey } from '../domain/signing/index.ts';

/** KMS answered in a way a signature cannot be made from. */
export class KmsSigningError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'KmsSigningError';
  }
}

export interface KmsSignerProps {
  readonly kms: Pick<KMSClient, 'send'>;
  /** Key id, ARN or alias of an ECC_NIST_P256 SIGN_VERIFY key. */
  readonly keyId: string;
  /** `kid` in JWS headers; defaults to `keyId`. */
  readonly kid?: string;
}

/**
 * A signer over a KMS asymmetric key. It hashes locally and sends only the digest
 * (MessageType DIGEST), so payload size never meets KMS's 4 KB message limit, then converts
 * KMS's DER signature to the raw R||S form JWS needs.
 */
export function makeKmsSigner({ kms, keyId, kid }: KmsSignerProps): Signer {
  return {
    keyId: kid ?? keyId,
    async sign(data) {
      const digest = createHash('sha256').update(data).digest();
      const response = await kms.send(
        new SignCommand({
          KeyId: keyId,
          Message: digest,
          MessageType: 'DIGEST',
          SigningAlgorithm: 'ECDSA_SHA_256',
        }),
      );
      if (!response.Signature) throw new KmsSigningError(`KMS returned no signature for key ${keyId}`);
      const raw = derToRawEcdsaSignature(response.Signature, 32);
      if (!raw.ok)
        throw new KmsSigningError(`KMS returned an unreadable signature for key ${keyId}: ${raw.error}`);
      return raw.value;
    },
  };
}

/** The KMS key's public half as a trusted-key JWK (for devices and for verification tests). */
export async function kmsPublicJwk({ kms, keyId, kid }: KmsSignerProps): Promise<TrustedKey> {
  const response = await kms.send(new GetPublicKeyCommand({ KeyId: keyId }));
  if (!response.PublicKey) throw new KmsSigningError(`KMS returned no public key for key ${keyId}`);
  const { kty, crv, x, y } = createPublicKey({
    key: Buffer.from(response.PublicKey),
    format: 'der',
    type: 'spki',
  }).export({
    format: 'jwk',
  });
  return { kty, crv, x, y, kid: kid ?? keyId, alg: 'ES256', use: 'sig' };
}
