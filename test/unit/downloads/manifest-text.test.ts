import { describe, expect, it } from 'vitest';
import { INLINE_MANIFEST_MAX_BYTES } from '../../../lambdas/domain/manifest/index.ts';
import { manifestTextFor } from '../../../lambdas/handlers/downloads/authorize.ts';

const signed = (inline: string, detached?: string) => ({
  inline,
  ...(detached ? { detached } : {}),
  signature: 'h.p.s',
  keyId: 'k',
  expiresAt: '2026-12-01T00:00:00Z',
});

describe('the manifest a download authorization hands out', () => {
  it('is the full manifest while it is small', () => {
    const inline = `{"m":"${'x'.repeat(INLINE_MANIFEST_MAX_BYTES - 20)}"}`;
    expect(manifestTextFor(signed(inline, '{"mini":true}'))).toBe(inline);
  });

  it('is the mini manifest (the full one downloaded as a file) once the full one is large', () => {
    const inline = `{"m":"${'x'.repeat(INLINE_MANIFEST_MAX_BYTES)}"}`;
    expect(manifestTextFor(signed(inline, '{"mini":true}'))).toBe('{"mini":true}');
  });

  it('is the full manifest when there is no detached form', () => {
    const inline = `{"m":"${'x'.repeat(INLINE_MANIFEST_MAX_BYTES)}"}`;
    expect(manifestTextFor(signed(inline))).toBe(inline);
  });
});
