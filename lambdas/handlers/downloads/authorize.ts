import type {
  DeploymentRecord,
  DeploymentStore,
  SignedDeploymentManifest,
} from '../../adapters/deployment-store.ts';
import { isActiveStatus } from '../../adapters/deployment-store.ts';
import type { DownloadCredentials } from '../../adapters/download-credentials.ts';
import type { ExecutionStore } from '../../adapters/execution-store.ts';
import type { UpdateStore } from '../../adapters/update-store.ts';
import { isTerminal } from '../../domain/deployment/index.ts';
import { type CompactPresignedUrls, compactPresignedUrls } from '../../domain/downloads/presigned.ts';
import { INLINE_MANIFEST_MAX_BYTES } from '../../domain/manifest/index.ts';
import { err, ok, type Result } from '../../domain/result.ts';
import { type DownloadableFile, readyUpdateFiles } from './files.ts';
import type { DownloadRequest } from './request.ts';

/**
 * Stable codes of a refused download request (the device acts on them):
 * - `BAD_REQUEST`: the payload is malformed (faults name the fields).
 * - `CLIENT_MISMATCH`: the MQTT client is not the thing whose topic it used.
 * - `NO_ACTIVE_EXECUTION`: this thing has no live execution of that deployment (never targeted,
 *   already finished, being canceled): whether the deployment exists is not revealed.
 * - `DEPLOYMENT_NOT_ACTIVE`: the deployment ended (completed, canceled, aborted).
 * - `UNKNOWN_FILE`: a requested file id is not a file of the deployment's update.
 * - `UPDATE_UNAVAILABLE`: the update is no longer ready (a bug or a race with deletion).
 * - `ANSWER_TOO_LARGE`: the answer would pass the MQTT message limit; ask for fewer files at a time.
 */
export type DownloadRejectionCode =
  | 'BAD_REQUEST'
  | 'CLIENT_MISMATCH'
  | 'NO_ACTIVE_EXECUTION'
  | 'DEPLOYMENT_NOT_ACTIVE'
  | 'UNKNOWN_FILE'
  | 'UPDATE_UNAVAILABLE'
  | 'ANSWER_TOO_LARGE';

export interface DownloadRejection {
  readonly code: DownloadRejectionCode;
  readonly message: string;
}

interface GrantBase {
  readonly deploymentId: string;
  /** The execution's attempt the grant was made for. */
  readonly attempt: number;
  /**
   * The deployment's signed manifest (ADR 0010): its canonical text, full, or the mini manifest
   * whose one file is the full one when that is large; and the JWS with the deployment's claims.
   * It travels here, not in the shadow, so the desired document stays one metered shadow operation.
   */
  readonly manifest: string;
  readonly signature: string;
  /** Epoch ms when the URLs or credentials stop working. */
  readonly expiresAt: number;
}

/** Presigned GETs, the part they share sent once (domain/downloads/presigned.ts). */
export interface PresignedGrant extends GrantBase, CompactPresignedUrls {
  readonly mode: 'presigned';
}

export interface StsGrant extends GrantBase {
  readonly mode: 'sts';
  readonly credentials: {
    readonly accessKeyId: string;
    readonly secretAccessKey: string;
    readonly sessionToken: string;
  };
  readonly bucket: string;
  readonly region: string;
  /** fileId → object key in `bucket`. */
  readonly files: Readonly<Record<string, string>>;
}

export type DownloadGrant = PresignedGrant | StsGrant;

export interface AuthorizeDeps {
  readonly executions: Pick<ExecutionStore, 'markDownloadStarted'>;
  readonly deployments: Pick<DeploymentStore, 'get'>;
  readonly updates: Pick<UpdateStore, 'get' | 'getMany'>;
  readonly credentials: DownloadCredentials;
  readonly bucket: string;
  readonly region: string;
}

const reject = (code: DownloadRejectionCode, message: string): Result<never, DownloadRejection> =>
  err({ code, message });

/**
 * Decides a download request and mints its URLs or credentials: the thing must have a live
 * execution (its current attempt, not terminal, no cancel pending) of an active deployment, and may
 * only get the files of that deployment's update. Asking is the device's progress report: a
 * `notified` execution is recorded `downloading` by the same request that reads it. `now` is epoch ms.
 */
export async function authorizeDownload(
  deps: AuthorizeDeps,
  request: DownloadRequest,
  now: number,
): Promise<Result<DownloadGrant, DownloadRejection>> {
  const { thingName, deploymentId } = request;
  // The device policy lets a client publish only under its own thing's topics; this is the same
  // rule checked again, for a rule or policy that was set up wrong.
  if (request.clientId !== undefined && request.clientId !== thingName) {
    return reject('CLIENT_MISMATCH', `client "${request.clientId}" may not ask for thing "${thingName}"`);
  }
  const noExecution = `thing ${thingName} has no active execution of deployment ${deploymentId}`;
  // The deployment first: a request for one that is unknown or over writes nothing.
  const deployment = await deps.deployments.get(deploymentId);
  if (!deployment) return reject('NO_ACTIVE_EXECUTION', noExecution);
  if (!isActiveStatus(deployment.status)) {
    return reject('DEPLOYMENT_NOT_ACTIVE', `deployment ${deploymentId} is ${deployment.status}`);
  }
  const execution = await deps.executions.markDownloadStarted(deploymentId, thingName, now, request.attempt);
  const live = execution && !isTerminal(execution.state) && execution.cancelReason === undefined;
  if (!live || (request.attempt !== undefined && execution.attempt !== request.attempt)) {
    return reject('NO_ACTIVE_EXECUTION', noExecution);
  }
  const downloadable = await readyUpdateFiles(deps.updates, deployment.updateId);
  if (!downloadable) {
    return reject('UPDATE_UNAVAILABLE', `the update of deployment ${deploymentId} is not available`);
  }

  const wanted = request.files ?? [...downloadable.files.keys()];
  const unknown = wanted.filter((id) => !downloadable.files.has(id));
  if (unknown.length > 0) {
    return reject('UNKNOWN_FILE', `not files of this deployment's update: ${unknown.join(', ')}`);
  }
  const files = wanted
    .map((id) => downloadable.files.get(id))
    .filter((f): f is DownloadableFile => f !== undefined);
  const objectKeys = files.map((f) => f.objectKey);
  const { mode, credentialLifetimeSeconds } = deployment.policy.download;
  if (mode === 'presigned') {
    return ok(await mintPresignedGrant(deps.credentials, deployment, execution.attempt, files, now));
  }
  const base = grantBase(deployment, execution.attempt);
  const session = await deps.credentials.assumeDownloadRole({
    sessionName: thingName,
    objectKeys,
    prefixes: downloadable.prefixes,
    durationSeconds: credentialLifetimeSeconds,
  });
  return ok({
    ...base,
    mode,
    expiresAt: session.expiresAt,
    credentials: {
      accessKeyId: session.accessKeyId,
      secretAccessKey: session.secretAccessKey,
      sessionToken: session.sessionToken,
    },
    bucket: deps.bucket,
    region: deps.region,
    files: Object.fromEntries(files.map((f) => [f.fileId, f.objectKey])),
  });
}

function grantBase(deployment: DeploymentRecord, attempt: number) {
  return {
    deploymentId: deployment.deploymentId,
    attempt,
    manifest: manifestTextFor(deployment.manifest),
    signature: deployment.manifest.signature,
  };
}

/**
 * Presigned GETs of `files` for one execution attempt of `deployment`, at the policy's lifetime:
 * what the authorizer answers a device, and what the fan-out sends it unasked with its
 * notification (fanout/push-grant.ts).
 */
export async function mintPresignedGrant(
  credentials: Pick<DownloadCredentials, 'presignGets'>,
  deployment: DeploymentRecord,
  attempt: number,
  files: readonly DownloadableFile[],
  now: number,
): Promise<PresignedGrant> {
  const lifetime = deployment.policy.download.credentialLifetimeSeconds;
  const urls = await credentials.presignGets(
    files.map((f) => f.objectKey),
    lifetime,
  );
  const compact = compactPresignedUrls(new Map(files.map((f) => [f.fileId, urls.get(f.objectKey) ?? ''])));
  if (!compact.ok) throw new Error(`bug: presigned URLs not signed together: ${compact.error.message}`);
  return {
    ...grantBase(deployment, attempt),
    mode: 'presigned',
    // URLs are signed at the second (download-credentials.ts): their life starts there.
    expiresAt: Math.floor(now / 1000) * 1000 + lifetime * 1000,
    ...compact.value,
  };
}

/**
 * A grant as devices receive it on their `accepted` topic: `expiresAt` as ISO text like every time
 * in the protocol, and the request's clientToken (none when the fan-out sends it unasked).
 */
export function grantMessage(grant: DownloadGrant, clientToken?: string): Record<string, unknown> {
  return {
    ...(clientToken !== undefined ? { clientToken } : {}),
    ...grant,
    expiresAt: new Date(grant.expiresAt).toISOString(),
  };
}

/**
 * The full manifest when it is small, the mini manifest otherwise (the device then downloads the
 * full one, which the signature binds by hash, with the same grant): an answer within one 5 KB
 * metered message leaves room for the URLs.
 */
export function manifestTextFor(signed: SignedDeploymentManifest): string {
  // The limit is on the text as it travels: a JSON string literal, escaped.
  const small = Buffer.byteLength(JSON.stringify(signed.inline)) <= INLINE_MANIFEST_MAX_BYTES;
  return small || signed.detached === undefined ? signed.inline : signed.detached;
}
