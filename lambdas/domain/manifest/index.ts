/**
 * Manifest domain core: import manifests (what operators upload), import sets (a parent with its
 * children), and update manifests (what devices receive). Pure: no AWS, no clock, no environment.
 */
export type { Fault } from '../result.ts';
export { canonicalJson, canonicalJsonBytes } from './canonical.ts';
export { fileNameProblem } from './files.ts';
export {
  handlersRequiringInstalledCriteria,
  importManifestWarnings,
  parseImportManifest,
} from './import-manifest.ts';
export type {
  ImportFile,
  ImportManifest,
  ImportManifestVersion,
  InlineStep,
  ReferenceStep,
  Step,
} from './import-schema.ts';
export { importManifestVersions } from './import-schema.ts';
export type { CheckedImportSet, ExistingUpdate, ImportSet } from './import-set.ts';
export {
  canonicalManifestJson,
  checkImportSet,
  existingUpdateOf,
  isSameManifest,
  parseImportRequest,
  referencedUpdateIds,
} from './import-set.ts';
export { parseJsonText } from './json-text.ts';
export { limits } from './limits.ts';
export type { UpdateId } from './update-id.ts';
export {
  compareVersions,
  formatUpdateId,
  normalizeVersion,
  updateIdKey,
  updateIdSchema,
} from './update-id.ts';
export type { ManifestFile, ShadowManifest } from './update-manifest.ts';
export {
  deriveUpdateManifest,
  embeddedManifestBytes,
  fileIdFor,
  INLINE_MANIFEST_MAX_BYTES,
  isMiniManifest,
  manifestFileOf,
  parseUpdateManifest,
  SHADOW_DOCUMENT_MAX_BYTES,
  serializeUpdateManifest,
  sha256Base64,
  toShadowManifest,
  updateManifestFileName,
  updateManifestSha256,
} from './update-manifest.ts';
export type {
  FullUpdateManifest,
  MiniUpdateManifest,
  UpdateFile,
  UpdateManifest,
  UpdateStep,
} from './update-schema.ts';
export { updateManifestVersions, writtenUpdateManifestVersion } from './update-schema.ts';
