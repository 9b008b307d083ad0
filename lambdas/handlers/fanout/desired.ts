/**
 * The desired document a deployment sends, built once per (deployment, attempt) from the update
 * manifest stored in S3 and the deployment's signature. Pure.
 */
import {
  buildDesiredOta,
  type CompatibilitySet,
  type DesiredDocument,
  type DesiredTooLarge,
  type ManifestText,
} from '../../domain/deployment/index.ts';
import {
  type FullUpdateManifest,
  isMiniManifest,
  parseJsonText,
  parseUpdateManifest,
  toShadowManifest,
  type UpdateId,
} from '../../domain/manifest/index.ts';
import { err, ok, type Result } from '../../domain/result.ts';

export interface ManifestUnusable {
  readonly code: 'MANIFEST_UNUSABLE';
  readonly message: string;
}

/** The stored update manifest, parsed: the full manifest (a mini manifest is never stored). */
export function readStoredManifest(text: string): Result<FullUpdateManifest, ManifestUnusable> {
  const json = parseJsonText(text);
  if (!json.ok) return err({ code: 'MANIFEST_UNUSABLE', message: 'the stored update manifest is not JSON' });
  const parsed = parseUpdateManifest(json.value);
  if (!parsed.ok) {
    const first = parsed.error[0];
    return err({
      code: 'MANIFEST_UNUSABLE',
      message: `the stored update manifest is invalid${first ? ` at ${first.path}: ${first.message}` : ''}`,
    });
  }
  if (isMiniManifest(parsed.value)) {
    return err({ code: 'MANIFEST_UNUSABLE', message: 'the stored update manifest is a detached reference' });
  }
  return ok(parsed.value);
}

/** The update's compatibility sets: a device matching none of them is `incompatible`. */
export function compatibilityOf(manifest: FullUpdateManifest): readonly CompatibilitySet[] {
  return manifest.compatibility as readonly CompatibilitySet[];
}

export interface DesiredInput {
  readonly deploymentId: string;
  readonly attempt: number;
  readonly updateId: UpdateId;
  readonly manifest: FullUpdateManifest;
  /** The deployment's compact JWS over the manifest (with its deploymentId and rollback claims). */
  readonly signature: string;
}

/** Inline when it fits the shadow budget, detached otherwise (ADR 0010). */
export function desiredDocumentFor(input: DesiredInput): Result<DesiredDocument, DesiredTooLarge> {
  const preferred = toShadowManifest(input.manifest);
  const manifest: ManifestText = { kind: preferred.kind, text: preferred.text };
  const detached = preferred.kind === 'inline' ? toShadowManifest(input.manifest, 0) : undefined;
  return buildDesiredOta({
    deploymentId: input.deploymentId,
    attempt: input.attempt,
    updateId: input.updateId,
    manifest,
    ...(detached ? { detachedFallback: { kind: detached.kind, text: detached.text } } : {}),
    signature: input.signature,
  });
}
