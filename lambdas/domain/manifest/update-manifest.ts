import { createHash } from 'node:crypto';
import { err, type Fault, ok, pointer, type Result } from '../result.ts';
import { canonicalJson, canonicalJsonBytes } from './canonical.ts';
import { faultsFromIssues, sortFaults } from './faults.ts';
import type { ImportFile, ImportManifest } from './import-schema.ts';
import { parseJsonText } from './json-text.ts';
import { formatUpdateId, type UpdateId, updateIdKey } from './update-id.ts';
import {
  type FullUpdateManifest,
  fullUpdateManifestSchema,
  type MiniUpdateManifest,
  miniUpdateManifestSchema,
  type UpdateFile,
  type UpdateManifest,
  type UpdateStep,
  updateManifestVersions,
  writtenUpdateManifestVersion,
} from './update-schema.ts';

/** AWS IoT counts at most 8 KB (8192 bytes) of desired + reported state per shadow document. */
export const SHADOW_DOCUMENT_MAX_BYTES = 8192;

/**
 * Largest update manifest sent whole (inline) to a device, measured as a JSON string literal
 * (escaped, as the manifest travels as a string so its bytes, and so its hash, survive). It
 * travels in the download authorization's answer beside the ES256 JWS (about 2.8 KB for the 20
 * files a manifest may name) and the URLs, which AWS meters per started 5 KB (ADR 0010). A larger
 * manifest is detached: the device downloads it as a file, checked against the signed hash.
 */
export const INLINE_MANIFEST_MAX_BYTES = 3072;

export function isMiniManifest(m: UpdateManifest): m is MiniUpdateManifest {
  return 'detachedManifestFileId' in m;
}

/**
 * Validates an update manifest (full or mini, told apart by `detachedManifestFileId` at the top).
 * Accepts JSON text (BOM allowed) or a parsed value; reports every fault.
 */
export function parseUpdateManifest(input: unknown): Result<UpdateManifest, Fault[]> {
  const parsed = typeof input === 'string' || input instanceof Uint8Array ? parseJsonText(input) : ok(input);
  if (!parsed.ok) return parsed;
  const raw = parsed.value;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return err([{ path: '', message: 'an update manifest must be a JSON object' }]);
  }
  const record = raw as Record<string, unknown>;
  if (!updateManifestKeys.some((k) => k in record)) {
    return err([
      { path: '', message: `not an update manifest: it has none of ${updateManifestKeys.join(', ')}` },
    ]);
  }
  const versionFault = unsupportedVersionFault(record.manifestVersion);
  // Below version 4 the whole shape differs (updateType, no steps): one clear fault says more than dozens.
  if (versionFault) return err([versionFault]);
  const { value: normalized, faults: nameFaults } = normalizeFileNames(record);
  const schema = 'detachedManifestFileId' in normalized ? miniUpdateManifestSchema : fullUpdateManifestSchema;
  const result = schema.safeParse(normalized);
  const structure = result.success ? [] : faultsFromIssues(result.error.issues);
  const references = result.success ? fileReferenceFaults(result.data) : [];
  const faults = sortFaults([...nameFaults, ...structure, ...references]);
  if (faults.length > 0 || !result.success) return err(faults);
  return ok(result.data);
}

const updateManifestKeys = ['updateId', 'manifestVersion', 'instructions', 'detachedManifestFileId'] as const;

function unsupportedVersionFault(version: unknown): Fault | undefined {
  if (updateManifestVersions.some((v) => v === version)) return undefined;
  const shown = version === undefined ? 'missing' : JSON.stringify(version);
  return {
    path: '/manifestVersion',
    message: `manifestVersion is ${shown}: devices accept update manifest version "4" or "5" only (ADU agent error 0x8030000A below 4)`,
  };
}

/**
 * ADU's schema spells the file name `filename`, its agent reads `fileName` (ADR 0001). We take
 * either, one per file, and continue with `fileName`.
 */
function normalizeFileNames(raw: Record<string, unknown>): {
  value: Record<string, unknown>;
  faults: Fault[];
} {
  const faults: Fault[] = [];
  const renameIn = (files: unknown, base: (string | number)[]): unknown => {
    if (typeof files !== 'object' || files === null || Array.isArray(files)) return files;
    return Object.fromEntries(
      Object.entries(files).map(([id, file]) => {
        if (typeof file !== 'object' || file === null || Array.isArray(file)) return [id, file];
        const { filename, ...rest } = file as Record<string, unknown>;
        const out: Record<string, unknown> = { ...rest };
        if (filename !== undefined) {
          if ('fileName' in rest) {
            faults.push({
              path: pointer([...base, id, 'filename']),
              message: 'give the name once: fileName or filename, not both',
            });
          } else {
            out.fileName = filename;
          }
        }
        if ('relatedFiles' in out)
          out.relatedFiles = renameIn(out.relatedFiles, [...base, id, 'relatedFiles']);
        return [id, out];
      }),
    );
  };
  return { value: { ...raw, files: renameIn(raw.files, ['files']) }, faults };
}

/** Every fileId a step names must be in `files`; file names must be unique (case-insensitively). */
function fileReferenceFaults(m: UpdateManifest): Fault[] {
  const ids = new Set(Object.keys(m.files));
  const missing = (id: string, path: string): Fault[] =>
    ids.has(id) ? [] : [{ path, message: `file id "${id}" is not in files` }];
  const stepFaults = isMiniManifest(m)
    ? missing(m.detachedManifestFileId, '/detachedManifestFileId')
    : m.instructions.steps.flatMap((step, i) =>
        step.type === 'reference'
          ? missing(
              step.detachedManifestFileId,
              pointer(['instructions', 'steps', i, 'detachedManifestFileId']),
            )
          : step.files.flatMap((id, j) => missing(id, pointer(['instructions', 'steps', i, 'files', j]))),
      );
  const seen = new Map<string, string>();
  const duplicateNames = Object.entries(m.files).flatMap(([id, f]) => {
    const key = f.fileName.toLowerCase();
    const first = seen.get(key);
    if (first === undefined) {
      seen.set(key, id);
      return [];
    }
    return [
      {
        path: pointer(['files', id, 'fileName']),
        message: `duplicate file name "${f.fileName}": file ${first} has it too`,
      },
    ];
  });
  const criteria = isMiniManifest(m) ? [] : duplicateCriteriaFaults(m.instructions.steps);
  return [...stepFaults, ...duplicateNames, ...criteria];
}

function duplicateCriteriaFaults(steps: readonly UpdateStep[]): Fault[] {
  const first = new Map<string, number>();
  return steps.flatMap((step, i): Fault[] => {
    const c = step.type === 'reference' ? undefined : step.handlerProperties?.installedCriteria;
    if (!c) return [];
    const at = first.get(c);
    if (at === undefined) {
      first.set(c, i);
      return [];
    }
    return [
      {
        path: pointer(['instructions', 'steps', i, 'handlerProperties', 'installedCriteria']),
        message: `installedCriteria "${c}" is also used by step ${at}: each step needs its own`,
      },
    ];
  });
}

/** Base64 SHA-256 of some bytes, in ADU's hash format. */
export function sha256Base64(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('base64');
}

/**
 * Deterministic file id: "f" + 16 hex digits of SHA-256(update key, file name). Unique across a
 * parent and its children (the key differs), stable across re-derivations (so signatures are).
 */
export function fileIdFor(updateId: UpdateId, fileName: string): string {
  return `f${createHash('sha256')
    .update(`${updateIdKey(updateId)}\n${fileName}`)
    .digest('hex')
    .slice(0, 16)}`;
}

/** File name of an update's manifest when it travels as a file: `provider.name.version.updatemanifest.json`. */
export function updateManifestFileName(updateId: UpdateId): string {
  return `${updateIdKey(updateId).replaceAll('/', '.')}.updatemanifest.json`;
}

/** The exact bytes of an update manifest as stored, hashed, signed and sent: canonical JSON. */
export function serializeUpdateManifest(m: UpdateManifest): Uint8Array {
  return canonicalJsonBytes(m);
}

/** Base64 SHA-256 of the serialized manifest: what the signature binds. */
export function updateManifestSha256(m: UpdateManifest): string {
  return sha256Base64(serializeUpdateManifest(m));
}

/** A manifest travelling as a file (a child's, or a detached parent's): its entry in a files map plus its bytes. */
export interface ManifestFile {
  readonly fileId: string;
  readonly file: UpdateFile;
  readonly bytes: Uint8Array;
}

/** Describes `manifest` as a file of `owner`'s update (the parent for a child, the update itself when detached). */
export function manifestFileOf(owner: UpdateId, manifest: FullUpdateManifest): ManifestFile {
  const bytes = serializeUpdateManifest(manifest);
  const fileName = updateManifestFileName(manifest.updateId);
  return {
    fileId: fileIdFor(owner, fileName),
    file: { fileName, sizeInBytes: bytes.byteLength, hashes: { sha256: sha256Base64(bytes) } },
    bytes,
  };
}

function toUpdateFile(updateId: UpdateId, f: ImportFile): [string, UpdateFile] {
  const related = f.relatedFiles?.length
    ? Object.fromEntries(
        f.relatedFiles.map((r) => [
          fileIdFor(updateId, r.filename),
          {
            fileName: r.filename,
            sizeInBytes: r.sizeInBytes,
            hashes: r.hashes,
            ...(r.properties ? { properties: r.properties } : {}),
          },
        ]),
      )
    : undefined;
  const file: UpdateFile = {
    fileName: f.filename,
    sizeInBytes: f.sizeInBytes,
    hashes: f.hashes,
    ...(f.properties ? { properties: f.properties } : {}),
    ...(related ? { relatedFiles: related } : {}),
    ...(f.downloadHandler ? { downloadHandler: f.downloadHandler } : {}),
  };
  return [fileIdFor(updateId, f.filename), file];
}

/**
 * Derives the update manifest devices receive from a validated import manifest. Each reference
 * step becomes a detached-manifest file: pass the children's derived manifests, keyed by
 * `updateIdKey`. Step descriptions and isDeployable stay behind (ADU's device shape has neither).
 */
export function deriveUpdateManifest(
  manifest: ImportManifest,
  children: ReadonlyMap<string, FullUpdateManifest> = new Map(),
): Result<FullUpdateManifest, Fault[]> {
  const files: Record<string, UpdateFile> = Object.fromEntries(
    manifest.files.map((f) => toUpdateFile(manifest.updateId, f)),
  );
  const idByName = new Map(manifest.files.map((f) => [f.filename, fileIdFor(manifest.updateId, f.filename)]));
  const faults: Fault[] = [];
  const steps: UpdateStep[] = manifest.instructions.steps.map((step, i) => {
    if (step.type !== 'reference') {
      return {
        handler: step.handler,
        files: step.files.map((name) => idByName.get(name) ?? name),
        ...(step.handlerProperties ? { handlerProperties: step.handlerProperties } : {}),
      };
    }
    const child = children.get(updateIdKey(step.updateId));
    if (!child) {
      faults.push({
        path: pointer(['instructions', 'steps', i, 'updateId']),
        message: `the derived manifest of child update ${formatUpdateId(step.updateId)} is needed to derive this one`,
      });
      return { type: 'reference', detachedManifestFileId: '' };
    }
    const { fileId, file } = manifestFileOf(manifest.updateId, child);
    files[fileId] = file;
    return { type: 'reference', detachedManifestFileId: fileId };
  });
  if (faults.length > 0) return err(faults);
  return ok({
    manifestVersion: writtenUpdateManifestVersion,
    updateId: manifest.updateId,
    compatibility: manifest.compatibility,
    instructions: { steps },
    files,
    createdDateTime: manifest.createdDateTime,
  });
}

/** How the manifest goes into the shadow: inline, or a mini manifest naming the detached full one. */
export type ShadowManifest =
  | { readonly kind: 'inline'; readonly manifest: FullUpdateManifest; readonly text: string }
  | {
      readonly kind: 'detached';
      readonly manifest: MiniUpdateManifest;
      readonly text: string;
      /** The full manifest as a file: store `bytes` where devices can fetch it by `fileId`. */
      readonly detached: ManifestFile;
    };

/** Size of a manifest once embedded in the shadow as a JSON string literal (UTF-8 bytes). */
export function embeddedManifestBytes(m: UpdateManifest): number {
  return new TextEncoder().encode(JSON.stringify(canonicalJson(m))).byteLength;
}

/**
 * Chooses inline or detached delivery for a full manifest. `text` is the canonical JSON to embed
 * (as a string, like ADU's `updateManifest`); the signature always binds the FULL manifest's hash.
 */
export function toShadowManifest(
  m: FullUpdateManifest,
  maxInlineBytes = INLINE_MANIFEST_MAX_BYTES,
): ShadowManifest {
  if (embeddedManifestBytes(m) <= maxInlineBytes)
    return { kind: 'inline', manifest: m, text: canonicalJson(m) };
  const detached = manifestFileOf(m.updateId, m);
  const mini: MiniUpdateManifest = {
    manifestVersion: m.manifestVersion,
    updateId: m.updateId,
    detachedManifestFileId: detached.fileId,
    files: { [detached.fileId]: detached.file },
  };
  return { kind: 'detached', manifest: mini, text: canonicalJson(mini), detached };
}
