import * as iotDataModel from '@aws-sdk/client-iot-data-plane';
import {
  GetThingShadowCommand,
  type IoTDataPlaneClient,
  IoTDataPlaneServiceException,
  PublishCommand,
  UpdateThingShadowCommand,
} from '@aws-sdk/client-iot-data-plane';
import {
  type AwsHttp,
  type AwsHttpRequest,
  type AwsHttpResponse,
  MiddlewareChain,
  makeAwsHttp,
  metadataOf,
  onePerClient,
  retriesOn,
  type ServiceModel,
  serviceErrorOf,
  withRetries,
} from './aws-http.ts';

/**
 * The IoT data plane of the per-device handlers: `UpdateThingShadow`, `GetThingShadow` and
 * `Publish` as the SDK's commands take and answer them (payloads as bytes, the SDK's exception
 * classes), sent as signed REST requests over `undici` (see aws-http.ts for why). Publish takes
 * only `topic`, `qos`, `retain`, `contentType` and `payload`: anything else is refused, not dropped.
 */

type Wire = Record<string, unknown>;

/** A path label as the SDK encodes it: everything but unreserved characters, `/` included. */
function label(value: unknown): string {
  if (typeof value !== 'string' || value.length === 0)
    throw new Error('a path label must be a non-empty string');
  return encodeURIComponent(value).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

function query(params: Record<string, string | number | boolean | undefined>): string {
  const pairs = Object.entries(params)
    .filter(([, value]) => value !== undefined)
    .map(([key, value]) => `${key}=${encodeURIComponent(String(value))}`);
  return pairs.length > 0 ? `?${pairs.join('&')}` : '';
}

function payloadOf(payload: unknown): string | Uint8Array {
  if (payload === undefined) return '';
  if (typeof payload === 'string' || payload instanceof Uint8Array) return payload;
  throw new Error('a payload must be a string or bytes');
}

const PUBLISH_FIELDS = new Set(['topic', 'qos', 'retain', 'contentType', 'payload']);

function shadowPath(input: Wire): string {
  return `/things/${label(input.thingName)}/shadow${query({ name: input.shadowName as string | undefined })}`;
}

interface Operation {
  readonly name: string;
  readonly request: (input: Wire) => AwsHttpRequest;
  /** Whether the answer's body is the output's `payload`. */
  readonly answersPayload: boolean;
}

const operations = new Map<unknown, Operation>([
  [
    UpdateThingShadowCommand,
    {
      name: 'UpdateThingShadow',
      answersPayload: true,
      request: (input) => ({ method: 'POST', path: shadowPath(input), body: payloadOf(input.payload) }),
    },
  ],
  [
    GetThingShadowCommand,
    {
      name: 'GetThingShadow',
      answersPayload: true,
      request: (input) => ({ method: 'GET', path: shadowPath(input) }),
    },
  ],
  [
    PublishCommand,
    {
      name: 'Publish',
      answersPayload: false,
      request: (input) => {
        const unknown = Object.keys(input).filter(
          (key) => !PUBLISH_FIELDS.has(key) && input[key] !== undefined,
        );
        if (unknown.length > 0)
          throw new Error(`the fast IoT data client does not publish with ${unknown.join(', ')}`);
        return {
          method: 'POST',
          path: `/topics/${label(input.topic)}${query({
            qos: input.qos as number | undefined,
            retain: input.retain as boolean | undefined,
            contentType: input.contentType as string | undefined,
          })}`,
          body: payloadOf(input.payload),
        };
      },
    },
  ],
]);

/** The HTTP request a data-plane command becomes (before signing). */
export function iotDataRequestOf(command: { input: object }): AwsHttpRequest {
  const operation = operations.get(command.constructor);
  if (!operation) throw new Error(`the fast IoT data client does not send ${command.constructor.name}`);
  return operation.request(command.input as Wire);
}

const iotDataPlane: ServiceModel<IoTDataPlaneServiceException> = {
  exports: iotDataModel,
  base: IoTDataPlaneServiceException,
};

/** An error answer as the SDK would throw it. */
export function iotDataErrorOf(response: AwsHttpResponse, attempts: number): IoTDataPlaneServiceException {
  return serviceErrorOf(iotDataPlane, response, attempts);
}

export interface FastIotData {
  send(command: { input: object }): Promise<Wire>;
  readonly middlewareStack: MiddlewareChain;
}

function makeFastIotData(http: AwsHttp): FastIotData {
  const middlewareStack = new MiddlewareChain();
  const call = async (operation: Operation, input: Wire): Promise<Wire> => {
    const { maxAttempts } = await http.target;
    const request = operation.request(input);
    return withRetries(
      async (attempt) => {
        const response = await http.send(request);
        if (response.status < 200 || response.status >= 300) throw iotDataErrorOf(response, attempt);
        const $metadata = metadataOf(response, attempt);
        return operation.answersPayload
          ? { payload: new Uint8Array(response.body), $metadata }
          : { $metadata };
      },
      retriesOn(http, maxAttempts),
    );
  };
  return {
    middlewareStack,
    async send(command) {
      const operation = operations.get(command.constructor);
      if (!operation) throw new Error(`the fast IoT data client does not send ${command.constructor.name}`);
      return middlewareStack.run(`${operation.name}Command`, command.input as Wire, (input) =>
        call(operation, input),
      );
    },
  };
}

/** The fast data-plane client on the SDK client's configuration (endpoint, attempts), one per SDK client. */
export function fastIotData(client: IoTDataPlaneClient): Pick<IoTDataPlaneClient, 'send'> {
  return fastIotDataOf(client) as unknown as Pick<IoTDataPlaneClient, 'send'>;
}

export const fastIotDataOf = onePerClient((client: IoTDataPlaneClient) =>
  makeFastIotData(makeAwsHttp(client as never, 'iotdata')),
);
