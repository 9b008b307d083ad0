import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ShadowOtaStack } from '../lib/shadow-ota-stack.ts';

const app = new App();
/** Optional context (`-c name=value`) as a string; undefined when absent. */
function stringFromContext(name: string): string | undefined {
  const value: unknown = app.node.tryGetContext(name);
  return value === undefined ? undefined : String(value);
}
// Account and region come from the CLI's credentials when there are any; without them the stack
// is environment-agnostic, so `cdk synth` works offline.
new ShadowOtaStack(app, 'ShadowOta', {
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
  // `cdk deploy -c iotDataEndpoint=https://$(aws iot describe-endpoint --endpoint-type iot:Data-ATS
  // --query endpointAddress --output text)`: AWS recommends the account's own endpoint.
  iotDataEndpoint: stringFromContext('iotDataEndpoint'),
  accountShadowRateCap: Number(stringFromContext('accountShadowRateCap') ?? 400),
});
// Every synth is checked; an unacknowledged AwsSolutions finding fails it.
Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
app.synth();
