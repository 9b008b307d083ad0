import { describe, expect, it } from 'vitest';
import { compactPresignedUrls, presignedUrlOf } from '../../../lambdas/domain/downloads/presigned.ts';

const shared =
  'X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Content-Sha256=UNSIGNED-PAYLOAD&X-Amz-Credential=ASIA%2F20261124%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261124T080000Z&X-Amz-Expires=900&X-Amz-Security-Token=IQo%2Btoken%3D%3D';
const origin = 'https://artifacts.s3.us-east-1.amazonaws.com';
const urlOf = (path: string, signature: string, query = shared): string =>
  `${origin}${path}?${query.replace('X-Amz-Security-Token', `X-Amz-Signature=${signature}&X-Amz-Security-Token`)}&x-id=GetObject`;

describe('presigned URLs in a download authorization', () => {
  const urls = new Map([
    ['fw', urlOf('/updates/Contoso/Toaster/2.0/fw%20one.bin', 'aa11')],
    ['cfg', urlOf('/updates/Contoso/Toaster/2.0/config.json', 'bb22')],
  ]);

  it('sends the shared query once and gives every URL back, signature and encoding intact', () => {
    const compact = compactPresignedUrls(urls);
    expect(compact.ok).toBe(true);
    if (!compact.ok) return;
    expect(compact.value.origin).toBe(origin);
    expect(compact.value.query).not.toContain('X-Amz-Signature');
    expect(compact.value.files).toEqual({
      fw: ['/updates/Contoso/Toaster/2.0/fw%20one.bin', 'aa11'],
      cfg: ['/updates/Contoso/Toaster/2.0/config.json', 'bb22'],
    });
    for (const [fileId, url] of urls) {
      const back = new URL(presignedUrlOf(compact.value, fileId) ?? '');
      const original = new URL(url);
      expect(back.origin + back.pathname).toBe(original.origin + original.pathname);
      // The same parameters with the same values (S3 sorts them to check the signature).
      expect([...back.searchParams].sort()).toEqual([...original.searchParams].sort());
    }
    expect(JSON.stringify(compact.value).length).toBeLessThan([...urls.values()].join('').length);
  });

  it('keeps an origin as it was written (explicit port, upper-case host)', () => {
    const written = 'https://Artifacts.Example:443/updates/fw.bin?X-Amz-Date=1&X-Amz-Signature=ab';
    const compact = compactPresignedUrls(new Map([['fw', written]]));
    if (!compact.ok) throw new Error('not compacted');
    expect(compact.value.origin).toBe('https://Artifacts.Example:443');
    expect(presignedUrlOf(compact.value, 'fw')).toBe(written);
  });

  it('names no URL for a file it does not hold, even one named like an Object property', () => {
    const compact = compactPresignedUrls(urls);
    if (!compact.ok) throw new Error('not compacted');
    expect(presignedUrlOf(compact.value, 'other')).toBeUndefined();
    expect(presignedUrlOf(compact.value, 'toString')).toBeUndefined();
  });

  it('refuses URLs that were not signed together, or are not presigned', () => {
    const later = new Map([...urls, ['late', urlOf('/x', 'cc33', shared.replace('T080000Z', 'T080001Z'))]]);
    expect(compactPresignedUrls(later)).toMatchObject({ ok: false, error: { code: 'NOT_SIGNED_TOGETHER' } });
    expect(compactPresignedUrls(new Map([['x', `${origin}/x`]]))).toMatchObject({ ok: false });
  });
});
