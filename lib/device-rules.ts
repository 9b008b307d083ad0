import { RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as iot from 'aws-cdk-lib/aws-iot';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import type { BackgroundFunctionId } from '../lambdas/definitions/api.ts';
import type { QueueId } from '../lambdas/definitions/queues.ts';
import {
  type LambdaRuleAction,
  type RuleAction,
  type SqsRuleAction,
  type TopicRuleDefinition,
  topicRules,
} from '../lambdas/definitions/rules.ts';
import { UnsupportedDefinitionError } from './errors.ts';

export interface DeviceRulesProps {
  /** The functions a rule's `lambda` action may name, by their id in lambdas/definitions/api.ts. */
  readonly functions: Readonly<
    Partial<Record<BackgroundFunctionId, { readonly function: lambda.IFunction }>>
  >;
  /** The queues a rule's `sqs` action may name, by their id in lambdas/definitions/queues.ts. */
  readonly queues: Readonly<Partial<Record<QueueId, sqs.IQueue>>>;
  /** @default topicRules from lambdas/definitions/rules.ts (what the local IoT Core runs too) */
  readonly rules?: readonly TopicRuleDefinition[];
  /** @default one year */
  readonly errorLogRetention?: logs.RetentionDays;
  /** @default RemovalPolicy.RETAIN: the log may hold the only copy of a lost device report */
  readonly removalPolicy?: RemovalPolicy;
}

/** A rule action, and what lets the rule perform it once the rule exists. */
interface ResolvedAction {
  readonly action: iot.CfnTopicRule.ActionProperty;
  readonly permit: (rule: iot.CfnTopicRule) => void;
}

/**
 * One AWS IoT topic rule per shared definition (lambdas/definitions/rules.ts). Each Lambda action
 * is allowed by a permission scoped to that rule; each SQS action sends with a role that may send
 * to that one queue. A message an action cannot deliver is never lost silently: every rule's error
 * action writes AWS's error message, which carries the original payload (base64), into one log
 * group.
 */
export class DeviceRules extends Construct {
  public readonly rules: Readonly<Record<string, iot.CfnTopicRule>>;
  public readonly errorLogGroup: logs.LogGroup;
  /** Assumed by AWS IoT to write the error log. */
  public readonly errorLogRole: iam.Role;

  private readonly sendRoles: Partial<Record<QueueId, iam.Role>> = {};

  constructor(scope: Construct, id: string, props: DeviceRulesProps) {
    super(scope, id);
    this.errorLogGroup = new logs.LogGroup(this, 'ErrorLog', {
      retention: props.errorLogRetention ?? logs.RetentionDays.ONE_YEAR,
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
    });
    this.errorLogRole = this.createIotRole(
      'ErrorLogRole',
      'AWS IoT writes topic rule errors into the rule error log',
    );
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

  /** Assumed by AWS IoT to send to a queue, one role per queue a rule sends to. */
  public get queueRoles(): Readonly<Partial<Record<QueueId, iam.Role>>> {
    return this.sendRoles;
  }

  private createRule(definition: TopicRuleDefinition, props: DeviceRulesProps): iot.CfnTopicRule {
    if (definition.errorAction) {
      throw new UnsupportedDefinitionError(
        `rule ${definition.name}`,
        'errorAction: the stack sends every rule’s errors to the rule error log',
      );
    }
    const resolved = definition.actions.map((action) => this.resolveAction(definition, action, props));
    const rule = new iot.CfnTopicRule(this, definition.name, {
      ruleName: definition.name,
      topicRulePayload: {
        sql: definition.sql,
        awsIotSqlVersion: definition.awsIotSqlVersion,
        ...(definition.description && { description: definition.description }),
        ruleDisabled: false,
        actions: resolved.map(({ action }) => action),
        errorAction: {
          cloudwatchLogs: {
            logGroupName: this.errorLogGroup.logGroupName,
            roleArn: this.errorLogRole.roleArn,
          },
        },
      },
    });
    rule.node.addDependency(this.errorLogRole);
    for (const { permit } of resolved) permit(rule);
    return rule;
  }

  private resolveAction(
    definition: TopicRuleDefinition,
    action: RuleAction,
    props: DeviceRulesProps,
  ): ResolvedAction {
    if ('lambda' in action) return this.lambdaActionOf(definition, action, props);
    if ('sqs' in action) return this.sqsActionOf(definition, action, props);
    throw new UnsupportedDefinitionError(
      `rule ${definition.name}`,
      'the stack deploys lambda and sqs actions only',
    );
  }

  private lambdaActionOf(
    definition: TopicRuleDefinition,
    action: LambdaRuleAction,
    props: DeviceRulesProps,
  ): ResolvedAction {
    const functionId = action.lambda.function;
    const fn = props.functions[functionId as BackgroundFunctionId]?.function;
    if (!fn) {
      throw new UnsupportedDefinitionError(
        `rule ${definition.name}`,
        `its lambda action names "${functionId}", a function the stack does not provide`,
      );
    }
    return {
      action: { lambda: { functionArn: fn.functionArn } },
      // Only this rule, in this account, may invoke the function.
      permit: (rule) =>
        fn.addPermission(`${definition.name}-${functionId}`, {
          principal: new iam.ServicePrincipal('iot.amazonaws.com'),
          sourceArn: rule.attrArn,
          sourceAccount: Stack.of(this).account,
        }),
    };
  }

  private sqsActionOf(
    definition: TopicRuleDefinition,
    action: SqsRuleAction,
    props: DeviceRulesProps,
  ): ResolvedAction {
    const queueId = action.sqs.queue;
    const queue = props.queues[queueId];
    if (!queue) {
      throw new UnsupportedDefinitionError(
        `rule ${definition.name}`,
        `its sqs action names "${queueId}", a queue the stack does not provide`,
      );
    }
    const role = this.sendRoleOf(queueId, queue);
    return {
      // The SELECT result as the message body, JSON as the function parses it.
      action: { sqs: { queueUrl: queue.queueUrl, roleArn: role.roleArn, useBase64: false } },
      // The role and its policy exist before the rule first sends.
      permit: (rule) => rule.node.addDependency(role),
    };
  }

  /**
   * The role AWS IoT sends to `queue` with: `sqs:SendMessage` alone, which is all the rule's SQS
   * action calls (grantSendMessages would add GetQueueAttributes and GetQueueUrl), and for a
   * queue encrypted with a customer key what sending needs of that key.
   */
  private sendRoleOf(queueId: QueueId, queue: sqs.IQueue): iam.Role {
    const existing = this.sendRoles[queueId];
    if (existing) return existing;
    const role = this.createIotRole(
      `${queueId.charAt(0).toUpperCase()}${queueId.slice(1)}QueueRole`,
      `AWS IoT sends rule results to the ${queueId} queue`,
    );
    queue.grant(role, 'sqs:SendMessage');
    queue.encryptionMasterKey?.grant(role, 'kms:GenerateDataKey', 'kms:Decrypt');
    this.sendRoles[queueId] = role;
    return role;
  }

  private createIotRole(id: string, description: string): iam.Role {
    return new iam.Role(this, id, {
      // Only rules of this account may use the role (confused-deputy protection).
      assumedBy: new iam.ServicePrincipal('iot.amazonaws.com', {
        conditions: { StringEquals: { 'aws:SourceAccount': Stack.of(this).account } },
      }),
      description,
    });
  }
}
