/**
 * The operator API's functions and routes, shared by the CDK stack (one Lambda per function,
 * one HTTP API route per entry) and the local cloud (a local HTTP server that invokes the same
 * handler modules with API Gateway HTTP API payload v2 events). Pure data.
 */
export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH';

export interface FunctionDefinition {
  /** Path of the handler module from the project root; it exports `handler`. */
  readonly entry: string;
  readonly description: string;
  /**
   * Lambda memory (MiB), and so its CPU share (1,769 MiB is one vCPU). The stack deploys it; the
   * fan-out benchmark prices duration with it. @default 1024
   */
  readonly memoryMb?: number;
}

export const apiFunctions = {
  updatesApi: {
    entry: 'lambdas/handlers/updates-api.ts',
    description: 'Operator API for updates: import, commit, list, get, delete',
  },
  deploymentsApi: {
    entry: 'lambdas/handlers/deployments-api.ts',
    description: 'Operator API for deployments and devices: create, list, status, cancel, retry',
  },
} as const satisfies Record<string, FunctionDefinition>;

export type ApiFunctionId = keyof typeof apiFunctions;

export interface RouteDefinition {
  readonly method: HttpMethod;
  /** API Gateway route path, with `{param}` segments. */
  readonly path: string;
  readonly function: ApiFunctionId;
}

export const apiRoutes: readonly RouteDefinition[] = [
  { method: 'POST', path: '/updates', function: 'updatesApi' },
  { method: 'GET', path: '/updates', function: 'updatesApi' },
  { method: 'GET', path: '/updates/{provider}/{name}/{version}', function: 'updatesApi' },
  { method: 'DELETE', path: '/updates/{provider}/{name}/{version}', function: 'updatesApi' },
  { method: 'POST', path: '/updates/{provider}/{name}/{version}/commit', function: 'updatesApi' },
  { method: 'POST', path: '/deployments', function: 'deploymentsApi' },
  { method: 'GET', path: '/deployments', function: 'deploymentsApi' },
  { method: 'GET', path: '/deployments/{deploymentId}', function: 'deploymentsApi' },
  { method: 'GET', path: '/deployments/{deploymentId}/devices', function: 'deploymentsApi' },
  { method: 'POST', path: '/deployments/{deploymentId}/cancel', function: 'deploymentsApi' },
  { method: 'POST', path: '/deployments/{deploymentId}/retry', function: 'deploymentsApi' },
  {
    method: 'POST',
    path: '/deployments/{deploymentId}/devices/{thingName}/cancel',
    function: 'deploymentsApi',
  },
  {
    method: 'POST',
    path: '/deployments/{deploymentId}/devices/{thingName}/retry',
    function: 'deploymentsApi',
  },
  { method: 'GET', path: '/devices/{thingName}', function: 'deploymentsApi' },
];

/**
 * Functions that are not behind the API: invoked by IoT rules, a schedule, a stream or each other
 * (ADR 0040). The stack creates one Lambda per entry; the local cloud runs the same modules.
 */
export const backgroundFunctions = {
  fanoutWorker: {
    entry: 'lambdas/handlers/fanout-worker.ts',
    description: 'Expands a deployment target into executions and notifies devices through their ota shadow',
    // CPU-bound (an AWS request costs about 0.7 ms of CPU): one whole vCPU per shard.
    memoryMb: 1769,
  },
  scheduler: {
    entry: 'lambdas/handlers/scheduler.ts',
    description:
      'Every minute: resumes fan-out workers, times out silent devices, reconciles, completes deployments',
  },
  acknowledge: {
    entry: 'lambdas/handlers/acknowledge.ts',
    description: 'IoT rule on device reports to the ota shadow: records device progress and results',
    memoryMb: 512,
  },
  countersStream: {
    entry: 'lambdas/handlers/counters-stream.ts',
    description: 'Executions table stream: keeps per-deployment state counters exact, one write per batch',
    memoryMb: 512,
  },
  downloadAuthorizer: {
    entry: 'lambdas/handlers/download-authorizer.ts',
    description: 'IoT rule on ota/things/+/downloads/request: presigned URLs or scoped STS credentials',
    memoryMb: 512,
  },
} as const satisfies Record<string, FunctionDefinition>;

export type BackgroundFunctionId = keyof typeof backgroundFunctions;

/**
 * The counters-stream function's event source on the executions stream: large batches gathered
 * for up to a second, so a busy deployment's counters cost one transaction per few hundred
 * changes. The stack deploys it; the fan-out benchmark's local poller uses it too.
 */
export const countersStreamEventSource = {
  batchSize: 500,
  maxBatchingWindowSeconds: 1,
} as const;
