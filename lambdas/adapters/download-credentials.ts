import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { AssumeRoleCommand, type STSClient } from '@aws-sdk/client-sts';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';

/** Temporary credentials for one device's downloads (never logged). */
export interface DownloadSession {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken: string;
  /** Epoch ms. */
  readonly expiresAt: number;
}

/**
 * Mints what a device downloads with: presigned GET URLs for exact object keys, or STS credentials
 * from the download role narrowed by an inline session policy to `s3:GetObject` on those keys.
 */
export interface DownloadCredentials {
  /**
   * One presigned GET URL per object key, each valid `expiresInSeconds`, all signed at one time so
   * that they share every query parameter but the signature (domain/downloads/presigned.ts).
   */
  presignGets(objectKeys: readonly string[], expiresInSeconds: number): Promise<Map<string, string>>;
  /** AssumeRole on the download role with a session policy allowing GetObject on exactly these keys. */
  assumeDownloadRole(input: {
    readonly sessionName: string;
    readonly objectKeys: readonly string[];
    /** Fallback scope when listing every key does not fit the session policy: whole-prefix grants. */
    readonly prefixes: readonly string[];
    readonly durationSeconds: number;
  }): Promise<DownloadSession>;
}

export class DownloadCredentialsError extends Error {
  override readonly name = 'DownloadCredentialsError';
}

/** AWS's limit on the plain-text session policy passed to AssumeRole. */
export const SESSION_POLICY_MAX_CHARACTERS = 2048;

/** `arn:aws:s3:::bucket/key`; IAM reads `*` and `?` in a resource as wildcards. */
export function objectArn(bucket: string, objectKey: string, partition = 'aws'): string {
  return `arn:${partition}:s3:::${bucket}/${objectKey}`;
}

/**
 * The session policy: GetObject on each object, listed. When the list would pass the 2,048-character
 * limit (an update with many files), each update's prefix is granted instead: still only that
 * deployment's update objects, never another update's.
 */
export function downloadSessionPolicy(
  bucket: string,
  objectKeys: readonly string[],
  prefixes: readonly string[],
  partition = 'aws',
): string {
  const policy = (resources: string[]): string =>
    JSON.stringify({
      Version: '2012-10-17',
      Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: resources }],
    });
  const exact = policy([...new Set(objectKeys)].map((key) => objectArn(bucket, key, partition)));
  if (exact.length <= SESSION_POLICY_MAX_CHARACTERS) return exact;
  const byPrefix = policy([...new Set(prefixes)].map((prefix) => objectArn(bucket, `${prefix}*`, partition)));
  if (byPrefix.length > SESSION_POLICY_MAX_CHARACTERS) {
    throw new DownloadCredentialsError('the download session policy does not fit in 2,048 characters');
  }
  return byPrefix;
}

/** Role session names allow `[\w+=,.@-]{2,64}`; thing names also allow `:`. */
export function roleSessionNameFor(thingName: string): string {
  const name = thingName.replace(/[^\w+=,.@-]/g, '-').slice(0, 64);
  return name.length >= 2 ? name : `${name}--`.slice(0, 2);
}

export interface DownloadCredentialsOptions {
  /** A whole client: presigning needs its configuration (endpoint, region, credentials). */
  readonly s3: S3Client;
  readonly sts: Pick<STSClient, 'send'>;
  readonly bucket: string;
  readonly downloadRoleArn: string;
}

/**
 * Presigned GETs alone: the fan-out mints them too, and never assumes the download role.
 *
 * SigV4 dates have a resolution of one second, so URLs for the same object and lifetime signed
 * within the same second are identical, byte for byte. The presigner signs at the second and
 * keeps that second's URLs: a fan-out notifying hundreds of devices a second signs each file once
 * a second instead of once per device (about 0.5 ms of CPU per URL through the SDK). A device
 * gets exactly what independent signing would have given it.
 */
export function makeGetPresigner(options: {
  readonly s3: S3Client;
  readonly bucket: string;
  /** Epoch ms. @default Date.now */
  readonly now?: () => number;
}): Pick<DownloadCredentials, 'presignGets'> {
  const now = options.now ?? Date.now;
  let second = -1;
  let signed = new Map<string, Promise<string>>();
  const sign = (key: string, expiresIn: number, signingDate: Date): Promise<string> => {
    const cacheKey = `${expiresIn} ${key}`;
    let url = signed.get(cacheKey);
    if (!url) {
      url = getSignedUrl(options.s3, new GetObjectCommand({ Bucket: options.bucket, Key: key }), {
        expiresIn,
        signingDate,
      });
      signed.set(cacheKey, url);
      url.catch(() => signed.delete(cacheKey));
    }
    return url;
  };
  return {
    async presignGets(objectKeys, expiresInSeconds) {
      // One signing time per call, so that one grant's URLs share their query.
      const at = Math.floor(now() / 1000);
      if (at !== second) {
        second = at;
        signed = new Map();
      }
      const signingDate = new Date(at * 1000);
      const keys = [...new Set(objectKeys)];
      const urls = await Promise.all(keys.map((key) => sign(key, expiresInSeconds, signingDate)));
      return new Map(keys.map((key, i) => [key, urls[i] ?? '']));
    },
  };
}

export function makeDownloadCredentials(options: DownloadCredentialsOptions): DownloadCredentials {
  const partition = options.downloadRoleArn.split(':')[1] ?? 'aws';
  return {
    ...makeGetPresigner(options),
    async assumeDownloadRole({ sessionName, objectKeys, prefixes, durationSeconds }) {
      const out = await options.sts.send(
        new AssumeRoleCommand({
          RoleArn: options.downloadRoleArn,
          RoleSessionName: roleSessionNameFor(sessionName),
          DurationSeconds: durationSeconds,
          Policy: downloadSessionPolicy(options.bucket, objectKeys, prefixes, partition),
        }),
      );
      const c = out.Credentials;
      if (!c?.AccessKeyId || !c.SecretAccessKey || !c.SessionToken || !c.Expiration) {
        throw new DownloadCredentialsError('AssumeRole returned no credentials');
      }
      return {
        accessKeyId: c.AccessKeyId,
        secretAccessKey: c.SecretAccessKey,
        sessionToken: c.SessionToken,
        expiresAt: c.Expiration.getTime(),
      };
    },
  };
}
