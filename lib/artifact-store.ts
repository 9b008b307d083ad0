import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import type * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { S3_SERVER_ACCESS_LOGS_USE_BUCKET_POLICY } from 'aws-cdk-lib/cx-api';
import { Construct } from 'constructs';
import { acknowledgeOn } from './acknowledge.ts';

/** What other constructs need of the artifact store: the bucket and scoped grants on it. */
export interface IArtifactStore {
  readonly bucket: s3.IBucket;
  /** Key prefix of update files and manifests, ending in `/`. */
  readonly updatesPrefix: string;
  /**
   * Lets `grantee` read, write and delete objects under the updates prefix (and use the bucket's
   * key for that), and list the bucket so a missing object reads as 404, not 403. Acknowledges
   * the prefix wildcard's cdk-nag finding on `grantee` when it is a construct.
   */
  grantUpdatesReadWrite(grantee: iam.IGrantable): void;
  /**
   * Lets `grantee` read objects under the updates prefix and decrypt them with the bucket's key:
   * what a presigned GET signed by `grantee`, or credentials of a role `grantee` is, needs.
   * Nothing else: no listing, so a device learns nothing about other updates' keys.
   */
  grantUpdatesRead(grantee: iam.IGrantable): void;
}

export interface ArtifactStoreProps {
  /** @default - a new customer-managed KMS key with yearly rotation, retained on delete */
  readonly encryptionKey?: kms.IKey;
  /** @default 'updates/' */
  readonly updatesPrefix?: string;
  /** How long a replaced or deleted object version stays recoverable. @default 30 days */
  readonly noncurrentVersionExpiration?: Duration;
  /** @default 1 day: presigned uploads are single PUTs, so only abandoned clients leave parts */
  readonly abortIncompleteMultipartUploadAfter?: Duration;
  /** @default 365 days */
  readonly accessLogExpiration?: Duration;
  /** @default RemovalPolicy.RETAIN */
  readonly removalPolicy?: RemovalPolicy;
}

/**
 * The bucket holding update files and signed update manifests: SSE-KMS with a customer key
 * (docs/adr/0020-infra-encryption-at-rest.md), versioned, TLS 1.2+ only, never public, with
 * server access logs in a separate bucket.
 */
export class ArtifactStore extends Construct implements IArtifactStore {
  public readonly bucket: s3.Bucket;
  public readonly encryptionKey: kms.IKey;
  public readonly accessLogsBucket: s3.Bucket;
  public readonly updatesPrefix: string;

  constructor(scope: Construct, id: string, props: ArtifactStoreProps = {}) {
    super(scope, id);
    // Log delivery is granted by a bucket policy, not the LogDeliveryWrite ACL: ACLs are off
    // (BucketOwnerEnforced). Set here, not in cdk.json, so the construct is right in any app.
    this.node.setContext(S3_SERVER_ACCESS_LOGS_USE_BUCKET_POLICY, true);
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    this.updatesPrefix = props.updatesPrefix ?? 'updates/';
    this.encryptionKey =
      props.encryptionKey ??
      new kms.Key(this, 'Key', {
        description: 'Encrypts OTA update files and manifests at rest',
        enableKeyRotation: true,
        removalPolicy,
      });
    this.accessLogsBucket = this.createAccessLogsBucket(props, removalPolicy);
    this.bucket = new s3.Bucket(this, 'Bucket', {
      encryption: s3.BucketEncryption.KMS,
      encryptionKey: this.encryptionKey,
      // One data key per bucket instead of per object: cuts KMS calls (and their cost and
      // throttling) when a fleet downloads the same files.
      bucketKeyEnabled: true,
      versioned: true,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      serverAccessLogsBucket: this.accessLogsBucket,
      serverAccessLogsPrefix: 'artifacts/',
      lifecycleRules: [
        {
          id: 'expire-noncurrent-versions',
          noncurrentVersionExpiration: props.noncurrentVersionExpiration ?? Duration.days(30),
        },
        {
          id: 'abort-incomplete-multipart-uploads',
          abortIncompleteMultipartUploadAfter: props.abortIncompleteMultipartUploadAfter ?? Duration.days(1),
        },
      ],
      removalPolicy,
    });
  }

  public grantUpdatesReadWrite(grantee: iam.IGrantable): void {
    const objects = `${this.updatesPrefix}*`;
    // kms: actions go to the bucket's key: GenerateDataKey to write SSE-KMS objects (presigned
    // PUTs are signed with this role), Decrypt to read them back for hashing.
    this.bucket.grants.actionsOnObjectKeys(
      grantee,
      objects,
      's3:GetObject',
      's3:PutObject',
      's3:DeleteObject',
      'kms:GenerateDataKey',
      'kms:Decrypt',
    );
    // Without s3:ListBucket, S3 answers 403 instead of 404 for a missing key, and the commit
    // step could not tell "not uploaded yet" from "forbidden".
    this.bucket.grants.actionsOnBucketAndObjectKeys(grantee, objects, 's3:ListBucket');
    this.acknowledgePrefixWildcard(grantee);
  }

  public grantUpdatesRead(grantee: iam.IGrantable): void {
    this.bucket.grants.actionsOnObjectKeys(grantee, `${this.updatesPrefix}*`, 's3:GetObject', 'kms:Decrypt');
    this.acknowledgePrefixWildcard(grantee);
  }

  private acknowledgePrefixWildcard(grantee: iam.IGrantable): void {
    acknowledgeOn(grantee, {
      [`AwsSolutions-IAM5[Resource::<${this.bucketLogicalId()}.Arn>/${this.updatesPrefix}*]`]:
        'Update files are created at run time under the updates prefix, so object permissions name the prefix, not single keys.',
    });
  }

  /** cdk-nag names the bucket ARN in findings as `<LogicalId.Arn>`. */
  private bucketLogicalId(): string {
    return this.bucket.stack.resolve((this.bucket.node.defaultChild as s3.CfnBucket).logicalId);
  }

  /**
   * The access-log destination. It logs nothing itself: logging its own writes into itself would
   * never end (cdk-nag's S1 knows a log target for what it is).
   */
  private createAccessLogsBucket(props: ArtifactStoreProps, removalPolicy: RemovalPolicy): s3.Bucket {
    return new s3.Bucket(this, 'AccessLogs', {
      // SSE-S3: the log delivery service needs no key grant, and the logs hold no update content.
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      lifecycleRules: [
        { id: 'expire-access-logs', expiration: props.accessLogExpiration ?? Duration.days(365) },
      ],
      removalPolicy,
    });
  }
}
