/**
 * The local S3 endpoint: an HTTP front that enforces what S3 enforces, in front of an S3-compatible
 * server (s3rver) that only stores. Every request must carry a valid SigV4 signature (header or
 * presigned query) from known credentials, within its time window; temporary credentials from the
 * local STS must be unexpired and are held to their role and session policies (action + resource
 * ARN). Allowed requests are forwarded with their body streamed (aws-chunked decoded, SHA-256
 * checked) and the answer streamed back untouched (Range and 206 included); an allowed plain
 * GetObject is answered from the object's file instead (object-file.ts), as s3rver would answer it.
 */
import { randomBytes } from 'node:crypto';
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { SignatureV4 } from '@smithy/signature-v4';
import type { CredentialStore, LongTermCredentials, Principal } from '../sts/credentials.ts';
import { sessionAllows } from '../sts/policy.ts';
import {
  chunkSignature,
  NodeSha256,
  parseRawQuery,
  UNSIGNED_PAYLOAD,
  type VerifiedRequest,
  verifySigV4,
} from '../sts/sigv4.ts';
import { AwsChunkedDecoder, BodyRejectedError, Sha256Checker } from './body.ts';
import { type S3ErrorInfo, sendS3Error } from './errors.ts';
import { isPlainGetObject, type ObjectLocator, serveObjectFile } from './object-file.ts';
import { type S3Operation, s3OperationOf } from './operation.ts';

export interface S3GatewayOptions {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly region: string;
  readonly credentials: CredentialStore;
  /** The storing server behind the gateway, and the key it is called with. */
  readonly backend: { readonly endpoint: string; readonly credentials: LongTermCredentials };
  /**
   * Finds an object's file in the storing server, so that an allowed plain GetObject is answered
   * from it directly (see object-file.ts). Without it every request is forwarded.
   */
  readonly objects?: ObjectLocator;
  /** Epoch ms. @default Date.now */
  readonly now?: () => number;
}

export interface RunningS3Gateway {
  readonly endpoint: string;
  readonly port: number;
  stop(): Promise<void>;
}

/** Query parameters that are the signature itself; never forwarded. */
const AUTH_QUERY_PARAMETERS = new Set([
  'x-amz-algorithm',
  'x-amz-credential',
  'x-amz-date',
  'x-amz-expires',
  'x-amz-signedheaders',
  'x-amz-signature',
  'x-amz-security-token',
  'x-amz-content-sha256',
]);

/** Request headers the gateway consumes or replaces before forwarding. */
const DROPPED_REQUEST_HEADERS = new Set([
  'authorization',
  'x-amz-security-token',
  'x-amz-content-sha256',
  'x-amz-date',
  'host',
  'connection',
  'keep-alive',
  'transfer-encoding',
  'expect',
  'x-amz-decoded-content-length',
  'x-amz-trailer',
]);

const HOP_BY_HOP_RESPONSE_HEADERS = new Set(['connection', 'keep-alive', 'transfer-encoding']);

const PAYLOAD_HASH_PATTERN =
  /^(UNSIGNED-PAYLOAD|STREAMING-UNSIGNED-PAYLOAD-TRAILER|STREAMING-AWS4-HMAC-SHA256-PAYLOAD(-TRAILER)?|[0-9a-fA-F]{64})$/;

const accessDenied: S3ErrorInfo = { status: 403, code: 'AccessDenied', message: 'Access Denied' };

function isAllowed(principal: Principal, operation: S3Operation): boolean {
  if (principal.kind === 'account') return true;
  return sessionAllows(principal.rolePolicy, principal.sessionPolicy, operation.action, operation.resource);
}

/**
 * S3 answers 403, not 404, for a missing object when the caller may not list the bucket, so that
 * object names cannot be probed.
 */
function mayListBucket(principal: Principal, operation: S3Operation): boolean {
  if (principal.kind === 'account' || operation.bucket === undefined) return true;
  return isAllowed(principal, { action: 's3:ListBucket', resource: `arn:aws:s3:::${operation.bucket}` });
}

function headerText(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value.join(',') : value;
}

function encodeQuery(pairs: readonly (readonly [string, string])[]): string {
  return pairs.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
}

interface ForwardPlan {
  readonly path: string;
  readonly query: [string, string][];
  readonly headers: Record<string, string>;
  readonly body: NodeJS.ReadableStream[];
}

/** Headers and body pipeline for the request as the backend should see it. */
function planForward(
  req: IncomingMessage,
  rawPath: string,
  query: readonly (readonly [string, string])[],
  verified: VerifiedRequest,
): ForwardPlan | S3ErrorInfo {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined || DROPPED_REQUEST_HEADERS.has(name)) continue;
    headers[name] = Array.isArray(value) ? value.join(',') : value;
  }
  const forwardedQuery: [string, string][] = [];
  for (const [key, value] of query) {
    const lower = key.toLowerCase();
    if (AUTH_QUERY_PARAMETERS.has(lower)) continue;
    // A presigned URL carries hoisted x-amz-* headers (metadata, checksums) in its query.
    if (lower.startsWith('x-amz-')) headers[lower] = value;
    else forwardedQuery.push([key, value]);
  }

  const payload = verified.payloadHash;
  const body: NodeJS.ReadableStream[] = [];
  if (payload.startsWith('STREAMING-')) {
    const decodedLength = Number(headerText(req.headers, 'x-amz-decoded-content-length'));
    const signed = payload.startsWith('STREAMING-AWS4-HMAC-SHA256-PAYLOAD');
    let previous = verified.signature;
    body.push(
      new AwsChunkedDecoder({
        ...(Number.isSafeInteger(decodedLength) ? { decodedContentLength: decodedLength } : {}),
        ...(signed
          ? {
              verifyChunk: (digest, signature) => {
                const expected = chunkSignature(verified, previous, digest);
                previous = expected;
                return signature === expected;
              },
            }
          : {}),
      }),
    );
    const encodings = (headers['content-encoding'] ?? '')
      .split(',')
      .map((e) => e.trim())
      .filter((e) => e !== '' && e !== 'aws-chunked');
    if (encodings.length > 0) headers['content-encoding'] = encodings.join(',');
    else delete headers['content-encoding'];
    if (Number.isSafeInteger(decodedLength)) headers['content-length'] = String(decodedLength);
    else delete headers['content-length'];
  } else if (payload !== UNSIGNED_PAYLOAD && (req.method === 'PUT' || req.method === 'POST')) {
    body.push(new Sha256Checker(payload));
  }
  return { path: rawPath, query: forwardedQuery, headers, body };
}

async function signForBackend(
  signer: SignatureV4,
  backend: URL,
  method: string,
  plan: ForwardPlan,
): Promise<Record<string, string>> {
  const signed = await signer.sign({
    method,
    protocol: backend.protocol,
    hostname: backend.hostname,
    port: Number(backend.port),
    path: plan.path,
    query: Object.fromEntries(plan.query),
    headers: { ...plan.headers, host: backend.host, 'x-amz-content-sha256': UNSIGNED_PAYLOAD },
  });
  return signed.headers;
}

export async function startS3Gateway(options: S3GatewayOptions): Promise<RunningS3Gateway> {
  const locate = options.objects;

  /** An allowed plain GetObject of an existing object, answered from its file (true when it was). */
  async function servedFromFile(
    req: IncomingMessage,
    res: ServerResponse,
    operation: S3Operation,
    plan: ForwardPlan,
  ): Promise<boolean> {
    const { bucket, key } = operation;
    if (!locate || bucket === undefined || key === undefined) return false;
    if (!isPlainGetObject(req.method ?? 'GET', operation.action, plan.query, req.headers)) return false;
    const stored = await locate(bucket, key);
    return stored !== undefined && (await serveObjectFile(res, stored, headerText(req.headers, 'range')));
  }

  const now = options.now ?? Date.now;
  const backend = new URL(options.backend.endpoint);
  const backendAgent = new http.Agent({ keepAlive: true });
  const signer = new SignatureV4({
    service: 's3',
    region: options.region,
    credentials: options.backend.credentials,
    sha256: NodeSha256,
    uriEscapePath: false,
  });

  async function handle(req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> {
    const method = req.method ?? 'GET';
    const fail = (error: S3ErrorInfo): void => sendS3Error(res, method, error, requestId);
    const url = req.url ?? '/';
    const queryStart = url.indexOf('?');
    const rawPath = queryStart === -1 ? url : url.slice(0, queryStart);
    const query = parseRawQuery(queryStart === -1 ? '' : url.slice(queryStart + 1));
    if (!query) return fail({ status: 400, code: 'InvalidArgument', message: 'malformed query string' });

    const declared = headerText(req.headers, 'x-amz-content-sha256');
    if (declared !== undefined && !PAYLOAD_HASH_PATTERN.test(declared)) {
      return fail({
        status: 400,
        code: 'InvalidArgument',
        message: 'x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-*, or a valid sha256 value.',
      });
    }
    const verified = await verifySigV4(
      { method, rawPath, query, headers: req.headers },
      { service: 's3', region: options.region, credentials: options.credentials, now: now() },
    );
    if (!verified.ok) return fail(verified.error);

    const operation = s3OperationOf(method, rawPath, new Set(query.map(([k]) => k)));
    if (!operation)
      return fail({ status: 400, code: 'InvalidURI', message: "Couldn't parse the specified URI." });
    const { principal } = verified.value;
    if (!isAllowed(principal, operation)) return fail(accessDenied);

    const plan = planForward(req, rawPath, query, verified.value);
    if ('code' in plan) return fail(plan);
    if (await servedFromFile(req, res, operation, plan)) return;
    const headers = await signForBackend(signer, backend, method, plan);
    const search = plan.query.length > 0 ? `?${encodeQuery(plan.query)}` : '';
    const upstream = http.request({
      agent: backendAgent,
      protocol: backend.protocol,
      hostname: backend.hostname,
      port: backend.port,
      method,
      path: `${plan.path}${search}`,
      headers,
    });
    const answered = new Promise<IncomingMessage>((resolve, reject) => {
      upstream.once('response', resolve);
      upstream.once('error', reject);
    });
    try {
      await pipeline([req, ...plan.body, upstream] as unknown as readonly NodeJS.ReadWriteStream[]);
    } catch (error) {
      upstream.destroy();
      answered.catch(() => {});
      if (error instanceof BodyRejectedError) return fail(error.info);
      throw error;
    }
    const response = await answered;
    if (response.statusCode === 404 && operation.key !== undefined && !mayListBucket(principal, operation)) {
      response.resume();
      return fail(accessDenied);
    }
    const responseHeaders: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(response.headers)) {
      if (value !== undefined && !HOP_BY_HOP_RESPONSE_HEADERS.has(name)) responseHeaders[name] = value;
    }
    res.writeHead(response.statusCode ?? 502, response.statusMessage, responseHeaders);
    await pipeline(response, res);
  }

  const server = http.createServer((req, res) => {
    const requestId = randomBytes(8).toString('hex').toUpperCase();
    handle(req, res, requestId).catch((error: unknown) => {
      // A client that goes away mid-download is normal (resumable downloads stop on purpose).
      if ((error as NodeJS.ErrnoException).code === 'ERR_STREAM_PREMATURE_CLOSE') return;
      sendS3Error(
        res,
        req.method ?? 'GET',
        {
          status: 500,
          code: 'InternalError',
          message: 'We encountered an internal error. Please try again.',
        },
        requestId,
      );
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const urlHost = options.host.includes(':')
    ? `[${options.host}]`
    : options.host === '0.0.0.0'
      ? '127.0.0.1'
      : options.host;
  return {
    endpoint: `http://${urlHost}:${port}`,
    port,
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve, reject) =>
        server.close((error) => (error ? reject(error) : resolve())),
      );
      backendAgent.destroy();
    },
  };
}
