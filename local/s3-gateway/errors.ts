import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { xmlEscape } from '../sts/server.ts';

/** An S3 error as S3 renders it: XML `<Error><Code/><Message/>...</Error>`, and no body for HEAD. */
export interface S3ErrorInfo {
  readonly status: number;
  readonly code: string;
  readonly message: string;
  /** Extra elements S3 adds for some errors (`Resource`, `Expires`, ...). */
  readonly details?: Readonly<Record<string, string>>;
}

export function s3ErrorXml(error: S3ErrorInfo, requestId: string): string {
  const details = Object.entries(error.details ?? {})
    .map(([name, value]) => `<${name}>${xmlEscape(value)}</${name}>`)
    .join('');
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${error.code}</Code><Message>${xmlEscape(error.message)}</Message>${details}<RequestId>${requestId}</RequestId><HostId>${randomBytes(24).toString('base64')}</HostId></Error>`;
}

export function sendS3Error(
  res: ServerResponse,
  method: string,
  error: S3ErrorInfo,
  requestId: string,
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = method === 'HEAD' ? '' : s3ErrorXml(error, requestId);
  res.writeHead(error.status, {
    'content-type': 'application/xml',
    'content-length': Buffer.byteLength(body),
    'x-amz-request-id': requestId,
    // The request body may not have been read: do not leave it in the pipe for the next request.
    connection: 'close',
  });
  res.end(body);
}
