/**
 * Verifies AWS Signature Version 4 on an incoming request, both ways AWS accepts it: the
 * `Authorization: AWS4-HMAC-SHA256 ...` header and a presigned query string (`X-Amz-Signature`).
 * The canonical request is rebuilt with @smithy/signature-v4's own canonicalisation (query and
 * header rules, signing key derivation), so what the SDK signs is what we check, byte for byte.
 * Failures are values with the status and S3/STS error code AWS answers with.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { getCanonicalHeaders, getCanonicalQuery, getSigningKey } from '@smithy/signature-v4';
import type { Checksum, SourceData } from '@smithy/types';
import type { CredentialStore, Principal } from './credentials.ts';

export const ALGORITHM = 'AWS4-HMAC-SHA256';
export const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';
/** AWS refuses a request signed more than 15 minutes away from its clock. */
export const MAX_CLOCK_SKEW_MS = 15 * 60_000;
/** The longest lifetime SigV4 allows a presigned URL (7 days). */
export const MAX_PRESIGNED_EXPIRES_SECONDS = 604_800;

export interface IncomingSignedRequest {
  readonly method: string;
  /** The path as it came on the wire (still percent-encoded), without the query string. */
  readonly rawPath: string;
  /** Query parameters, percent-decoded, in order. */
  readonly query: readonly (readonly [string, string])[];
  /** Node's lower-cased headers. */
  readonly headers: IncomingHttpHeaders;
}

export interface VerifyOptions {
  readonly service: string;
  readonly region: string;
  readonly credentials: CredentialStore;
  /** Epoch ms. */
  readonly now: number;
  /**
   * Payload hash to use when the header-signed request carries no `x-amz-content-sha256` (STS and
   * other services hash the body; S3 requires the header).
   */
  readonly bodySha256Hex?: string;
}

export interface VerifiedRequest {
  readonly principal: Principal;
  readonly mechanism: 'header' | 'query';
  /** The seed signature (aws-chunked uploads chain their chunk signatures from it). */
  readonly signature: string;
  /** `YYYYMMDDTHHMMSSZ` */
  readonly amzDate: string;
  /** `<date>/<region>/<service>/aws4_request` */
  readonly scope: string;
  /** The payload hash the signature covers (`UNSIGNED-PAYLOAD`, `STREAMING-...` or hex). */
  readonly payloadHash: string;
  readonly signingKey: Uint8Array;
}

export interface AuthFailure {
  readonly status: number;
  readonly code: string;
  readonly message: string;
}

export type VerifyResult =
  | { readonly ok: true; readonly value: VerifiedRequest }
  | { readonly ok: false; readonly error: AuthFailure };

const fail = (status: number, code: string, message: string): VerifyResult => ({
  ok: false,
  error: { status, code, message },
});

/** A SHA-256 / HMAC-SHA-256 with @smithy's `Checksum` shape, backed by node:crypto. */
export class NodeSha256 implements Checksum {
  readonly #secret: SourceData | undefined;
  #chunks: Buffer[] = [];
  constructor(secret?: SourceData) {
    this.#secret = secret;
  }
  update(data: Uint8Array): void {
    this.#chunks.push(Buffer.from(data));
  }
  async digest(): Promise<Uint8Array> {
    const body = Buffer.concat(this.#chunks);
    if (this.#secret === undefined) return createHash('sha256').update(body).digest();
    const key = typeof this.#secret === 'string' ? this.#secret : Buffer.from(this.#secret as Uint8Array);
    return createHmac('sha256', key).update(body).digest();
  }
  reset(): void {
    this.#chunks = [];
  }
}

/** Splits a raw query string into decoded pairs; a malformed escape makes the whole query invalid. */
export function parseRawQuery(raw: string): [string, string][] | undefined {
  if (raw === '') return [];
  try {
    return raw
      .split('&')
      .filter((part) => part !== '')
      .map((part) => {
        const eq = part.indexOf('=');
        const key = eq === -1 ? part : part.slice(0, eq);
        const value = eq === -1 ? '' : part.slice(eq + 1);
        // SigV4 clients escape a space as %20; a literal `+` is a plus, not a space.
        return [decodeURIComponent(key), decodeURIComponent(value)];
      });
  } catch {
    return undefined;
  }
}

function queryRecord(pairs: readonly (readonly [string, string])[]): Record<string, string | string[]> {
  const record: Record<string, string | string[]> = {};
  for (const [key, value] of pairs) {
    const seen = record[key];
    record[key] = seen === undefined ? value : Array.isArray(seen) ? [...seen, value] : [seen, value];
  }
  return record;
}

function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value.join(',') : value;
}

/** `X-Amz-Date` / `x-amz-date` as epoch ms, or undefined when it is not `YYYYMMDDTHHMMSSZ`. */
export function parseAmzDate(text: string): number | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(text);
  if (!m) return undefined;
  const t = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
  return Number.isNaN(t) ? undefined : t;
}

interface AuthParameters {
  readonly mechanism: 'header' | 'query';
  readonly accessKeyId: string;
  readonly scopeDate: string;
  readonly scopeRegion: string;
  readonly scopeService: string;
  readonly signedHeaders: readonly string[];
  readonly signature: string;
  readonly amzDate: string;
  readonly expiresSeconds?: number;
  readonly sessionToken?: string;
}

function parseCredential(credential: string): [string, string, string, string] | undefined {
  const parts = credential.split('/');
  if (parts.length !== 5 || parts[4] !== 'aws4_request') return undefined;
  const [key, date, region, service] = parts as [string, string, string, string, string];
  return [key, date, region, service];
}

function headerAuthParameters(
  request: IncomingSignedRequest,
  authorization: string,
): AuthParameters | AuthFailure {
  const malformed = {
    status: 400,
    code: 'AuthorizationHeaderMalformed',
    message: 'The authorization header is malformed',
  };
  if (!authorization.startsWith(`${ALGORITHM} `)) {
    return { status: 400, code: 'InvalidArgument', message: 'Unsupported Authorization Type' };
  }
  const fields = new Map(
    authorization
      .slice(ALGORITHM.length + 1)
      .split(',')
      .map((f) => f.trim())
      .map((f) => [f.slice(0, f.indexOf('=')), f.slice(f.indexOf('=') + 1)] as const),
  );
  const credential = parseCredential(fields.get('Credential') ?? '');
  const signedHeaders = fields.get('SignedHeaders');
  const signature = fields.get('Signature');
  const amzDate = headerValue(request.headers, 'x-amz-date');
  if (!credential || !signedHeaders || !signature) return malformed;
  if (!amzDate) {
    return {
      status: 403,
      code: 'AccessDenied',
      message: 'AWS authentication requires a valid Date or x-amz-date header',
    };
  }
  const token = headerValue(request.headers, 'x-amz-security-token');
  return {
    mechanism: 'header',
    accessKeyId: credential[0],
    scopeDate: credential[1],
    scopeRegion: credential[2],
    scopeService: credential[3],
    signedHeaders: signedHeaders.split(';'),
    signature,
    amzDate,
    ...(token ? { sessionToken: token } : {}),
  };
}

function queryAuthParameters(query: Map<string, string>): AuthParameters | AuthFailure {
  const malformed = (message: string): AuthFailure => ({
    status: 400,
    code: 'AuthorizationQueryParametersError',
    message,
  });
  if (query.get('X-Amz-Algorithm') !== ALGORITHM) {
    return malformed('X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"');
  }
  const credential = parseCredential(query.get('X-Amz-Credential') ?? '');
  const signedHeaders = query.get('X-Amz-SignedHeaders');
  const signature = query.get('X-Amz-Signature');
  const amzDate = query.get('X-Amz-Date');
  const expires = Number(query.get('X-Amz-Expires'));
  if (!credential || !signedHeaders || !signature || !amzDate) {
    return malformed(
      'Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.',
    );
  }
  if (!Number.isInteger(expires) || expires < 1 || expires > MAX_PRESIGNED_EXPIRES_SECONDS) {
    return malformed('X-Amz-Expires must be between 1 and 604800 seconds');
  }
  const token = query.get('X-Amz-Security-Token');
  return {
    mechanism: 'query',
    accessKeyId: credential[0],
    scopeDate: credential[1],
    scopeRegion: credential[2],
    scopeService: credential[3],
    signedHeaders: signedHeaders.split(';'),
    signature,
    amzDate,
    expiresSeconds: expires,
    ...(token ? { sessionToken: token } : {}),
  };
}

/** Which mechanism the request uses; none at all is an anonymous request. */
export function authMechanism(request: IncomingSignedRequest): 'header' | 'query' | 'none' | 'both' {
  const header = request.headers.authorization !== undefined;
  const query = request.query.some(([k]) => k === 'X-Amz-Algorithm' || k === 'X-Amz-Signature');
  if (header && query) return 'both';
  return header ? 'header' : query ? 'query' : 'none';
}

function canonicalRequest(
  request: IncomingSignedRequest,
  signedHeaders: readonly string[],
  payloadHash: string,
): string | undefined {
  const picked: Record<string, string> = {};
  for (const name of signedHeaders) {
    const value = headerValue(request.headers, name);
    if (value === undefined) return undefined;
    picked[name] = value;
  }
  const canonical = getCanonicalHeaders(
    { headers: picked } as Parameters<typeof getCanonicalHeaders>[0],
    undefined,
    new Set(signedHeaders),
  );
  const names = Object.keys(canonical).sort();
  const query = getCanonicalQuery({ query: queryRecord(request.query) } as Parameters<
    typeof getCanonicalQuery
  >[0]);
  // S3 signs the path exactly as sent (no second escaping, no dot-segment removal); other services
  // escape it again, which for the `/` they use is the same text.
  return [
    request.method,
    request.rawPath,
    query,
    ...names.map((n) => `${n}:${canonical[n]}`),
    '',
    names.join(';'),
    payloadHash,
  ].join('\n');
}

function hmacHex(key: Uint8Array, text: string): string {
  return createHmac('sha256', key).update(text, 'utf8').digest('hex');
}

function sameSignature(expected: string, provided: string): boolean {
  const a = Buffer.from(expected, 'utf8');
  const b = Buffer.from(provided, 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}

function checkTime(params: AuthParameters, signedAt: number, now: number): AuthFailure | undefined {
  if (params.mechanism === 'header') {
    if (Math.abs(now - signedAt) > MAX_CLOCK_SKEW_MS) {
      return {
        status: 403,
        code: 'RequestTimeTooSkewed',
        message: 'The difference between the request time and the current time is too large.',
      };
    }
    return undefined;
  }
  if (signedAt - now > MAX_CLOCK_SKEW_MS) {
    return { status: 403, code: 'AccessDenied', message: 'Request is not yet valid' };
  }
  if (now > signedAt + (params.expiresSeconds ?? 0) * 1000) {
    return { status: 403, code: 'AccessDenied', message: 'Request has expired' };
  }
  return undefined;
}

function checkSessionToken(
  principal: Principal,
  params: AuthParameters,
  now: number,
): AuthFailure | undefined {
  if (principal.kind === 'account') return undefined;
  if (params.sessionToken === undefined || !sameSignature(principal.sessionToken, params.sessionToken)) {
    return {
      status: 403,
      code: 'InvalidToken',
      message: 'The provided token is malformed or otherwise invalid.',
    };
  }
  // AWS answers 400 for an expired session token (S3's error table), 403 for an expired URL.
  if (now >= principal.expiresAt) {
    return { status: 400, code: 'ExpiredToken', message: 'The provided token has expired.' };
  }
  return undefined;
}

/**
 * Verifies one request's SigV4 signature against the known credentials, then its time window and,
 * for temporary credentials, the session token and its expiry. Never throws on bad input.
 */
export async function verifySigV4(
  request: IncomingSignedRequest,
  options: VerifyOptions,
): Promise<VerifyResult> {
  const mechanism = authMechanism(request);
  if (mechanism === 'none') return fail(403, 'AccessDenied', 'Access Denied');
  if (mechanism === 'both') {
    return fail(
      400,
      'InvalidArgument',
      'Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or the Authorization header should be specified',
    );
  }
  const queryMap = new Map(request.query.map(([k, v]) => [k, v] as const));
  const params =
    mechanism === 'header'
      ? headerAuthParameters(request, headerValue(request.headers, 'authorization') ?? '')
      : queryAuthParameters(queryMap);
  if ('status' in params) return { ok: false, error: params };

  const signedAt = parseAmzDate(params.amzDate);
  if (signedAt === undefined)
    return fail(
      403,
      'AccessDenied',
      "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"",
    );
  const malformedCode =
    mechanism === 'header' ? 'AuthorizationHeaderMalformed' : 'AuthorizationQueryParametersError';
  if (params.scopeRegion !== options.region) {
    return fail(
      400,
      malformedCode,
      `the region '${params.scopeRegion}' is wrong; expecting '${options.region}'`,
    );
  }
  if (params.scopeService !== options.service) {
    return fail(
      400,
      malformedCode,
      `the service '${params.scopeService}' is wrong; expecting '${options.service}'`,
    );
  }
  if (params.scopeDate !== params.amzDate.slice(0, 8)) {
    return fail(400, malformedCode, 'the credential date does not match the date of the request');
  }
  if (!params.signedHeaders.includes('host')) {
    return fail(400, malformedCode, 'the host header must be signed');
  }

  const principal = options.credentials.lookup(params.accessKeyId);
  if (!principal) {
    return fail(
      403,
      'InvalidAccessKeyId',
      'The AWS Access Key Id you provided does not exist in our records.',
    );
  }

  const payloadHash =
    mechanism === 'query'
      ? (queryMap.get('X-Amz-Content-Sha256') ??
        headerValue(request.headers, 'x-amz-content-sha256') ??
        UNSIGNED_PAYLOAD)
      : (headerValue(request.headers, 'x-amz-content-sha256') ?? options.bodySha256Hex);
  if (payloadHash === undefined) {
    return fail(400, 'InvalidRequest', 'Missing required header for this request: x-amz-content-sha256');
  }
  const canonical = canonicalRequest(request, params.signedHeaders, payloadHash);
  const scope = `${params.scopeDate}/${params.scopeRegion}/${params.scopeService}/aws4_request`;
  const signingKey = await getSigningKey(
    NodeSha256,
    { accessKeyId: principal.accessKeyId, secretAccessKey: principal.secretAccessKey },
    params.scopeDate,
    params.scopeRegion,
    params.scopeService,
  );
  const stringToSign =
    canonical &&
    [ALGORITHM, params.amzDate, scope, createHash('sha256').update(canonical, 'utf8').digest('hex')].join(
      '\n',
    );
  if (!stringToSign || !sameSignature(hmacHex(signingKey, stringToSign), params.signature)) {
    return fail(
      403,
      'SignatureDoesNotMatch',
      'The request signature we calculated does not match the signature you provided. Check your key and signing method.',
    );
  }
  const timeFault = checkTime(params, signedAt, options.now);
  if (timeFault) return { ok: false, error: timeFault };
  const tokenFault = checkSessionToken(principal, params, options.now);
  if (tokenFault) return { ok: false, error: tokenFault };

  return {
    ok: true,
    value: {
      principal,
      mechanism,
      signature: params.signature,
      amzDate: params.amzDate,
      scope,
      payloadHash,
      signingKey,
    },
  };
}

/** The signature of one aws-chunked chunk, chained from the previous one (S3's streaming SigV4). */
export function chunkSignature(
  verified: Pick<VerifiedRequest, 'amzDate' | 'scope' | 'signingKey'>,
  previousSignature: string,
  chunkSha256Hex: string,
): string {
  const emptyHash = createHash('sha256').digest('hex');
  const stringToSign = [
    'AWS4-HMAC-SHA256-PAYLOAD',
    verified.amzDate,
    verified.scope,
    previousSignature,
    emptyHash,
    chunkSha256Hex,
  ].join('\n');
  return hmacHex(verified.signingKey, stringToSign);
}
