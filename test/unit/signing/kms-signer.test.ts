import { createHash, createPublicKey, sign } from 'node:crypto';
import { GetPublicKeyCommand, KMSClient, SignCommand } from '@aws-sdk/client-kms';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it } from 'vitest';
import { kmsPublicJwk, makeKmsSigner } from '../../../lambdas/adapters/kms-signer.ts';
import { generateLocalSigningKey } from '../../../lambdas/adapters/local-key-signer.ts';
import { canonicalJson, type FullUpdateManifest } from '../../../lambdas/domain/manifest/index.ts';
import { signUpdateManifest, verifyUpdateManifestSignature } from '../../../lambdas/domain/signing/index.ts';
import { signDigestDer } from './p256-digest-signer.ts';

// No KMS runs locally: the mock stands in for it, and answers with REAL DER signatures made by a
// local key, so the conversion and the resulting JWS are checked for real.
const kmsMock = mockClient(KMSClient);
afterEach(() => kmsMock.reset());

const key = generateLocalSigningKey();
const keyId = 'arn:aws:kms:eu-west-1:111111111111:key/abcd';
const kms = new KMSClient({ region: 'eu-west-1' });

const manifest: FullUpdateManifest = {
  manifestVersion: '4',
  updateId: { provider: 'Contoso', name: 'Toaster', version: '1.0' },
  compatibility: [{ model: 'Toaster' }],
  instructions: { steps: [{ handler: 'microsoft/script:1', files: ['f0'] }] },
  files: {
    f0: {
      fileName: 'a.sh',
      sizeInBytes: 10,
      hashes: { sha256: 'mcB5SexMU4JOOzqmlJqKbue9qMskWY3EI/iVjJxCtAs=' },
    },
  },
  createdDateTime: '2022-01-19T06:23:52Z',
};

describe('KMS signer', () => {
  it('signs a digest with ECDSA_SHA_256 and yields a JWS that verifies with the public key', async () => {
    kmsMock
      .on(SignCommand)
      .callsFake((input) => ({ Signature: signDigestDer(key.privateKeyPem, input.Message) }));
    const jws = await signUpdateManifest({
      manifest,
      signer: makeKmsSigner({ kms, keyId, kid: 'key-2026' }),
      now: new Date('2026-01-01T00:00:00Z'),
      ttlSeconds: 600,
    });
    const result = await verifyUpdateManifestSignature({
      jws,
      manifest: canonicalJson(manifest),
      trustedKeys: [{ ...key.publicJwk, kid: 'key-2026' }],
      now: new Date('2026-01-01T00:01:00Z'),
    });
    expect(result.ok).toBe(true);
    const call = kmsMock.commandCalls(SignCommand)[0]?.args[0].input;
    expect(call).toMatchObject({ KeyId: keyId, MessageType: 'DIGEST', SigningAlgorithm: 'ECDSA_SHA_256' });
    expect(call?.Message).toHaveLength(32);
  });

  it('pads a short R or S: a DER integer below 2^248 still gives 64 bytes that verify', async () => {
    // Find data whose DER signature has a short R or S (about 1 in 128 tries): node signs SHA-256(data),
    // which is exactly the digest the KMS signer sends.
    let data = Buffer.alloc(0);
    let der = new Uint8Array();
    for (let i = 0; ; i++) {
      data = Buffer.from(`payload-${i}`);
      der = sign('sha256', data, key.privateKeyPem);
      const rLength = der[3] ?? 0;
      const sLength = der[4 + rLength + 1] ?? 0;
      if (rLength < 32 || sLength < 32) break;
    }
    const digest = createHash('sha256').update(data).digest();
    kmsMock.on(SignCommand, { Message: digest }).resolves({ Signature: der });
    const raw = await makeKmsSigner({ kms, keyId }).sign(data);
    expect(raw).toHaveLength(64);
    const verified = createPublicKey(key.publicKeyPem);
    const { verify } = await import('node:crypto');
    expect(verify('sha256', data, { key: verified, dsaEncoding: 'ieee-p1363' }, raw)).toBe(true);
  });

  it('throws a KmsSigningError when KMS answers without a usable signature', async () => {
    kmsMock.on(SignCommand).resolves({});
    await expect(makeKmsSigner({ kms, keyId }).sign(Buffer.from('x'))).rejects.toMatchObject({
      name: 'KmsSigningError',
    });
    kmsMock.on(SignCommand).resolves({ Signature: Uint8Array.from([1, 2, 3]) });
    await expect(makeKmsSigner({ kms, keyId }).sign(Buffer.from('x'))).rejects.toThrow(
      /unreadable signature/,
    );
  });

  it('passes KMS errors through', async () => {
    kmsMock.on(SignCommand).rejects(new Error('AccessDeniedException'));
    await expect(makeKmsSigner({ kms, keyId }).sign(Buffer.from('x'))).rejects.toThrow(
      'AccessDeniedException',
    );
  });

  it('exports the public key as a trusted JWK', async () => {
    const spki = createPublicKey(key.publicKeyPem).export({ format: 'der', type: 'spki' });
    kmsMock.on(GetPublicKeyCommand).resolves({ PublicKey: spki });
    const jwk = await kmsPublicJwk({ kms, keyId });
    expect(jwk).toMatchObject({
      kty: 'EC',
      crv: 'P-256',
      x: key.publicJwk.x,
      y: key.publicJwk.y,
      kid: keyId,
    });
  });
});
