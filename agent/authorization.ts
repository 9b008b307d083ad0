import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { z } from 'zod';
import { presignedUrlOf } from '../lambdas/domain/downloads/presigned.ts';
import { err, ok, type Result } from '../lambdas/domain/result.ts';
import { type AgentError, agentError } from './codes.ts';
import type { UrlSource } from './downloader.ts';

/**
 * Download authorization as the service answers it on `ota/things/<thing>/downloads/accepted`
 * (ADR 0040, lambdas/handlers/download-authorizer.ts): the deployment's signed manifest, and
 * presigned GET URLs per file id or STS credentials scoped to exactly the update's object keys.
 */
const signedManifestShape = {
  manifest: z.string().min(2),
  signature: z.string().min(10),
};
const credentialsShape = z.object({
  accessKeyId: z.string().min(1),
  secretAccessKey: z.string().min(1),
  sessionToken: z.string().min(1),
});

export const grantShape = z.discriminatedUnion('mode', [
  z.object({
    ...signedManifestShape,
    mode: z.literal('presigned'),
    expiresAt: z.string(),
    /** The URLs' shared part and each file's path and signature (lambdas/domain/downloads/presigned.ts). */
    origin: z.string(),
    query: z.string(),
    files: z.record(z.string(), z.tuple([z.string(), z.string()])),
  }),
  z.object({
    ...signedManifestShape,
    mode: z.literal('sts'),
    expiresAt: z.string(),
    credentials: credentialsShape,
    bucket: z.string().min(1),
    region: z.string().min(1),
    /** fileId → object key (ADR 0040 called it `keys`; the service sends `files`). */
    files: z.record(z.string(), z.string()).optional(),
    keys: z.record(z.string(), z.string()).optional(),
  }),
]);
export type Grant = z.infer<typeof grantShape>;

export interface AuthorizationRequest {
  /** Limits the answer to those file ids; absent: every file of the deployment. */
  readonly files?: readonly string[];
  /** The execution attempt the device runs: a grant for another attempt is not taken. */
  readonly attempt?: number;
  /**
   * The first request of an attempt: the grant the service sends with the notification may be a
   * moment behind the delta, so it is waited for this long before asking. @default 0
   */
  readonly awaitPushedMs?: number;
}

/** Asks the service for authorization (or takes the grant it sent unasked). */
export interface AuthorizationPort {
  request(deploymentId: string, options?: AuthorizationRequest): Promise<Result<Grant, AgentError>>;
}

/** How long the first request of an attempt waits for the grant sent with the notification. */
export const PUSHED_GRANT_WAIT_MS = 2_000;

export interface GrantSourceOptions {
  readonly deploymentId: string;
  readonly attempt: number;
  readonly port: AuthorizationPort;
  /** Epoch ms. */
  readonly now: () => number;
  /**
   * Ask again this long before the grant expires, or a quarter of the grant's lifetime when that
   * is shorter (a grant shorter-lived than the margin would otherwise never be reused). @default 30 s
   */
  readonly marginMs?: number;
  /** S3 endpoint for STS mode (the local S3); default: AWS's regional endpoint. */
  readonly s3Endpoint?: string;
}

/**
 * A `UrlSource` over download authorizations: asks once for every file of the deployment, reuses
 * the grant until it is about to expire (or a URL was refused), then asks again. In STS mode it
 * presigns each GET itself with the temporary credentials, so both modes reach the downloader as URLs.
 */
export class GrantSource implements UrlSource {
  readonly #options: GrantSourceOptions;
  #grant: { value: Grant; expiresAt: number; margin: number } | undefined;
  #pending: Promise<Result<Grant, AgentError>> | undefined;

  constructor(options: GrantSourceOptions) {
    this.#options = options;
  }

  /**
   * The deployment's signed manifest, from the grant (asked for now if there is none yet): the
   * service sends it with the authorization, not in the shadow, so that the document a shadow
   * operation carries stays under 1 KB (ADR 0010).
   */
  async signedManifest(): Promise<Result<{ manifest: string; signature: string }, AgentError>> {
    const grant = await this.#current(false);
    if (!grant.ok) return grant;
    return ok({ manifest: grant.value.manifest, signature: grant.value.signature });
  }

  async url(fileId: string, options: { readonly refresh: boolean }): Promise<Result<string, AgentError>> {
    const grant = await this.#current(options.refresh);
    if (!grant.ok) return grant;
    return urlFromGrant(grant.value, fileId, this.#options);
  }

  async #current(refresh: boolean): Promise<Result<Grant, AgentError>> {
    const fresh = this.#grant && this.#grant.expiresAt - this.#grant.margin > this.#options.now();
    if (this.#grant && fresh && !refresh) return ok(this.#grant.value);
    // Concurrent downloads share one request.
    const { deploymentId, attempt } = this.#options;
    const first = this.#grant === undefined;
    this.#pending ??= this.#options.port
      .request(deploymentId, { attempt, ...(first ? { awaitPushedMs: PUSHED_GRANT_WAIT_MS } : {}) })
      .finally(() => {
        this.#pending = undefined;
      });
    const answer = await this.#pending;
    if (answer.ok) {
      const expiresAt = Date.parse(answer.value.expiresAt) || 0;
      const lifetime = expiresAt - this.#options.now();
      const margin = Math.min(this.#options.marginMs ?? 30_000, Math.max(0, lifetime / 4));
      this.#grant = { value: answer.value, expiresAt, margin };
    }
    return answer;
  }
}

async function urlFromGrant(
  grant: Grant,
  fileId: string,
  options: GrantSourceOptions,
): Promise<Result<string, AgentError>> {
  if (grant.mode === 'presigned') {
    const url = presignedUrlOf(grant, fileId);
    return url
      ? ok(url)
      : err(agentError('FILE_NOT_AUTHORIZED', `the authorization names no URL for ${fileId}`));
  }
  const keys: Readonly<Record<string, string>> = grant.files ?? grant.keys ?? {};
  const key = keys[fileId];
  if (!key) return err(agentError('FILE_NOT_AUTHORIZED', `the authorization names no object for ${fileId}`));
  const s3 = new S3Client({
    region: grant.region,
    credentials: grant.credentials,
    ...(options.s3Endpoint ? { endpoint: options.s3Endpoint, forcePathStyle: true } : {}),
  });
  try {
    const remaining = Math.floor((Date.parse(grant.expiresAt) - options.now()) / 1000);
    const expiresIn = Math.max(60, Math.min(3600, remaining));
    return ok(
      await getSignedUrl(s3, new GetObjectCommand({ Bucket: grant.bucket, Key: key }), { expiresIn }),
    );
  } finally {
    s3.destroy();
  }
}
