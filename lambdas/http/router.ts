import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import type { RouteDefinition } from '../definitions/api.ts';
import { problem } from './problem.ts';
import { type HttpResponse, problemResponse } from './response.ts';

export type RouteHandler = (event: APIGatewayProxyEventV2) => Promise<HttpResponse>;

/** API Gateway's route key for a route definition: `POST /updates/{provider}/{name}/{version}/commit`. */
export function routeKeyOf(route: Pick<RouteDefinition, 'method' | 'path'>): string {
  return `${route.method} ${route.path}`;
}

export interface RouteMatch {
  readonly routeKey: string;
  readonly pathParameters: Record<string, string>;
}

/**
 * Finds the route API Gateway would pick for a request, with its path parameters decoded. Used by
 * the local cloud, which stands in for API Gateway; in AWS the event already carries both.
 */
export function matchRoute(
  routes: readonly Pick<RouteDefinition, 'method' | 'path'>[],
  method: string,
  rawPath: string,
): RouteMatch | undefined {
  const segments = rawPath.split('/').slice(1);
  for (const route of routes) {
    if (route.method !== method.toUpperCase()) continue;
    const pathParameters = matchSegments(route.path.split('/').slice(1), segments);
    if (pathParameters) return { routeKey: routeKeyOf(route), pathParameters };
  }
  return undefined;
}

function matchSegments(
  pattern: readonly string[],
  actual: readonly string[],
): Record<string, string> | undefined {
  if (pattern.length !== actual.length) return undefined;
  const params: Record<string, string> = {};
  for (const [i, part] of pattern.entries()) {
    const value = actual[i] ?? '';
    const param = /^\{(\w+)\}$/.exec(part)?.[1];
    if (param === undefined) {
      if (part !== value) return undefined;
      continue;
    }
    const decoded = decodeSegment(value);
    if (decoded === undefined || decoded === '') return undefined;
    params[param] = decoded;
  }
  return params;
}

function decodeSegment(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

export interface RouterOptions {
  /** Called with an unexpected exception before the 500 goes out (bugs only: bad input never throws). */
  readonly onUnexpectedError?: (error: unknown, event: APIGatewayProxyEventV2) => void;
}

/**
 * Dispatches an API Gateway HTTP API (payload v2) event on its `routeKey`. Unknown routes are a
 * 404 problem; an exception becomes a 500 problem without internals in the body.
 */
export function makeRouter(
  handlers: Readonly<Record<string, RouteHandler>>,
  options: RouterOptions = {},
): (event: APIGatewayProxyEventV2) => Promise<HttpResponse> {
  return async (event) => {
    const handle = Object.hasOwn(handlers, event.routeKey) ? handlers[event.routeKey] : undefined;
    if (handle === undefined) {
      return problemResponse(
        problem(
          'ROUTE_NOT_FOUND',
          `No route for ${event.requestContext?.http?.method ?? ''} ${event.rawPath}.`,
        ),
      );
    }
    try {
      return await handle(event);
    } catch (error) {
      options.onUnexpectedError?.(error, event);
      return problemResponse(problem('INTERNAL', 'The request failed on the server; it has been logged.'));
    }
  };
}

/** What an observed router needs of the observability module: an error log and a flush per invocation. */
export interface RouterObservability {
  readonly logger: { error(message: string, fields: Record<string, unknown>): void };
  flush(): void;
}

/**
 * The router every operator-API Lambda uses: unexpected errors are logged with their route, and
 * what was counted during the invocation is flushed however it ends.
 */
export function makeObservedRouter(
  handlers: Readonly<Record<string, RouteHandler>>,
  obs: RouterObservability,
): (event: APIGatewayProxyEventV2) => Promise<HttpResponse> {
  const router = makeRouter(handlers, {
    onUnexpectedError: (error, event) =>
      obs.logger.error('unexpected error', { error: error as Error, routeKey: event.routeKey }),
  });
  return async (event) => {
    try {
      return await router(event);
    } finally {
      obs.flush();
    }
  };
}
