// @20minutes/s3rver ships no types; this covers the part the local cloud uses.
declare module '@20minutes/s3rver' {
  import type { AddressInfo } from 'node:net';

  export interface S3rverOptions {
    address?: string;
    port?: number;
    silent?: boolean;
    directory?: string;
    resetOnClose?: boolean;
    allowMismatchedSignatures?: boolean;
    vhostBuckets?: boolean;
    configureBuckets?: { name: string; configs?: (string | Buffer)[] }[];
  }

  /** s3rver's filesystem store (lib/stores/filesystem.js): where objects and their metadata live. */
  export interface FilesystemStore {
    /** Rejects (ENOENT) when the object does not exist. */
    getMetadata(bucket: string, key: string): Promise<Record<string, string | number>>;
    getResourcePath(bucket: string, key: string, resource: 'object'): string;
  }

  export default class S3rver {
    constructor(options?: S3rverOptions);
    readonly store: FilesystemStore;
    run(): Promise<AddressInfo>;
    close(): Promise<void>;
  }
}

declare module '@20minutes/s3rver/lib/models/object.js' {
  /** How s3rver picks and defaults the metadata it answers a GET with. */
  export default class S3Object {
    constructor(bucket: string, key: string, content: null, metadata: Record<string, string | number>);
    readonly metadata: Record<string, string | number>;
  }
}
