/**
 * Where rule-triggered work that could not be done ends up in the local cloud, for a developer to
 * look at: a Lambda action's event that failed every attempt (the function's on-failure
 * destination in AWS, an SQS queue) and a queue's message that failed its last delivery (the
 * queue's dead-letter queue). Both are logged as errors and kept in memory; the reconciliation
 * sweep repairs an execution whose report was lost from the shadow.
 */
import type { Observability } from '../../lambdas/observability.ts';
import type { DeadLetter, LambdaFailure } from '../iot/index.ts';

export interface FailedInvocations {
  readonly kept: readonly LambdaFailure[];
  readonly onLambdaFailure: (failure: LambdaFailure) => void;
}

export function keepFailedInvocations(observability: Observability, limit = 1000): FailedInvocations {
  const kept: LambdaFailure[] = [];
  return {
    kept,
    onLambdaFailure(failure) {
      observability.logger.error('rule action failed every attempt; event kept', {
        functionName: failure.functionName,
        attempts: failure.attempts,
        error: failure.error as Error,
      });
      kept.push(failure);
      if (kept.length > limit) kept.shift();
    },
  };
}

/** The queue keeps the letter itself (`LocalQueue.deadLetters()`); this makes it seen. */
export function logDeadLetter(observability: Observability): (letter: DeadLetter) => void {
  return (letter) =>
    observability.logger.error('queue message failed its last delivery; moved to the dead letters', {
      queueName: letter.queueName,
      messageId: letter.messageId,
      receiveCount: letter.receiveCount,
      error: letter.lastError as Error,
    });
}
