/**
 * Which IAM action and resource ARN an S3 request needs (path-style addressing, as the local cloud's
 * clients use it), so the gateway can evaluate a role session's policies the way S3 does.
 * https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html
 */

export interface S3Operation {
  /** `s3:GetObject`, `s3:ListBucket`, ... */
  readonly action: string;
  /** `arn:aws:s3:::bucket/key` (key percent-decoded) or `arn:aws:s3:::bucket`. */
  readonly resource: string;
  readonly bucket?: string;
  readonly key?: string;
}

const has = (query: ReadonlySet<string>, name: string): boolean => query.has(name);

function objectAction(method: string, query: ReadonlySet<string>): string {
  switch (method) {
    case 'GET':
    case 'HEAD':
      if (has(query, 'acl')) return 's3:GetObjectAcl';
      if (has(query, 'tagging')) return 's3:GetObjectTagging';
      if (has(query, 'uploadId')) return 's3:ListMultipartUploadParts';
      return has(query, 'versionId') ? 's3:GetObjectVersion' : 's3:GetObject';
    case 'PUT':
      if (has(query, 'acl')) return 's3:PutObjectAcl';
      if (has(query, 'tagging')) return 's3:PutObjectTagging';
      return 's3:PutObject';
    case 'POST':
      // CreateMultipartUpload (?uploads) and CompleteMultipartUpload (?uploadId) are PutObject in IAM.
      return has(query, 'restore') ? 's3:RestoreObject' : 's3:PutObject';
    case 'DELETE':
      if (has(query, 'uploadId')) return 's3:AbortMultipartUpload';
      if (has(query, 'tagging')) return 's3:DeleteObjectTagging';
      return has(query, 'versionId') ? 's3:DeleteObjectVersion' : 's3:DeleteObject';
    default:
      return `s3:${method}`;
  }
}

function bucketAction(method: string, query: ReadonlySet<string>): string {
  switch (method) {
    case 'GET':
    case 'HEAD':
      if (has(query, 'location')) return 's3:GetBucketLocation';
      if (has(query, 'versioning')) return 's3:GetBucketVersioning';
      if (has(query, 'uploads')) return 's3:ListBucketMultipartUploads';
      if (has(query, 'versions')) return 's3:ListBucketVersions';
      if (has(query, 'policy')) return 's3:GetBucketPolicy';
      return 's3:ListBucket';
    case 'PUT':
      return has(query, 'policy') ? 's3:PutBucketPolicy' : 's3:CreateBucket';
    case 'POST':
      // DeleteObjects (?delete): S3 checks s3:DeleteObject; on the bucket here, which is stricter.
      return 's3:DeleteObject';
    case 'DELETE':
      return has(query, 'policy') ? 's3:DeleteBucketPolicy' : 's3:DeleteBucket';
    default:
      return `s3:${method}`;
  }
}

/** The operation of a path-style request; undefined when the path cannot be decoded. */
export function s3OperationOf(
  method: string,
  rawPath: string,
  queryNames: ReadonlySet<string>,
): S3Operation | undefined {
  let path: string;
  try {
    path = decodeURIComponent(rawPath);
  } catch {
    return undefined;
  }
  const withoutSlash = path.replace(/^\//, '');
  if (withoutSlash === '') return { action: 's3:ListAllMyBuckets', resource: '*' };
  const slash = withoutSlash.indexOf('/');
  const bucket = slash === -1 ? withoutSlash : withoutSlash.slice(0, slash);
  const key = slash === -1 ? '' : withoutSlash.slice(slash + 1);
  if (key === '')
    return { action: bucketAction(method, queryNames), resource: `arn:aws:s3:::${bucket}`, bucket };
  return { action: objectAction(method, queryNames), resource: `arn:aws:s3:::${bucket}/${key}`, bucket, key };
}
