import { describe, expect, it } from 'vitest';
import { derToRawEcdsaSignature, rawToDerEcdsaSignature } from '../../../lambdas/domain/signing/index.ts';
import { derFromParts } from './p256-digest-signer.ts';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const part = (fill: number, length = 32) => new Uint8Array(length).fill(fill);

describe('derToRawEcdsaSignature', () => {
  it.each([
    // [case, r, s] as big-endian integers; R||S must come out 32 + 32 bytes, left-padded.
    ['both full, top bit clear', 0x11n, 0x22n],
    ['top bit set: DER adds a 0x00 the raw form must drop', 0xffn, 0x80n],
    ['small top bytes', 0x01n, 0x7fn],
  ])('%s', (_case, rFill, sFill) => {
    const r = BigInt(`0x${Buffer.from(part(Number(rFill))).toString('hex')}`);
    const s = BigInt(`0x${Buffer.from(part(Number(sFill))).toString('hex')}`);
    const raw = derToRawEcdsaSignature(derFromParts(r, s));
    expect(raw.ok && hex(raw.value)).toBe(
      r.toString(16).padStart(64, '0') + s.toString(16).padStart(64, '0'),
    );
  });

  it('left-pads R and S that are much shorter than 32 bytes', () => {
    const raw = derToRawEcdsaSignature(derFromParts(0x1234n, 0x05n));
    expect(raw.ok && hex(raw.value)).toBe(`${'0'.repeat(60)}1234${'0'.repeat(62)}05`);
  });

  it('round-trips with rawToDerEcdsaSignature, including a leading zero byte in R', () => {
    const raw = new Uint8Array(64).fill(0x9a);
    raw[0] = 0;
    const back = derToRawEcdsaSignature(rawToDerEcdsaSignature(raw));
    expect(back.ok && hex(back.value)).toBe(hex(raw));
  });

  it.each([
    ['empty', new Uint8Array()],
    ['not a SEQUENCE', Uint8Array.from([0x31, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01])],
    ['length mismatch', Uint8Array.from([0x30, 0x07, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01])],
    ['integer too long for P-256', derFromParts(2n ** 264n, 1n)],
    ['truncated S', Uint8Array.from([0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x05, 0x01])],
  ])('refuses %s as a value, without throwing', (_case, der) => {
    expect(derToRawEcdsaSignature(der).ok).toBe(false);
  });
});
