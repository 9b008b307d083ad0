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
