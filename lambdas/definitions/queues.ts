/**
 * The service's work queues, shared by the CDK stack (an SQS queue with a dead-letter queue and
 * the function's event source mapping) and the local cloud (a local queue with SQS's delivery
 * semantics that calls the same handler). A topic rule's `sqs` action names one by its id.
 * Pure data.
 */
import type { BackgroundFunctionId } from './api.ts';

export interface QueueDefinition {
  readonly description: string;
  /** The function the event source mapping invokes with the queue's messages. */
  readonly function: BackgroundFunctionId;
  /** Messages per invocation at most (SQS event source: 1 to 10,000). */
  readonly batchSize: number;
  /** How long a batch is gathered before the function is invoked with what there is. */
  readonly maxBatchingWindowSeconds: number;
  /**
   * How long a received message stays hidden before it is delivered again. AWS advises six times
   * the function's timeout plus the batching window, so a batch the function is still working on
   * (or being retried on a throttled invoke) is not handed out twice.
   */
  readonly visibilityTimeoutSeconds: number;
  /** Deliveries before a message goes to the dead-letter queue. */
  readonly maxReceiveCount: number;
}

export const queues = {
  acknowledgements: {
    description: 'Device reports on the ota shadow, for the acknowledgement function in batches',
    function: 'acknowledge',
    // 100 reports share a few requests (PartiQL batches of 25, BatchGetItem of 100); a second of
    // gathering is what a report waits at most when devices report slowly.
    batchSize: 100,
    maxBatchingWindowSeconds: 1,
    // 6 × the function's 30 s + the 1 s window.
    visibilityTimeoutSeconds: 181,
    maxReceiveCount: 5,
  },
} as const satisfies Record<string, QueueDefinition>;

export type QueueId = keyof typeof queues;
