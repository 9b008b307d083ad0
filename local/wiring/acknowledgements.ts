import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBStreamsClient } from '@aws-sdk/client-dynamodb-streams';
import { IoTDataPlaneClient } from '@aws-sdk/client-iot-data-plane';
import type { DynamoDBStreamEvent } from 'aws-lambda';
import {
  acknowledgeConfigFromEnv,
  acknowledgeDepsFromConfig,
  makeAcknowledgeQueue,
} from '../../lambdas/handlers/acknowledge.ts';
import {
  type ReconcileSummary,
  reconcileSilentExecutions,
} from '../../lambdas/handlers/acknowledgements/reconcile.ts';
import type { Environment } from '../../lambdas/handlers/config.ts';
import {
  countersStreamConfigFromEnv,
  makeCountersStreamFromConfig,
} from '../../lambdas/handlers/counters-stream.ts';
import type { Observability } from '../../lambdas/observability.ts';
import type { FunctionRegistry } from '../functions.ts';
import { type StreamPoller, startStreamPoller } from '../streams.ts';

export interface LocalAcknowledgements {
  /** For the scheduler (wireFanout's `reconcile`): the sweep over the active deployments. */
  reconcile(activeDeploymentIds: readonly string[], now: number): Promise<ReconcileSummary>;
  /** Resolves once the counters stream has delivered every execution change written before the call. */
  countersCaughtUp(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * The acknowledgement and counter functions as the local cloud runs them: the Lambdas' own
 * configuration and factories with clients for the local endpoints, `acknowledge` registered as
 * the batch handler of the `acknowledgements` queue the IoT rule sends to (the local IoT Core's
 * queue invokes it, and keeps its dead letters), `countersStream` fed by a poller of DynamoDB
 * Local's stream of the executions table (Lambda's event source mapping: a failed batch is
 * delivered again), and the reconciliation sweep for the scheduler.
 */
export async function wireAcknowledgements(input: {
  readonly environment: Environment;
  readonly dynamodb: DynamoDBClient;
  readonly dynamodbEndpoint: string;
  readonly functions: FunctionRegistry;
  readonly region: string;
  readonly observability: Observability;
  /** Pause between polls of an idle stream. @default 200 */
  readonly streamIdleDelayMs?: number;
}): Promise<LocalAcknowledgements> {
  const aws = { region: input.region, credentials: { accessKeyId: 'local', secretAccessKey: 'local' } };
  const ackConfig = acknowledgeConfigFromEnv(input.environment);
  const iotData = new IoTDataPlaneClient({
    ...aws,
    maxAttempts: 1,
    ...(ackConfig.iotDataEndpoint ? { endpoint: ackConfig.iotDataEndpoint } : {}),
  });
  const parts = acknowledgeDepsFromConfig(
    ackConfig,
    { dynamodb: input.dynamodb, iotData },
    input.observability,
  );
  input.functions.register('acknowledge', makeAcknowledgeQueue(parts));
  input.functions.register(
    'countersStream',
    makeCountersStreamFromConfig(
      countersStreamConfigFromEnv(input.environment),
      { dynamodb: input.dynamodb },
      input.observability,
    ),
  );

  const streams = new DynamoDBStreamsClient({ ...aws, endpoint: input.dynamodbEndpoint });
  let poller: StreamPoller;
  try {
    poller = await startStreamPoller({
      streams,
      tableName: ackConfig.executionsTable,
      region: input.region,
      idleDelayMs: input.streamIdleDelayMs ?? 200,
      // Synchronous, as the event source mapping invokes: a throw redelivers the batch.
      handler: (event: DynamoDBStreamEvent) => input.functions.call('countersStream', event),
      onError: (error, context) =>
        input.observability.logger.warn('counters stream batch failed; retrying', {
          error: error as Error,
          ...context,
        }),
    });
  } catch (error) {
    streams.destroy();
    iotData.destroy();
    throw error;
  }

  return {
    reconcile: (activeDeploymentIds, now) =>
      reconcileSilentExecutions({ ...parts, activeDeploymentIds: async () => activeDeploymentIds }, now),
    countersCaughtUp: () => poller.caughtUp(),
    async stop() {
      await poller.stop();
      streams.destroy();
      iotData.destroy();
    },
  };
}
