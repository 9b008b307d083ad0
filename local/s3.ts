import S3rver from '@20minutes/s3rver';

export interface S3ServerOptions {
  readonly host: string;
  /** TCP port; 0 picks a free one. */
  readonly port: number;
  /** Where objects are kept; they survive a restart with the same directory. */
  readonly directory: string;
  readonly buckets: readonly string[];
}

export interface RunningS3Server {
  readonly endpoint: string;
  readonly port: number;
  stop(): Promise<void>;
}

/** The access key pair the local S3 server accepts (its SigV4 check uses these). */
export const localS3Credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const;

/**
 * Starts the S3-compatible server (@20minutes/s3rver, which checks SigV4 signatures and the expiry
 * of presigned URLs). Buckets are created here, through its own option: SDK v3 bucket-level calls
 * fail its signature check (TOOLCHAIN.md §5).
 */
export async function startS3Server(options: S3ServerOptions): Promise<RunningS3Server> {
  const server = new S3rver({
    address: options.host,
    port: options.port,
    silent: true,
    directory: options.directory,
    configureBuckets: options.buckets.map((name) => ({ name })),
  });
  const { port } = await server.run();
  return {
    endpoint: `http://${urlHost(options.host)}:${port}`,
    port,
    stop: () => server.close(),
  };
}

/** `host` as it goes into a URL (IPv6 literals in brackets; the wildcard address as loopback). */
export function urlHost(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}
