import type { AwsCredentialIdentity } from '@smithy/types';
import aws4 from 'aws4';
import { Agent } from 'undici';

/**
 * Signed AWS requests over plain HTTP, for the handlers on the per-device path (fan-out,
 * acknowledgement, download authorization, counters). The SDK v3 spends about 0.7 ms of CPU on
 * each request here against about 0.17 ms for the same request signed by `aws4` and sent by
 * `undici` (`npm run bench -- sdk-request`); with several requests per device that is most of a
 * device's CPU. ADR 0040 "Lean requests" tells why and where.
 *
 * Everything an SDK client is configured with (region, credentials chain, endpoint resolution,
 * attempts) is read from the SDK client itself, so the handlers are still built from SDK clients
 * and the two never disagree about where or as whom they call.
 */

/** What a request needs of an SDK v3 client's resolved configuration. */
export interface SdkClientConfig {
  readonly region: () => Promise<string>;
  readonly credentials: () => Promise<AwsCredentialIdentity>;
  readonly endpoint?: () => Promise<{ protocol: string; hostname: string; port?: number; path: string }>;
  readonly endpointProvider: (params: Record<string, unknown>, context?: unknown) => { url: URL };
  readonly useFipsEndpoint: () => Promise<boolean>;
  readonly useDualstackEndpoint: () => Promise<boolean>;
  readonly maxAttempts: number | (() => Promise<number>);
}

export interface SdkClientLike {
  readonly config: SdkClientConfig;
}

export interface AwsTarget {
  /** `https://dynamodb.us-east-1.amazonaws.com`, no trailing slash. */
  readonly origin: string;
  readonly region: string;
  readonly credentials: () => Promise<AwsCredentialIdentity>;
  readonly maxAttempts: number;
}

/** Where and as whom the SDK client would send: its custom endpoint, or its region's. */
export async function targetOf(client: SdkClientLike): Promise<AwsTarget> {
  const { config } = client;
  const region = await config.region();
  const custom = config.endpoint ? await config.endpoint() : undefined;
  const origin = custom
    ? `${custom.protocol}//${custom.hostname}${custom.port ? `:${custom.port}` : ''}`
    : config.endpointProvider({
        Region: region,
        UseFIPS: await config.useFipsEndpoint(),
        UseDualStack: await config.useDualstackEndpoint(),
      }).url.origin;
  const maxAttempts =
    typeof config.maxAttempts === 'function' ? await config.maxAttempts() : config.maxAttempts;
  return { origin, region, credentials: () => config.credentials(), maxAttempts };
}

export interface AwsHttpRequest {
  readonly method: 'GET' | 'POST';
  /** Path and query, already encoded as sent (`/things/t%2F1/shadow?name=ota`). */
  readonly path: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string | Uint8Array;
}

export interface AwsHttpResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: Buffer;
}

export interface AwsHttp {
  /** One attempt: a signed request and its whole answer, whatever its status. */
  send(request: AwsHttpRequest): Promise<AwsHttpResponse>;
  readonly target: Promise<AwsTarget>;
  /** The client's retry quota, shared by all its requests as the SDK's is. */
  readonly budget: RetryBudget;
  /** The service's backoff base for transient failures, as its SDK client has it. */
  readonly transientBaseMs: number;
}

/** Timeouts of one attempt: an answer that has not begun in this long is taken as lost. */
const HEADERS_TIMEOUT_MS = 30_000;
const BODY_TIMEOUT_MS = 30_000;
/** As the SDK's default HTTP handler: at most this many sockets to one endpoint. */
const MAX_CONNECTIONS = 50;

/** A signing client for one service of the SDK client's endpoint, on its own keep-alive pool. */
export function makeAwsHttp(
  client: SdkClientLike,
  signingName: string,
  transientBaseMs: number = RETRY_BASE_MS.transient,
): AwsHttp {
  const target = targetOf(client);
  // Resolved once; a failure (no region) surfaces on the first request, as the SDK's would.
  target.catch(() => undefined);
  const agent = new Agent({
    connections: MAX_CONNECTIONS,
    headersTimeout: HEADERS_TIMEOUT_MS,
    bodyTimeout: BODY_TIMEOUT_MS,
  });
  return {
    target,
    budget: new RetryBudget(),
    transientBaseMs,
    async send(request) {
      const { origin, region, credentials } = await target;
      const headers = signedHeaders({ origin, region, signingName }, request, await credentials());
      const answer = await agent.request({
        origin,
        method: request.method,
        path: request.path,
        headers,
        ...(request.body === undefined ? {} : { body: request.body }),
      });
      const body = Buffer.from(await answer.body.arrayBuffer());
      return { status: answer.statusCode, headers: answer.headers, body };
    },
  };
}

/** The request's headers with its SigV4 signature (and session token), as `aws4` signs them. */
export function signedHeaders(
  to: { readonly origin: string; readonly region: string; readonly signingName: string },
  request: AwsHttpRequest,
  credentials: AwsCredentialIdentity,
): Record<string, string> {
  const signed = aws4.sign(
    {
      host: new URL(to.origin).host,
      method: request.method,
      path: request.path,
      service: to.signingName,
      region: to.region,
      headers: { ...request.headers },
      ...(request.body === undefined ? {} : { body: bodyOf(request.body) }),
    },
    credentials,
  );
  return Object.fromEntries(
    Object.entries(signed.headers ?? {}).map(([name, value]) => [name, String(value)]),
  );
}

/** aws4 hashes strings and Buffers; a Uint8Array is viewed as a Buffer without a copy. */
function bodyOf(body: string | Uint8Array): string | Buffer {
  return typeof body === 'string' ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
}

/** Node's codes for a connection that failed or was cut: worth another attempt (as the SDK's). */
const TRANSIENT_NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  // undici's: the socket closed under a request, or an answer or a connection took too long.
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
]);

/** Error names AWS uses for throttling (the SDK's list): retried after a longer pause. */
export const THROTTLING_ERRORS = new Set([
  'BandwidthLimitExceeded',
  'LimitExceededException',
  'PriorRequestNotComplete',
  'ProvisionedThroughputExceededException',
  'RequestLimitExceeded',
  'RequestThrottled',
  'RequestThrottledException',
  'SlowDown',
  'ThrottledException',
  'Throttling',
  'ThrottlingException',
  'TooManyRequestsException',
  'TransactionInProgressException',
]);

const TRANSIENT_ERROR_NAMES = new Set(['TimeoutError', 'RequestTimeout', 'RequestTimeoutException']);
const TRANSIENT_STATUSES = new Set([500, 502, 503, 504]);

export type RetryKind = 'throttling' | 'transient';

interface FailureLike {
  readonly name?: unknown;
  readonly code?: unknown;
  readonly cause?: unknown;
  readonly $metadata?: { readonly httpStatusCode?: number };
}

/**
 * How the SDK's standard mode classifies a failure: throttling, transient (a 500/502/503/504, a
 * timeout, a failed connection), or not worth another attempt (`undefined`).
 */
export function retryKindOf(error: unknown, depth = 0): RetryKind | undefined {
  if (!error || typeof error !== 'object' || depth > 10) return undefined;
  const failure = error as FailureLike;
  const status = failure.$metadata?.httpStatusCode;
  const name = typeof failure.name === 'string' ? failure.name : '';
  if (status === 429 || THROTTLING_ERRORS.has(name)) return 'throttling';
  if (TRANSIENT_ERROR_NAMES.has(name) || TRANSIENT_STATUSES.has(status ?? 0)) return 'transient';
  if (typeof failure.code === 'string' && TRANSIENT_NETWORK_CODES.has(failure.code)) return 'transient';
  return retryKindOf(failure.cause, depth + 1) === 'transient' ? 'transient' : undefined;
}

/** The SDK's (2026) backoff: full jitter over base × 2^retry, at most 20 s; throttling waits longer. */
const RETRY_BASE_MS: Record<RetryKind, number> = { transient: 50, throttling: 1_000 };
const RETRY_CAP_MS = 20_000;
/** How far past its own backoff a `Retry-After` may push a retry, as the SDK allows. */
const RETRY_AFTER_SLACK_MS = 5_000;

export function retryDelayMs(
  kind: RetryKind,
  retry: number,
  random: () => number = Math.random,
  retryAfterMs?: number,
  transientBaseMs: number = RETRY_BASE_MS.transient,
): number {
  const base = kind === 'transient' ? transientBaseMs : RETRY_BASE_MS[kind];
  const backoff = Math.floor(random() * Math.min(RETRY_CAP_MS, base * 2 ** retry));
  if (retryAfterMs === undefined) return backoff;
  return Math.max(backoff, Math.min(retryAfterMs, backoff + RETRY_AFTER_SLACK_MS));
}

/**
 * The SDK's retry quota, one per client: retries spend it (a transient failure more than a
 * throttle), successes refill it. When an endpoint keeps failing, requests stop retrying rather
 * than multiply the load on it.
 */
export class RetryBudget {
  static readonly CAPACITY = 500;
  static readonly COST: Record<RetryKind, number> = { transient: 14, throttling: 5 };
  #capacity = RetryBudget.CAPACITY;

  get capacity(): number {
    return this.#capacity;
  }

  /** The cost taken for one retry of this kind, or `undefined` when the budget cannot pay it. */
  take(kind: RetryKind): number | undefined {
    const cost = RetryBudget.COST[kind];
    if (this.#capacity < cost) return undefined;
    this.#capacity -= cost;
    return cost;
  }

  /** A success gives back what its last retry cost, or 1 when it needed none. */
  refund(cost: number | undefined): void {
    this.#capacity = Math.min(RetryBudget.CAPACITY, this.#capacity + (cost ?? 1));
  }
}

export interface RetryOptions {
  readonly maxAttempts: number;
  readonly budget?: RetryBudget;
  /** The service's base for transient failures (the SDK's DynamoDB client waits 25 ms, others 50). */
  readonly transientBaseMs?: number;
  readonly sleep?: (ms: number) => Promise<void>;
  readonly random?: () => number;
}

const sleepFor = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** How a lean client retries on `http`: its budget and its service's backoff base. */
export function retriesOn(http: AwsHttp, maxAttempts: number): RetryOptions {
  return { maxAttempts, budget: http.budget, transientBaseMs: http.transientBaseMs };
}

/**
 * Runs `attempt` until it succeeds, fails in a way `retryKindOf` does not retry, or the attempts
 * or the budget are spent; pauses as the SDK does in between. What was thrown last is thrown.
 */
export async function withRetries<T>(
  attempt: (attemptNumber: number) => Promise<T>,
  options: RetryOptions,
): Promise<T> {
  const { maxAttempts, budget = new RetryBudget(), sleep = sleepFor, random = Math.random } = options;
  const base = options.transientBaseMs ?? RETRY_BASE_MS.transient;
  let lastCost: number | undefined;
  for (let number = 1; ; number++) {
    try {
      const result = await attempt(number);
      budget.refund(lastCost);
      return result;
    } catch (error) {
      const kind = number < maxAttempts ? retryKindOf(error) : undefined;
      lastCost = kind && budget.take(kind);
      if (!kind || lastCost === undefined) throw error;
      await sleep(retryDelayMs(kind, number - 1, random, retryAfterHints.get(error as object), base));
    }
  }
}

/** `Retry-After` of the answers errors were made from, in ms from when they arrived. */
const retryAfterHints = new WeakMap<object, number>();

/** A `Retry-After` (seconds or an HTTP date) or an `x-amz-retry-after` (ms), as the SDK reads them. */
function retryAfterMsOf(response: AwsHttpResponse): number | undefined {
  const amz = response.headers['x-amz-retry-after'];
  if (typeof amz === 'string' && Number.isFinite(Number(amz))) return Math.max(0, Number(amz));
  const header = response.headers['retry-after'];
  if (typeof header !== 'string') return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/** The SDK's middleware shape, so the benchmark's request counter fits both kinds of client. */
export type Middleware = (
  next: (args: { input: Record<string, unknown> }) => Promise<{ output: Record<string, unknown> }>,
  context: { commandName: string },
) => (args: { input: Record<string, unknown> }) => Promise<{ output: Record<string, unknown> }>;

/** The `initialize` step of an SDK middleware stack: what runs around each command. */
export class MiddlewareChain {
  readonly #middleware: Middleware[] = [];

  /** Bound, as callers may take it off the stack before calling it. */
  readonly add = (middleware: Middleware, _options?: { step?: string; name?: string }): void => {
    this.#middleware.push(middleware);
  };

  run(
    commandName: string,
    input: Record<string, unknown>,
    core: (input: Record<string, unknown>) => Promise<Record<string, unknown>>,
  ): Promise<Record<string, unknown>> {
    if (this.#middleware.length === 0) return core(input);
    let next = async (args: { input: Record<string, unknown> }) => ({ output: await core(args.input) });
    for (const middleware of this.#middleware) next = middleware(next, { commandName });
    return next({ input }).then((result) => result.output);
  }
}

/** The error type AWS names in `x-amzn-errortype` or a JSON body's `__type`/`code`, without namespace or URL. */
export function errorTypeOf(response: AwsHttpResponse, parsed: Record<string, unknown>): string {
  const header = response.headers['x-amzn-errortype'];
  const raw =
    (typeof header === 'string' ? header : undefined) ??
    (typeof parsed.__type === 'string' ? parsed.__type : undefined) ??
    (typeof parsed.code === 'string' ? parsed.code : undefined) ??
    'UnknownError';
  return raw.split(':')[0]?.split('#').pop() ?? raw;
}

/** What AWS answered in an error's JSON body, `{}` when it is not JSON. */
export function jsonBodyOf(
  response: AwsHttpResponse,
  parse: (text: string) => unknown = JSON.parse,
): Record<string, unknown> {
  if (response.body.length === 0) return {};
  try {
    const parsed: unknown = parse(response.body.toString('utf8'));
    return parsed && typeof parsed === 'object' ? (parsed as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

export function metadataOf(response: AwsHttpResponse, attempts: number) {
  const requestId = response.headers['x-amzn-requestid'] ?? response.headers['x-amz-request-id'];
  return {
    httpStatusCode: response.status,
    ...(typeof requestId === 'string' ? { requestId } : {}),
    attempts,
    totalRetryDelay: 0,
  };
}

/** What the lean clients need of an SDK service exception. */
interface ServiceExceptionLike {
  readonly name: string;
  readonly $metadata: { readonly httpStatusCode?: number };
}

/** Typed loosely: each SDK exception takes its own options, checked by the SDK, not here. */
type ServiceExceptionClass<E> = new (...options: never[]) => E;
type Constructing<E> = new (options: Record<string, unknown>) => E;

/** A service's SDK model: its exports (exception classes by name) and its exceptions' base class. */
export interface ServiceModel<E extends ServiceExceptionLike> {
  readonly exports: object;
  readonly base: ServiceExceptionClass<E>;
}

/**
 * An error answer as the SDK would throw it: the service's exception class of that name (so
 * callers' `instanceof` checks hold) or its base class named so, with `fields` copied on.
 */
export function serviceErrorOf<E extends ServiceExceptionLike>(
  model: ServiceModel<E>,
  response: AwsHttpResponse,
  attempts: number,
  fields: Record<string, unknown> = {},
): E {
  const body = jsonBodyOf(response);
  const name = errorTypeOf(response, body);
  const options = {
    ...fields,
    message: String(body.message ?? body.Message ?? name),
    $metadata: metadataOf(response, attempts),
  };
  const error = exceptionOf(model, name, options, response.status);
  const retryAfter = retryAfterMsOf(response);
  if (retryAfter !== undefined) retryAfterHints.set(error, retryAfter);
  return error;
}

function exceptionOf<E extends ServiceExceptionLike>(
  model: ServiceModel<E>,
  name: string,
  options: Record<string, unknown>,
  status: number,
): E {
  const candidate = (model.exports as Record<string, unknown>)[name];
  if (typeof candidate === 'function' && candidate.prototype instanceof model.base)
    return new (candidate as Constructing<E>)(options);
  const Base = model.base as unknown as Constructing<E>;
  return new Base({ ...options, name, $fault: status >= 500 ? 'server' : 'client' });
}

/** One lean client per SDK client: a handler's stores share its connections, a benchmark can reach it. */
export function onePerClient<C extends object, F>(make: (client: C) => F): (client: C) => F {
  const built = new WeakMap<C, F>();
  return (client) => {
    let fast = built.get(client);
    if (fast === undefined) {
      fast = make(client);
      built.set(client, fast);
    }
    return fast;
  };
}
