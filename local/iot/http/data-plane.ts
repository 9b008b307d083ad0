/**
 * The IoT data-plane REST API as `@aws-sdk/client-iot-data-plane` calls it: UpdateThingShadow,
 * GetThingShadow, DeleteThingShadow (`/things/{thing}/shadow?name=`), ListNamedShadowsForThing
 * and Publish (`/topics/{topic}`). Shadow errors carry AWS's error document as the body.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { maxMqttPayloadBytes } from '../broker.ts';
import type { ShadowError } from '../shadow/document.ts';
import type { ShadowReply, ShadowService } from '../shadow/service.ts';
import type { ShadowAddress } from '../topics.ts';
import {
  BodyTooLargeError,
  parseRequestTarget,
  type RequestHandler,
  readBody,
  sendError,
  sendJson,
} from './common.ts';

const exceptionOf: Record<ShadowError['code'], string> = {
  400: 'InvalidRequestException',
  401: 'UnauthorizedException',
  403: 'ForbiddenException',
  404: 'ResourceNotFoundException',
  409: 'ConflictException',
  413: 'RequestEntityTooLargeException',
  415: 'UnsupportedDocumentEncodingException',
  429: 'ThrottlingException',
  500: 'InternalFailureException',
};

export interface DataPlaneOptions {
  readonly shadows: ShadowService;
  readonly publish: (topic: string, payload: Buffer, qos: 0 | 1) => void;
}

function sendShadowReply(response: ServerResponse, reply: ShadowReply): void {
  if (reply.ok) sendJson(response, 200, reply.body, 'application/octet-stream');
  else sendError(response, reply.error.code, exceptionOf[reply.error.code], reply.body);
}

function invalidRequest(response: ServerResponse, message: string): void {
  sendError(response, 400, 'InvalidRequestException', { message });
}

async function readLimited(request: IncomingMessage, response: ServerResponse): Promise<Buffer | undefined> {
  try {
    return await readBody(request, maxMqttPayloadBytes);
  } catch (error) {
    if (!(error instanceof BodyTooLargeError)) throw error;
    sendError(response, 413, 'RequestEntityTooLargeException', {
      message: 'The payload exceeds the maximum size allowed',
    });
    return undefined;
  }
}

export function makeDataPlaneHandler({ shadows, publish }: DataPlaneOptions): RequestHandler {
  const shadowRoute = async (
    request: IncomingMessage,
    response: ServerResponse,
    address: ShadowAddress,
  ): Promise<void> => {
    const body = await readLimited(request, response);
    if (!body) return;
    switch (request.method) {
      case 'POST': {
        const reply = shadows.update(address, body);
        sendShadowReply(response, reply);
        // The caller has its answer; now the same /delta and /documents an MQTT update publishes.
        shadows.publishNotifications(reply);
        return;
      }
      case 'GET':
        return sendShadowReply(response, shadows.get(address, body));
      case 'DELETE':
        return sendShadowReply(response, shadows.delete(address, body));
      default:
        sendError(response, 405, 'MethodNotAllowedException', {
          message: `Method ${request.method} not allowed`,
        });
    }
  };

  return async (request, response) => {
    const target = parseRequestTarget(request.url);
    if (!target) return invalidRequest(response, 'Malformed request path');
    const { segments, query } = target;
    const [first, second, third, fourth, fifth] = segments;

    if (first === 'things' && second && third === 'shadow' && segments.length === 3) {
      const shadowName = query.get('name');
      return shadowRoute(request, response, {
        thingName: second,
        ...(shadowName !== null ? { shadowName } : {}),
      });
    }
    if (
      first === 'api' &&
      second === 'things' &&
      third === 'shadow' &&
      fourth === 'ListNamedShadowsForThing' &&
      fifth
    ) {
      const pageSize = Number(query.get('pageSize') ?? '25');
      if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 100) {
        return invalidRequest(response, 'pageSize must be between 1 and 100');
      }
      const nextToken = query.get('nextToken') ?? undefined;
      return sendJson(response, 200, shadows.listNamedShadows(fifth, pageSize, nextToken));
    }
    if (first === 'topics' && second !== undefined && segments.length === 2 && request.method === 'POST') {
      const qos = Number(query.get('qos') ?? '0');
      if (qos !== 0 && qos !== 1) return invalidRequest(response, 'qos must be 0 or 1');
      if (second.includes('+') || second.includes('#')) return invalidRequest(response, 'Invalid topic name');
      const body = await readLimited(request, response);
      if (!body) return;
      publish(second, body, qos);
      return sendJson(response, 200, {});
    }
    sendError(response, 404, 'ResourceNotFoundException', {
      message: `No route for ${request.method} ${request.url}`,
    });
  };
}
