import { Match, type Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { updatesTable } from '../../lambdas/definitions/tables.ts';
import { arnWithSuffix, getAtt, ref, single, synthTemplate } from './stack.ts';

let template: Template;
beforeAll(() => {
  template = synthTemplate();
});

/** The artifact bucket: the only bucket with server access logging configured. */
const artifactBucket = () => single(template, 'AWS::S3::Bucket', { LoggingConfiguration: Match.anyValue() });
/** The access-log bucket: the bucket the artifact bucket logs into. */
const accessLogBucketId = () => {
  const logging = artifactBucket().properties.LoggingConfiguration as {
    DestinationBucketName: { Ref: string };
  };
  return logging.DestinationBucketName.Ref;
};

describe('ArtifactStore', () => {
  it('encrypts with a customer-managed KMS key that rotates, with an S3 Bucket Key', () => {
    const { properties } = artifactBucket();
    const rule = (properties.BucketEncryption as { ServerSideEncryptionConfiguration: unknown[] })
      .ServerSideEncryptionConfiguration[0] as {
      BucketKeyEnabled: boolean;
      ServerSideEncryptionByDefault: {
        SSEAlgorithm: string;
        KMSMasterKeyID: { 'Fn::GetAtt': [string, string] };
      };
    };
    expect(rule.ServerSideEncryptionByDefault.SSEAlgorithm).toBe('aws:kms');
    expect(rule.BucketKeyEnabled).toBe(true);
    const [keyId] = rule.ServerSideEncryptionByDefault.KMSMasterKeyID['Fn::GetAtt'];
    expect(template.toJSON().Resources[keyId]).toMatchObject({
      Type: 'AWS::KMS::Key',
      Properties: { EnableKeyRotation: true },
      DeletionPolicy: 'Retain',
    });
  });

  it('is versioned', () => {
    expect(artifactBucket().properties.VersioningConfiguration).toEqual({ Status: 'Enabled' });
  });

  it.each([
    ['artifact', () => artifactBucket().logicalId],
    ['access-log', accessLogBucketId],
  ])('blocks all public access and ACLs on the %s bucket', (_name, bucketId) => {
    expect(template.toJSON().Resources[bucketId()].Properties).toMatchObject({
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      },
      OwnershipControls: { Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] },
    });
  });

  it.each([
    ['artifact', () => artifactBucket().logicalId],
    ['access-log', accessLogBucketId],
  ])('denies every request to the %s bucket that is not over TLS 1.2+', (_name, bucketId) => {
    const id = bucketId();
    const bucketAndObjects = [getAtt(id), arnWithSuffix(id, '/*')];
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      Bucket: ref(id),
      PolicyDocument: Match.objectLike({
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Deny',
            Action: 's3:*',
            Principal: { AWS: '*' },
            Condition: { Bool: { 'aws:SecureTransport': 'false' } },
            Resource: bucketAndObjects,
          }),
          Match.objectLike({
            Effect: 'Deny',
            Action: 's3:*',
            Condition: { NumericLessThan: { 's3:TlsVersion': 1.2 } },
            Resource: bucketAndObjects,
          }),
        ]),
      }),
    });
  });

  it('writes server access logs to a separate, SSE-S3 bucket that lets only S3 log delivery in', () => {
    const logsId = accessLogBucketId();
    expect(logsId).not.toBe(artifactBucket().logicalId);
    expect(artifactBucket().properties.LoggingConfiguration).toMatchObject({
      LogFilePrefix: 'artifacts/',
    });
    template.hasResource('AWS::S3::Bucket', {
      Properties: Match.objectLike({
        BucketEncryption: {
          ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
        },
      }),
      DeletionPolicy: 'Retain',
    });
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      Bucket: ref(logsId),
      PolicyDocument: Match.objectLike({
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Allow',
            Action: 's3:PutObject',
            Principal: { Service: 'logging.s3.amazonaws.com' },
            Condition: Match.objectLike({ ArnLike: { 'aws:SourceArn': getAtt(artifactBucket().logicalId) } }),
          }),
        ]),
      }),
    });
  });

  it('expires noncurrent versions and aborts incomplete multipart uploads', () => {
    const { Rules } = artifactBucket().properties.LifecycleConfiguration as { Rules: unknown[] };
    expect(Rules).toContainEqual(
      expect.objectContaining({ Status: 'Enabled', NoncurrentVersionExpiration: { NoncurrentDays: 30 } }),
    );
    expect(Rules).toContainEqual(
      expect.objectContaining({
        Status: 'Enabled',
        AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 },
      }),
    );
  });

  it('is retained when the stack is deleted', () => {
    expect(artifactBucket().deletionPolicy).toBe('Retain');
  });
});

describe('UpdateCatalog table', () => {
  const table = () => single(template, 'AWS::DynamoDB::GlobalTable', {});

  it('bills on demand', () => {
    expect(table().properties.BillingMode).toBe('PAY_PER_REQUEST');
  });

  it('has point-in-time recovery and deletion protection', () => {
    expect(table().properties.Replicas).toEqual([
      expect.objectContaining({
        PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
        DeletionProtectionEnabled: true,
      }),
    ]);
  });

  it('has the keys of the shared table definition', () => {
    const expected = [
      { AttributeName: updatesTable.partitionKey.name, KeyType: 'HASH' },
      ...(updatesTable.sortKey ? [{ AttributeName: updatesTable.sortKey.name, KeyType: 'RANGE' }] : []),
    ];
    expect(table().properties.KeySchema).toEqual(expected);
  });

  it.each(updatesTable.globalIndexes.map((index) => [index.indexName, index] as const))(
    'has the global index %s of the shared definition',
    (indexName, index) => {
      const keySchema = [
        { AttributeName: index.partitionKey.name, KeyType: 'HASH' },
        ...(index.sortKey ? [{ AttributeName: index.sortKey.name, KeyType: 'RANGE' }] : []),
      ];
      expect(table().properties.GlobalSecondaryIndexes).toContainEqual({
        IndexName: indexName,
        KeySchema: keySchema,
        Projection: index.nonKeyAttributes
          ? { ProjectionType: 'INCLUDE', NonKeyAttributes: index.nonKeyAttributes }
          : { ProjectionType: 'ALL' },
      });
      for (const key of [index.partitionKey, index.sortKey].filter((k) => k !== undefined)) {
        expect(table().properties.AttributeDefinitions).toContainEqual({
          AttributeName: key.name,
          AttributeType: key.type,
        });
      }
    },
  );

  it('is encrypted with KMS', () => {
    expect(table().properties.SSESpecification).toEqual({ SSEEnabled: true, SSEType: 'KMS' });
  });

  it('is retained when the stack is deleted', () => {
    expect(table().deletionPolicy).toBe('Retain');
  });
});

describe('UpdateCatalog signing key', () => {
  const signingKey = () => single(template, 'AWS::KMS::Key', { KeyUsage: 'SIGN_VERIFY' });

  it('is an ECC_NIST_P256 key for signing (ES256)', () => {
    expect(signingKey().properties).toMatchObject({
      KeySpec: 'ECC_NIST_P256',
      KeyUsage: 'SIGN_VERIFY',
    });
  });

  it('has an alias', () => {
    template.hasResourceProperties('AWS::KMS::Alias', {
      AliasName: 'alias/ShadowOta/manifest-signing',
      TargetKeyId: getAtt(signingKey().logicalId),
    });
  });

  it('is retained when the stack is deleted', () => {
    expect(signingKey().deletionPolicy).toBe('Retain');
  });
});
