import { App, type Environment, Validations } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { TableDefinition } from '../../lambdas/definitions/tables.ts';
import { ShadowOtaStack } from '../../lib/shadow-ota-stack.ts';

export interface BuiltStack {
  readonly app: App;
  readonly stack: ShadowOtaStack;
}

/**
 * The ShadowOta stack as bin/app.ts builds it, minus bundling (esbuild is not what these tests
 * check) and, unless asked for, minus cdk-nag (so a template test fails for its own reason).
 */
export function buildStack({ nag = false, env }: { nag?: boolean; env?: Environment } = {}): BuiltStack {
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [] } });
  const stack = new ShadowOtaStack(app, 'ShadowOta', env ? { env } : {});
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

/** The KeySchema CloudFormation holds for a shared table definition's keys. */
export function keySchemaOf(keys: {
  readonly partitionKey: { readonly name: string };
  readonly sortKey?: { readonly name: string };
}): { AttributeName: string; KeyType: 'HASH' | 'RANGE' }[] {
  return [
    { AttributeName: keys.partitionKey.name, KeyType: 'HASH' },
    ...(keys.sortKey ? [{ AttributeName: keys.sortKey.name, KeyType: 'RANGE' as const }] : []),
  ];
}

/** The table made from `definition`, found by its key schema (logical ids are not a contract). */
export function tableOf(template: Template, definition: TableDefinition): FoundResource {
  return single(template, 'AWS::DynamoDB::GlobalTable', { KeySchema: keySchemaOf(definition) });
}

/** The Lambda function with this description (each definition's description is unique). */
export function functionWithDescription(template: Template, description: string): FoundResource {
  return single(template, 'AWS::Lambda::Function', { Description: description });
}

/** The logical id of the role a function runs as. */
export function roleOfFunction(template: Template, functionId: string): string {
  const role = template.toJSON().Resources[functionId].Properties.Role as { 'Fn::GetAtt': [string, string] };
  return role['Fn::GetAtt'][0];
}

/** Statements of the identity policies attached to the role with this logical id. */
export function statementsOfRole(template: Template, roleId: string): PolicyStatement[] {
  return identityStatements(template)
    .filter(({ roles }) => JSON.stringify(roles) === JSON.stringify([ref(roleId)]))
    .map(({ statement }) => statement);
}

/** Statements of the identity policies attached to the role of the function with this logical id. */
export function statementsOfFunction(template: Template, functionId: string): PolicyStatement[] {
  return statementsOfRole(template, roleOfFunction(template, functionId));
}

/** `arn:<partition>:<service>:<region>:<account>:<resource>` as CDK renders a formatted ARN. */
export const formattedArn = (service: string, resource: string): CfnValue => ({
  'Fn::Join': [
    '',
    [
      'arn:',
      { Ref: 'AWS::Partition' },
      `:${service}:`,
      { Ref: 'AWS::Region' },
      ':',
      { Ref: 'AWS::AccountId' },
      `:${resource}`,
    ],
  ],
});
