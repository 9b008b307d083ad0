import type { Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  type ApiFunctionId,
  apiFunctions,
  type BackgroundFunctionId,
  backgroundFunctions,
} from '../../lambdas/definitions/api.ts';
import { acknowledgeConfigFromEnv } from '../../lambdas/handlers/acknowledge.ts';
import type { Environment } from '../../lambdas/handlers/config.ts';
import { countersStreamConfigFromEnv } from '../../lambdas/handlers/counters-stream.ts';
import { deploymentsApiConfigFromEnv } from '../../lambdas/handlers/deployments-api.ts';
import { downloadAuthorizerConfigFromEnv } from '../../lambdas/handlers/download-authorizer.ts';
import { fanoutConfigFromEnv } from '../../lambdas/handlers/fanout-worker.ts';
import { updatesApiConfigFromEnv } from '../../lambdas/handlers/updates-api.ts';
import { functionWithDescription, synthTemplate } from './stack.ts';

let template: Template;
beforeAll(() => {
  template = synthTemplate();
});

/**
 * How each handler reads its configuration at cold start (the scheduler shares the worker's).
 * Keyed by every function, so a new one needs its reader here.
 */
const configReaders: Record<BackgroundFunctionId | ApiFunctionId, (environment: Environment) => unknown> = {
  updatesApi: updatesApiConfigFromEnv,
  deploymentsApi: deploymentsApiConfigFromEnv,
  fanoutWorker: fanoutConfigFromEnv,
  scheduler: fanoutConfigFromEnv,
  acknowledge: acknowledgeConfigFromEnv,
  countersStream: countersStreamConfigFromEnv,
  downloadAuthorizer: downloadAuthorizerConfigFromEnv,
};

/** Variables the Lambda runtime sets itself (the stack may not set them). */
const runtimeEnvironment = { AWS_REGION: 'eu-west-1', AWS_LAMBDA_FUNCTION_NAME: 'a-function' };

/**
 * The function's environment as Lambda would see it: references (table names, ARNs) become
 * placeholder strings, since only their presence matters to a configuration reader.
 */
function deployedEnvironment(description: string): Environment {
  const { properties } = functionWithDescription(template, description);
  const variables = (properties.Environment as { Variables: Record<string, unknown> }).Variables;
  return {
    ...runtimeEnvironment,
    ...Object.fromEntries(
      Object.entries(variables).map(([name, value]) => [
        name,
        typeof value === 'string' ? value : `resolved-${name}`,
      ]),
    ),
  };
}

describe('the stack configures every handler as it reads its configuration', () => {
  const definitions = { ...apiFunctions, ...backgroundFunctions };
  it.each(Object.keys(configReaders) as (keyof typeof configReaders)[])(
    '%s starts with its environment',
    (id) => {
      const environment = deployedEnvironment(definitions[id].description);
      expect(() => configReaders[id](environment)).not.toThrow();
    },
  );
});
