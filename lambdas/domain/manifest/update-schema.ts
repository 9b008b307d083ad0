import { z } from 'zod';
import {
  downloadHandlerSchema,
  fileNameSchema,
  handlerIdSchema,
  hashesSchema,
  sizeInBytesSchema,
} from './files.ts';
import { compatibilitySchema } from './import-schema.ts';
import { limits } from './limits.ts';
import { updateIdSchema } from './update-id.ts';

/**
 * Device-side update manifest (ADU v4 shape): `files` is a map fileId → file, inline steps list
 * fileIds, reference steps carry `detachedManifestFileId`. We write `manifestVersion: "4"` and
 * `fileName` (what ADU's agent reads); validation also takes "5" and `filename` (ADR 0001).
 */
export const updateManifestVersions = ['4', '5'] as const;
export const writtenUpdateManifestVersion = '4';

const fileIdSchema = (field = 'a file id') =>
  z
    .string({ error: (i) => (i.input === undefined ? `${field} is required` : `${field} must be a string`) })
    .min(1, { error: `${field} must not be empty` })
    .max(64, { error: `${field} is too long: at most 64 characters` });

const relatedFileSchema = z.looseObject({
  fileName: fileNameSchema,
  sizeInBytes: sizeInBytesSchema,
  hashes: hashesSchema,
  properties: z.record(z.string(), z.unknown(), { error: 'properties must be an object' }).optional(),
});

export const updateFileSchema = relatedFileSchema.extend({
  relatedFiles: z
    .record(fileIdSchema(), relatedFileSchema, {
      // ADU's agent reads a map; SchemaStore's v5 update schema copied the import form (an array). ADR 0001.
      error:
        'relatedFiles must be a map of file id to file (devices read a map, not the array of the import manifest)',
    })
    .optional(),
  downloadHandler: downloadHandlerSchema.optional(),
});

export type UpdateFile = z.infer<typeof updateFileSchema>;

export const updateInlineStepSchema = z.strictObject({
  type: z.literal('inline').optional(),
  handler: handlerIdSchema('handler', limits.handlerLength),
  files: z
    .array(fileIdSchema(), { error: 'files must be an array of file ids' })
    .min(limits.stepFiles.min, { error: 'an inline step must name at least one file id' })
    .max(limits.stepFiles.max, { error: `a step may name at most ${limits.stepFiles.max} files` }),
  handlerProperties: z
    .looseObject(
      { installedCriteria: z.string({ error: 'installedCriteria must be a string' }).optional() },
      { error: 'handlerProperties must be an object' },
    )
    .optional(),
});

export const updateReferenceStepSchema = z.strictObject({
  type: z.literal('reference'),
  detachedManifestFileId: fileIdSchema('detachedManifestFileId'),
});

export const updateStepSchema = z.discriminatedUnion(
  'type',
  [updateInlineStepSchema, updateReferenceStepSchema],
  {
    error: (i) =>
      i.code === 'invalid_union'
        ? 'step type must be "inline" (or left out) or "reference"'
        : 'a step must be an object',
  },
);

export type UpdateStep = z.infer<typeof updateStepSchema>;

const filesMapSchema = (min: number, max: number, what: string) =>
  z
    .record(fileIdSchema(), updateFileSchema, {
      error: (i) => (i.input === undefined ? 'files is required' : 'files must be a map of file id to file'),
    })
    .refine((files) => Object.keys(files).length >= min && Object.keys(files).length <= max, {
      error: what,
    });

const manifestVersionSchema = z.enum(updateManifestVersions, {
  error: 'manifestVersion must be "4" (or "5"): devices support update manifest versions 4 and 5 only',
});

export const fullUpdateManifestSchema = z.strictObject({
  $schema: z.string().optional(),
  manifestVersion: manifestVersionSchema,
  updateId: updateIdSchema,
  compatibility: compatibilitySchema,
  instructions: z.strictObject(
    {
      steps: z
        .array(updateStepSchema, {
          error: (i) => (i.input === undefined ? 'steps is required' : 'steps must be an array'),
        })
        .min(limits.steps.min, { error: 'steps must list at least one step' })
        .max(limits.steps.max, { error: `steps may list at most ${limits.steps.max} steps` }),
    },
    { error: (i) => (i.input === undefined ? 'instructions is required' : 'instructions must be an object') },
  ),
  files: filesMapSchema(
    limits.updateManifestFiles.min,
    limits.updateManifestFiles.max,
    `files must hold ${limits.updateManifestFiles.min} to ${limits.updateManifestFiles.max} entries`,
  ),
  createdDateTime: z.string({
    error: (i) =>
      i.input === undefined ? 'createdDateTime is required' : 'createdDateTime must be a string',
  }),
});

/** The mini manifest that stands in for a detached one: it names the one file holding the full manifest. */
export const miniUpdateManifestSchema = z.strictObject({
  $schema: z.string().optional(),
  manifestVersion: manifestVersionSchema,
  updateId: updateIdSchema,
  detachedManifestFileId: fileIdSchema('detachedManifestFileId'),
  files: filesMapSchema(1, 1, 'a detached (mini) manifest names exactly one file: the full update manifest'),
});

export type FullUpdateManifest = z.infer<typeof fullUpdateManifestSchema>;
export type MiniUpdateManifest = z.infer<typeof miniUpdateManifestSchema>;
export type UpdateManifest = FullUpdateManifest | MiniUpdateManifest;
