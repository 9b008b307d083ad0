import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { err, ok, type Result } from '../domain/result.ts';
import { type Problem, problem } from './problem.ts';

/**
 * Largest request body the API reads. An import request holds manifests only (files go to S3
 * through presigned URLs), and ADU caps an import manifest at 2 MB; a parent with its children
 * stays well below this.
 */
export const maxBodyBytes = 4 * 1024 * 1024;

const utf8Bom = '\uFEFF';

/** The raw bytes API Gateway received, whether it passed them as text or base64. */
export function bodyBytes(event: Pick<APIGatewayProxyEventV2, 'body' | 'isBase64Encoded'>): Buffer {
  if (event.body === undefined || event.body === null) return Buffer.alloc(0);
  return event.isBase64Encoded ? Buffer.from(event.body, 'base64') : Buffer.from(event.body, 'utf8');
}

/**
 * Reads the body as JSON: 413 above `limit` bytes, 400 naming the position for malformed JSON or a
 * body that is not UTF-8. A leading UTF-8 BOM is accepted, as ADU's tools write one.
 */
export function parseJsonBody(
  event: Pick<APIGatewayProxyEventV2, 'body' | 'isBase64Encoded'>,
  limit: number = maxBodyBytes,
): Result<unknown, Problem> {
  const bytes = bodyBytes(event);
  if (bytes.length > limit) {
    return err(
      problem('PAYLOAD_TOO_LARGE', `The request body is ${bytes.length} bytes; the limit is ${limit}.`),
    );
  }
  if (bytes.length === 0) {
    return err(
      problem('BAD_JSON', 'The request body is empty; a JSON document is required.', [
        { path: '', message: 'expected a JSON document' },
      ]),
    );
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return err(
      problem('BAD_JSON', 'The request body is not valid UTF-8.', [{ path: '', message: 'not UTF-8' }]),
    );
  }
  if (text.startsWith(utf8Bom)) text = text.slice(1);
  try {
    return ok(JSON.parse(text) as unknown);
  } catch (cause) {
    const detail = cause instanceof SyntaxError ? cause.message : 'malformed JSON';
    return err(
      problem('BAD_JSON', `The request body is not valid JSON: ${detail}`, [{ path: '', message: detail }]),
    );
  }
}
