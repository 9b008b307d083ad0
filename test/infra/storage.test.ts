import { Match, type Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { allTables, executionsTable, projectionOf } from '../../lambdas/definitions/tables.ts';
import { arnWithSuffix, getAtt, keySchemaOf, ref, single, synthTemplate, tableOf } from './stack.ts';

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

describe.each(allTables.map((definition) => [definition.id, definition] as const))(
  'the %s table',
  (_id, definition) => {
    const table = () => tableOf(template, definition);

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

    it('has exactly the global indexes of the shared definition', () => {
      const indexes = (table().properties.GlobalSecondaryIndexes ?? []) as unknown[];
      expect(indexes).toEqual(
        definition.globalIndexes.map((index) => ({
          IndexName: index.indexName,
          KeySchema: keySchemaOf(index),
          Projection: projectionOf(index),
        })),
      );
      const keys = definition.globalIndexes.flatMap((index) =>
        [index.partitionKey, index.sortKey].filter((key) => key !== undefined),
      );
      for (const key of keys) {
        expect(table().properties.AttributeDefinitions).toContainEqual({
          AttributeName: key.name,
          AttributeType: key.type,
        });
      }
    });

    it('streams changes only when the definition asks for it', () => {
      expect(table().properties.StreamSpecification).toEqual(
        definition.stream ? { StreamViewType: definition.stream } : undefined,
      );
    });

    it('is encrypted with KMS', () => {
      expect(table().properties.SSESpecification).toEqual({ SSEEnabled: true, SSEType: 'KMS' });
    });

    it('is retained when the stack is deleted', () => {
      expect(table().deletionPolicy).toBe('Retain');
    });
  },
);

it('makes one table per shared definition, and no other', () => {
  template.resourceCountIs('AWS::DynamoDB::GlobalTable', allTables.length);
});

it('streams the executions table with old and new images (the counters need both states)', () => {
  expect(tableOf(template, executionsTable).properties.StreamSpecification).toEqual({
    StreamViewType: 'NEW_AND_OLD_IMAGES',
  });
});

it('copies only keys into byThing, and no device results into byDeploymentState (each copied change is a billed index write)', () => {
  const indexes = tableOf(template, executionsTable).properties.GlobalSecondaryIndexes as {
    IndexName: string;
    Projection: { ProjectionType: string; NonKeyAttributes?: string[] };
  }[];
  const byName = new Map(indexes.map((index) => [index.IndexName, index.Projection]));
  expect(byName.get('byThing')).toEqual({ ProjectionType: 'KEYS_ONLY' });
  const byState = byName.get('byDeploymentState');
  expect(byState?.ProjectionType).toBe('INCLUDE');
  expect(byState?.NonKeyAttributes).toEqual(expect.arrayContaining(['state', 'attempt', 'deadline']));
  expect(byState?.NonKeyAttributes).not.toContain('lastResult');
  expect(byState?.NonKeyAttributes).not.toContain('progress');
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
