/**
 * The desired document a deployment sends, built once per (deployment, attempt), and the update's
 * compatibility from the manifest the deployments API stored. Pure.
 */
import {
  buildDesiredOta,
  type CompatibilitySet,
  type DesiredDocument,
  type DesiredTooLarge,
} from '../../domain/deployment/index.ts';
import { parseJsonText, parseUpdateManifest, type UpdateId } from '../../domain/manifest/index.ts';
import { err, ok, type Result } from '../../domain/result.ts';

export interface ManifestUnusable {
  readonly code: 'MANIFEST_UNUSABLE';
  readonly message: string;
}

/** The update's compatibility sets, from the manifest text: a device matching none is `incompatible`. */
export function compatibilityOf(manifestText: string): Result<readonly CompatibilitySet[], ManifestUnusable> {
  const json = parseJsonText(manifestText);
  if (!json.ok) return err({ code: 'MANIFEST_UNUSABLE', message: 'the deployment manifest is not JSON' });
  const parsed = parseUpdateManifest(json.value);
  if (!parsed.ok) {
    const first = parsed.error[0];
    return err({
      code: 'MANIFEST_UNUSABLE',
      message: `the deployment manifest is invalid${first ? ` at ${first.path}: ${first.message}` : ''}`,
    });
  }
  if (!('compatibility' in parsed.value)) return ok([]);
  return ok(parsed.value.compatibility as readonly CompatibilitySet[]);
}

export interface DesiredInput {
  readonly deploymentId: string;
  readonly attempt: number;
  readonly updateId: UpdateId;
}

/** The document the fan-out sends: ids only (the signed manifest goes with the download authorization). */
export function desiredDocumentFor(input: DesiredInput): Result<DesiredDocument, DesiredTooLarge> {
  const { provider, name, version } = input.updateId;
  return buildDesiredOta({
    deploymentId: input.deploymentId,
    attempt: input.attempt,
    updateId: { provider, name, version },
  });
}
