import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { describe, expect, it } from 'vitest';
import { makeGetPresigner } from '../../../lambdas/adapters/download-credentials.ts';
import { compactPresignedUrls } from '../../../lambdas/domain/downloads/presigned.ts';

const s3 = new S3Client({
  region: 'us-east-1',
  credentials: { accessKeyId: 'ASIAEXAMPLE', secretAccessKey: 'secret', sessionToken: 'token' },
});
const keys = ['updates/Contoso/Toaster/2.0/fw.bin', 'updates/Contoso/Toaster/2.0/config json'];
const start = Date.parse('2026-11-24T08:00:00.250Z');

describe('presigned GETs', () => {
  it('signs at the second: what independent signing within that second gives, the same for every caller', async () => {
    let signings = 0;
    s3.middlewareStack.add(
      (next) => (args) => {
        signings++;
        return next(args);
      },
      { step: 'initialize', name: 'countSignings' },
    );
    const clock = { now: start };
    const presigner = makeGetPresigner({ s3, bucket: 'artifacts', now: () => clock.now });
    const first = await presigner.presignGets(keys, 900);
    clock.now += 700;
    const second = await presigner.presignGets([...keys].reverse(), 900);
    expect(second).toEqual(first);
    // Signed once per object within the second, not once per caller.
    expect(signings).toBe(keys.length);
    s3.middlewareStack.remove('countSignings');
    const direct = await getSignedUrl(s3, new GetObjectCommand({ Bucket: 'artifacts', Key: keys[1] }), {
      expiresIn: 900,
      signingDate: new Date('2026-11-24T08:00:00Z'),
    });
    expect(first.get(keys[1] ?? '')).toBe(direct);
    expect(compactPresignedUrls(first).ok).toBe(true);
  });

  it('signs anew in the next second, and for another lifetime', async () => {
    const clock = { now: start };
    const presigner = makeGetPresigner({ s3, bucket: 'artifacts', now: () => clock.now });
    const first = await presigner.presignGets(keys, 900);
    const otherLifetime = await presigner.presignGets(keys, 600);
    expect(new URL(otherLifetime.get(keys[0] ?? '') ?? '').searchParams.get('X-Amz-Expires')).toBe('600');
    clock.now += 800;
    const later = await presigner.presignGets(keys, 900);
    expect(new URL(later.get(keys[0] ?? '') ?? '').searchParams.get('X-Amz-Date')).toBe('20261124T080001Z');
    expect(later.get(keys[0] ?? '')).not.toBe(first.get(keys[0] ?? ''));
  });
});
