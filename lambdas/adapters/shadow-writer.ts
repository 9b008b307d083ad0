import {
  ConflictException,
  GetThingShadowCommand,
  IoTDataPlaneClient,
  RequestEntityTooLargeException,
  ResourceNotFoundException,
  ThrottlingException,
  UpdateThingShadowCommand,
} from '@aws-sdk/client-iot-data-plane';
import { OTA_SHADOW_NAME, type ShadowUpdateDocument } from '../domain/deployment/index.ts';
import { err, ok, type Result } from '../domain/result.ts';
import { withoutSdkRequestLog } from './sdk-clients.ts';

/**
 * The `ota` named shadow through the IoT data plane (UpdateThingShadow / GetThingShadow), with
 * exponential backoff and full jitter on throttling (429) and server errors (5xx). Build the
 * IoTDataPlaneClient with `maxAttempts: 1` so this is the only retry loop: the SDK's own would
 * multiply the attempts and hide the throttling from the caller's metrics.
 */

export type ShadowWriteErrorCode =
  /** The `version` lock did not match (409): someone wrote the shadow since the caller read it. */
  | 'VERSION_CONFLICT'
  /** Still throttled after every attempt: leave the device for a later batch. */
  | 'THROTTLED'
  /** 5xx after every attempt. */
  | 'UNAVAILABLE'
  /** 413: the document does not fit the shadow. */
  | 'TOO_LARGE';

export interface ShadowWriteError {
  readonly code: ShadowWriteErrorCode;
  readonly message: string;
  readonly thingName: string;
}

export interface ShadowWritten {
  /** The shadow's version after the update. */
  readonly version: number;
  /** Attempts it took (1 = no retry). */
  readonly attempts: number;
}

export interface ShadowSnapshot {
  readonly version: number;
  readonly state: { readonly desired?: Record<string, unknown>; readonly reported?: Record<string, unknown> };
}

export interface ShadowWriter {
  update(thingName: string, document: ShadowUpdateDocument): Promise<Result<ShadowWritten, ShadowWriteError>>;
  /** The `ota` shadow, or undefined when the thing has none. */
  get(thingName: string): Promise<Result<ShadowSnapshot | undefined, ShadowWriteError>>;
}

/**
 * The data-plane client a shadow writer is built on: `maxAttempts: 1`, so the writer's own backoff
 * (with jitter) is the only retry loop; the SDK's would multiply attempts under throttling and
 * hide it from the caller's metrics. AWS's regional endpoint unless one is given.
 */
export function shadowWriterClient(endpoint?: string): IoTDataPlaneClient {
  return new IoTDataPlaneClient({ maxAttempts: 1, ...(endpoint ? { endpoint } : {}) });
}

export interface BackoffPolicy {
  /** Attempts in all, the first included. */
  readonly maxAttempts: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
}

export const defaultBackoff: BackoffPolicy = { maxAttempts: 6, baseDelayMs: 50, maxDelayMs: 2000 };

/**
 * Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"): a uniform delay in
 * [0, min(max, base·2^retry)). Spreads retrying callers apart instead of synchronising them.
 */
export function backoffDelayMs(retry: number, policy: BackoffPolicy, random: () => number): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** retry);
  return Math.floor(random() * ceiling);
}

export interface ShadowWriterOptions {
  readonly iotData: Pick<IoTDataPlaneClient, 'send'>;
  readonly shadowName?: string;
  readonly backoff?: BackoffPolicy;
  readonly sleep?: (ms: number) => Promise<void>;
  readonly random?: () => number;
  /** Called on every retried attempt (metrics, tests). */
  readonly onRetry?: (thingName: string, code: 'THROTTLED' | 'UNAVAILABLE', delayMs: number) => void;
}

type Retryable = 'THROTTLED' | 'UNAVAILABLE';

function httpStatusOf(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null || !('$metadata' in error)) return undefined;
  const metadata = (error as { $metadata?: { httpStatusCode?: number } }).$metadata;
  return metadata?.httpStatusCode;
}

function retryableCode(error: unknown): Retryable | undefined {
  if (error instanceof ThrottlingException || httpStatusOf(error) === 429) return 'THROTTLED';
  const status = httpStatusOf(error);
  if (status !== undefined && status >= 500) return 'UNAVAILABLE';
  return undefined;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

const sleepFor = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export function makeShadowWriter(options: ShadowWriterOptions): ShadowWriter {
  withoutSdkRequestLog(options.iotData);
  const shadowName = options.shadowName ?? OTA_SHADOW_NAME;
  const policy = options.backoff ?? defaultBackoff;
  const sleep = options.sleep ?? sleepFor;
  const random = options.random ?? Math.random;

  /** Runs `call`, retrying throttling and 5xx with backoff; other errors go to `classify`. */
  async function withBackoff<T>(
    thingName: string,
    call: () => Promise<T>,
    classify: (error: unknown) => Result<T, ShadowWriteError> | undefined,
  ): Promise<Result<{ value: T; attempts: number }, ShadowWriteError>> {
    for (let attempt = 1; ; attempt++) {
      try {
        return ok({ value: await call(), attempts: attempt });
      } catch (error) {
        const classified = classify(error);
        if (classified)
          return classified.ok ? ok({ value: classified.value, attempts: attempt }) : classified;
        const code = retryableCode(error);
        if (!code) throw error;
        if (attempt >= policy.maxAttempts) {
          return err({ code, thingName, message: `${messageOf(error)} (after ${attempt} attempts)` });
        }
        const delay = backoffDelayMs(attempt - 1, policy, random);
        options.onRetry?.(thingName, code, delay);
        await sleep(delay);
      }
    }
  }

  async function update(
    thingName: string,
    document: ShadowUpdateDocument,
  ): Promise<Result<ShadowWritten, ShadowWriteError>> {
    const payload = new TextEncoder().encode(JSON.stringify(document));
    const result = await withBackoff(
      thingName,
      async () => {
        const out = await options.iotData.send(
          new UpdateThingShadowCommand({ thingName, shadowName, payload }),
        );
        return versionOf(out.payload);
      },
      (error): Result<number, ShadowWriteError> | undefined => {
        if (error instanceof ConflictException) {
          return err({ code: 'VERSION_CONFLICT', thingName, message: messageOf(error) });
        }
        if (error instanceof RequestEntityTooLargeException) {
          return err({ code: 'TOO_LARGE', thingName, message: messageOf(error) });
        }
        return undefined;
      },
    );
    return result.ok ? ok({ version: result.value.value, attempts: result.value.attempts }) : result;
  }

  async function get(thingName: string): Promise<Result<ShadowSnapshot | undefined, ShadowWriteError>> {
    const result = await withBackoff(
      thingName,
      async (): Promise<ShadowSnapshot | undefined> => {
        const out = await options.iotData.send(new GetThingShadowCommand({ thingName, shadowName }));
        return snapshotOf(out.payload);
      },
      (error): Result<ShadowSnapshot | undefined, ShadowWriteError> | undefined =>
        error instanceof ResourceNotFoundException ? ok(undefined) : undefined,
    );
    return result.ok ? ok(result.value.value) : result;
  }

  return { update, get };
}

function parsePayload(payload: Uint8Array | undefined): Record<string, unknown> {
  if (!payload) return {};
  const value: unknown = JSON.parse(new TextDecoder().decode(payload));
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
}

function versionOf(payload: Uint8Array | undefined): number {
  const version = parsePayload(payload).version;
  return typeof version === 'number' ? version : 0;
}

function objectOrUndefined(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : undefined;
}

function snapshotOf(payload: Uint8Array | undefined): ShadowSnapshot {
  const body = parsePayload(payload);
  const state = objectOrUndefined(body.state) ?? {};
  const desired = objectOrUndefined(state.desired);
  const reported = objectOrUndefined(state.reported);
  return {
    version: typeof body.version === 'number' ? body.version : 0,
    state: { ...(desired ? { desired } : {}), ...(reported ? { reported } : {}) },
  };
}
