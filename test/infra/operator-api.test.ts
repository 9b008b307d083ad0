import { Match, type Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { apiFunctions, apiRoutes, backgroundFunctions } from '../../lambdas/definitions/api.ts';
import { env } from '../../lambdas/definitions/environment.ts';
import { updatesTable } from '../../lambdas/definitions/tables.ts';
import {
  actionsOf,
  arnWithSuffix,
  getAtt,
  identityStatements,
  type PolicyStatement,
  ref,
  resourcesOf,
  single,
  statementsOfFunction as statementsOfFunctionIn,
  synthTemplate,
  tableOf,
} from './stack.ts';

let template: Template;
beforeAll(() => {
  template = synthTemplate();
});

/** Every Lambda of the stack is an OtaFunction: the API's and the background ones. */
const functionCount = Object.keys(apiFunctions).length + Object.keys(backgroundFunctions).length;
const artifactBucketId = () =>
  single(template, 'AWS::S3::Bucket', { LoggingConfiguration: Match.anyValue() }).logicalId;
const tableId = () => tableOf(template, updatesTable).logicalId;
const signingKeyId = () => single(template, 'AWS::KMS::Key', { KeyUsage: 'SIGN_VERIFY' }).logicalId;
const bucketKeyId = () => single(template, 'AWS::KMS::Key', { EnableKeyRotation: true }).logicalId;
const updatesApi = () =>
  single(template, 'AWS::Lambda::Function', { Description: apiFunctions.updatesApi.description });

const statementsOfFunction = (functionId: string): PolicyStatement[] =>
  statementsOfFunctionIn(template, functionId);

describe('OperatorApi functions', () => {
  it('runs every API function on Node.js 22, ARM64, with active X-Ray tracing', () => {
    template.resourcePropertiesCountIs(
      'AWS::Lambda::Function',
      {
        Runtime: 'nodejs22.x',
        Architectures: ['arm64'],
        TracingConfig: { Mode: 'Active' },
        Handler: 'index.handler',
      },
      functionCount,
    );
  });

  it('turns source maps on', () => {
    template.resourcePropertiesCountIs(
      'AWS::Lambda::Function',
      { Environment: { Variables: Match.objectLike({ NODE_OPTIONS: '--enable-source-maps' }) } },
      functionCount,
    );
  });

  it('logs into its own log group with a retention', () => {
    const logGroup = (updatesApi().properties.LoggingConfig as { LogGroup: { Ref: string } }).LogGroup.Ref;
    expect(template.toJSON().Resources[logGroup]).toMatchObject({
      Type: 'AWS::Logs::LogGroup',
      Properties: { RetentionInDays: 90 },
    });
  });

  it('configures the handler with the table, bucket and KMS signing key', () => {
    expect(updatesApi().properties.Environment).toEqual({
      Variables: expect.objectContaining({
        [env.updatesTable]: ref(tableId()),
        [env.artifactBucket]: ref(artifactBucketId()),
        [env.signerKind]: 'kms',
        [env.signingKeyId]: ref(signingKeyId()),
        [env.uploadUrlTtlSeconds]: '900',
      }),
    });
  });

  it('does not use AWSLambdaBasicExecutionRole (logs:* on every log group)', () => {
    template.resourcePropertiesCountIs('AWS::IAM::Role', { ManagedPolicyArns: Match.anyValue() }, 0);
  });
});

describe('OperatorApi HTTP API', () => {
  it.each(apiRoutes.map((route) => [`${route.method} ${route.path}`, route] as const))(
    'routes %s to its function with AWS_IAM authorization',
    (routeKey, route) => {
      const { properties } = single(template, 'AWS::ApiGatewayV2::Route', { RouteKey: routeKey });
      expect(properties.AuthorizationType).toBe('AWS_IAM');
      const target = properties.Target as { 'Fn::Join': [string, [string, { Ref: string }]] };
      const integrationId = target['Fn::Join'][1][1].Ref;
      const functionId = single(template, 'AWS::Lambda::Function', {
        Description: apiFunctions[route.function].description,
      }).logicalId;
      expect(template.toJSON().Resources[integrationId].Properties).toMatchObject({
        IntegrationType: 'AWS_PROXY',
        IntegrationUri: getAtt(functionId),
        PayloadFormatVersion: '2.0',
      });
    },
  );

  it('has no route besides the defined ones (none without authorization)', () => {
    template.resourceCountIs('AWS::ApiGatewayV2::Route', apiRoutes.length);
  });

  it('logs every request of its stage as JSON into a log group with a retention', () => {
    const { properties } = single(template, 'AWS::ApiGatewayV2::Stage', { StageName: '$default' });
    const settings = properties.AccessLogSettings as {
      DestinationArn: { 'Fn::GetAtt': [string] };
      Format: string;
    };
    const format = JSON.parse(settings.Format) as Record<string, string>;
    expect(format).toMatchObject({ requestId: '$context.requestId', userArn: '$context.identity.userArn' });
    expect(template.toJSON().Resources[settings.DestinationArn['Fn::GetAtt'][0]]).toMatchObject({
      Type: 'AWS::Logs::LogGroup',
      Properties: { RetentionInDays: 365 },
    });
  });

  it('throttles its stage and deploys automatically', () => {
    template.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
      StageName: '$default',
      AutoDeploy: true,
      DefaultRouteSettings: { ThrottlingRateLimit: 50, ThrottlingBurstLimit: 100 },
    });
  });
});

describe('least privilege', () => {
  it('lets only the API functions sign (update and deployment manifests), and only with the signing key', () => {
    const signing = identityStatements(template).filter(({ statement }) =>
      actionsOf(statement).includes('kms:Sign'),
    );
    expect(signing).toHaveLength(Object.keys(apiFunctions).length);
    for (const { statement } of signing) {
      expect(actionsOf(statement).sort()).toEqual(['kms:GetPublicKey', 'kms:Sign']);
      expect(statement.Resource).toEqual(getAtt(signingKeyId()));
    }
  });

  it('grants nothing else on the signing key', () => {
    const onKey = identityStatements(template).filter(({ statement }) =>
      JSON.stringify(resourcesOf(statement)).includes(`"${signingKeyId()}"`),
    );
    expect([...new Set(onKey.flatMap(({ statement }) => actionsOf(statement)))].sort()).toEqual([
      'kms:GetPublicKey',
      'kms:Sign',
    ]);
  });

  it('gives "*" resources only to X-Ray actions, which have no resource-level permissions', () => {
    const starred = identityStatements(template).filter(({ statement }) =>
      resourcesOf(statement).includes('*'),
    );
    expect(starred.length).toBeGreaterThan(0);
    for (const { statement } of starred) {
      expect(actionsOf(statement).every((action) => action.startsWith('xray:'))).toBe(true);
    }
  });

  it('uses no service-wide action wildcards', () => {
    for (const { statement } of identityStatements(template)) {
      for (const action of actionsOf(statement)) expect(action).not.toMatch(/(^\*$|:\*$)/);
    }
  });

  it('limits object access to the updates prefix of the artifact bucket', () => {
    const objectStatements = statementsOfFunction(updatesApi().logicalId).filter((statement) =>
      actionsOf(statement).some((action) => /^s3:(Get|Put|Delete)Object/.test(action)),
    );
    expect(objectStatements).toHaveLength(1);
    expect(actionsOf(objectStatements[0] as PolicyStatement).sort()).toEqual([
      's3:DeleteObject',
      's3:GetObject',
      's3:PutObject',
    ]);
    expect(objectStatements[0]?.Resource).toEqual(arnWithSuffix(artifactBucketId(), '/updates/*'));
  });

  it('lets the API function list the bucket (so a missing upload reads as 404), under the prefix only', () => {
    const listing = statementsOfFunction(updatesApi().logicalId).filter((statement) =>
      actionsOf(statement).includes('s3:ListBucket'),
    );
    expect(listing).toEqual([
      expect.objectContaining({
        Action: 's3:ListBucket',
        Resource: [getAtt(artifactBucketId()), arnWithSuffix(artifactBucketId(), '/updates/*')],
      }),
    ]);
  });

  it('uses the bucket key only to write and read objects', () => {
    const onBucketKey = statementsOfFunction(updatesApi().logicalId).filter((statement) =>
      JSON.stringify(resourcesOf(statement)).includes(`"${bucketKeyId()}"`),
    );
    expect(onBucketKey.flatMap(actionsOf).sort()).toEqual(['kms:Decrypt', 'kms:GenerateDataKey']);
  });

  it('reaches DynamoDB only on the updates table and its indexes', () => {
    const dynamo = statementsOfFunction(updatesApi().logicalId).filter((statement) =>
      actionsOf(statement).some((action) => action.startsWith('dynamodb:')),
    );
    expect(dynamo.length).toBeGreaterThan(0);
    for (const statement of dynamo) {
      expect(resourcesOf(statement)).toEqual([getAtt(tableId()), arnWithSuffix(tableId(), '/index/*')]);
    }
    const actions = dynamo.flatMap(actionsOf);
    expect(actions).toEqual(
      expect.arrayContaining(['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:Query']),
    );
  });

  it('writes logs only into the function’s own log group', () => {
    const logGroup = (updatesApi().properties.LoggingConfig as { LogGroup: { Ref: string } }).LogGroup.Ref;
    const logging = statementsOfFunction(updatesApi().logicalId).filter((statement) =>
      actionsOf(statement).some((action) => action.startsWith('logs:')),
    );
    expect(logging).toEqual([
      expect.objectContaining({
        Action: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        Resource: getAtt(logGroup),
      }),
    ]);
  });
});

describe('stack outputs', () => {
  it('names the API URL, bucket, table and signing key', () => {
    const outputs = template.toJSON().Outputs as Record<string, { Value: unknown }>;
    expect(outputs.ArtifactBucketName?.Value).toEqual(ref(artifactBucketId()));
    expect(outputs.UpdatesTableName?.Value).toEqual(ref(tableId()));
    expect(outputs.SigningKeyId?.Value).toEqual(ref(signingKeyId()));
    const apiId = single(template, 'AWS::ApiGatewayV2::Api', {}).logicalId;
    expect(JSON.stringify(outputs.ApiUrl?.Value)).toContain(`{"Ref":"${apiId}"}`);
    expect(JSON.stringify(outputs.ApiUrl?.Value)).toMatch(/^\{"Fn::Join":\["",\["https:\/\//);
  });
});
