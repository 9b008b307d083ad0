import { Duration, type RemovalPolicy } from 'aws-cdk-lib';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import type { Construct } from 'constructs';
import type { QueueDefinition } from '../lambdas/definitions/queues.ts';
import { UnsupportedDefinitionError } from './errors.ts';

/**
 * What every queue of the service has: SQS-managed encryption at rest (no key to grant to AWS IoT
 * or Lambda, see docs/adr/0020-infra-encryption-at-rest.md) and no request without TLS.
 */
export const secureQueueProps = {
  encryption: sqs.QueueEncryption.SQS_MANAGED,
  enforceSSL: true,
} as const satisfies sqs.QueueProps;

export interface QueueSettings {
  /** Where a message goes once it has been delivered `maxReceiveCount` times. */
  readonly deadLetterQueue: sqs.IQueue;
  /** Timeout of the function the queue feeds. */
  readonly functionTimeout: Duration;
  readonly removalPolicy: RemovalPolicy;
}

/**
 * A work queue with the visibility timeout and redrive of a shared definition
 * (lambdas/definitions/queues.ts; the local cloud builds its queue from the same one).
 */
export function queueFromDefinition(
  scope: Construct,
  id: string,
  definition: QueueDefinition,
  settings: QueueSettings,
): sqs.Queue {
  const visibilityTimeout = Duration.seconds(definition.visibilityTimeoutSeconds);
  // Lambda refuses the event source mapping at deploy time otherwise; say so at synth.
  if (visibilityTimeout.toSeconds() < settings.functionTimeout.toSeconds()) {
    throw new UnsupportedDefinitionError(
      `queue ${id}`,
      `its visibility timeout (${visibilityTimeout.toSeconds()} s) is shorter than the timeout of ${definition.function} (${settings.functionTimeout.toSeconds()} s)`,
    );
  }
  return new sqs.Queue(scope, id, {
    ...secureQueueProps,
    visibilityTimeout,
    // SQS's default, made explicit: shorter than the dead-letter queue's, because a redriven message
    // keeps its original enqueue time, and the dead-letter queue must still hold it for days.
    retentionPeriod: Duration.days(4),
    deadLetterQueue: { queue: settings.deadLetterQueue, maxReceiveCount: definition.maxReceiveCount },
    removalPolicy: settings.removalPolicy,
  });
}

/**
 * The queue as its function's event source, with the definition's batching. The function reports
 * the messages it failed on, so only those come back (and count towards the dead-letter queue),
 * not the whole batch.
 */
export function eventSourceFromDefinition(queue: sqs.IQueue, definition: QueueDefinition): SqsEventSource {
  return new SqsEventSource(queue, {
    batchSize: definition.batchSize,
    maxBatchingWindow: Duration.seconds(definition.maxBatchingWindowSeconds),
    reportBatchItemFailures: true,
  });
}
