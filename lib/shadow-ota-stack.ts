import { CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import { ArtifactStore } from './artifact-store.ts';
import { Deployments } from './deployments.ts';
import { DevicePolicy } from './device-policy.ts';
import { DeviceRules } from './device-rules.ts';
import { OperatorApi } from './operator-api.ts';
import { UpdateCatalog } from './update-catalog.ts';

export interface ShadowOtaStackProps extends StackProps {
  /**
   * The account's IoT data-plane endpoint for the handlers (see DeploymentsProps.iotDataEndpoint).
   * @default - the SDK's regional endpoint
   */
  readonly iotDataEndpoint?: string;
  /** Account-wide cap on shadow updates per second. @default 400 */
  readonly accountShadowRateCap?: number;
}

/**
 * The whole service in one stack: artifact store, update catalog (table and signing key),
 * deployments (tables, fan-out, schedule, acknowledgements, download role), the IoT rules that
 * feed them, the device policy, and the operator API over all of it.
 */
export class ShadowOtaStack extends Stack {
  public readonly artifacts: ArtifactStore;
  public readonly catalog: UpdateCatalog;
  public readonly deployments: Deployments;
  public readonly deviceRules: DeviceRules;
  public readonly devicePolicy: DevicePolicy;
  public readonly operatorApi: OperatorApi;

  constructor(scope: Construct, id: string, props: ShadowOtaStackProps = {}) {
    super(scope, id, props);
    this.artifacts = new ArtifactStore(this, 'ArtifactStore');
    this.catalog = new UpdateCatalog(this, 'UpdateCatalog');
    this.deployments = new Deployments(this, 'Deployments', {
      artifacts: this.artifacts,
      catalog: this.catalog,
      ...(props.iotDataEndpoint && { iotDataEndpoint: props.iotDataEndpoint }),
      ...(props.accountShadowRateCap && { accountShadowRateCap: props.accountShadowRateCap }),
    });
    this.deviceRules = new DeviceRules(this, 'DeviceRules', {
      functions: this.deployments.functions,
      queues: this.deployments.queues,
    });
    this.devicePolicy = new DevicePolicy(this, 'DevicePolicy');
    this.operatorApi = new OperatorApi(this, 'OperatorApi', {
      artifacts: this.artifacts,
      catalog: this.catalog,
      deployments: this.deployments,
    });

    new CfnOutput(this, 'ApiUrl', { value: this.operatorApi.url, description: 'Operator API base URL' });
    new CfnOutput(this, 'ArtifactBucketName', { value: this.artifacts.bucket.bucketName });
    new CfnOutput(this, 'UpdatesTableName', { value: this.catalog.table.tableName });
    new CfnOutput(this, 'SigningKeyId', { value: this.catalog.signingKey.keyId });
    new CfnOutput(this, 'DevicePolicyName', {
      value: this.devicePolicy.policyName,
      description: 'AWS IoT policy to attach to every device certificate',
    });
    new CfnOutput(this, 'DownloadRoleArn', {
      value: this.deployments.downloadRole.roleArn,
      description: 'Role behind the STS download credentials devices receive',
    });
    new CfnOutput(this, 'RuleErrorLogGroup', {
      value: this.deviceRules.errorLogGroup.logGroupName,
      description: 'IoT rule errors, with the original message, for replay',
    });
  }
}
