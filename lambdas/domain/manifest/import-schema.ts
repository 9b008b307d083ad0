import { z } from 'zod';
import {
  downloadHandlerSchema,
  fileNameSchema,
  handlerIdSchema,
  hashesSchema,
  sizeInBytesSchema,
} from './files.ts';
import { limits } from './limits.ts';
import { updateIdSchema } from './update-id.ts';

/** Import manifest versions the service accepts: ADU's current v5 and the v4.0 it still took. */
export const importManifestVersions = ['5.0', '4.0'] as const;
export type ImportManifestVersion = (typeof importManifestVersions)[number];

const descriptionSchema = (max: number) =>
  z
    .string({ error: 'description must be a string' })
    .min(1, { error: 'description must not be empty: leave it out instead' })
    .max(max, { error: `description is too long: at most ${max} characters` });

const compatibilityValueSchema = z
  .string({ error: 'a compatibility property value must be a string' })
  .min(limits.compatibilityValueLength.min, { error: 'a compatibility property value must not be empty' })
  .max(limits.compatibilityValueLength.max, {
    error: `a compatibility property value is too long: at most ${limits.compatibilityValueLength.max} characters`,
  });

/** One set of device properties the update is compatible with, e.g. {manufacturer, model}. */
export const compatibilitySetSchema = z
  .record(z.string(), compatibilityValueSchema, { error: 'a compatibility set must be an object' })
  .superRefine((set, ctx) => {
    const names = Object.keys(set);
    if (
      names.length < limits.compatibilityProperties.min ||
      names.length > limits.compatibilityProperties.max
    ) {
      ctx.addIssue({
        code: 'custom',
        message: `a compatibility set must have ${limits.compatibilityProperties.min} to ${limits.compatibilityProperties.max} properties, it has ${names.length}`,
      });
    }
    for (const name of names) {
      if (
        name.length < limits.compatibilityNameLength.min ||
        name.length > limits.compatibilityNameLength.max
      ) {
        ctx.addIssue({
          code: 'custom',
          path: [name],
          message: `compatibility property name must be ${limits.compatibilityNameLength.min} to ${limits.compatibilityNameLength.max} characters`,
        });
      }
    }
  });

export const compatibilitySchema = z
  .array(compatibilitySetSchema, {
    error: (i) => (i.input === undefined ? 'compatibility is required' : 'compatibility must be an array'),
  })
  .min(limits.compatibilitySets.min, {
    error: 'compatibility must list at least one set of device properties',
  })
  .max(limits.compatibilitySets.max, {
    error: `compatibility may list at most ${limits.compatibilitySets.max} sets of device properties`,
  });

const handlerPropertiesSchema = z.looseObject(
  { installedCriteria: z.string({ error: 'installedCriteria must be a string' }).optional() },
  { error: 'handlerProperties must be an object' },
);

const stepFilesSchema = z
  .array(fileNameSchema, {
    error: (i) =>
      i.input === undefined ? 'an inline step must name its files' : 'files must be an array of file names',
  })
  .min(limits.stepFiles.min, { error: 'an inline step must name at least one file' })
  .max(limits.stepFiles.max, { error: `a step may name at most ${limits.stepFiles.max} files` });

export const inlineStepSchema = z.strictObject({
  type: z.literal('inline').optional(),
  description: descriptionSchema(limits.stepDescriptionLength.max).optional(),
  handler: handlerIdSchema('handler', limits.handlerLength),
  files: stepFilesSchema,
  handlerProperties: handlerPropertiesSchema.optional(),
});

export const referenceStepSchema = z.strictObject({
  type: z.literal('reference'),
  description: descriptionSchema(limits.stepDescriptionLength.max).optional(),
  updateId: updateIdSchema,
});

export const stepSchema = z.discriminatedUnion('type', [inlineStepSchema, referenceStepSchema], {
  error: (i) =>
    i.code === 'invalid_union'
      ? 'step type must be "inline" (or left out) or "reference"'
      : 'a step must be an object',
});

export type InlineStep = z.infer<typeof inlineStepSchema>;
export type ReferenceStep = z.infer<typeof referenceStepSchema>;
export type Step = z.infer<typeof stepSchema>;

export const instructionsSchema = z.strictObject(
  {
    steps: z
      .array(stepSchema, {
        error: (i) => (i.input === undefined ? 'steps is required' : 'steps must be an array'),
      })
      .min(limits.steps.min, { error: 'steps must list at least one step' })
      .max(limits.steps.max, { error: `steps may list at most ${limits.steps.max} steps` }),
  },
  { error: (i) => (i.input === undefined ? 'instructions is required' : 'instructions must be an object') },
);

/** v5 file: extra properties (e.g. mimeType) pass, as in the v5 schema; relatedFiles and downloadHandler exist. */
const baseFileV5 = z.looseObject({
  filename: fileNameSchema,
  sizeInBytes: sizeInBytesSchema,
  hashes: hashesSchema,
  properties: z.record(z.string(), z.unknown(), { error: 'properties must be an object' }).optional(),
});

export const importFileV5Schema = baseFileV5.extend({
  relatedFiles: z
    .array(baseFileV5, { error: 'relatedFiles must be an array' })
    .max(limits.relatedFiles.max, { error: `relatedFiles may list at most ${limits.relatedFiles.max} files` })
    .optional(),
  downloadHandler: downloadHandlerSchema.optional(),
});

/** v4.0 file: exactly filename, sizeInBytes and hashes (the v4.0 schema refuses anything else). */
export const importFileV4Schema = z.strictObject({
  filename: fileNameSchema,
  sizeInBytes: sizeInBytesSchema,
  hashes: hashesSchema,
});

export type ImportFile = z.infer<typeof importFileV5Schema>;

const filesSchema = (file: typeof importFileV5Schema | typeof importFileV4Schema) =>
  z
    .array(file, { error: 'files must be an array' })
    .max(limits.files.max, { error: `files may list at most ${limits.files.max} files` })
    // The docs allow null when every step is a reference step (ADR 0001); it means "no files".
    .nullable()
    .optional()
    .transform((files): ImportFile[] => files ?? []);

const createdDateTimeSchema = z
  .string({
    error: (i) =>
      i.input === undefined ? 'createdDateTime is required' : 'createdDateTime must be a string',
  })
  .regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/, {
    error: 'createdDateTime must be an ISO 8601 date and time, e.g. "2024-01-15T10:30:00Z"',
  })
  .refine((v) => !Number.isNaN(Date.parse(v)), { error: 'createdDateTime is not a real date' });

const manifestShape = (version: ImportManifestVersion) => ({
  $schema: z.string({ error: '$schema must be a string' }).optional(),
  updateId: updateIdSchema,
  description: descriptionSchema(limits.manifestDescriptionLength.max).optional(),
  isDeployable: z.boolean({ error: 'isDeployable must be true or false' }).default(true),
  compatibility: compatibilitySchema,
  instructions: instructionsSchema,
  files: filesSchema(version === '5.0' ? importFileV5Schema : importFileV4Schema),
  createdDateTime: createdDateTimeSchema,
  manifestVersion: z.literal(version),
});

/** Top level is closed: the docs say "Additional properties aren't allowed" (ADR 0001). */
export const importManifestV5Schema = z.strictObject(manifestShape('5.0'), {
  error: 'an import manifest must be a JSON object',
});
export const importManifestV4Schema = z.strictObject(manifestShape('4.0'), {
  error: 'an import manifest must be a JSON object',
});

/** A validated import manifest; `files` is always an array and `isDeployable` always set. */
export type ImportManifest = z.infer<typeof importManifestV5Schema> | z.infer<typeof importManifestV4Schema>;
