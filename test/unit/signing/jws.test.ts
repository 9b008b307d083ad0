import { describe, expect, it } from 'vitest';
import { generateLocalSigningKey, makeLocalKeySigner } from '../../../lambdas/adapters/local-key-signer.ts';
import { canonicalJson, type FullUpdateManifest } from '../../../lambdas/domain/manifest/index.ts';
import {
  type SignManifestInput,
  signUpdateManifest,
  verifyUpdateManifestSignature,
} from '../../../lambdas/domain/signing/index.ts';

const manifest: FullUpdateManifest = {
  manifestVersion: '4',
  updateId: { provider: 'Contoso', name: 'Toaster', version: '1.0' },
  compatibility: [{ manufacturer: 'Contoso', model: 'Toaster' }],
  instructions: {
    steps: [
      { handler: 'microsoft/swupdate:1', files: ['f0'], handlerProperties: { installedCriteria: '1.0' } },
    ],
  },
  files: {
    f0: {
      fileName: 'firmware.swu',
      sizeInBytes: 7558,
      hashes: { sha256: '/CD7Sn6fiknWa3NgcFjGlJ+ccA81s1QAXX4oo5GHiFA=' },
    },
  },
  createdDateTime: '2022-01-19T06:23:52.6996916Z',
};
const manifestText = canonicalJson(manifest);
const key = generateLocalSigningKey();
const signer = makeLocalKeySigner({ privateKeyPem: key.privateKeyPem });
const now = new Date('2026-01-01T00:00:00Z');
const later = (seconds: number) => new Date(now.getTime() + seconds * 1000);

const sign = (over: Partial<SignManifestInput> = {}) =>
  signUpdateManifest({ manifest, signer, now, ttlSeconds: 3600, ...over });
const verify = (jws: string, over: Partial<Parameters<typeof verifyUpdateManifestSignature>[0]> = {}) =>
  verifyUpdateManifestSignature({ jws, manifest: manifestText, trustedKeys: [key.publicJwk], now, ...over });

function tamperPayload(jws: string, edit: (claims: Record<string, unknown>) => void): string {
  const [h, p, s] = jws.split('.');
  const claims = JSON.parse(Buffer.from(p ?? '', 'base64url').toString());
  edit(claims);
  return `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${s}`;
}

describe('manifest JWS', () => {
  it('has an ES256 header naming the key', async () => {
    const jws = await sign();
    const header = JSON.parse(Buffer.from(jws.split('.')[0] ?? '', 'base64url').toString());
    expect(header).toMatchObject({ alg: 'ES256', kid: signer.keyId });
    expect(signer.keyId).toBe(key.publicJwk.kid);
  });

  it('binds updateId, the manifest hash, every file, iat and exp, and carries extra claims', async () => {
    const jws = await sign({ extraClaims: { deploymentId: 'd-1', rollback: false, exp: 1 } });
    const result = await verify(jws, { expectedUpdateId: manifest.updateId, manifestFiles: manifest.files });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.value).toMatchObject({
      updateId: manifest.updateId,
      files: { f0: { sizeInBytes: 7558, sha256: '/CD7Sn6fiknWa3NgcFjGlJ+ccA81s1QAXX4oo5GHiFA=' } },
      iat: now.getTime() / 1000,
      exp: now.getTime() / 1000 + 3600, // an extra claim cannot override a reserved one
      deploymentId: 'd-1',
      rollback: false,
    });
    expect(result.value.manifestSha256).toHaveLength(44);
  });

  it.each([
    ['BAD_SIGNATURE', async (jws: string) => verify(tamperPayload(jws, (c) => (c.exp = Number(c.exp) + 10)))],
    [
      'MANIFEST_MISMATCH',
      async (jws: string) => verify(jws, { manifest: manifestText.replace('7558', '7559') }),
    ],
    [
      'UNKNOWN_KEY',
      async (jws: string) => verify(jws, { trustedKeys: [generateLocalSigningKey().publicJwk] }),
    ],
    ['EXPIRED', async (jws: string) => verify(jws, { now: later(3600 + 61) })],
    ['NOT_YET_VALID', async (jws: string) => verify(jws, { now: later(-120) })],
    [
      'UPDATE_MISMATCH',
      async (jws: string) =>
        verify(jws, { expectedUpdateId: { provider: 'Contoso', name: 'Toaster', version: '0.9' } }),
    ],
    [
      'FILES_MISMATCH',
      async (jws: string) =>
        verify(jws, {
          manifestFiles: { f0: { fileName: 'firmware.swu', sizeInBytes: 1, hashes: { sha256: 'x' } } },
        }),
    ],
    ['MALFORMED', async () => verify('not-a-jws')],
    [
      'UNSUPPORTED_ALGORITHM',
      async (jws: string) =>
        verify(`${Buffer.from('{"alg":"HS256","kid":"k"}').toString('base64url')}.${jws.split('.')[1]}.x`),
    ],
    [
      'UNSUPPORTED_ALGORITHM',
      async (jws: string) =>
        verify(`${Buffer.from('{"alg":"none"}').toString('base64url')}.${jws.split('.')[1]}.`),
    ],
  ])('refuses with %s', async (code, attempt) => {
    const result = await attempt(await sign());
    expect(result.ok ? 'accepted' : result.error.code).toBe(code);
  });

  it('accepts a signature within the clock tolerance after expiry', async () => {
    const result = await verify(await sign(), { now: later(3600 + 30) });
    expect(result.ok).toBe(true);
  });

  it('binds the files of children too', async () => {
    const child: FullUpdateManifest = {
      ...manifest,
      updateId: { provider: 'Contoso', name: 'Sensor', version: '1.0' },
      files: {
        fc: { fileName: 'sensor.bin', sizeInBytes: 3, hashes: { sha256: 'A'.repeat(43).concat('=') } },
      },
    };
    const result = await verify(await sign({ children: [child] }));
    expect(result.ok && Object.keys(result.value.files).sort()).toEqual(['f0', 'fc']);
  });
});
