import { App, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { Match, type Template } from 'aws-cdk-lib/assertions';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  type ApiFunctionId,
  apiFunctions,
  type BackgroundFunctionId,
  backgroundFunctions,
} from '../../lambdas/definitions/api.ts';
import { env } from '../../lambdas/definitions/environment.ts';
import { queues } from '../../lambdas/definitions/queues.ts';
import {
  allTables,
  deploymentsTable,
  executionsTable,
  fleetTable,
  type TableDefinition,
  updatesTable,
} from '../../lambdas/definitions/tables.ts';
import { UnsupportedDefinitionError } from '../../lib/errors.ts';
import { queueFromDefinition } from '../../lib/queue-from-definition.ts';
import {
  actionsOf,
  arnWithSuffix,
  formattedArn,
  functionWithDescription,
  getAtt,
  identityStatements,
  ref,
  resourcesOf,
  roleOfFunction,
  single,
  statementsOfFunction,
  statementsOfRole,
  synthTemplate,
  tableOf,
} from './stack.ts';

let template: Template;
beforeAll(() => {
  template = synthTemplate();
});

type FunctionId = BackgroundFunctionId | ApiFunctionId;
const definitions = { ...backgroundFunctions, ...apiFunctions };
const fn = (id: FunctionId) => functionWithDescription(template, definitions[id].description);
const statementsOf = (id: FunctionId) => statementsOfFunction(template, fn(id).logicalId);
const resources = () =>
  template.toJSON().Resources as Record<string, { Properties: Record<string, unknown> }>;
const backgroundIds = Object.keys(backgroundFunctions) as BackgroundFunctionId[];
const allFunctionIds = [...backgroundIds, ...(Object.keys(apiFunctions) as ApiFunctionId[])];

/** What a function may do with a table's items: judged by the writes and reads it is allowed. */
function accessTo(id: FunctionId, table: TableDefinition): 'none' | 'read' | 'readWrite' {
  const tableArn = getAtt(tableOf(template, table).logicalId);
  const actions = statementsOf(id)
    .filter((statement) => resourcesOf(statement).some((r) => JSON.stringify(r) === JSON.stringify(tableArn)))
    .flatMap(actionsOf);
  if (actions.includes('dynamodb:PutItem') && actions.includes('dynamodb:UpdateItem')) return 'readWrite';
  if (actions.includes('dynamodb:GetItem') && actions.includes('dynamodb:Query')) return 'read';
  return 'none';
}

/** The functions whose roles hold a statement granting `action`. */
function functionsAllowed(action: string): FunctionId[] {
  return allFunctionIds.filter((id) => statementsOf(id).some((s) => actionsOf(s).includes(action)));
}

const fanoutWorkerName = 'ShadowOta-fanout-worker';

describe('background functions', () => {
  it.each(backgroundIds)(
    '%s runs with the deployment tables, bucket and fan-out settings in its environment',
    (id) => {
      expect(fn(id).properties.Environment).toEqual({
        Variables: expect.objectContaining({
          [env.deploymentsTable]: ref(tableOf(template, deploymentsTable).logicalId),
          [env.executionsTable]: ref(tableOf(template, executionsTable).logicalId),
          [env.fleetTable]: ref(tableOf(template, fleetTable).logicalId),
          [env.updatesTable]: ref(tableOf(template, updatesTable).logicalId),
          [env.artifactBucket]: ref(
            single(template, 'AWS::S3::Bucket', { LoggingConfiguration: Match.anyValue() }).logicalId,
          ),
          [env.fanoutWorkerFunction]: fanoutWorkerName,
          [env.accountShadowRateCap]: '400',
        }),
      });
    },
  );

  it.each([
    ['fanoutWorker', 900],
    ['scheduler', 60],
    ['acknowledge', 30],
    ['countersStream', 60],
    ['downloadAuthorizer', 15],
  ] as const)('%s times out after %i s', (id, seconds) => {
    expect(fn(id).properties.Timeout).toBe(seconds);
  });

  it('gives the API the same deployment environment', () => {
    expect(fn('deploymentsApi').properties.Environment).toEqual({
      Variables: expect.objectContaining({
        [env.deploymentsTable]: ref(tableOf(template, deploymentsTable).logicalId),
        [env.executionsTable]: ref(tableOf(template, executionsTable).logicalId),
        [env.fanoutWorkerFunction]: fanoutWorkerName,
      }),
    });
  });
});

describe('fan-out', () => {
  it('names the worker, so it can invoke itself without referencing itself', () => {
    expect(fn('fanoutWorker').properties.FunctionName).toBe(fanoutWorkerName);
  });

  it('lets exactly the API, the scheduler and the worker itself invoke the worker, and on its ARN alone', () => {
    expect(functionsAllowed('lambda:InvokeFunction').sort()).toEqual([
      'deploymentsApi',
      'fanoutWorker',
      'scheduler',
    ]);
    const invokes = identityStatements(template)
      .map(({ statement }) => statement)
      .filter((statement) => actionsOf(statement).includes('lambda:InvokeFunction'));
    for (const statement of invokes) {
      expect(actionsOf(statement)).toEqual(['lambda:InvokeFunction']);
      expect(statement.Resource).toEqual(formattedArn('lambda', `function:${fanoutWorkerName}`));
    }
  });

  it('lets only the worker list thing-group members', () => {
    expect(functionsAllowed('iot:ListThingsInThingGroup')).toEqual(['fanoutWorker']);
    expect(
      statementsOf('fanoutWorker').find((s) => actionsOf(s).includes('iot:ListThingsInThingGroup'))?.Resource,
    ).toEqual(formattedArn('iot', 'thinggroup/*'));
  });
});

describe('scheduler', () => {
  it('runs every minute', () => {
    const rule = single(template, 'AWS::Events::Rule', { ScheduleExpression: 'rate(1 minute)' });
    expect(rule.properties.State).toBe('ENABLED');
    expect(rule.properties.Targets).toEqual([
      expect.objectContaining({ Arn: getAtt(fn('scheduler').logicalId) }),
    ]);
  });

  it('drops a failed or stale tick instead of retrying it (the next tick comes within a minute)', () => {
    template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      FunctionName: ref(fn('scheduler').logicalId),
      MaximumRetryAttempts: 0,
      MaximumEventAgeInSeconds: 60,
    });
  });

  it('may be invoked by its rule alone', () => {
    const rule = single(template, 'AWS::Events::Rule', { ScheduleExpression: 'rate(1 minute)' });
    template.hasResourceProperties('AWS::Lambda::Permission', {
      FunctionName: getAtt(fn('scheduler').logicalId),
      Principal: 'events.amazonaws.com',
      SourceArn: getAtt(rule.logicalId),
    });
  });
});

/** The queue a destination or event source mapping sends its failures to. */
const queueOf = (destinationConfig: unknown): string =>
  (destinationConfig as { OnFailure: { Destination: { 'Fn::GetAtt': [string, string] } } }).OnFailure
    .Destination['Fn::GetAtt'][0];

describe('counters stream', () => {
  const mapping = () =>
    single(template, 'AWS::Lambda::EventSourceMapping', {
      FunctionName: ref(fn('countersStream').logicalId),
    });

  it('reads the executions table stream from its start', () => {
    expect(mapping().properties).toMatchObject({
      EventSourceArn: getAtt(tableOf(template, executionsTable).logicalId, 'StreamArn'),
      StartingPosition: 'TRIM_HORIZON',
    });
  });

  it('takes large batches, one at a time per shard (the batch guard relies on order)', () => {
    expect(mapping().properties).toMatchObject({
      BatchSize: 500,
      MaximumBatchingWindowInSeconds: 1,
      ParallelizationFactor: 1,
    });
  });

  it('retries a failing batch whole a bounded number of times, then records it in a dead-letter queue', () => {
    const { properties } = mapping();
    // Never bisected: a half batch gets a new identity, so what the failed attempt already counted
    // would be counted again (the handler is idempotent per whole batch).
    expect(properties).toMatchObject({ BisectBatchOnFunctionError: false, MaximumRetryAttempts: 10 });
    expect(resources()[queueOf(properties.DestinationConfig)]).toMatchObject({ Type: 'AWS::SQS::Queue' });
  });

  it('writes the counters (deployments table) and releases the update of an aborted deployment, nothing else', () => {
    expect(accessTo('countersStream', deploymentsTable)).toBe('readWrite');
    expect(accessTo('countersStream', updatesTable)).toBe('readWrite');
    for (const table of [executionsTable, fleetTable]) expect(accessTo('countersStream', table)).toBe('none');
  });
});

/** Fails unless the queue's resource policy denies every request not made over TLS. */
function expectTlsOnly(queueId: string): void {
  template.hasResourceProperties('AWS::SQS::QueuePolicy', {
    Queues: [ref(queueId)],
    PolicyDocument: Match.objectLike({
      Statement: Match.arrayWith([
        Match.objectLike({
          Effect: 'Deny',
          Action: 'sqs:*',
          Condition: { Bool: { 'aws:SecureTransport': 'false' } },
          Resource: getAtt(queueId),
        }),
      ]),
    }),
  });
}

/** The logical id of the queue a mapping reads or a redrive policy names (`Fn::GetAtt: [id, Arn]`). */
const idOfArn = (arn: unknown): string => (arn as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];

describe('acknowledgements', () => {
  const mapping = () =>
    single(template, 'AWS::Lambda::EventSourceMapping', { FunctionName: ref(fn('acknowledge').logicalId) });
  const queueId = () => idOfArn(mapping().properties.EventSourceArn);
  const queue = () => resources()[queueId()] as { Type: string; Properties: Record<string, unknown> };
  const deadLetterQueueId = () =>
    idOfArn((queue().Properties.RedrivePolicy as { deadLetterTargetArn: unknown }).deadLetterTargetArn);
  /** The sqs actions the acknowledgement function's role holds on its queue. */
  const actionsOnQueue = () =>
    statementsOf('acknowledge')
      .filter((s) => JSON.stringify(s.Resource) === JSON.stringify(getAtt(queueId())))
      .flatMap(actionsOf);

  it('takes device reports from a queue', () => {
    expect(queue().Type).toBe('AWS::SQS::Queue');
  });

  it('takes batches of up to 100 reports, gathered for at most a second', () => {
    expect(mapping().properties).toMatchObject({ BatchSize: 100, MaximumBatchingWindowInSeconds: 1 });
  });

  it('reports the messages it failed on, so only those are delivered again', () => {
    expect(mapping().properties.FunctionResponseTypes).toEqual(['ReportBatchItemFailures']);
  });

  it('hides a batch for six times the function’s timeout plus the batching window (AWS’s advice), so a batch in progress is not handed out twice', () => {
    const window = mapping().properties.MaximumBatchingWindowInSeconds as number;
    expect(queue().Properties.VisibilityTimeout).toBe(181);
    expect(queue().Properties.VisibilityTimeout).toBe(
      6 * (fn('acknowledge').properties.Timeout as number) + window,
    );
  });

  it('moves a report delivered five times to a dead-letter queue of its own instead of dropping it', () => {
    expect((queue().Properties.RedrivePolicy as { maxReceiveCount: number }).maxReceiveCount).toBe(5);
    expect(resources()[deadLetterQueueId()]).toMatchObject({ Type: 'AWS::SQS::Queue' });
    const countersDeadLetters = queueOf(
      single(template, 'AWS::Lambda::EventSourceMapping', {
        FunctionName: ref(fn('countersStream').logicalId),
      }).properties.DestinationConfig,
    );
    expect([queueId(), countersDeadLetters]).not.toContain(deadLetterQueueId());
  });

  it('keeps a report 4 days, less than its dead-letter queue (a redriven message keeps its enqueue time)', () => {
    expect(queue().Properties.MessageRetentionPeriod).toBe(345600);
    expect(resources()[deadLetterQueueId()]?.Properties.MessageRetentionPeriod).toBe(1209600);
  });

  it('encrypts the queue and retains it', () => {
    expect(template.toJSON().Resources[queueId()]).toMatchObject({
      Properties: { SqsManagedSseEnabled: true },
      DeletionPolicy: 'Retain',
    });
  });

  it('refuses every request to the queue not made over TLS', () => {
    expectTlsOnly(queueId());
  });

  it('is no longer invoked asynchronously: no retry or on-failure configuration', () => {
    expect(
      template.findResources('AWS::Lambda::EventInvokeConfig', {
        Properties: { FunctionName: ref(fn('acknowledge').logicalId) },
      }),
    ).toEqual({});
  });

  it('may receive, hide and delete the messages of its queue', () => {
    expect(actionsOnQueue()).toEqual(
      expect.arrayContaining(['sqs:ReceiveMessage', 'sqs:ChangeMessageVisibility', 'sqs:DeleteMessage']),
    );
  });

  it('sends to no queue: the queue’s redrive moves failures, not the function', () => {
    expect(statementsOf('acknowledge').flatMap(actionsOf)).not.toContain('sqs:SendMessage');
  });
});

describe('dead-letter queues', () => {
  const queueIds = () => {
    const acknowledgements = single(template, 'AWS::Lambda::EventSourceMapping', {
      FunctionName: ref(fn('acknowledge').logicalId),
    }).properties.EventSourceArn;
    const redrive = resources()[idOfArn(acknowledgements)]?.Properties.RedrivePolicy as {
      deadLetterTargetArn: unknown;
    };
    return [
      idOfArn(redrive.deadLetterTargetArn),
      queueOf(
        single(template, 'AWS::Lambda::EventSourceMapping', {
          FunctionName: ref(fn('countersStream').logicalId),
        }).properties.DestinationConfig,
      ),
    ];
  };

  it('are encrypted, keep messages for 14 days and are retained', () => {
    for (const id of queueIds()) {
      expect(template.toJSON().Resources[id]).toMatchObject({
        Properties: { SqsManagedSseEnabled: true, MessageRetentionPeriod: 1209600 },
        DeletionPolicy: 'Retain',
      });
    }
  });

  it('are dead-letter queues themselves, with no redrive behind them', () => {
    for (const id of queueIds()) expect(resources()[id]?.Properties.RedrivePolicy).toBeUndefined();
  });

  it('refuse every request not made over TLS', () => {
    for (const id of queueIds()) expectTlsOnly(id);
  });
});

describe('download role', () => {
  const downloadRole = () =>
    single(template, 'AWS::IAM::Role', {
      Description: 'Devices download update files with credentials of this role, scoped by session policy',
    });
  const artifactBucketId = () =>
    single(template, 'AWS::S3::Bucket', { LoggingConfiguration: Match.anyValue() }).logicalId;
  const bucketKeyId = () => single(template, 'AWS::KMS::Key', { EnableKeyRotation: true }).logicalId;

  it('trusts the download authorizer’s role and nobody else', () => {
    expect(downloadRole().properties.AssumeRolePolicyDocument).toEqual({
      Version: '2012-10-17',
      Statement: [
        {
          Action: 'sts:AssumeRole',
          Effect: 'Allow',
          Principal: { AWS: getAtt(roleOfFunction(template, fn('downloadAuthorizer').logicalId)) },
        },
      ],
    });
  });

  it('is assumable by the download authorizer, on exactly this role', () => {
    expect(functionsAllowed('sts:AssumeRole')).toEqual(['downloadAuthorizer']);
    const assume = statementsOf('downloadAuthorizer').filter((s) => actionsOf(s).includes('sts:AssumeRole'));
    expect(assume).toEqual([
      expect.objectContaining({ Action: 'sts:AssumeRole', Resource: getAtt(downloadRole().logicalId) }),
    ]);
  });

  it('may read update files and decrypt them, and nothing else', () => {
    expect(statementsOfRole(template, downloadRole().logicalId)).toEqual([
      expect.objectContaining({
        Action: 's3:GetObject',
        Resource: arnWithSuffix(artifactBucketId(), '/updates/*'),
      }),
      expect.objectContaining({ Action: 'kms:Decrypt', Resource: getAtt(bucketKeyId()) }),
    ]);
  });

  it('issues sessions of at most one hour', () => {
    expect(downloadRole().properties.MaxSessionDuration).toBe(3600);
  });

  it('is named to the download authorizer', () => {
    expect(fn('downloadAuthorizer').properties.Environment).toEqual({
      Variables: expect.objectContaining({ [env.downloadRoleArn]: getAtt(downloadRole().logicalId) }),
    });
  });

  it.each(['downloadAuthorizer', 'fanoutWorker'] as const)(
    'lets the %s presign GETs of update files (its own read access), without listing or writing',
    (functionId) => {
      const statements = statementsOf(functionId);
      expect(statements).toContainEqual(
        expect.objectContaining({
          Action: 's3:GetObject',
          Resource: arnWithSuffix(artifactBucketId(), '/updates/*'),
        }),
      );
      const actions = statements.flatMap(actionsOf);
      expect(actions).not.toContain('s3:ListBucket');
      expect(actions).not.toContain('s3:PutObject');
    },
  );
});

describe('IoT data plane', () => {
  it('lets the worker, the scheduler, the acknowledgement function and the API update shadows, of things only', () => {
    expect(functionsAllowed('iot:UpdateThingShadow').sort()).toEqual([
      'acknowledge',
      'deploymentsApi',
      'fanoutWorker',
      'scheduler',
    ]);
    for (const { statement } of identityStatements(template)) {
      if (actionsOf(statement).some((a) => a.endsWith('ThingShadow'))) {
        expect(statement.Resource).toEqual(formattedArn('iot', 'thing/*'));
      }
    }
  });

  it('lets only the functions that reconcile, re-read after a lost race or cancel read shadows', () => {
    expect(functionsAllowed('iot:GetThingShadow').sort()).toEqual([
      'acknowledge',
      'deploymentsApi',
      'scheduler',
    ]);
  });

  it('lets only the download authorizer and the fan-out publish, and only to the download response topics', () => {
    expect(functionsAllowed('iot:Publish').sort()).toEqual(['downloadAuthorizer', 'fanoutWorker']);
    const publish = statementsOf('downloadAuthorizer').filter((s) => actionsOf(s).includes('iot:Publish'));
    expect(publish.flatMap(resourcesOf)).toEqual([
      formattedArn('iot', 'topic/ota/things/*/downloads/accepted'),
      formattedArn('iot', 'topic/ota/things/*/downloads/rejected'),
    ]);
    // The grant sent with a notification goes to the device's `accepted` topic, nowhere else.
    const pushed = statementsOf('fanoutWorker').filter((s) => actionsOf(s).includes('iot:Publish'));
    expect(pushed.flatMap(resourcesOf)).toEqual([
      formattedArn('iot', 'topic/ota/things/*/downloads/accepted'),
    ]);
  });

  it('grants no IoT action beyond these', () => {
    const iotActions = identityStatements(template)
      .flatMap(({ statement }) => actionsOf(statement))
      .filter((action) => action.startsWith('iot:'));
    expect([...new Set(iotActions)].sort()).toEqual([
      'iot:GetThingShadow',
      'iot:ListThingsInThingGroup',
      'iot:Publish',
      'iot:UpdateThingShadow',
    ]);
  });
});

describe('table access', () => {
  it.each([
    ['deploymentsApi', 'readWrite', 'Deployments'],
    ['deploymentsApi', 'readWrite', 'Executions'],
    ['deploymentsApi', 'read', 'Fleet'],
    ['deploymentsApi', 'readWrite', 'Updates'],
    ['updatesApi', 'none', 'Deployments'],
    ['fanoutWorker', 'readWrite', 'Fleet'],
    ['fanoutWorker', 'read', 'Updates'],
    ['scheduler', 'readWrite', 'Executions'],
    ['scheduler', 'readWrite', 'Updates'],
    ['acknowledge', 'none', 'Deployments'],
    ['acknowledge', 'readWrite', 'Executions'],
    ['acknowledge', 'readWrite', 'Fleet'],
    ['acknowledge', 'none', 'Updates'],
    ['countersStream', 'none', 'Executions'],
    ['downloadAuthorizer', 'read', 'Executions'],
    ['downloadAuthorizer', 'read', 'Deployments'],
    ['downloadAuthorizer', 'none', 'Fleet'],
  ] as const)('%s has %s access to the %s table', (id, access, tableId) => {
    const table = allTables.find((definition) => definition.id === tableId) as TableDefinition;
    expect(accessTo(id, table)).toBe(access);
  });

  it.each([
    ['fanoutWorker', ['dynamodb:PartiQLInsert', 'dynamodb:PartiQLUpdate']],
    ['acknowledge', ['dynamodb:PartiQLUpdate']],
  ] as const)(
    'lets %s run the PartiQL writes it batches (%j) on the executions table, and no other function any',
    (id, allowed) => {
      const tableArn = JSON.stringify(getAtt(tableOf(template, executionsTable).logicalId));
      const partiqlOf = (fid: FunctionId) =>
        statementsOf(fid)
          .filter((statement) => resourcesOf(statement).some((r) => JSON.stringify(r) === tableArn))
          .flatMap(actionsOf)
          .filter((action) => action.startsWith('dynamodb:PartiQL'));
      expect(partiqlOf(id).sort()).toEqual([...allowed]);
      // PartiQL never on another table, nor by another function.
      expect(allFunctionIds.filter((other) => other !== id && partiqlOf(other).length > 0).sort()).toEqual(
        ['acknowledge', 'fanoutWorker'].filter((other) => other !== id),
      );
      for (const other of allFunctionIds)
        for (const statement of statementsOf(other))
          if (actionsOf(statement).some((action) => action.startsWith('dynamodb:PartiQL')))
            expect(resourcesOf(statement).map((r) => JSON.stringify(r))).toEqual([tableArn]);
    },
  );

  it('lets the download authorizer update executions (it records downloading), and write them no other way', () => {
    const tableArn = JSON.stringify(getAtt(tableOf(template, executionsTable).logicalId));
    const actions = statementsOf('downloadAuthorizer')
      .filter((statement) => resourcesOf(statement).some((r) => JSON.stringify(r) === tableArn))
      .flatMap(actionsOf);
    expect(actions).toContain('dynamodb:UpdateItem');
    for (const write of ['dynamodb:PutItem', 'dynamodb:DeleteItem', 'dynamodb:BatchWriteItem'])
      expect(actions).not.toContain(write);
  });
});

describe('queueFromDefinition', () => {
  const build = (functionTimeout: Duration) => () => {
    const stack = new Stack(new App(), 'QueueOnly');
    queueFromDefinition(stack, 'Work', queues.acknowledgements, {
      deadLetterQueue: new sqs.Queue(stack, 'DeadLetters'),
      functionTimeout,
      removalPolicy: RemovalPolicy.DESTROY,
    });
  };

  it('accepts a function that times out within the visibility timeout', () => {
    expect(build(Duration.seconds(queues.acknowledgements.visibilityTimeoutSeconds))).not.toThrow();
  });

  // Lambda would refuse the event source mapping at deploy time.
  it('refuses a function that may outlast the visibility timeout', () => {
    expect(build(Duration.seconds(queues.acknowledgements.visibilityTimeoutSeconds + 1))).toThrow(
      UnsupportedDefinitionError,
    );
  });
});
