import { App, Stack } from 'aws-cdk-lib';
import type { Template } from 'aws-cdk-lib/assertions';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { beforeAll, describe, expect, it } from 'vitest';
import { backgroundFunctions } from '../../lambdas/definitions/api.ts';
import { type QueueId, queues } from '../../lambdas/definitions/queues.ts';
import { type RuleAction, type TopicRuleDefinition, topicRules } from '../../lambdas/definitions/rules.ts';
import { DeviceRules } from '../../lib/device-rules.ts';
import { UnsupportedDefinitionError } from '../../lib/errors.ts';
import {
  formattedArn,
  functionWithDescription,
  getAtt,
  ref,
  single,
  statementsOfRole,
  synthTemplate,
} from './stack.ts';

let template: Template;
beforeAll(() => {
  template = synthTemplate();
});

const rule = (name: string) => single(template, 'AWS::IoT::TopicRule', { RuleName: name });
const errorLogRole = () =>
  single(template, 'AWS::IAM::Role', {
    Description: 'AWS IoT writes topic rule errors into the rule error log',
  });
const functionNamed = (functionId: string) =>
  functionWithDescription(
    template,
    backgroundFunctions[functionId as keyof typeof backgroundFunctions].description,
  );
/** `arn:<partition>:logs:<region>:<account>:log-group:` as CDK renders it, before the group's name. */
const logsArnPrefix = [
  'arn:',
  ref('AWS::Partition'),
  ':logs:',
  ref('AWS::Region'),
  ':',
  ref('AWS::AccountId'),
  ':log-group:',
];
const lambdaTargetsOf = (definition: TopicRuleDefinition) =>
  definition.actions.flatMap((action) => ('lambda' in action ? [action.lambda.function] : []));
/** The queue of this id, found as the event source of the function its definition names. */
const queueNamed = (queueId: QueueId): string => {
  const mapping = single(template, 'AWS::Lambda::EventSourceMapping', {
    FunctionName: ref(functionNamed(queues[queueId].function).logicalId),
  });
  return (mapping.properties.EventSourceArn as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];
};
const queueRole = (queueId: QueueId) =>
  single(template, 'AWS::IAM::Role', {
    Description: `AWS IoT sends rule results to the ${queueId} queue`,
  });
/** The action as the template holds it; an sqs action's role is checked on its own. */
const templateActionOf = (action: RuleAction): unknown => {
  if ('lambda' in action)
    return { Lambda: { FunctionArn: getAtt(functionNamed(action.lambda.function).logicalId) } };
  if ('sqs' in action) {
    return {
      Sqs: { QueueUrl: ref(queueNamed(action.sqs.queue)), RoleArn: expect.anything(), UseBase64: false },
    };
  }
  throw new Error('the stack deploys lambda and sqs actions only');
};
const sqsRules = topicRules.flatMap((definition) =>
  definition.actions.flatMap((action) =>
    'sqs' in action ? [[definition.name, action.sqs.queue] as const] : [],
  ),
);

/** A trust policy that lets AWS IoT assume the role for this account only (confused-deputy protection). */
const iotOfThisAccountOnly = () => ({
  Version: '2012-10-17',
  Statement: [
    {
      Action: 'sts:AssumeRole',
      Effect: 'Allow',
      Principal: { Service: 'iot.amazonaws.com' },
      Condition: { StringEquals: { 'aws:SourceAccount': ref('AWS::AccountId') } },
    },
  ],
});

describe('IoT topic rules', () => {
  it('deploys one rule per shared definition, and no other', () => {
    template.resourceCountIs('AWS::IoT::TopicRule', topicRules.length);
  });

  it.each(topicRules.map((definition) => [definition.name, definition] as const))(
    '%s has the SQL of its definition',
    (name, definition) => {
      expect(rule(name).properties.TopicRulePayload).toMatchObject({
        Sql: definition.sql,
        AwsIotSqlVersion: definition.awsIotSqlVersion,
        RuleDisabled: false,
      });
    },
  );

  it.each(topicRules.map((definition) => [definition.name, definition] as const))(
    '%s performs the actions its definition names, on the functions and queues it names',
    (name, definition) => {
      const payload = rule(name).properties.TopicRulePayload as { Actions: unknown[] };
      expect(payload.Actions).toEqual(definition.actions.map(templateActionOf));
    },
  );

  it('sends device reports to the acknowledgements queue', () => {
    expect(sqsRules).toContainEqual(['shadow_ota_acknowledgements', 'acknowledgements']);
  });

  it.each(sqsRules)('%s sends to the %s queue with that queue’s role', (name, queueId) => {
    const payload = rule(name).properties.TopicRulePayload as { Actions: { Sqs?: { RoleArn: unknown } }[] };
    expect(payload.Actions.map((action) => action.Sqs?.RoleArn)).toContainEqual(
      getAtt(queueRole(queueId).logicalId),
    );
  });

  it.each(sqsRules)('%s is created after the %s queue role may send', (name, queueId) => {
    const role = queueRole(queueId).logicalId;
    const policy = single(template, 'AWS::IAM::Policy', { Roles: [ref(role)] }).logicalId;
    expect(template.toJSON().Resources[rule(name).logicalId].DependsOn).toEqual(
      expect.arrayContaining([role, policy]),
    );
  });

  it.each(sqsRules.map(([, queueId]) => [queueId] as const))(
    'lets only AWS IoT of this account assume the %s queue role',
    (queueId) => {
      expect(queueRole(queueId).properties.AssumeRolePolicyDocument).toEqual(iotOfThisAccountOnly());
    },
  );

  // SendMessage alone; SQS-managed encryption needs no key grant.
  it.each(sqsRules.map(([, queueId]) => [queueId] as const))(
    'lets the %s queue role send to that queue and nowhere else',
    (queueId) => {
      expect(statementsOfRole(template, queueRole(queueId).logicalId)).toEqual([
        {
          Effect: 'Allow',
          Action: 'sqs:SendMessage',
          Resource: getAtt(queueNamed(queueId)),
        },
      ]);
    },
  );

  it.each(topicRules.map((definition) => [definition.name, definition] as const))(
    '%s lets only itself, in this account, invoke its functions',
    (name, definition) => {
      for (const functionId of lambdaTargetsOf(definition)) {
        const permissions = Object.values(
          template.findResources('AWS::Lambda::Permission', {
            Properties: {
              FunctionName: getAtt(functionNamed(functionId).logicalId),
              Principal: 'iot.amazonaws.com',
            },
          }),
        ).map((resource) => resource.Properties);
        expect(permissions).toEqual([
          {
            Action: 'lambda:InvokeFunction',
            FunctionName: getAtt(functionNamed(functionId).logicalId),
            Principal: 'iot.amazonaws.com',
            SourceAccount: ref('AWS::AccountId'),
            SourceArn: getAtt(rule(name).logicalId),
          },
        ]);
      }
    },
  );

  it.each(topicRules.map((definition) => [definition.name] as const))(
    '%s writes what it cannot deliver into the rule error log, never dropping it',
    (name) => {
      const payload = rule(name).properties.TopicRulePayload as {
        ErrorAction: { CloudwatchLogs: { LogGroupName: { Ref: string }; RoleArn: unknown } };
      };
      const { LogGroupName, RoleArn } = payload.ErrorAction.CloudwatchLogs;
      expect(RoleArn).toEqual(getAtt(errorLogRole().logicalId));
      expect(template.toJSON().Resources[LogGroupName.Ref]).toMatchObject({
        Type: 'AWS::Logs::LogGroup',
        Properties: { RetentionInDays: 365 },
        DeletionPolicy: 'Retain',
      });
    },
  );

  it('lets only AWS IoT of this account assume the error log role', () => {
    expect(errorLogRole().properties.AssumeRolePolicyDocument).toEqual(iotOfThisAccountOnly());
  });

  it('lets the error log role write into the error log and nowhere else', () => {
    const statements = statementsOfRole(template, errorLogRole().logicalId);
    expect(statements).toHaveLength(1);
    expect(statements[0]?.Action).toEqual([
      'logs:CreateLogStream',
      'logs:DescribeLogStreams',
      'logs:PutLogEvents',
    ]);
    const payload = rule(topicRules[0]?.name ?? '').properties.TopicRulePayload as {
      ErrorAction: { CloudwatchLogs: { LogGroupName: { Ref: string } } };
    };
    const logGroup = payload.ErrorAction.CloudwatchLogs.LogGroupName.Ref;
    expect(statements[0]?.Resource).toEqual([
      { 'Fn::Join': ['', [...logsArnPrefix, ref(logGroup)]] },
      getAtt(logGroup),
    ]);
  });
});

describe('DeviceRules refuses definitions it cannot deploy faithfully', () => {
  const deploy = (rules: TopicRuleDefinition[]) => () => {
    const stack = new Stack(new App(), 'RulesOnly');
    const acknowledge = new lambda.Function(stack, 'Acknowledge', {
      runtime: lambda.Runtime.NODEJS_22_X,
      handler: 'index.handler',
      code: lambda.Code.fromInline('export const handler = async () => {};'),
    });
    const acknowledgements = new sqs.Queue(stack, 'Acknowledgements');
    new DeviceRules(stack, 'Rules', {
      functions: { acknowledge: { function: acknowledge } },
      queues: { acknowledgements },
      rules,
    });
  };
  const base = {
    name: 'a_rule',
    sql: "SELECT * FROM 'a/b'",
    awsIotSqlVersion: '2016-03-23',
    actions: [{ lambda: { function: 'acknowledge' } }],
  } as const satisfies TopicRuleDefinition;

  it('deploys a rule whose function it provides', () => {
    expect(deploy([base])).not.toThrow();
  });

  it('deploys a rule whose queue it provides', () => {
    expect(deploy([{ ...base, actions: [{ sqs: { queue: 'acknowledgements' } }] }])).not.toThrow();
  });

  it.each([
    [
      'a function the stack does not provide',
      { ...base, actions: [{ lambda: { function: 'nonexistent' } }] },
    ],
    [
      'a queue the stack does not provide',
      { ...base, actions: [{ sqs: { queue: 'nonexistent' as QueueId } }] },
    ],
    ['a republish action', { ...base, actions: [{ republish: { topic: 'x/y' } }] }],
    ['its own error action', { ...base, errorAction: { republish: { topic: 'x/errors' } } }],
  ] as const)('a rule with %s', (_what, definition) => {
    expect(deploy([definition])).toThrow(UnsupportedDefinitionError);
  });
});

describe('device IoT policy', () => {
  // biome-ignore lint/suspicious/noTemplateCurlyInString: an AWS IoT policy variable, not JavaScript
  const thing = '${iot:Connection.Thing.ThingName}';
  const policy = () => single(template, 'AWS::IoT::Policy', {});
  const statements = () =>
    (
      policy().properties.PolicyDocument as {
        Statement: { Effect: string; Action: unknown; Resource: unknown }[];
      }
    ).Statement;

  it('lets a device connect only as its own thing', () => {
    expect(statements()).toContainEqual({
      Effect: 'Allow',
      Action: 'iot:Connect',
      Resource: formattedArn('iot', `client/${thing}`),
    });
  });

  it('lets a device publish and receive only on its own shadow and ota topics', () => {
    expect(statements()).toContainEqual({
      Effect: 'Allow',
      Action: ['iot:Publish', 'iot:Receive'],
      Resource: [
        formattedArn('iot', `topic/$aws/things/${thing}/shadow/*`),
        formattedArn('iot', `topic/ota/things/${thing}/*`),
      ],
    });
  });

  it('lets a device subscribe only to its own shadow and ota topic filters', () => {
    expect(statements()).toContainEqual({
      Effect: 'Allow',
      Action: 'iot:Subscribe',
      Resource: [
        formattedArn('iot', `topicfilter/$aws/things/${thing}/shadow/*`),
        formattedArn('iot', `topicfilter/ota/things/${thing}/*`),
      ],
    });
  });

  it('allows nothing else: three statements, no Deny needed, every resource scoped by the thing name', () => {
    expect(statements()).toHaveLength(3);
    for (const statement of statements()) {
      const arns = Array.isArray(statement.Resource) ? statement.Resource : [statement.Resource];
      for (const arn of arns) expect(JSON.stringify(arn)).toContain(thing);
    }
  });
});

describe('stack outputs for devices', () => {
  const policy = () => single(template, 'AWS::IoT::Policy', {});

  it('names the device policy and the download role', () => {
    const outputs = template.toJSON().Outputs as Record<string, { Value: unknown }>;
    expect(outputs.DevicePolicyName?.Value).toEqual(ref(policy().logicalId));
    const downloadRole = single(template, 'AWS::IAM::Role', {
      Description: 'Devices download update files with credentials of this role, scoped by session policy',
    });
    expect(outputs.DownloadRoleArn?.Value).toEqual(getAtt(downloadRole.logicalId));
  });
});
