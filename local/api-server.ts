import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { type ApiFunctionId, apiRoutes, type RouteDefinition } from '../lambdas/definitions/api.ts';
import { matchRoute } from '../lambdas/http/router.ts';
import { toHttpApiEvent } from './http-api-event.ts';
import { urlHost } from './s3.ts';

export type HttpApiHandler = (event: APIGatewayProxyEventV2) => Promise<APIGatewayProxyStructuredResultV2>;

export interface ApiServerOptions {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  /** One handler per function of the API definition, as the stack wires one Lambda each. */
  readonly functions: Readonly<Record<ApiFunctionId, HttpApiHandler>>;
  readonly routes?: readonly RouteDefinition[];
  /** API Gateway refuses bodies above 10 MB before any Lambda runs. */
  readonly maxPayloadBytes?: number;
}

export interface RunningApiServer {
  readonly endpoint: string;
  readonly port: number;
  stop(): Promise<void>;
}

const apiGatewayPayloadLimit = 10 * 1024 * 1024;

function sendJson(res: http.ServerResponse, statusCode: number, body: unknown): void {
  res.writeHead(statusCode, { 'content-type': 'application/problem+json' }).end(JSON.stringify(body));
}

/** Reads the body up to `limit` bytes; `undefined` when it is longer (the rest is not buffered). */
async function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    length += chunk.length;
    if (length > limit) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function writeResult(res: http.ServerResponse, result: APIGatewayProxyStructuredResultV2): void {
  const headers: http.OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(result.headers ?? {})) headers[name] = String(value);
  if (result.cookies && result.cookies.length > 0) headers['set-cookie'] = result.cookies;
  const body =
    result.body === undefined
      ? undefined
      : Buffer.from(result.body, result.isBase64Encoded ? 'base64' : 'utf8');
  res.writeHead(result.statusCode ?? 200, headers).end(body);
}

/**
 * The operator API as a local HTTP server standing in for API Gateway: it matches the route from
 * the shared definitions, builds a payload 2.0 event and invokes the same handler the Lambda runs.
 */
export async function startApiServer(options: ApiServerOptions): Promise<RunningApiServer> {
  const routes = options.routes ?? apiRoutes;
  const limit = options.maxPayloadBytes ?? apiGatewayPayloadLimit;

  async function serve(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    const path = url.split('?')[0] ?? '/';
    const match = matchRoute(routes, method, path);
    if (match === undefined) {
      req.resume();
      sendJson(res, 404, { code: 'ROUTE_NOT_FOUND', message: `No route for ${method} ${path}.` });
      return;
    }
    const body = await readBody(req, limit);
    if (body === undefined) {
      // As API Gateway does: answer 413 and close, without reading the rest.
      res.setHeader('connection', 'close');
      sendJson(res, 413, { code: 'PAYLOAD_TOO_LARGE', message: `The request body exceeds ${limit} bytes.` });
      return;
    }
    const route = routes.find((r) => `${r.method} ${r.path}` === match.routeKey);
    const handler = route ? options.functions[route.function] : undefined;
    if (handler === undefined) {
      sendJson(res, 500, { code: 'INTERNAL', message: `No handler wired for ${match.routeKey}.` });
      return;
    }
    const event = toHttpApiEvent(
      {
        method,
        url,
        rawHeaders: req.rawHeaders,
        body,
        sourceIp: req.socket.remoteAddress ?? '127.0.0.1',
        protocol: `HTTP/${req.httpVersion}`,
      },
      match,
      new Date(),
    );
    writeResult(res, await handler(event));
  }

  const server = http.createServer((req, res) => {
    serve(req, res).catch((error: unknown) => {
      // Handlers answer bad input themselves; reaching here is a bug, like a Lambda crash (502 in AWS).
      console.error('local API: handler failed', error);
      if (!res.headersSent) sendJson(res, 502, { code: 'INTERNAL', message: 'The handler failed.' });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://${urlHost(options.host)}:${port}`,
    port,
    stop: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}
