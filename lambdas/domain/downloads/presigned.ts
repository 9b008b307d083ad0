/**
 * Presigned GET URLs as a download authorization carries them (ADR 0040). URLs signed together
 * (one signer, one signing time, one lifetime) share everything but their path and signature: the
 * credential, the date, the lifetime and the session token, which alone is about 1 KB for a Lambda
 * role. AWS meters an MQTT message per started 5 KB, so the answer sends the shared part once.
 * Pure.
 */
import { err, ok, type Result } from '../result.ts';

const SIGNATURE_PARAM = 'X-Amz-Signature';

/** `origin + path + '?' + query + '&X-Amz-Signature=' + signature` is each file's URL. */
export interface CompactPresignedUrls {
  /** Scheme, host and port, e.g. `https://bucket.s3.us-east-1.amazonaws.com`. */
  readonly origin: string;
  /** The query every URL shares, without the signature, as signed (percent-encoded). */
  readonly query: string;
  /** fileId → [path as signed (percent-encoded), X-Amz-Signature]. */
  readonly files: Readonly<Record<string, readonly [string, string]>>;
}

interface SplitUrl {
  readonly origin: string;
  readonly path: string;
  readonly query: string;
  readonly signature: string;
}

function splitUrl(url: string): SplitUrl | undefined {
  const at = url.indexOf('?');
  const scheme = url.indexOf('://');
  if (at < 0 || scheme < 0) return undefined;
  const base = url.slice(0, at);
  // Cut as the URL was written (a `new URL()` origin would drop a default port or lower-case a host).
  const pathStart = base.indexOf('/', scheme + 3);
  const origin = pathStart < 0 ? base : base.slice(0, pathStart);
  const params = url.slice(at + 1).split('&');
  const signature = params.find((p) => p.startsWith(`${SIGNATURE_PARAM}=`));
  if (!signature) return undefined;
  return {
    origin,
    path: base.slice(origin.length),
    query: params.filter((p) => p !== signature).join('&'),
    signature: signature.slice(SIGNATURE_PARAM.length + 1),
  };
}

/**
 * The shared part once, each file's path and signature apart. Refused when the URLs do not share
 * their origin and query (they were not signed together): sending them compacted would break them.
 */
export function compactPresignedUrls(
  urls: ReadonlyMap<string, string>,
): Result<CompactPresignedUrls, { readonly code: 'NOT_SIGNED_TOGETHER'; readonly message: string }> {
  const files: Record<string, readonly [string, string]> = {};
  let shared: { origin: string; query: string } | undefined;
  for (const [fileId, url] of urls) {
    const split = splitUrl(url);
    if (!split) return err({ code: 'NOT_SIGNED_TOGETHER', message: `${fileId}: not a presigned URL` });
    shared ??= { origin: split.origin, query: split.query };
    if (split.origin !== shared.origin || split.query !== shared.query) {
      return err({
        code: 'NOT_SIGNED_TOGETHER',
        message: `${fileId}: another origin or query than the others`,
      });
    }
    files[fileId] = [split.path, split.signature];
  }
  return ok({ origin: shared?.origin ?? '', query: shared?.query ?? '', files });
}

/** A file's URL again; undefined for a file the grant does not name. */
export function presignedUrlOf(compact: CompactPresignedUrls, fileId: string): string | undefined {
  const entry = Object.hasOwn(compact.files, fileId) ? compact.files[fileId] : undefined;
  if (!entry) return undefined;
  const [path, signature] = entry;
  const query = compact.query === '' ? '' : `${compact.query}&`;
  return `${compact.origin}${path}?${query}${SIGNATURE_PARAM}=${signature}`;
}
