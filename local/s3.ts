import S3rver, { type FilesystemStore } from '@20minutes/s3rver';
import S3Object from '@20minutes/s3rver/lib/models/object.js';
import { type ObjectLocator, type StoredObject, startS3Gateway } from './s3-gateway/index.ts';
import { type CredentialStore, makeCredentialStore } from './sts/index.ts';

export interface S3ServerOptions {
  readonly host: string;
  /** TCP port of the S3 endpoint (the gateway); 0 picks a free one. */
  readonly port: number;
  /** Where objects are kept; they survive a restart with the same directory. */
  readonly directory: string;
  readonly buckets: readonly string[];
  /** @default 'us-east-1' */
  readonly region?: string;
  /** Who may sign requests; default: only `localS3Credentials`. The local STS adds its sessions here. */
  readonly credentials?: CredentialStore;
  /** Epoch ms. @default Date.now */
  readonly now?: () => number;
}

export interface RunningS3Server {
  /** The S3 endpoint clients use: the gateway that verifies signatures and policies. */
  readonly endpoint: string;
  readonly port: number;
  readonly credentials: CredentialStore;
  stop(): Promise<void>;
}

/** The account's long-term access key pair in the local cloud (S3, STS and the SDK clients sign with it). */
export const localS3Credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const;

/**
 * Starts the local S3 endpoint: the S3 gateway (local/s3-gateway: SigV4 on every request, presigned
 * URL expiry, STS session policies), in front of @20minutes/s3rver, which stores objects and listens
 * on loopback only. The gateway does all the checking (s3rver's own SigV4 check refuses some SDK v3
 * bucket-level calls, TOOLCHAIN.md §5), so s3rver runs with its check switched off. Buckets are
 * created through s3rver's own option.
 */
export async function startS3Server(options: S3ServerOptions): Promise<RunningS3Server> {
  const region = options.region ?? 'us-east-1';
  const credentials = options.credentials ?? makeCredentialStore([localS3Credentials], options.now);
  const store = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory: options.directory,
    allowMismatchedSignatures: true,
    configureBuckets: options.buckets.map((name) => ({ name })),
  });
  const { port: storePort } = await store.run();
  try {
    const gateway = await startS3Gateway({
      host: options.host,
      port: options.port,
      region,
      credentials,
      backend: { endpoint: `http://127.0.0.1:${storePort}`, credentials: localS3Credentials },
      objects: objectFiles(store.store),
      ...(options.now ? { now: options.now } : {}),
    });
    return {
      endpoint: `http://${urlHost(options.host)}:${gateway.port}`,
      port: gateway.port,
      credentials,
      stop: async () => {
        await gateway.stop();
        await store.close();
      },
    };
  } catch (error) {
    await store.close();
    throw error;
  }
}

/**
 * Where s3rver keeps an object and the headers its GetObject answers with (its own metadata
 * selection, S3Object, and its default content type), so the gateway can serve the bytes from the
 * file itself: s3rver's 64 KiB reads through a second loopback hop were the local S3's bottleneck.
 */
function objectFiles(store: FilesystemStore): ObjectLocator {
  return async (bucket, key): Promise<StoredObject | undefined> => {
    const metadata = await store.getMetadata(bucket, key).catch(() => undefined);
    if (!metadata) return undefined;
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(new S3Object(bucket, key, null, metadata).metadata)) {
      if (name !== 'content-length') headers[name] = String(value);
    }
    return { path: store.getResourcePath(bucket, key, 'object'), headers };
  };
}

/** `host` as it goes into a URL (IPv6 literals in brackets; the wildcard address as loopback). */
export function urlHost(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}
