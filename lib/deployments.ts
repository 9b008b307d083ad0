import { ArnFormat, Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { DynamoEventSource, SqsDlq } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import {
  type BackgroundFunctionId,
  backgroundFunctions,
  countersStreamEventSource,
  type FunctionDefinition,
} from '../lambdas/definitions/api.ts';
import { env } from '../lambdas/definitions/environment.ts';
import { type QueueDefinition, type QueueId, queues } from '../lambdas/definitions/queues.ts';
import { downloadTopics } from '../lambdas/definitions/rules.ts';
import { deploymentsTable, executionsTable, fleetTable } from '../lambdas/definitions/tables.ts';
import { acknowledge } from './acknowledge.ts';
import type { IArtifactStore } from './artifact-store.ts';
import { grantListThingGroupMembers, grantPublish, grantShadowAccess } from './iot-permissions.ts';
import { OtaFunction } from './ota-function.ts';
import { eventSourceFromDefinition, queueFromDefinition, secureQueueProps } from './queue-from-definition.ts';
import { grantTableData, tableFromDefinition } from './table-from-definition.ts';
import type { IUpdateCatalog } from './update-catalog.ts';

/** What the operator API needs of deployments. */
export interface IDeployments {
  /** Environment variables naming the deployment tables and the fan-out worker. */
  readonly environment: Readonly<Record<string, string>>;
  /**
   * Lets `grantee` create, read, cancel and retry deployments: read and write deployments and
   * executions, read the fleet, and start the fan-out worker.
   */
  grantManageDeployments(grantee: iam.IGrantable): void;
  /**
   * Lets `grantee` send desired documents (a cancel action to one device) and read shadows, of
   * the named shadow `ota` in practice.
   */
  grantShadowControl(grantee: iam.IGrantable): void;
  /** Lets `grantee` invoke the fan-out worker, and nothing else of Lambda. */
  grantStartFanout(grantee: iam.IGrantable): void;
}

export interface DeploymentsProps {
  readonly artifacts: IArtifactStore;
  readonly catalog: IUpdateCatalog;
  /** Account-wide cap on shadow updates per second, shared by all deployments. @default 400 */
  readonly accountShadowRateCap?: number;
  /**
   * The account's IoT data-plane endpoint (`https://<prefix>-ats.iot.<region>.amazonaws.com`, from
   * `aws iot describe-endpoint --endpoint-type iot:Data-ATS`), which AWS recommends over the
   * regional default for availability.
   * @default - the SDK's regional endpoint `data-ats.iot.<region>.amazonaws.com`
   */
  readonly iotDataEndpoint?: string;
  /** How often the scheduler resumes workers and sweeps. @default every minute */
  readonly schedule?: events.Schedule;
  /** Longest lifetime of STS download credentials (the download role's maximum session). @default 1 hour */
  readonly maxDownloadSessionDuration?: Duration;
  /** @default - AWS-managed key (aws/dynamodb), see docs/adr/0020-infra-encryption-at-rest.md */
  readonly tableEncryption?: dynamodb.TableEncryptionV2;
  /** Tables and queues. @default RemovalPolicy.RETAIN */
  readonly removalPolicy?: RemovalPolicy;
}

/** Run-time settings of each background function (lambdas/definitions/api.ts). */
interface FunctionSettings {
  readonly timeout: Duration;
}

const functionSettings: Record<BackgroundFunctionId, FunctionSettings> = {
  // Workers stop themselves 10 s before their deadline and resume from the checkpoint (ADR 0040);
  // a long timeout means fewer hand-overs for a large fleet.
  fanoutWorker: { timeout: Duration.minutes(15) },
  // Runs every minute; heavy work goes to workers, so a tick that needs longer is a bug.
  scheduler: { timeout: Duration.minutes(1) },
  acknowledge: { timeout: Duration.seconds(30) },
  countersStream: { timeout: Duration.minutes(1) },
  downloadAuthorizer: { timeout: Duration.seconds(15) },
};

/**
 * Deployments (ADR 0040): the deployments, executions and fleet tables (shapes from
 * lambdas/definitions/tables.ts), one Lambda per background function, the fan-out worker that
 * the API, the scheduler and the worker itself start, the scheduler's timer, the counters
 * projection on the executions stream, the work queues of lambdas/definitions/queues.ts (device
 * reports for the acknowledgement function) with their dead-letter queues, and the role whose STS
 * credentials let devices download update files.
 */
export class Deployments extends Construct implements IDeployments {
  public readonly deploymentsTable: dynamodb.TableV2;
  public readonly executionsTable: dynamodb.TableV2;
  public readonly fleetTable: dynamodb.TableV2;
  public readonly functions: Readonly<Record<BackgroundFunctionId, OtaFunction>>;
  public readonly environment: Readonly<Record<string, string>>;
  /** The fan-out worker's fixed name: the worker invokes itself, and may not reference itself. */
  public readonly fanoutWorkerName: string;
  /** Assumed by the download authorizer alone; its session policies narrow it to one update's files. */
  public readonly downloadRole: iam.Role;
  public readonly scheduleRule: events.Rule;
  /** The work queues by their id in lambdas/definitions/queues.ts, each its function's event source. */
  public readonly queues: Readonly<Record<QueueId, sqs.Queue>>;
  /** Device reports the acknowledgement function failed on `maxReceiveCount` times (the queue's redrive). */
  public readonly acknowledgeDeadLetters: sqs.Queue;
  /** Stream batches (shard and sequence range) the counters function gave up on. */
  public readonly countersDeadLetters: sqs.Queue;

  private readonly props: DeploymentsProps;
  private readonly removalPolicy: RemovalPolicy;

  constructor(scope: Construct, id: string, props: DeploymentsProps) {
    super(scope, id);
    this.props = props;
    this.removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    const tableSettings = {
      encryption: props.tableEncryption ?? dynamodb.TableEncryptionV2.awsManagedKey(),
      removalPolicy: this.removalPolicy,
    };
    this.deploymentsTable = tableFromDefinition(this, deploymentsTable, tableSettings);
    this.executionsTable = tableFromDefinition(this, executionsTable, tableSettings);
    this.fleetTable = tableFromDefinition(this, fleetTable, tableSettings);
    this.fanoutWorkerName = `${Stack.of(this).stackName.slice(0, 48)}-fanout-worker`;
    this.environment = {
      [env.deploymentsTable]: this.deploymentsTable.tableName,
      [env.executionsTable]: this.executionsTable.tableName,
      [env.fleetTable]: this.fleetTable.tableName,
      [env.updatesTable]: props.catalog.table.tableName,
      [env.artifactBucket]: props.artifacts.bucket.bucketName,
      [env.fanoutWorkerFunction]: this.fanoutWorkerName,
      [env.accountShadowRateCap]: String(props.accountShadowRateCap ?? 400),
      ...(props.iotDataEndpoint && { [env.iotDataEndpoint]: props.iotDataEndpoint }),
    };
    this.acknowledgeDeadLetters = this.createDeadLetterQueue('AcknowledgeDeadLetters');
    this.countersDeadLetters = this.createDeadLetterQueue('CountersDeadLetters');
    acknowledge(this.countersDeadLetters, {
      // cdk-nag recognises a queue's redrive target as a dead-letter queue, not a mapping's.
      'AwsSolutions-SQS3':
        'This queue is itself a dead-letter queue (the stream event source mapping’s on-failure destination); a queue behind it would only move the same messages one step further.',
    });
    this.queues = this.createQueues();
    this.functions = this.createFunctions();
    this.connectQueues();
    this.downloadRole = this.createDownloadRole(this.functions.downloadAuthorizer);
    this.functions.downloadAuthorizer.function.addEnvironment(env.downloadRoleArn, this.downloadRole.roleArn);
    this.scheduleRule = new events.Rule(this, 'Schedule', {
      description: 'Starts the deployments scheduler: resumes workers, times out, reconciles, completes',
      schedule: props.schedule ?? events.Schedule.rate(Duration.minutes(1)),
      targets: [
        new targets.LambdaFunction(this.functions.scheduler.function, {
          // A tick older than a minute has been replaced by the next one.
          maxEventAge: Duration.minutes(1),
          retryAttempts: 2,
        }),
      ],
    });
  }

  public grantManageDeployments(grantee: iam.IGrantable): void {
    grantTableData(this.deploymentsTable, grantee, 'readWrite');
    grantTableData(this.executionsTable, grantee, 'readWrite');
    grantTableData(this.fleetTable, grantee, 'read');
    this.grantStartFanout(grantee);
  }

  public grantShadowControl(grantee: iam.IGrantable): void {
    grantShadowAccess(this, grantee, 'iot:GetThingShadow', 'iot:UpdateThingShadow');
  }

  public grantStartFanout(grantee: iam.IGrantable): void {
    // Exactly the worker's ARN: no `:*` for versions or aliases, which are never invoked.
    iam.Grant.addToPrincipal({
      grantee,
      actions: ['lambda:InvokeFunction'],
      resourceArns: [
        Stack.of(this).formatArn({
          service: 'lambda',
          resource: 'function',
          resourceName: this.fanoutWorkerName,
          arnFormat: ArnFormat.COLON_RESOURCE_NAME,
        }),
      ],
    });
  }

  private createFunctions(): Record<BackgroundFunctionId, OtaFunction> {
    // Keyed by every background function, so a new one does not compile until it is wired.
    const wiring: Record<BackgroundFunctionId, (fn: OtaFunction) => void> = {
      fanoutWorker: (fn) => this.wireFanoutWorker(fn),
      scheduler: (fn) => this.wireScheduler(fn),
      acknowledge: (fn) => this.wireAcknowledge(fn),
      countersStream: (fn) => this.wireCountersStream(fn),
      downloadAuthorizer: (fn) => this.wireDownloadAuthorizer(fn),
    };
    const ids = Object.keys(backgroundFunctions) as BackgroundFunctionId[];
    return Object.fromEntries(
      ids.map((functionId) => {
        const definition: FunctionDefinition = backgroundFunctions[functionId];
        const settings = functionSettings[functionId];
        const fn = new OtaFunction(this, constructIdOf(functionId), {
          entry: definition.entry,
          description: definition.description,
          environment: this.environment,
          timeout: settings.timeout,
          ...(definition.memoryMb && { memorySize: definition.memoryMb }),
          ...(functionId === 'fanoutWorker' && { functionName: this.fanoutWorkerName }),
        });
        wiring[functionId](fn);
        return [functionId, fn];
      }),
    ) as Record<BackgroundFunctionId, OtaFunction>;
  }

  /**
   * Expands targets, writes executions, notifies devices through their shadow (with their download
   * grant on their own `accepted` topic), resumes itself.
   */
  private wireFanoutWorker(fn: OtaFunction): void {
    this.grantDeploymentData(fn);
    // The `notified` marks go 25 to a PartiQL batch: INSERT for a row's first write, UPDATE after.
    this.grantExecutionsPartiql(fn, 'dynamodb:PartiQLInsert', 'dynamodb:PartiQLUpdate');
    this.props.catalog.grantReadUpdates(fn);
    grantShadowAccess(this, fn, 'iot:UpdateThingShadow');
    // Presigned GET URLs carry the signer's own permissions.
    this.props.artifacts.grantUpdatesRead(fn);
    grantPublish(this, fn, downloadTopics.accepted('*'));
    grantListThingGroupMembers(this, fn);
    this.grantStartFanout(fn);
  }

  /** Resumes workers, times out silent devices, reconciles from shadows, completes deployments. */
  private wireScheduler(fn: OtaFunction): void {
    this.grantDeploymentData(fn);
    // A completed deployment releases its update (the update's active-deployment count).
    this.props.catalog.grantReadWriteUpdates(fn);
    grantShadowAccess(this, fn, 'iot:GetThingShadow', 'iot:UpdateThingShadow');
    this.grantStartFanout(fn);
    // Retrying a failed tick is pointless: the next one comes within a minute.
    fn.function.configureAsyncInvoke({ retryAttempts: 0, maxEventAge: Duration.minutes(1) });
  }

  /**
   * Takes device reports from the acknowledgements queue in batches (connectQueues). A report it
   * fails on comes back after the visibility timeout, and after `maxReceiveCount` deliveries goes
   * to a dead-letter queue rather than being lost; the scheduler's reconciliation repairs the
   * record meanwhile.
   */
  private wireAcknowledge(fn: OtaFunction): void {
    grantTableData(this.executionsTable, fn, 'readWrite');
    // Reports' forward moves go 25 to a PartiQL batch of UPDATEs, which IAM authorizes by the
    // statement's kind, not by the item actions above.
    this.grantExecutionsPartiql(fn, 'dynamodb:PartiQLUpdate');
    grantTableData(this.fleetTable, fn, 'readWrite');
    // Trims desired.ota once a device reached a terminal state, re-reading the shadow when the
    // trim's version check loses a race.
    grantShadowAccess(this, fn, 'iot:GetThingShadow', 'iot:UpdateThingShadow');
  }

  /**
   * Counters are a projection of the executions stream, one write per deployment per batch,
   * guarded by a marker named by the batch's records (ADR 0040). So a failed batch must come back
   * unchanged: no bisecting (a half batch would get a new name and count again what the failed
   * attempt had counted; the handler never fails on a bad record anyway). What still fails is
   * recorded in a dead-letter queue (the stream keeps the records for 24 hours for a replay).
   */
  private wireCountersStream(fn: OtaFunction): void {
    grantTableData(this.deploymentsTable, fn, 'readWrite');
    // Abort criteria are evaluated on the fresh counters; an aborted deployment releases its update.
    this.props.catalog.grantReadWriteUpdates(fn);
    fn.function.addEventSource(
      new DynamoEventSource(this.executionsTable, {
        startingPosition: lambda.StartingPosition.TRIM_HORIZON,
        batchSize: countersStreamEventSource.batchSize,
        maxBatchingWindow: Duration.seconds(countersStreamEventSource.maxBatchingWindowSeconds),
        parallelizationFactor: 1,
        bisectBatchOnError: false,
        retryAttempts: 10,
        onFailure: new SqsDlq(this.countersDeadLetters),
      }),
    );
  }

  /** Answers a device's download request with presigned URLs or scoped STS credentials. */
  private wireDownloadAuthorizer(fn: OtaFunction): void {
    grantTableData(this.deploymentsTable, fn, 'read');
    grantTableData(this.executionsTable, fn, 'read');
    // Records the device as downloading (one conditional UpdateItem): no put, delete or batch write.
    this.executionsTable.grant(fn, 'dynamodb:UpdateItem');
    this.props.catalog.grantReadUpdates(fn);
    // Presigned GET URLs carry the authorizer's own permissions.
    this.props.artifacts.grantUpdatesRead(fn);
    grantPublish(this, fn, downloadTopics.accepted('*'));
    grantPublish(this, fn, downloadTopics.rejected('*'));
  }

  /** PartiQL writes on the executions table itself: `TableV2.grant` would add its indexes too. */
  private grantExecutionsPartiql(fn: OtaFunction, ...actions: string[]): void {
    iam.Grant.addToPrincipal({ grantee: fn, actions, resourceArns: [this.executionsTable.tableArn] });
  }

  private grantDeploymentData(fn: OtaFunction): void {
    grantTableData(this.deploymentsTable, fn, 'readWrite');
    grantTableData(this.executionsTable, fn, 'readWrite');
    grantTableData(this.fleetTable, fn, 'readWrite');
  }

  /**
   * The role behind STS download credentials. Only the download authorizer's role may assume
   * it; it may read update files and decrypt them, and each session policy narrows that to the
   * files of one update.
   */
  private createDownloadRole(authorizer: OtaFunction): iam.Role {
    const role = new iam.Role(this, 'DownloadRole', {
      assumedBy: new iam.ArnPrincipal(authorizer.role.roleArn),
      description: 'Devices download update files with credentials of this role, scoped by session policy',
      maxSessionDuration: this.props.maxDownloadSessionDuration ?? Duration.hours(1),
    });
    this.props.artifacts.grantUpdatesRead(role);
    role.grantAssumeRole(authorizer.role);
    return role;
  }

  /** One queue per shared definition, construct id `<Id>Queue` (`AcknowledgementsQueue`). */
  private createQueues(): Record<QueueId, sqs.Queue> {
    // Keyed by every queue, so a new one does not compile until it has a dead-letter queue.
    const deadLetters: Record<QueueId, sqs.IQueue> = { acknowledgements: this.acknowledgeDeadLetters };
    const ids = Object.keys(queues) as QueueId[];
    return Object.fromEntries(
      ids.map((queueId) => {
        const definition: QueueDefinition = queues[queueId];
        const queue = queueFromDefinition(this, `${constructIdOf(queueId)}Queue`, definition, {
          deadLetterQueue: deadLetters[queueId],
          functionTimeout: functionSettings[definition.function].timeout,
          removalPolicy: this.removalPolicy,
        });
        return [queueId, queue];
      }),
    ) as Record<QueueId, sqs.Queue>;
  }

  /**
   * Each queue feeds the function its definition names. No maximum concurrency: reports arrive no
   * faster than devices act on shadow updates, which the fan-out paces by the account's rate cap,
   * so a few batches run at once; a cap would only delay them.
   */
  private connectQueues(): void {
    for (const queueId of Object.keys(queues) as QueueId[]) {
      const definition: QueueDefinition = queues[queueId];
      this.functions[definition.function].function.addEventSource(
        eventSourceFromDefinition(this.queues[queueId], definition),
      );
    }
  }

  /** Keeps what failed for 14 days (SQS's longest), for inspection and redrive. */
  private createDeadLetterQueue(id: string): sqs.Queue {
    return new sqs.Queue(this, id, {
      ...secureQueueProps,
      retentionPeriod: Duration.days(14),
      removalPolicy: this.removalPolicy,
    });
  }
}

/** `fanoutWorker` → `FanoutWorker`: construct ids are a contract, so they derive from the definitions. */
function constructIdOf(definitionId: string): string {
  return definitionId.charAt(0).toUpperCase() + definitionId.slice(1);
}
