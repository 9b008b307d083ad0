import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ShadowOtaStack } from '../lib/shadow-ota-stack.ts';

const app = new App();
// Account and region come from the CLI's credentials when there are any; without them the stack
// is environment-agnostic, so `cdk synth` works offline.
new ShadowOtaStack(app, 'ShadowOta', {
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
});
// Every synth is checked; an unacknowledged AwsSolutions finding fails it.
Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
app.synth();
