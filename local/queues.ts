/**
 * The local stand-in for an SQS standard queue and the Lambda event source mapping that reads it,
 * with `ReportBatchItemFailures` on (lambdas/definitions/queues.ts describes each queue):
 *
 * - `send` refuses a body over SQS's 256 KiB, as SendMessage does.
 * - The mapping invokes the queue's function with an `SQSEvent` of up to `batchSize` messages, or
 *   with what there is once the batching window has passed since the oldest became visible; up to
 *   `concurrency` batches run at once, as the mapping's pollers scale out.
 * - The response decides each message: `batchItemFailures` come back after the visibility timeout
 *   (counted from their receipt), the rest are deleted; no list or an empty one deletes all. An
 *   `itemIdentifier` that is empty or not in the batch fails the whole batch, as does a thrown
 *   error (AWS's documented rules); so does a response of another shape (a string, a list), which
 *   AWS does not document: failing loses nothing, where deleting would.
 * - A message that failed its `maxReceiveCount`th delivery goes to the dead letters (kept in memory,
 *   handed to `onDeadLetter`) instead of coming back: SQS's redrive policy, applied at once rather
 *   than at the next receive, since nothing else could happen to it in between.
 * - A function that is not registered (yet) leaves the messages waiting; the queue looks for it
 *   again, and `idle()` does not wait for them (an IoT Core started without the function).
 *
 * Not reproduced: a message is never handed out again while its batch is still running (AWS would,
 * once the visibility timeout passes; the definitions keep it at six times the function's timeout so
 * it does not), delay queues, message attributes, the 6 MB invocation payload limit, ordering and
 * duplicate delivery beyond the failures above. Messages live in memory and end with the process.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Context, SQSEvent, SQSRecord } from 'aws-lambda';
import type { QueueDefinition } from '../lambdas/definitions/queues.ts';
import { makeLambdaContext } from './lambda-context.ts';

/** SQS's largest message body (SendMessage refuses more). */
export const sqsMaxMessageBytes = 256 * 1024;

/** The function as the event source mapping invokes it; what it returns is read as an `SQSBatchResponse`. */
export type QueueConsumer = (event: SQSEvent, context: Context) => unknown;

/** Finds the function by name at each invocation: functions may be registered after the queue starts. */
export type QueueConsumerResolver = (functionName: string) => QueueConsumer | undefined;

export interface LocalQueueOptions {
  /** The queue's name, in its URL and ARN. */
  readonly name: string;
  readonly definition: QueueDefinition;
  readonly resolveFunction: QueueConsumerResolver;
  readonly region: string;
  readonly accountId: string;
  /**
   * How long a received message stays hidden. @default 1000 (the definition's value is AWS's,
   * which would hold a failed message back for minutes on a developer's machine)
   */
  readonly visibilityTimeoutMs?: number;
  /** @default the definition's `maxBatchingWindowSeconds` */
  readonly maxBatchingWindowMs?: number;
  /** Batches in flight at once. @default 5 (the pollers an SQS mapping starts with) */
  readonly concurrency?: number;
  /** How many dead letters are kept, the newest. @default 1000 */
  readonly deadLetterLimit?: number;
  /** Each message as it goes to the dead letters (the local cloud logs it). */
  readonly onDeadLetter?: (letter: DeadLetter) => void;
  /** The `SenderId` attribute: who sent the messages (the IoT rule's role in AWS). */
  readonly senderId?: string;
}

export type SendMessageResult =
  | { readonly ok: true; readonly messageId: string }
  | { readonly ok: false; readonly code: string; readonly message: string };

export interface DeadLetter {
  readonly queueName: string;
  readonly messageId: string;
  readonly body: string;
  readonly receiveCount: number;
  /** Epoch milliseconds. */
  readonly sentTimestamp: number;
  /** Why the last delivery failed: the error thrown, or what was wrong with the response. */
  readonly lastError: unknown;
}

export interface LocalQueue {
  readonly name: string;
  /** `https://sqs.<region>.amazonaws.com/<account>/<name>`, as the rule's error action names it. */
  readonly url: string;
  readonly arn: string;
  send(body: string): SendMessageResult;
  /** The dead letters kept so far, oldest first. */
  deadLetters(): readonly DeadLetter[];
  /**
   * Nothing is waiting to be delivered, in flight or waiting out its visibility timeout. Messages
   * for a function that is not registered wait for it and do not count.
   */
  isIdle(): boolean;
  /** Resolves the next time `isIdle()` holds. */
  idle(): Promise<void>;
  /**
   * Refuses new messages, delivers the visible ones without waiting out the batching window, and
   * resolves when no batch is in flight. What fails then, or waits out a visibility timeout, is
   * dropped: the queue lives in memory and ends with the process.
   */
  stop(): Promise<void>;
}

interface Message {
  readonly messageId: string;
  readonly body: string;
  readonly md5OfBody: string;
  readonly sentTimestamp: number;
  receiveCount: number;
  firstReceiveTimestamp?: number;
  /** When it last became visible (sent, or back from a failure): its batching window starts here. */
  visibleSince: number;
}

/** Which messages of a batch failed, or why the whole batch counts as failed. */
export type BatchOutcome =
  | { readonly kind: 'done'; readonly failedIds: ReadonlySet<string> }
  | { readonly kind: 'failed'; readonly reason: unknown };

const defaultVisibilityTimeoutMs = 1000;
const defaultConcurrency = 5;
/** How often a queue whose function is not registered looks for it again. */
const functionLookupIntervalMs = 100;

/** The queue's URL, as SQS gives it and the IoT rule's error action names it. */
export function queueUrl(input: {
  readonly region: string;
  readonly accountId: string;
  readonly name: string;
}): string {
  return `https://sqs.${input.region}.amazonaws.com/${input.accountId}/${input.name}`;
}

export class BatchResponseError extends Error {
  override readonly name = 'BatchResponseError';
}

/**
 * Reads the function's response as Lambda does with `ReportBatchItemFailures`: no response, or no
 * or an empty `batchItemFailures`, is complete success; an identifier that is not a message id of
 * the batch fails the whole batch.
 */
export function readBatchResponse(response: unknown, batchIds: ReadonlySet<string>): BatchOutcome {
  if (response === undefined || response === null) return { kind: 'done', failedIds: new Set() };
  if (typeof response !== 'object' || Array.isArray(response)) {
    return { kind: 'failed', reason: new BatchResponseError('The response is not an SQSBatchResponse') };
  }
  const failures = (response as { batchItemFailures?: unknown }).batchItemFailures;
  if (failures === undefined || failures === null) return { kind: 'done', failedIds: new Set() };
  if (!Array.isArray(failures)) {
    return { kind: 'failed', reason: new BatchResponseError('batchItemFailures is not a list') };
  }
  const failedIds = new Set<string>();
  for (const failure of failures) {
    const id = (failure as { itemIdentifier?: unknown } | null)?.itemIdentifier;
    if (typeof id !== 'string' || !batchIds.has(id)) {
      return {
        kind: 'failed',
        reason: new BatchResponseError(`itemIdentifier ${JSON.stringify(id)} is not a message of the batch`),
      };
    }
    failedIds.add(id);
  }
  return { kind: 'done', failedIds };
}

class LocalSqsQueue implements LocalQueue {
  readonly name: string;
  readonly url: string;
  readonly arn: string;
  readonly #options: LocalQueueOptions;
  readonly #visibilityTimeoutMs: number;
  readonly #windowMs: number;
  readonly #concurrency: number;
  /** Oldest first: sends and returns are appended as they become visible. */
  #visible: Message[] = [];
  /** Messages back from a failure, not visible yet. */
  #returning = 0;
  #functionMissing = false;
  #closing = false;
  #stopped = false;
  readonly #inFlight = new Set<Promise<void>>();
  readonly #timers = new Set<NodeJS.Timeout>();
  #windowTimer: NodeJS.Timeout | undefined;
  #lookupTimer: NodeJS.Timeout | undefined;
  readonly #deadLetters: DeadLetter[] = [];
  #idleWaiters: (() => void)[] = [];

  constructor(options: LocalQueueOptions) {
    this.#options = options;
    this.name = options.name;
    this.url = queueUrl(options);
    this.arn = `arn:aws:sqs:${options.region}:${options.accountId}:${options.name}`;
    this.#visibilityTimeoutMs = options.visibilityTimeoutMs ?? defaultVisibilityTimeoutMs;
    this.#windowMs = options.maxBatchingWindowMs ?? options.definition.maxBatchingWindowSeconds * 1000;
    this.#concurrency = options.concurrency ?? defaultConcurrency;
  }

  send(body: string): SendMessageResult {
    if (this.#closing) {
      return { ok: false, code: 'QueueStopped', message: `The queue ${this.name} is stopped` };
    }
    if (Buffer.byteLength(body, 'utf8') > sqsMaxMessageBytes) {
      return {
        ok: false,
        code: 'InvalidParameterValue',
        message: `One or more parameters are invalid. Reason: Message must be shorter than ${sqsMaxMessageBytes} bytes.`,
      };
    }
    const now = Date.now();
    const message: Message = {
      messageId: randomUUID(),
      body,
      md5OfBody: createHash('md5').update(body, 'utf8').digest('hex'),
      sentTimestamp: now,
      receiveCount: 0,
      visibleSince: now,
    };
    this.#visible.push(message);
    this.#pump();
    return { ok: true, messageId: message.messageId };
  }

  deadLetters(): readonly DeadLetter[] {
    return [...this.#deadLetters];
  }

  isIdle(): boolean {
    const waiting = this.#visible.length > 0 && !this.#functionMissing;
    return !waiting && this.#inFlight.size === 0 && this.#returning === 0;
  }

  idle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  async stop(): Promise<void> {
    this.#closing = true;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    this.#returning = 0;
    clearTimeout(this.#windowTimer);
    clearTimeout(this.#lookupTimer);
    this.#pump();
    // A batch that ends hands out the next (#deliver), until nothing visible is left.
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
    this.#stopped = true;
    this.#visible = [];
    this.#notifyIfIdle();
  }

  /** Hands out every batch that is ready, as far as the concurrency allows. */
  #pump(): void {
    while (!this.#stopped && this.#visible.length > 0 && this.#inFlight.size < this.#concurrency) {
      const consumer = this.#options.resolveFunction(this.#options.definition.function);
      this.#functionMissing = consumer === undefined;
      if (!consumer) {
        if (!this.#closing) this.#lookForFunctionLater();
        break;
      }
      if (!this.#batchReady()) {
        this.#closeWindowLater();
        break;
      }
      this.#deliver(this.#visible.splice(0, this.#options.definition.batchSize), consumer);
    }
    this.#notifyIfIdle();
  }

  #batchReady(): boolean {
    const oldest = this.#visible[0];
    if (!oldest) return false;
    return (
      this.#closing ||
      this.#visible.length >= this.#options.definition.batchSize ||
      Date.now() - oldest.visibleSince >= this.#windowMs
    );
  }

  #closeWindowLater(): void {
    const oldest = this.#visible[0];
    if (!oldest) return;
    clearTimeout(this.#windowTimer);
    const wait = Math.max(0, oldest.visibleSince + this.#windowMs - Date.now());
    this.#windowTimer = setTimeout(() => {
      this.#windowTimer = undefined;
      this.#pump();
    }, wait);
  }

  #lookForFunctionLater(): void {
    if (this.#lookupTimer) return;
    this.#lookupTimer = setTimeout(() => {
      this.#lookupTimer = undefined;
      this.#pump();
    }, functionLookupIntervalMs);
    // Messages nobody will take must not keep the process alive.
    this.#lookupTimer.unref();
  }

  #deliver(batch: Message[], consumer: QueueConsumer): void {
    const receivedAt = Date.now();
    for (const message of batch) {
      message.receiveCount++;
      message.firstReceiveTimestamp ??= receivedAt;
    }
    const event: SQSEvent = { Records: batch.map((message) => this.#recordOf(message)) };
    const run = (async () => {
      const outcome = await this.#invoke(consumer, event);
      this.#settle(batch, outcome, receivedAt);
    })();
    this.#inFlight.add(run);
    void run.finally(() => {
      this.#inFlight.delete(run);
      this.#pump();
    });
  }

  async #invoke(consumer: QueueConsumer, event: SQSEvent): Promise<BatchOutcome> {
    // The mapping invokes on its own schedule: never inside the sender's call.
    await new Promise<void>((resolve) => setImmediate(resolve));
    const { region, accountId, definition } = this.#options;
    const batchIds = new Set(event.Records.map((record) => record.messageId));
    try {
      const response = await consumer(
        event,
        makeLambdaContext({ functionName: definition.function, region, accountId }),
      );
      return readBatchResponse(response, batchIds);
    } catch (error) {
      return { kind: 'failed', reason: error };
    }
  }

  #settle(batch: readonly Message[], outcome: BatchOutcome, receivedAt: number): void {
    const failed =
      outcome.kind === 'failed' ? batch : batch.filter((message) => outcome.failedIds.has(message.messageId));
    const reason =
      outcome.kind === 'failed' ? outcome.reason : new BatchResponseError('Reported as a batch item failure');
    const returning: Message[] = [];
    for (const message of failed) {
      if (message.receiveCount >= this.#options.definition.maxReceiveCount) this.#deadLetter(message, reason);
      else returning.push(message);
    }
    if (returning.length > 0) this.#returnAfterVisibilityTimeout(returning, receivedAt);
  }

  #returnAfterVisibilityTimeout(messages: readonly Message[], receivedAt: number): void {
    if (this.#closing) return;
    this.#returning += messages.length;
    const timer = setTimeout(
      () => {
        this.#timers.delete(timer);
        this.#returning -= messages.length;
        const now = Date.now();
        for (const message of messages) message.visibleSince = now;
        this.#visible.push(...messages);
        this.#pump();
      },
      Math.max(0, receivedAt + this.#visibilityTimeoutMs - Date.now()),
    );
    this.#timers.add(timer);
  }

  #deadLetter(message: Message, lastError: unknown): void {
    const letter: DeadLetter = {
      queueName: this.name,
      messageId: message.messageId,
      body: message.body,
      receiveCount: message.receiveCount,
      sentTimestamp: message.sentTimestamp,
      lastError,
    };
    this.#deadLetters.push(letter);
    if (this.#deadLetters.length > (this.#options.deadLetterLimit ?? 1000)) this.#deadLetters.shift();
    this.#options.onDeadLetter?.(letter);
  }

  #recordOf(message: Message): SQSRecord {
    const { region, senderId } = this.#options;
    return {
      messageId: message.messageId,
      // A new handle per receipt, as SQS gives; nothing here reads it back.
      receiptHandle: randomBytes(48).toString('base64'),
      body: message.body,
      attributes: {
        ApproximateReceiveCount: String(message.receiveCount),
        SentTimestamp: String(message.sentTimestamp),
        SenderId: senderId ?? 'AROALOCALIOTRULES000:iot-rules',
        ApproximateFirstReceiveTimestamp: String(message.firstReceiveTimestamp ?? message.sentTimestamp),
      },
      messageAttributes: {},
      md5OfBody: message.md5OfBody,
      eventSource: 'aws:sqs',
      eventSourceARN: this.arn,
      awsRegion: region,
    };
  }

  #notifyIfIdle(): void {
    if (this.#idleWaiters.length === 0 || !this.isIdle()) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const resolve of waiters) resolve();
  }
}

export function startLocalQueue(options: LocalQueueOptions): LocalQueue {
  return new LocalSqsQueue(options);
}
