import { App, Validations } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ShadowOtaStack } from '../../lib/shadow-ota-stack.ts';

export interface BuiltStack {
  readonly app: App;
  readonly stack: ShadowOtaStack;
}

/**
 * The ShadowOta stack as bin/app.ts builds it, minus bundling (esbuild is not what these tests
 * check) and, unless asked for, minus cdk-nag (so a template test fails for its own reason).
 */
export function buildStack({ nag = false }: { nag?: boolean } = {}): BuiltStack {
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
  const stack = new ShadowOtaStack(app, 'ShadowOta');
  if (nag) Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return { app, stack };
}

export function synthTemplate(): Template {
  return Template.fromStack(buildStack().stack);
}

/** A CloudFormation property value as the template holds it (literal or intrinsic). */
export type CfnValue = unknown;

export interface PolicyStatement {
  readonly Effect: 'Allow' | 'Deny';
  readonly Action: string | string[];
  readonly Resource: CfnValue;
  readonly Condition?: Record<string, unknown>;
}

export interface FoundResource {
  readonly logicalId: string;
  readonly properties: Record<string, unknown>;
  readonly deletionPolicy: string | undefined;
}

/** The one resource of `type` matching `props`, with its logical id; fails unless exactly one. */
export function single(template: Template, type: string, props: Record<string, unknown>): FoundResource {
  const found = Object.entries(template.findResources(type, { Properties: props }));
  if (found.length !== 1) {
    throw new Error(`expected one ${type} matching ${JSON.stringify(props)}, found ${found.length}`);
  }
  const [logicalId, resource] = found[0] as [
    string,
    { Properties?: Record<string, unknown>; DeletionPolicy?: string },
  ];
  return { logicalId, properties: resource.Properties ?? {}, deletionPolicy: resource.DeletionPolicy };
}

export function actionsOf(statement: PolicyStatement): string[] {
  return typeof statement.Action === 'string' ? [statement.Action] : statement.Action;
}

export function resourcesOf(statement: PolicyStatement): CfnValue[] {
  return Array.isArray(statement.Resource) ? statement.Resource : [statement.Resource];
}

/** Every statement of every identity policy in the template, with the roles it is attached to. */
export function identityStatements(template: Template): { roles: CfnValue; statement: PolicyStatement }[] {
  return Object.values(template.findResources('AWS::IAM::Policy')).flatMap((policy) => {
    const properties = policy.Properties as {
      Roles: CfnValue;
      PolicyDocument: { Statement: PolicyStatement[] };
    };
    return properties.PolicyDocument.Statement.map((statement) => ({ roles: properties.Roles, statement }));
  });
}

export const getAtt = (logicalId: string, attribute = 'Arn'): CfnValue => ({
  'Fn::GetAtt': [logicalId, attribute],
});

export const ref = (logicalId: string): CfnValue => ({ Ref: logicalId });

/** `<arn>/<suffix>` as CDK renders it: a join of the ARN attribute and the suffix. */
export const arnWithSuffix = (logicalId: string, suffix: string): CfnValue => ({
  'Fn::Join': ['', [getAtt(logicalId), suffix]],
});
