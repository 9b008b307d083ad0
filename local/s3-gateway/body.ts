/**
 * Request bodies as S3 checks them: an `aws-chunked` upload (x-amz-content-sha256 `STREAMING-*`) is
 * decoded to its plain bytes, each chunk's signature checked against the chain when the payload is
 * signed; a body declared by its SHA-256 is hashed as it streams and refused at the end when it
 * differs. The bytes flow through without being held in memory; an error ends the stream before its
 * last byte, so the server behind never completes the upload.
 */
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import type { S3ErrorInfo } from './errors.ts';

export class BodyRejectedError extends Error {
  override readonly name = 'BodyRejectedError';
  constructor(readonly info: S3ErrorInfo) {
    super(info.message);
  }
}

const incomplete = (message: string): BodyRejectedError =>
  new BodyRejectedError({ status: 400, code: 'IncompleteBody', message });

/** Checks one chunk: `signature` as sent (undefined for unsigned streaming), SHA-256 hex of its data. */
export type ChunkVerifier = (chunkSha256Hex: string, signature: string | undefined) => boolean;

type State = 'size' | 'data' | 'crlf' | 'trailer' | 'done';

/**
 * Holds back the last piece of output until the input has ended and passed its checks: the server
 * behind then never receives a complete body that we refuse (it would store it).
 */
abstract class CheckedTransform extends Transform {
  #held: Buffer | undefined;

  protected release(data: Buffer): void {
    if (this.#held) this.push(this.#held);
    this.#held = data;
  }

  /** Returns an error to refuse the body. */
  protected abstract finalCheck(): Error | undefined;

  override _flush(callback: TransformCallback): void {
    const error = this.finalCheck();
    if (error) {
      callback(error);
      return;
    }
    if (this.#held) this.push(this.#held);
    this.#held = undefined;
    callback();
  }
}

/** Decodes `aws-chunked`: `<hex size>[;chunk-signature=<sig>]\r\n<data>\r\n ... 0...\r\n[trailers]\r\n`. */
export class AwsChunkedDecoder extends CheckedTransform {
  #state: State = 'size';
  #pending: Buffer = Buffer.alloc(0);
  #remaining = 0;
  #signature: string | undefined;
  #hash: Hash | undefined;
  /** The current chunk's data: released only once its signature is checked. */
  #chunkData: Buffer[] = [];
  #decoded = 0;
  readonly #verify: ChunkVerifier | undefined;
  readonly #expectedLength: number | undefined;

  constructor(options: { readonly verifyChunk?: ChunkVerifier; readonly decodedContentLength?: number }) {
    super();
    this.#verify = options.verifyChunk;
    this.#expectedLength = options.decodedContentLength;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#pending = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    try {
      this.#drain();
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  protected finalCheck(): Error | undefined {
    if (this.#state !== 'done') return incomplete('The request body terminated unexpectedly');
    if (this.#expectedLength !== undefined && this.#decoded !== this.#expectedLength) {
      return incomplete(
        'You did not provide the number of bytes specified by the x-amz-decoded-content-length header',
      );
    }
    return undefined;
  }

  #line(): string | undefined {
    const end = this.#pending.indexOf('\r\n');
    if (end === -1) {
      if (this.#pending.length > 8192) throw incomplete('chunk header too long');
      return undefined;
    }
    const line = this.#pending.subarray(0, end).toString('latin1');
    this.#pending = this.#pending.subarray(end + 2);
    return line;
  }

  #endChunk(): void {
    const digest = (this.#hash ?? createHash('sha256')).digest('hex');
    if (this.#verify && !this.#verify(digest, this.#signature)) {
      throw new BodyRejectedError({
        status: 403,
        code: 'SignatureDoesNotMatch',
        message: 'The chunk signature we calculated does not match the signature you provided.',
      });
    }
  }

  #drain(): void {
    for (;;) {
      if (this.#state === 'size') {
        const line = this.#line();
        if (line === undefined) return;
        const [sizeText = '', ...extensions] = line.split(';');
        const size = Number.parseInt(sizeText, 16);
        if (!/^[0-9a-fA-F]+$/.test(sizeText) || !Number.isSafeInteger(size))
          throw incomplete('malformed chunk size');
        const signature = extensions.find((e) => e.startsWith('chunk-signature='));
        this.#signature = signature?.slice('chunk-signature='.length);
        this.#hash = createHash('sha256');
        if (size === 0) {
          this.#endChunk();
          this.#state = 'trailer';
        } else {
          this.#remaining = size;
          this.#state = 'data';
        }
      } else if (this.#state === 'data') {
        if (this.#pending.length === 0) return;
        const take = this.#pending.subarray(0, Math.min(this.#remaining, this.#pending.length));
        this.#pending = this.#pending.subarray(take.length);
        this.#remaining -= take.length;
        this.#decoded += take.length;
        this.#hash?.update(take);
        this.#chunkData.push(Buffer.from(take));
        if (this.#remaining === 0) {
          this.#endChunk();
          this.release(Buffer.concat(this.#chunkData));
          this.#chunkData = [];
          this.#state = 'crlf';
        }
      } else if (this.#state === 'crlf') {
        if (this.#pending.length < 2) return;
        if (this.#pending[0] !== 0x0d || this.#pending[1] !== 0x0a)
          throw incomplete('malformed chunk terminator');
        this.#pending = this.#pending.subarray(2);
        this.#state = 'size';
      } else if (this.#state === 'trailer') {
        // Trailing checksums (x-amz-checksum-*) are not checked: S3 would, but no test needs it yet.
        const line = this.#line();
        if (line === undefined) return;
        if (line === '') this.#state = 'done';
      } else {
        this.#pending = Buffer.alloc(0);
        return;
      }
    }
  }
}

/** Passes the body through and fails at its end when its SHA-256 is not the declared one. */
export class Sha256Checker extends CheckedTransform {
  readonly #hash = createHash('sha256');
  constructor(readonly expectedHex: string) {
    super();
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#hash.update(chunk);
    this.release(chunk);
    callback();
  }
  protected finalCheck(): Error | undefined {
    if (this.#hash.digest('hex') === this.expectedHex.toLowerCase()) return undefined;
    return new BodyRejectedError({
      status: 400,
      code: 'XAmzContentSHA256Mismatch',
      message: "The provided 'x-amz-content-sha256' header does not match what was computed.",
    });
  }
}
