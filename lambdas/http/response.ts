import type { APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { type Problem, statusOf } from './problem.ts';

export type HttpResponse = APIGatewayProxyStructuredResultV2 & { statusCode: number };

export function jsonResponse(statusCode: number, body: unknown): HttpResponse {
  return {
    statusCode,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  };
}

/** Renders a problem with the status its code maps to (RFC 9457 media type, our own fields). */
export function problemResponse(p: Problem): HttpResponse {
  return {
    statusCode: statusOf(p.code),
    headers: { 'content-type': 'application/problem+json' },
    body: JSON.stringify(p),
  };
}

export function noContent(): HttpResponse {
  return { statusCode: 204 };
}
