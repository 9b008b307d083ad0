import { Duration, Stack } from 'aws-cdk-lib';
import { AccessLogFormat } from 'aws-cdk-lib/aws-apigateway';
import * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpIamAuthorizer } from 'aws-cdk-lib/aws-apigatewayv2-authorizers';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { type ApiFunctionId, apiFunctions, apiRoutes } from '../lambdas/definitions/api.ts';
import { env } from '../lambdas/definitions/environment.ts';
import type { IArtifactStore } from './artifact-store.ts';
import type { IDeployments } from './deployments.ts';
import { OtaFunction } from './ota-function.ts';
import type { IUpdateCatalog } from './update-catalog.ts';

export interface OperatorApiProps {
  readonly artifacts: IArtifactStore;
  readonly catalog: IUpdateCatalog;
  readonly deployments: IDeployments;
  /** Lifetime of the presigned upload URLs the API hands out. @default 15 minutes */
  readonly uploadUrlTtl?: Duration;
  /** Stage-wide request rate limits. @default 50 requests/s, bursts of 100 */
  readonly throttle?: apigwv2.ThrottleSettings;
  /** @default one year */
  readonly accessLogRetention?: logs.RetentionDays;
}

/**
 * What each API function may touch, beyond its own log group. Keyed by every function in
 * lambdas/definitions/api.ts, so a new function does not compile until its needs are declared.
 */
const permissionsOf: Record<ApiFunctionId, (fn: OtaFunction, props: OperatorApiProps) => void> = {
  updatesApi: (fn, { catalog, artifacts }) => {
    catalog.grantReadWriteUpdates(fn);
    catalog.grantSignManifests(fn);
    artifacts.grantUpdatesReadWrite(fn);
  },
  deploymentsApi: (fn, { catalog, artifacts, deployments }) => {
    deployments.grantManageDeployments(fn);
    // Cancelling one notified device sends it a cancel action through its shadow.
    deployments.grantShadowControl(fn);
    // The per-deployment manifest is signed over the update manifest read from the bucket.
    artifacts.grantUpdatesRead(fn);
    // Counts the update's active deployments (so it cannot be deleted while deployed) and signs
    // the per-deployment manifest.
    catalog.grantReadWriteUpdates(fn);
    catalog.grantSignManifests(fn);
  },
};

/**
 * The operator's HTTP API: one Lambda per function and one route per entry of
 * lambdas/definitions/api.ts, every route behind IAM (SigV4) authorization, with access logs and
 * throttling on its single `$default` stage.
 */
export class OperatorApi extends Construct {
  public readonly httpApi: apigwv2.HttpApi;
  public readonly stage: apigwv2.HttpStage;
  public readonly accessLogGroup: logs.LogGroup;
  public readonly functions: Readonly<Record<ApiFunctionId, OtaFunction>>;

  constructor(scope: Construct, id: string, props: OperatorApiProps) {
    super(scope, id);
    this.functions = this.createFunctions(props);
    this.httpApi = new apigwv2.HttpApi(this, 'HttpApi', {
      apiName: `${Stack.of(this).stackName}-operator`,
      description: 'shadow-ota operator API',
      defaultAuthorizer: new HttpIamAuthorizer(),
      // The stage is created below, with access logs and throttling.
      createDefaultStage: false,
    });
    this.accessLogGroup = new logs.LogGroup(this, 'AccessLogs', {
      retention: props.accessLogRetention ?? logs.RetentionDays.ONE_YEAR,
    });
    this.stage = this.httpApi.addStage('DefaultStage', {
      stageName: '$default',
      autoDeploy: true,
      throttle: props.throttle ?? { rateLimit: 50, burstLimit: 100 },
      accessLogSettings: {
        destination: new apigwv2.LogGroupLogDestination(this.accessLogGroup),
        format: accessLogFormat,
      },
    });
    this.addRoutes();
  }

  /** The API's base URL, ending in `/`. */
  public get url(): string {
    return this.stage.url;
  }

  private createFunctions(props: OperatorApiProps): Record<ApiFunctionId, OtaFunction> {
    const environment = {
      ...props.deployments.environment,
      [env.updatesTable]: props.catalog.table.tableName,
      [env.artifactBucket]: props.artifacts.bucket.bucketName,
      [env.signerKind]: 'kms',
      [env.signingKeyId]: props.catalog.signingKey.keyId,
      [env.uploadUrlTtlSeconds]: String((props.uploadUrlTtl ?? Duration.minutes(15)).toSeconds()),
    };
    const entries = Object.entries(apiFunctions) as [ApiFunctionId, (typeof apiFunctions)[ApiFunctionId]][];
    return Object.fromEntries(
      entries.map(([functionId, definition]) => {
        const fn = new OtaFunction(this, constructIdOf(functionId), {
          entry: definition.entry,
          description: definition.description,
          environment,
        });
        permissionsOf[functionId](fn, props);
        return [functionId, fn];
      }),
    ) as Record<ApiFunctionId, OtaFunction>;
  }

  private addRoutes(): void {
    const integrations = new Map<ApiFunctionId, HttpLambdaIntegration>();
    for (const route of apiRoutes) {
      let integration = integrations.get(route.function);
      if (!integration) {
        integration = new HttpLambdaIntegration(
          constructIdOf(route.function),
          this.functions[route.function].function,
          {
            payloadFormatVersion: apigwv2.PayloadFormatVersion.VERSION_2_0,
          },
        );
        integrations.set(route.function, integration);
      }
      this.httpApi.addRoutes({ path: route.path, methods: [apigwv2.HttpMethod[route.method]], integration });
    }
  }
}

/** `updatesApi` → `UpdatesApi`: construct ids are a contract, so they derive from the definitions. */
function constructIdOf(functionId: ApiFunctionId): string {
  return functionId.charAt(0).toUpperCase() + functionId.slice(1);
}

/**
 * One JSON object per request. Who called (the IAM principal), what route, the outcome and the
 * timings; never query strings or bodies.
 */
const accessLogFormat = AccessLogFormat.custom(
  JSON.stringify({
    requestId: '$context.requestId',
    requestTime: '$context.requestTime',
    sourceIp: '$context.identity.sourceIp',
    userArn: '$context.identity.userArn',
    routeKey: '$context.routeKey',
    status: '$context.status',
    protocol: '$context.protocol',
    responseLength: '$context.responseLength',
    responseLatency: '$context.responseLatency',
    integrationLatency: '$context.integrationLatency',
    integrationStatus: '$context.integrationStatus',
    errorMessage: '$context.error.message',
    integrationError: '$context.integrationErrorMessage',
  }),
);
