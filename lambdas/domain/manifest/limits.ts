/**
 * ADU's documented limits (ADU-REFERENCE.md §6: docs `import-schema.md`, SchemaStore v5 schemas),
 * in one place so the validator, its messages and its tests agree.
 */
export const limits = {
  providerOrNameLength: { min: 1, max: 64 },
  versionParts: { min: 2, max: 4 },
  /** Each version part is a signed 32-bit integer on the service side. */
  versionPartMax: 2_147_483_647,
  compatibilitySets: { min: 1, max: 10 },
  compatibilityProperties: { min: 1, max: 5 },
  compatibilityNameLength: { min: 1, max: 32 },
  compatibilityValueLength: { min: 1, max: 64 },
  manifestDescriptionLength: { min: 1, max: 512 },
  stepDescriptionLength: { min: 1, max: 64 },
  steps: { min: 1, max: 10 },
  stepFiles: { min: 1, max: 10 },
  handlerLength: { min: 5, max: 32 },
  /** The docs say 64 ASCII characters; the schema says 32. We take the docs (ADR 0001). */
  downloadHandlerLength: { min: 5, max: 64 },
  files: { min: 0, max: 10 },
  relatedFiles: { min: 0, max: 4 },
  fileNameLength: { min: 1, max: 255 },
  fileSize: { min: 1, max: 2_147_483_648 },
  /** "Sum of all file sizes may not exceed 2 GB" (2 GiB, the same bound as one file). */
  totalSizeMax: 2_147_483_648,
  hashAlgorithms: { min: 1, max: 2 },
  hashAlgorithmNameLength: { max: 10 },
  /** Device-side (update manifest) files map: at most 20 entries (SchemaStore update manifest v4). */
  updateManifestFiles: { min: 1, max: 20 },
} as const;

/** `provider/name:version`, as in `microsoft/script:1` (schema pattern `^\S+/\S+:\d{1,5}$`). */
export const handlerPattern = /^\S+\/\S+:\d{1,5}$/;
/** Characters allowed in updateId provider and name. */
export const providerOrNamePattern = /^[a-zA-Z0-9.-]+$/;
/** Dotted numeric version; the part count and range are checked separately for clearer messages. */
export const versionPattern = /^\d+(?:\.\d+)+$/;
