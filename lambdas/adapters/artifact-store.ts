import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  type GetObjectCommandOutput,
  NoSuchKey,
  NotFound,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { err, ok, type Result } from '../domain/result.ts';
import { type UpdateIdentity, updateKey } from './update-store.ts';

/**
 * Object layout, one prefix per update:
 *   updates/<provider>/<name>/<version>/files/<filename>             the files devices download
 *   updates/<provider>/<name>/<version>/updatemanifest-<hash>.json    the signed update manifest
 * with the canonical update key (lower-case provider and name, normalised version). The manifest's
 * key carries its hash so an object, once referenced, never changes under a device.
 */
export function updatePrefix(id: UpdateIdentity): string {
  return `updates/${updateKey(id)}/`;
}

export function fileObjectKey(id: UpdateIdentity, filename: string): string {
  return `${updatePrefix(id)}files/${filename}`;
}

export function updateManifestObjectKey(id: UpdateIdentity, sha256Hex: string): string {
  return `${updatePrefix(id)}updatemanifest-${sha256Hex.slice(0, 16)}.json`;
}

export interface ExpectedObject {
  readonly sizeInBytes: number;
  /** Base64 SHA-256. */
  readonly sha256: string;
}

export type ObjectFault =
  | { readonly kind: 'missing' }
  | { readonly kind: 'size'; readonly actualSize: number }
  | { readonly kind: 'hash'; readonly actualSha256: string };

export interface WrittenObject {
  readonly objectKey: string;
  readonly sha256: string;
  readonly sizeInBytes: number;
}

export interface ArtifactStore {
  /** A presigned PUT URL for one object, valid `expiresInSeconds`. */
  presignUpload(objectKey: string, expiresInSeconds: number): Promise<string>;
  /** Streams the object once, counting bytes and hashing, never holding it in memory. */
  verifyObject(objectKey: string, expected: ExpectedObject): Promise<Result<void, ObjectFault>>;
  /** Writes the manifest bytes as they are (canonical JSON), under a key derived from their hash. */
  putUpdateManifest(id: UpdateIdentity, body: Uint8Array | string): Promise<WrittenObject>;
  deleteObjects(objectKeys: readonly string[]): Promise<void>;
  /**
   * Reads a stored update manifest's bytes, checking them against the size and hash recorded at
   * commit, so a deployment never signs bytes that changed in the bucket since.
   */
  readUpdateManifest(stored: WrittenObject): Promise<Result<Uint8Array, ObjectFault>>;
}

export interface ArtifactStoreOptions {
  /** A whole client: presigning needs its configuration, not just `send`. */
  readonly s3: S3Client;
  readonly bucket: string;
}

function isMissing(error: unknown): boolean {
  return error instanceof NoSuchKey || error instanceof NotFound;
}

/** Hashes a stream chunk by chunk; stops reading once it is longer than `limit` bytes. */
async function digestStream(
  body: AsyncIterable<Uint8Array>,
  limit: number,
): Promise<{ sizeInBytes: number; sha256: string; truncated: boolean }> {
  const hash = createHash('sha256');
  let sizeInBytes = 0;
  for await (const chunk of body) {
    sizeInBytes += chunk.byteLength;
    if (sizeInBytes > limit) return { sizeInBytes, sha256: '', truncated: true };
    hash.update(chunk);
  }
  return { sizeInBytes, sha256: hash.digest('base64'), truncated: false };
}

export function makeArtifactStore({ s3, bucket }: ArtifactStoreOptions): ArtifactStore {
  async function presignUpload(objectKey: string, expiresInSeconds: number): Promise<string> {
    return getSignedUrl(s3, new PutObjectCommand({ Bucket: bucket, Key: objectKey }), {
      expiresIn: expiresInSeconds,
    });
  }

  async function verifyObject(
    objectKey: string,
    expected: ExpectedObject,
  ): Promise<Result<void, ObjectFault>> {
    let out: GetObjectCommandOutput;
    try {
      out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: objectKey }));
    } catch (error) {
      if (isMissing(error)) return err({ kind: 'missing' });
      throw error;
    }
    const body = out.Body as (Readable & AsyncIterable<Uint8Array>) | undefined;
    if (out.ContentLength !== undefined && out.ContentLength !== expected.sizeInBytes) {
      // The length alone decides: close the connection instead of downloading a wrong file.
      body?.destroy();
      return err({ kind: 'size', actualSize: out.ContentLength });
    }
    if (body === undefined) return err({ kind: 'missing' });
    const digest = await digestStream(body, expected.sizeInBytes);
    if (digest.truncated) body.destroy();
    if (digest.truncated || digest.sizeInBytes !== expected.sizeInBytes) {
      return err({ kind: 'size', actualSize: digest.sizeInBytes });
    }
    if (digest.sha256 !== expected.sha256) return err({ kind: 'hash', actualSha256: digest.sha256 });
    return ok(undefined);
  }

  async function putUpdateManifest(id: UpdateIdentity, body: Uint8Array | string): Promise<WrittenObject> {
    const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
    const hash = createHash('sha256').update(bytes);
    const hex = hash.copy().digest('hex');
    const objectKey = updateManifestObjectKey(id, hex);
    await s3.send(
      new PutObjectCommand({ Bucket: bucket, Key: objectKey, Body: bytes, ContentType: 'application/json' }),
    );
    return { objectKey, sha256: hash.digest('base64'), sizeInBytes: bytes.byteLength };
  }

  async function deleteObjects(objectKeys: readonly string[]): Promise<void> {
    // One DeleteObject per key: bucket-level DeleteObjects is not signed the same way by every
    // S3-compatible server, and an update holds few files. Missing keys are not an error in S3.
    for (const key of objectKeys) {
      await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    }
  }

  async function readUpdateManifest(stored: WrittenObject): Promise<Result<Uint8Array, ObjectFault>> {
    let out: GetObjectCommandOutput;
    try {
      out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: stored.objectKey }));
    } catch (error) {
      if (isMissing(error)) return err({ kind: 'missing' });
      throw error;
    }
    const body = out.Body as (Readable & AsyncIterable<Uint8Array>) | undefined;
    if (body === undefined) return err({ kind: 'missing' });
    const chunks: Uint8Array[] = [];
    let size = 0;
    for await (const chunk of body) {
      size += chunk.byteLength;
      if (size > stored.sizeInBytes) {
        body.destroy();
        return err({ kind: 'size', actualSize: size });
      }
      chunks.push(chunk);
    }
    const bytes = Buffer.concat(chunks);
    if (bytes.byteLength !== stored.sizeInBytes) return err({ kind: 'size', actualSize: bytes.byteLength });
    const sha256 = createHash('sha256').update(bytes).digest('base64');
    if (sha256 !== stored.sha256) return err({ kind: 'hash', actualSha256: sha256 });
    return ok(new Uint8Array(bytes));
  }

  return { presignUpload, verifyObject, putUpdateManifest, deleteObjects, readUpdateManifest };
}
