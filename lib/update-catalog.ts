import { RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import { Construct } from 'constructs';
import { updatesTable } from '../lambdas/definitions/tables.ts';
import { grantTableData, tableFromDefinition } from './table-from-definition.ts';

/** What other constructs need of the catalog: the updates table, the signing key, grants. */
export interface IUpdateCatalog {
  readonly table: dynamodb.ITableV2;
  readonly signingKey: kms.IKey;
  /** Lets `grantee` read and write items of the updates table and query its indexes. */
  grantReadWriteUpdates(grantee: iam.IGrantable): void;
  /** Lets `grantee` read items of the updates table and query its indexes. */
  grantReadUpdates(grantee: iam.IGrantable): void;
  /** Lets `grantee` sign with the manifest signing key and read its public key; nothing else. */
  grantSignManifests(grantee: iam.IGrantable): void;
}

export interface UpdateCatalogProps {
  /** @default - AWS-managed key (aws/dynamodb), see docs/adr/0020-infra-encryption-at-rest.md */
  readonly tableEncryption?: dynamodb.TableEncryptionV2;
  /** @default 'alias/<stack name>/manifest-signing' */
  readonly signingKeyAlias?: string;
  /** @default RemovalPolicy.RETAIN */
  readonly removalPolicy?: RemovalPolicy;
}

/**
 * The updates table (shape from lambdas/definitions/tables.ts, shared with the local cloud) and
 * the asymmetric KMS key that signs update manifests (ES256: ECC_NIST_P256, SIGN_VERIFY).
 */
export class UpdateCatalog extends Construct implements IUpdateCatalog {
  public readonly table: dynamodb.TableV2;
  public readonly signingKey: kms.Key;
  public readonly signingKeyAlias: kms.Alias;

  constructor(scope: Construct, id: string, props: UpdateCatalogProps = {}) {
    super(scope, id);
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    this.table = tableFromDefinition(this, updatesTable, {
      encryption: props.tableEncryption ?? dynamodb.TableEncryptionV2.awsManagedKey(),
      removalPolicy,
    });
    this.signingKey = new kms.Key(this, 'SigningKey', {
      description: 'Signs OTA update manifests (ES256 JWS)',
      keySpec: kms.KeySpec.ECC_NIST_P256,
      keyUsage: kms.KeyUsage.SIGN_VERIFY,
      // Asymmetric keys cannot rotate automatically; rotation is a new key with a new `kid`.
      enableKeyRotation: false,
      removalPolicy,
    });
    this.signingKeyAlias = this.signingKey.addAlias(
      props.signingKeyAlias ?? `alias/${Stack.of(this).stackName}/manifest-signing`,
    );
  }

  public grantReadWriteUpdates(grantee: iam.IGrantable): void {
    grantTableData(this.table, grantee, 'readWrite');
  }

  public grantReadUpdates(grantee: iam.IGrantable): void {
    grantTableData(this.table, grantee, 'read');
  }

  public grantSignManifests(grantee: iam.IGrantable): void {
    this.signingKey.grants.actions(grantee, 'kms:Sign', 'kms:GetPublicKey');
  }
}
