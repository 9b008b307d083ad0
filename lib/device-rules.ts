import { RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as iot from 'aws-cdk-lib/aws-iot';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import type { BackgroundFunctionId } from '../lambdas/definitions/api.ts';
import { type RuleAction, type TopicRuleDefinition, topicRules } from '../lambdas/definitions/rules.ts';
import { UnsupportedDefinitionError } from './errors.ts';

export interface DeviceRulesProps {
  /** The functions a rule's `lambda` action may name, by their id in lambdas/definitions/api.ts. */
  readonly functions: Readonly<
    Partial<Record<BackgroundFunctionId, { readonly function: lambda.IFunction }>>
  >;
  /** @default topicRules from lambdas/definitions/rules.ts (what the local IoT Core runs too) */
  readonly rules?: readonly TopicRuleDefinition[];
  /** @default one year */
  readonly errorLogRetention?: logs.RetentionDays;
  /** @default RemovalPolicy.RETAIN: the log may hold the only copy of a lost device report */
  readonly removalPolicy?: RemovalPolicy;
}

/**
 * One AWS IoT topic rule per shared definition (lambdas/definitions/rules.ts), each Lambda action
 * allowed by a permission scoped to that rule. A message an action cannot deliver is never lost
 * silently: every rule's error action writes AWS's error message, which carries the original
 * payload (base64), into one log group.
 */
export class DeviceRules extends Construct {
  public readonly rules: Readonly<Record<string, iot.CfnTopicRule>>;
  public readonly errorLogGroup: logs.LogGroup;
  /** Assumed by AWS IoT to write the error log. */
  public readonly errorLogRole: iam.Role;

  constructor(scope: Construct, id: string, props: DeviceRulesProps) {
    super(scope, id);
    this.errorLogGroup = new logs.LogGroup(this, 'ErrorLog', {
      retention: props.errorLogRetention ?? logs.RetentionDays.ONE_YEAR,
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
    });
    this.errorLogRole = new iam.Role(this, 'ErrorLogRole', {
      // Only rules of this account may use the role (confused-deputy protection).
      assumedBy: new iam.ServicePrincipal('iot.amazonaws.com', {
        conditions: { StringEquals: { 'aws:SourceAccount': Stack.of(this).account } },
      }),
      description: 'AWS IoT writes topic rule errors into the rule error log',
    });
    // The three operations AWS IoT's cloudwatchLogs action calls.
    this.errorLogGroup.grant(
      this.errorLogRole,
      'logs:CreateLogStream',
      'logs:DescribeLogStreams',
      'logs:PutLogEvents',
    );
    const definitions = props.rules ?? topicRules;
    this.rules = Object.fromEntries(
      definitions.map((definition) => [definition.name, this.createRule(definition, props)]),
    );
  }

  private createRule(definition: TopicRuleDefinition, props: DeviceRulesProps): iot.CfnTopicRule {
    if (definition.errorAction) {
      throw new UnsupportedDefinitionError(
        `rule ${definition.name}`,
        'errorAction: the stack sends every rule’s errors to the rule error log',
      );
    }
    const targets = definition.actions.map((action) => this.lambdaActionOf(definition, action, props));
    const rule = new iot.CfnTopicRule(this, definition.name, {
      ruleName: definition.name,
      topicRulePayload: {
        sql: definition.sql,
        awsIotSqlVersion: definition.awsIotSqlVersion,
        ...(definition.description && { description: definition.description }),
        ruleDisabled: false,
        actions: targets.map(({ action }) => action),
        errorAction: {
          cloudwatchLogs: {
            logGroupName: this.errorLogGroup.logGroupName,
            roleArn: this.errorLogRole.roleArn,
          },
        },
      },
    });
    rule.node.addDependency(this.errorLogRole);
    for (const { fn, functionId } of targets) {
      // Only this rule, in this account, may invoke the function.
      fn.addPermission(`${definition.name}-${functionId}`, {
        principal: new iam.ServicePrincipal('iot.amazonaws.com'),
        sourceArn: rule.attrArn,
        sourceAccount: Stack.of(this).account,
      });
    }
    return rule;
  }

  private lambdaActionOf(
    definition: TopicRuleDefinition,
    action: RuleAction,
    props: DeviceRulesProps,
  ): { action: iot.CfnTopicRule.ActionProperty; fn: lambda.IFunction; functionId: string } {
    if (!('lambda' in action)) {
      throw new UnsupportedDefinitionError(
        `rule ${definition.name}`,
        'the stack deploys lambda actions only',
      );
    }
    const functionId = action.lambda.function;
    const target = props.functions[functionId as BackgroundFunctionId];
    if (!target) {
      throw new UnsupportedDefinitionError(
        `rule ${definition.name}`,
        `its lambda action names "${functionId}", a function the stack does not provide`,
      );
    }
    return {
      action: { lambda: { functionArn: target.function.functionArn } },
      fn: target.function,
      functionId,
    };
  }
}
