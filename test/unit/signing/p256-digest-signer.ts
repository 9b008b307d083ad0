import { createPrivateKey, randomBytes } from 'node:crypto';

/**
 * Test-only ECDSA P-256 over a PRE-HASHED digest, as KMS does with MessageType DIGEST. node:crypto
 * always hashes what it signs, so a fake KMS needs this to answer with a real signature. Returns
 * DER, like KMS. Plain bigint arithmetic: slow and not constant-time, fine for tests.
 */
const p = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
const n = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const a = p - 3n;
const G: Point = {
  x: 0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296n,
  y: 0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5n,
};

type Point = { x: bigint; y: bigint } | null;

const mod = (v: bigint, m: bigint): bigint => ((v % m) + m) % m;

function inverse(v: bigint, m: bigint): bigint {
  let [oldR, r] = [mod(v, m), m];
  let [oldS, s] = [1n, 0n];
  while (r !== 0n) {
    const q = oldR / r;
    [oldR, r] = [r, oldR - q * r];
    [oldS, s] = [s, oldS - q * s];
  }
  return mod(oldS, m);
}

function add(P: Point, Q: Point): Point {
  if (!P) return Q;
  if (!Q) return P;
  if (P.x === Q.x && mod(P.y + Q.y, p) === 0n) return null;
  const l =
    P.x === Q.x && P.y === Q.y
      ? mod((3n * P.x * P.x + a) * inverse(2n * P.y, p), p)
      : mod((Q.y - P.y) * inverse(Q.x - P.x, p), p);
  const x = mod(l * l - P.x - Q.x, p);
  return { x, y: mod(l * (P.x - x) - P.y, p) };
}

function multiply(k: bigint, P: Point): Point {
  let result: Point = null;
  let addend = P;
  for (let e = k; e > 0n; e >>= 1n) {
    if (e & 1n) result = add(result, addend);
    addend = add(addend, addend);
  }
  return result;
}

const toBigInt = (bytes: Uint8Array): bigint => BigInt(`0x${Buffer.from(bytes).toString('hex') || '0'}`);

function derInteger(v: bigint): number[] {
  let hex = v.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  const bytes = [...Buffer.from(hex, 'hex')];
  if ((bytes[0] ?? 0) & 0x80) bytes.unshift(0);
  return [0x02, bytes.length, ...bytes];
}

/** Raw (r, s) for a digest. */
export function signDigestRaw(privateKeyPem: string, digest: Uint8Array): { r: bigint; s: bigint } {
  const { d } = createPrivateKey(privateKeyPem).export({ format: 'jwk' });
  const secret = toBigInt(Buffer.from(d ?? '', 'base64url'));
  const z = toBigInt(digest);
  for (;;) {
    const k = mod(toBigInt(randomBytes(32)), n);
    if (k === 0n) continue;
    const R = multiply(k, G);
    if (!R) continue;
    const r = mod(R.x, n);
    const s = mod(inverse(k, n) * (z + r * secret), n);
    if (r !== 0n && s !== 0n) return { r, s };
  }
}

/** DER-encoded signature of a digest, as KMS Sign returns it. */
export function signDigestDer(privateKeyPem: string, digest: Uint8Array): Uint8Array {
  const { r, s } = signDigestRaw(privateKeyPem, digest);
  return derFromParts(r, s);
}

export function derFromParts(r: bigint, s: bigint): Uint8Array {
  const body = [...derInteger(r), ...derInteger(s)];
  return Uint8Array.from([0x30, body.length, ...body]);
}
