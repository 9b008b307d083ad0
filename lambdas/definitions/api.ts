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
}

export const apiFunctions = {
  updatesApi: {
    entry: 'lambdas/handlers/updates-api.ts',
    description: 'Operator API for updates: import, commit, list, get, delete',
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
];
