import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { IoTDataPlaneClient } from '@aws-sdk/client-iot-data-plane';
import type { S3Client } from '@aws-sdk/client-s3';
import { env } from '../../lambdas/definitions/environment.ts';
import { deploymentsTable, executionsTable, fleetTable } from '../../lambdas/definitions/tables.ts';
import type { Environment } from '../../lambdas/handlers/config.ts';
import {
  type DeploymentsApiHandler,
  deploymentsApiConfigFromEnv,
  makeDeploymentsApiFromConfig,
} from '../../lambdas/handlers/deployments-api.ts';
import type { Observability } from '../../lambdas/observability.ts';
import type { FunctionRegistry } from '../functions.ts';
import { ensureTable, localTableName } from '../tables.ts';

/** The deployments' tables by their local names, created when missing (a persistent data dir keeps them). */
export async function ensureDeploymentTables(
  dynamodb: DynamoDBClient,
): Promise<{ readonly deployments: string; readonly executions: string; readonly fleet: string }> {
  const names = {
    deployments: localTableName(deploymentsTable),
    executions: localTableName(executionsTable),
    fleet: localTableName(fleetTable),
  };
  await ensureTable(dynamodb, deploymentsTable, names.deployments);
  await ensureTable(dynamodb, executionsTable, names.executions);
  await ensureTable(dynamodb, fleetTable, names.fleet);
  return names;
}

/** The variables the stack sets for the deployments functions, with local names and endpoints. */
export function deploymentsEnvironment(
  tables: { readonly deployments: string; readonly executions: string; readonly fleet: string },
  iotDataEndpoint: string,
): Environment {
  return {
    [env.deploymentsTable]: tables.deployments,
    [env.executionsTable]: tables.executions,
    [env.fleetTable]: tables.fleet,
    // The local function registry knows functions by their logical names.
    [env.fanoutWorkerFunction]: 'fanoutWorker',
    [env.iotDataEndpoint]: iotDataEndpoint,
  };
}

/**
 * The deployments API as the local cloud runs it: the Lambda's own configuration reader and
 * factory, with clients for the local endpoints and the function registry as the invoker.
 */
export function wireDeploymentsApi(input: {
  readonly environment: Environment;
  readonly dynamodb: DynamoDBClient;
  readonly s3: S3Client;
  readonly functions: FunctionRegistry;
  readonly region: string;
  readonly observability: Observability;
}): { readonly handler: DeploymentsApiHandler; readonly close: () => void } {
  const config = deploymentsApiConfigFromEnv(input.environment);
  const iotData = new IoTDataPlaneClient({
    region: input.region,
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    maxAttempts: 1,
    ...(config.iotDataEndpoint ? { endpoint: config.iotDataEndpoint } : {}),
  });
  const handler = makeDeploymentsApiFromConfig(
    config,
    { dynamodb: input.dynamodb, s3: input.s3, iotData, invoker: input.functions },
    input.observability,
  );
  input.functions.register('deploymentsApi', handler);
  return { handler, close: () => iotData.destroy() };
}
