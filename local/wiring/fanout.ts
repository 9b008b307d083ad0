import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { IoTClient } from '@aws-sdk/client-iot';
import { IoTDataPlaneClient } from '@aws-sdk/client-iot-data-plane';
import type { S3Client } from '@aws-sdk/client-s3';
import type { Environment } from '../../lambdas/handlers/config.ts';
import {
  fanoutConfigFromEnv,
  fanoutDepsFromConfig,
  makeFanoutWorker,
} from '../../lambdas/handlers/fanout-worker.ts';
import { makeScheduler, type SchedulerDeps } from '../../lambdas/handlers/scheduler.ts';
import type { Observability } from '../../lambdas/observability.ts';
import type { FunctionRegistry } from '../functions.ts';

/** EventBridge runs the scheduler every minute in AWS. */
export const DEFAULT_SCHEDULER_INTERVAL_MS = 60_000;

export interface LocalFanout {
  /** Runs one scheduler tick now (tests, or a developer who does not want to wait a minute). */
  tick(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * The fan-out worker and the scheduler as the local cloud runs them: the Lambdas' own
 * configuration and factories, clients for the local endpoints, the function registry as the
 * invoker (and where both are registered), and a timer standing in for the EventBridge schedule.
 * A tick that is still running when the next is due is not doubled.
 */
export function wireFanout(input: {
  readonly environment: Environment;
  readonly dynamodb: DynamoDBClient;
  /** The local S3: the worker presigns the download grants it sends with each notification. */
  readonly s3: S3Client;
  readonly functions: FunctionRegistry;
  readonly region: string;
  /** The local IoT registry endpoint (thing groups). */
  readonly iotEndpoint: string;
  readonly observability: Observability;
  /** @default DEFAULT_SCHEDULER_INTERVAL_MS; 0 turns the timer off (call `tick`). */
  readonly schedulerIntervalMs?: number;
  /** D's reconciliation sweep, when wired. */
  readonly reconcile?: SchedulerDeps['reconcile'];
}): LocalFanout {
  const aws = { region: input.region, credentials: { accessKeyId: 'local', secretAccessKey: 'local' } };
  const config = fanoutConfigFromEnv(input.environment);
  const iot = new IoTClient({ ...aws, endpoint: input.iotEndpoint });
  const iotData = new IoTDataPlaneClient({
    ...aws,
    maxAttempts: 1,
    ...(config.iotDataEndpoint ? { endpoint: config.iotDataEndpoint } : {}),
  });
  const deps = fanoutDepsFromConfig(
    config,
    { dynamodb: input.dynamodb, iot, iotData, s3: input.s3, invoker: input.functions },
    { observability: input.observability, sleep: input.functions.sleep },
  );
  input.functions.register('fanoutWorker', makeFanoutWorker(deps));
  const schedulerDeps: SchedulerDeps = {
    deployments: deps.deployments,
    executions: deps.executions,
    targets: deps.targets,
    shadows: deps.shadows,
    invoker: deps.invoker,
    observability: deps.observability,
    now: deps.now,
    ...(input.reconcile ? { reconcile: input.reconcile } : {}),
  };
  input.functions.register('scheduler', makeScheduler(schedulerDeps));

  let running: Promise<void> | undefined;
  const tick = (): Promise<void> => {
    running ??= input.functions
      .invoke('scheduler', { source: 'local.timer' }, { async: false })
      .catch((error: unknown) =>
        input.observability.logger.error('scheduler tick failed', { error: error as Error }),
      )
      .finally(() => {
        running = undefined;
      });
    return running;
  };
  const interval = input.schedulerIntervalMs ?? DEFAULT_SCHEDULER_INTERVAL_MS;
  const timer = interval > 0 ? setInterval(() => void tick(), interval) : undefined;
  timer?.unref();

  return {
    tick,
    async stop() {
      if (timer) clearInterval(timer);
      // A worker rolling out at a slow rate would otherwise pace on for minutes (its invocation
      // may last 15); it hands over instead, and the scheduler resumes it at the next start.
      input.functions.drain();
      await running;
      await input.functions.idle();
      iot.destroy();
      iotData.destroy();
    },
  };
}
