import { z } from 'zod';
import { handlerPattern, limits } from './limits.ts';

/**
 * A file name as devices write it to disk: a plain name, never a path. Refused: `/`, `\`, NUL and
 * other control characters, and the names `.` and `..` (ADR 0001).
 */
export function fileNameProblem(name: string): string | undefined {
  if (name === '.' || name === '..') return `"${name}" is not a file name`;
  if (/[/\\]/.test(name)) return 'must be a plain file name without "/" or "\\"';
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
  if (/[\u0000-\u001f\u007f]/.test(name))
    return 'must not contain control characters (such as NUL or a newline)';
  return undefined;
}

export const fileNameSchema = z
  .string({ error: (i) => (i.input === undefined ? 'filename is required' : 'filename must be a string') })
  .min(limits.fileNameLength.min, { error: 'filename must not be empty' })
  .max(limits.fileNameLength.max, {
    error: `filename is too long: at most ${limits.fileNameLength.max} characters`,
  })
  .superRefine((name, ctx) => {
    const problem = fileNameProblem(name);
    if (problem) ctx.addIssue({ code: 'custom', message: `filename ${problem}` });
  });

const base64Pattern = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Number of bytes a well-formed base64 string decodes to, or undefined when it is not base64. */
export function base64ByteLength(value: string): number | undefined {
  if (!base64Pattern.test(value)) return undefined;
  const padding = value.endsWith('==') ? 2 : value.endsWith('=') ? 1 : 0;
  return (value.length / 4) * 3 - padding;
}

export const sha256Schema = z
  .string({ error: (i) => (i.input === undefined ? 'sha256 is required' : 'sha256 must be a string') })
  .refine((v) => base64ByteLength(v) === 32, {
    error: 'sha256 must be the base64 encoding of a 32-byte SHA-256 digest (44 characters ending in "=")',
  });

export const hashesSchema = z
  .looseObject(
    { sha256: sha256Schema },
    { error: (i) => (i.input === undefined ? 'hashes is required' : 'hashes must be an object') },
  )
  .superRefine((hashes, ctx) => {
    const names = Object.keys(hashes);
    if (names.length > limits.hashAlgorithms.max) {
      ctx.addIssue({
        code: 'custom',
        message: `hashes may list at most ${limits.hashAlgorithms.max} algorithms (sha256 and one more)`,
      });
    }
    for (const name of names) {
      if (name === 'sha256') continue;
      const value = hashes[name];
      if (name.length > limits.hashAlgorithmNameLength.max) {
        ctx.addIssue({
          code: 'custom',
          path: [name],
          message: `hash algorithm name is too long: at most ${limits.hashAlgorithmNameLength.max} characters`,
        });
      }
      if (typeof value !== 'string' || base64ByteLength(value) === undefined) {
        ctx.addIssue({ code: 'custom', path: [name], message: `${name} must be a base64 string` });
      }
    }
  });

export const sizeInBytesSchema = z
  .number({
    error: (i) => (i.input === undefined ? 'sizeInBytes is required' : 'sizeInBytes must be a number'),
  })
  .int({ error: 'sizeInBytes must be a whole number of bytes' })
  .min(limits.fileSize.min, { error: 'sizeInBytes must be at least 1: empty files cannot be imported' })
  .max(limits.fileSize.max, { error: `sizeInBytes must be at most ${limits.fileSize.max} (2 GB)` });

export const handlerIdSchema = (field: string, length: { readonly min: number; readonly max: number }) =>
  z
    .string({ error: (i) => (i.input === undefined ? `${field} is required` : `${field} must be a string`) })
    .min(length.min, { error: `${field} is too short: at least ${length.min} characters` })
    .max(length.max, { error: `${field} is too long: at most ${length.max} characters` })
    .regex(handlerPattern, {
      error: `${field} must look like "provider/name:version", e.g. "microsoft/script:1"`,
    });

export const downloadHandlerSchema = z.looseObject({
  id: handlerIdSchema('downloadHandler id', limits.downloadHandlerLength),
});
