import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Duration } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { acknowledge } from './acknowledge.ts';

/** The project root: handler entries in lambdas/definitions are relative to it. */
export const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * ESM bundles have no `require`; some dependencies still call it (Node built-ins from CJS code
 * inlined by esbuild), so the bundle defines one.
 */
const esmRequireBanner = "import{createRequire}from'module';const require=createRequire(import.meta.url);";

export interface OtaFunctionProps {
  /** Handler module, relative to the project root (as in lambdas/definitions); it exports `handler`. */
  readonly entry: string;
  readonly description: string;
  /** @default - no environment besides NODE_OPTIONS (source maps) */
  readonly environment?: Readonly<Record<string, string>>;
  /** @default 1024 MiB: CPU scales with memory, and hashing and signing are CPU-bound */
  readonly memorySize?: number;
  /** @default 29 seconds, just under the HTTP API integration limit of 30 seconds */
  readonly timeout?: Duration;
  /** @default three months */
  readonly logRetention?: logs.RetentionDays;
}

/**
 * A Node.js Lambda function with the house defaults: Node 22 on ARM64, an ESM bundle made by the
 * local esbuild (never Docker) with every dependency inlined and source maps on, X-Ray tracing,
 * and its own log group with a retention. Its role may write only to that log group, instead of
 * AWSLambdaBasicExecutionRole's logs:* on every log group.
 */
export class OtaFunction extends Construct implements iam.IGrantable {
  public readonly function: NodejsFunction;
  public readonly logGroup: logs.LogGroup;
  public readonly role: iam.Role;
  public readonly grantPrincipal: iam.IPrincipal;

  constructor(scope: Construct, id: string, props: OtaFunctionProps) {
    super(scope, id);
    this.logGroup = new logs.LogGroup(this, 'LogGroup', {
      retention: props.logRetention ?? logs.RetentionDays.THREE_MONTHS,
    });
    this.role = new iam.Role(this, 'ServiceRole', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `Runs ${props.entry}`,
    });
    this.logGroup.grantWrite(this.role);
    this.function = new NodejsFunction(this, 'Function', {
      entry: path.join(projectRoot, props.entry),
      projectRoot,
      depsLockFilePath: path.join(projectRoot, 'package-lock.json'),
      handler: 'handler',
      description: props.description,
      runtime: lambda.Runtime.NODEJS_22_X,
      architecture: lambda.Architecture.ARM_64,
      memorySize: props.memorySize ?? 1024,
      timeout: props.timeout ?? Duration.seconds(29),
      tracing: lambda.Tracing.ACTIVE,
      role: this.role,
      logGroup: this.logGroup,
      environment: { ...props.environment, NODE_OPTIONS: '--enable-source-maps' },
      bundling: {
        format: OutputFormat.ESM,
        target: 'node22',
        mainFields: ['module', 'main'],
        banner: esmRequireBanner,
        minify: true,
        sourceMap: true,
        forceDockerBundling: false,
        // The runtime's bundled SDK is not the version we test against: ship ours.
        externalModules: [],
      },
    });
    this.grantPrincipal = this.function.grantPrincipal;
    acknowledge(this, {
      'AwsSolutions-L1':
        'Node.js 22 is pinned on purpose: the bundle targets node22 and the runtime moves only with a tested upgrade, not whenever a newer runtime appears.',
      'AwsSolutions-IAM5[Resource::*]':
        'X-Ray tracing: xray:PutTraceSegments and xray:PutTelemetryRecords support no resource-level permissions, so their resource must be "*". A test asserts no other action gets a "*" resource.',
    });
  }
}
