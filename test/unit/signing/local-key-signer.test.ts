import { createPublicKey, verify } from 'node:crypto';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  generateLocalSigningKey,
  loadOrCreateLocalSigningKey,
  makeLocalKeySigner,
  publicKeyOf,
} from '../../../lambdas/adapters/local-key-signer.ts';

describe('local key signer', () => {
  it('signs SHA-256(data) with a raw 64-byte R||S signature that verifies with the public key', async () => {
    const key = generateLocalSigningKey();
    const signature = await makeLocalKeySigner({ privateKeyPem: key.privateKeyPem }).sign(
      Buffer.from('data'),
    );
    expect(signature).toHaveLength(64);
    const ok = verify(
      'sha256',
      Buffer.from('data'),
      { key: createPublicKey(key.publicKeyPem), dsaEncoding: 'ieee-p1363' },
      signature,
    );
    expect(ok).toBe(true);
  });

  it('names the key by its JWK thumbprint unless told otherwise', () => {
    const key = generateLocalSigningKey();
    expect(makeLocalKeySigner({ privateKeyPem: key.privateKeyPem }).keyId).toBe(key.publicJwk.kid);
    expect(makeLocalKeySigner({ privateKeyPem: key.privateKeyPem, keyId: 'k1' }).keyId).toBe('k1');
    expect(publicKeyOf(key.privateKeyPem).jwk).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256' });
  });

  it('refuses a key that is not P-256', async () => {
    const { generateKeyPairSync } = await import('node:crypto');
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 })
      .privateKey.export({ format: 'pem', type: 'pkcs8' })
      .toString();
    expect(() => makeLocalKeySigner({ privateKeyPem: rsa })).toThrow(/P-256/);
  });

  it('creates a key file readable only by its owner, then loads the same key', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'shadow-ota-key-')), 'keys', 'signing.pem');
    const first = await loadOrCreateLocalSigningKey(path);
    const second = await loadOrCreateLocalSigningKey(path);
    expect(first.created).toBe(true);
    expect(second.created).toBe(false);
    expect(second.signer.keyId).toBe(first.signer.keyId);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(`${path}.pub.jwk.json`, 'utf8'))).toEqual(first.publicJwk);
  });
});
