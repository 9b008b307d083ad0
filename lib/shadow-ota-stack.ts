import { CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import { ArtifactStore } from './artifact-store.ts';
import { OperatorApi } from './operator-api.ts';
import { UpdateCatalog } from './update-catalog.ts';

/**
 * The whole service in one stack: artifact store, update catalog (table and signing key) and the
 * operator API over them. Later features (deployments, acknowledgements) add constructs here.
 */
export class ShadowOtaStack extends Stack {
  public readonly artifacts: ArtifactStore;
  public readonly catalog: UpdateCatalog;
  public readonly operatorApi: OperatorApi;

  constructor(scope: Construct, id: string, props?: StackProps) {
    super(scope, id, props);
    this.artifacts = new ArtifactStore(this, 'ArtifactStore');
    this.catalog = new UpdateCatalog(this, 'UpdateCatalog');
    this.operatorApi = new OperatorApi(this, 'OperatorApi', {
      artifacts: this.artifacts,
      catalog: this.catalog,
    });

    new CfnOutput(this, 'ApiUrl', { value: this.operatorApi.url, description: 'Operator API base URL' });
    new CfnOutput(this, 'ArtifactBucketName', { value: this.artifacts.bucket.bucketName });
    new CfnOutput(this, 'UpdatesTableName', { value: this.catalog.table.tableName });
    new CfnOutput(this, 'SigningKeyId', { value: this.catalog.signingKey.keyId });
  }
}
