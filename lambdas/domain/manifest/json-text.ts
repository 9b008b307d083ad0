import { err, type Fault, ok, type Result } from '../result.ts';

const BOM = '\uFEFF';

/**
 * Parses JSON text as manifests arrive (a file, a request body). A leading UTF-8 byte order mark
 * is accepted, because ADU's own tools write one (ADR 0001). Bad JSON is a fault at path "".
 */
export function parseJsonText(text: string | Uint8Array): Result<unknown, Fault[]> {
  const decoded = typeof text === 'string' ? text : decodeUtf8(text);
  if (decoded === undefined) return err([{ path: '', message: 'the document is not valid UTF-8 text' }]);
  const body = decoded.startsWith(BOM) ? decoded.slice(BOM.length) : decoded;
  try {
    return ok(JSON.parse(body));
  } catch (e) {
    const detail = e instanceof Error ? e.message : String(e);
    return err([{ path: '', message: `the document is not valid JSON: ${detail}` }]);
  }
}

function decodeUtf8(bytes: Uint8Array): string | undefined {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return undefined;
  }
}
