import { err, ok, type Result } from '../result.ts';

/**
 * Converts an ASN.1 DER ECDSA signature (SEQUENCE { INTEGER r, INTEGER s }), as KMS returns it,
 * into the fixed-size R||S form JWS needs. DER integers are minimal and signed: a value with its
 * top bit set gets a leading 0x00, and a small value is shorter than the curve size, so each part
 * is stripped of leading zeros and left-padded to `partBytes` (32 for P-256).
 */
export function derToRawEcdsaSignature(der: Uint8Array, partBytes = 32): Result<Uint8Array, string> {
  const reader = new DerReader(der);
  const seq = reader.expect(0x30);
  if (!seq.ok) return seq;
  if (seq.value !== der.length - reader.offset)
    return err('DER signature: SEQUENCE length does not match the data');
  const r = reader.integer();
  if (!r.ok) return r;
  const s = reader.integer();
  if (!s.ok) return s;
  if (reader.offset !== der.length) return err('DER signature: trailing bytes after S');
  const out = new Uint8Array(partBytes * 2);
  const rp = placeInteger(r.value, out, 0, partBytes);
  if (!rp.ok) return rp;
  const sp = placeInteger(s.value, out, partBytes, partBytes);
  if (!sp.ok) return sp;
  return ok(out);
}

function placeInteger(value: Uint8Array, out: Uint8Array, at: number, size: number): Result<true, string> {
  let start = 0;
  while (start < value.length - 1 && value[start] === 0) start++;
  const digits = value.subarray(start);
  if (digits.length > size) return err(`DER signature: integer of ${digits.length} bytes exceeds ${size}`);
  out.set(digits, at + size - digits.length);
  return ok(true);
}

class DerReader {
  offset = 0;
  constructor(private readonly bytes: Uint8Array) {}

  expect(tag: number): Result<number, string> {
    if (this.bytes[this.offset] !== tag)
      return err(`DER signature: expected tag 0x${tag.toString(16)} at byte ${this.offset}`);
    this.offset++;
    return this.length();
  }

  integer(): Result<Uint8Array, string> {
    const len = this.expect(0x02);
    if (!len.ok) return len;
    if (len.value === 0 || this.offset + len.value > this.bytes.length)
      return err('DER signature: bad INTEGER length');
    const value = this.bytes.subarray(this.offset, this.offset + len.value);
    this.offset += len.value;
    return ok(value);
  }

  private length(): Result<number, string> {
    const first = this.bytes[this.offset++];
    if (first === undefined) return err('DER signature: truncated');
    if (first < 0x80) return ok(first);
    const count = first & 0x7f;
    if (count === 0 || count > 2) return err('DER signature: unsupported length encoding');
    let len = 0;
    for (let i = 0; i < count; i++) {
      const b = this.bytes[this.offset++];
      if (b === undefined) return err('DER signature: truncated');
      len = (len << 8) | b;
    }
    return ok(len);
  }
}

/** The reverse, R||S → DER: for tests and for tools that need DER. */
export function rawToDerEcdsaSignature(raw: Uint8Array): Uint8Array {
  const half = raw.length / 2;
  const encodeInt = (part: Uint8Array): number[] => {
    let start = 0;
    while (start < part.length - 1 && part[start] === 0) start++;
    const digits = [...part.subarray(start)];
    if ((digits[0] ?? 0) & 0x80) digits.unshift(0);
    return [0x02, digits.length, ...digits];
  };
  const body = [...encodeInt(raw.subarray(0, half)), ...encodeInt(raw.subarray(half))];
  const len = body.length < 0x80 ? [body.length] : [0x81, body.length];
  return Uint8Array.from([0x30, ...len, ...body]);
}
