import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
} from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Signer, TrustedKey } from '../domain/signing/index.ts';

/**
 * A signer over a local P-256 private key (PKCS#8 PEM): the local cloud's stand-in for KMS.
 * The default key id is the key's RFC 7638 JWK thumbprint, so it changes when the key does.
 */
export function makeLocalKeySigner({
  privateKeyPem,
  keyId,
}: {
  privateKeyPem: string;
  keyId?: string;
}): Signer {
  const key = createPrivateKey(privateKeyPem);
  assertP256(key);
  const kid = keyId ?? jwkThumbprint(createPublicKey(key));
  return {
    keyId: kid,
    // ieee-p1363 gives the raw R||S JWS wants; node hashes `data` with SHA-256 itself.
    sign: async (data) => new Uint8Array(sign('sha256', data, { key, dsaEncoding: 'ieee-p1363' })),
  };
}

function assertP256(key: KeyObject): void {
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new Error('the signing key must be an EC P-256 (prime256v1) key');
  }
}

/** RFC 7638 thumbprint of an EC public key: base64url SHA-256 of {crv,kty,x,y} in that order. */
export function jwkThumbprint(publicKey: KeyObject): string {
  const { crv, kty, x, y } = publicKey.export({ format: 'jwk' });
  return createHash('sha256').update(JSON.stringify({ crv, kty, x, y })).digest('base64url');
}

/** The public half of a private key, as the trusted-key JWK devices hold and as SPKI PEM. */
export function publicKeyOf(privateKeyPem: string, keyId?: string): { jwk: TrustedKey; pem: string } {
  const publicKey = createPublicKey(createPrivateKey(privateKeyPem));
  const { kty, crv, x, y } = publicKey.export({ format: 'jwk' });
  const kid = keyId ?? jwkThumbprint(publicKey);
  return {
    jwk: { kty, crv, x, y, kid, alg: 'ES256', use: 'sig' },
    pem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
  };
}

/** A new P-256 key pair: the private key as PKCS#8 PEM, the public one as JWK and PEM. */
export function generateLocalSigningKey(): {
  privateKeyPem: string;
  publicJwk: TrustedKey;
  publicKeyPem: string;
} {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const privateKeyPem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  const { jwk, pem } = publicKeyOf(privateKeyPem);
  return { privateKeyPem, publicJwk: jwk, publicKeyPem: pem };
}

/**
 * Reads the key at `path`, or creates one there (mode 0600, only the owner may read it) with its
 * public JWK beside it (`<path>.pub.jwk.json`) for devices to trust.
 */
export async function loadOrCreateLocalSigningKey(
  path: string,
): Promise<{ signer: Signer; publicJwk: TrustedKey; created: boolean }> {
  let pem: string;
  let created = false;
  try {
    pem = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    const generated = generateLocalSigningKey();
    pem = generated.privateKeyPem;
    await mkdir(dirname(path), { recursive: true });
    // 'wx': never overwrite a key another process created in the meantime.
    await writeFile(path, pem, { mode: 0o600, flag: 'wx' });
    await writeFile(`${path}.pub.jwk.json`, `${JSON.stringify(generated.publicJwk, null, 2)}\n`);
    created = true;
  }
  return { signer: makeLocalKeySigner({ privateKeyPem: pem }), publicJwk: publicKeyOf(pem).jwk, created };
}
