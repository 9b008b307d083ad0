import { createHash } from 'node:crypto';
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { StepContext, StepFile } from '../../../agent/handlers/types.ts';
import { silentLogger } from '../../../agent/log.ts';

export const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('base64');

/** Writes a file into `dir` and describes it as a verified step file. */
export async function stepFile(dir: string, fileName: string, body: string, mode = 0o644): Promise<StepFile> {
  const path = join(dir, fileName);
  await writeFile(path, body);
  await chmod(path, mode);
  return {
    fileId: `id-${fileName}`,
    fileName,
    path,
    sizeInBytes: Buffer.byteLength(body),
    sha256: sha256(body),
  };
}

export function context(overrides: Partial<StepContext> & Pick<StepContext, 'workFolder'>): StepContext {
  return {
    handler: 'test/handler:1',
    handlerProperties: {},
    files: [],
    signal: new AbortController().signal,
    log: silentLogger,
    ...overrides,
  };
}
