import type { SignedDeploymentManifest } from '../../adapters/deployment-store.ts';
import { type UpdateRecord, updateKey } from '../../adapters/update-store.ts';
import type { DeploymentPolicy } from '../../domain/deployment/index.ts';
import {
  type FullUpdateManifest,
  isMiniManifest,
  parseUpdateManifest,
  toShadowManifest,
} from '../../domain/manifest/index.ts';
import { err, ok, type Result } from '../../domain/result.ts';
import { signUpdateManifest } from '../../domain/signing/index.ts';
import { type Problem, problem } from '../../http/problem.ts';
import type { DeploymentsDeps } from './deps.ts';

/**
 * The per-deployment signature (ADR 0040): the commit-time one lasts 90 days and says nothing of
 * the deployment, so each deployment signs the update's manifest again with its own claims
 * (`deploymentId`, and `rollback`, which devices need signed before they accept a downgrade) and
 * an expiry covering the rollout: start + device timeout + margin.
 */
export function signatureLifetimeSeconds(
  policy: DeploymentPolicy,
  now: number,
  marginSeconds: number,
): number {
  const startsIn = Math.max(0, Math.ceil(((policy.startAt ?? now) - now) / 1000));
  return startsIn + policy.deviceTimeoutSeconds + marginSeconds;
}

/** Reads a ready update's stored manifest, checking the bytes against the hash recorded at commit. */
async function storedManifest(
  deps: Pick<DeploymentsDeps, 'artifacts'>,
  record: UpdateRecord,
): Promise<Result<FullUpdateManifest, Problem>> {
  const stored = record.updateManifest;
  const name = updateKey(record.updateId);
  if (!stored) return err(problem('UPDATE_NOT_READY', `Update ${name} has no update manifest yet.`));
  const bytes = await deps.artifacts.readUpdateManifest(stored);
  // A manifest that vanished or changed in the bucket is not signed again: a server fault to investigate.
  if (!bytes.ok) throw new Error(`the stored manifest of ${name} is unusable (${bytes.error.kind})`);
  const parsed = parseUpdateManifest(bytes.value);
  if (!parsed.ok || isMiniManifest(parsed.value))
    throw new Error(`the stored manifest of ${name} does not parse`);
  return ok(parsed.value);
}

export async function signDeploymentManifest(
  deps: Pick<DeploymentsDeps, 'artifacts' | 'updates' | 'signer' | 'tuning'>,
  input: {
    readonly deploymentId: string;
    readonly update: UpdateRecord;
    readonly policy: DeploymentPolicy;
    readonly now: number;
  },
): Promise<Result<SignedDeploymentManifest, Problem>> {
  const manifest = await storedManifest(deps, input.update);
  if (!manifest.ok) return manifest;
  // A parent's signature binds its children's files too (devices fetch them under the parent).
  const childRecords = await deps.updates.getMany(input.update.children);
  const children: FullUpdateManifest[] = [];
  for (const childId of input.update.children) {
    const record = childRecords.get(updateKey(childId));
    if (!record) return err(problem('UPDATE_NOT_READY', `Child update ${updateKey(childId)} is missing.`));
    const child = await storedManifest(deps, record);
    if (!child.ok) return child;
    children.push(child.value);
  }
  const ttlSeconds = signatureLifetimeSeconds(input.policy, input.now, deps.tuning.signatureMarginSeconds);
  const signature = await signUpdateManifest({
    manifest: manifest.value,
    children,
    signer: deps.signer,
    now: new Date(input.now),
    ttlSeconds,
    extraClaims: { deploymentId: input.deploymentId, rollback: input.policy.rollback },
  });
  // A grant carries the full manifest while it is small, the mini manifest otherwise (manifestTextFor).
  const shadow = toShadowManifest(manifest.value, Number.POSITIVE_INFINITY);
  const detached = toShadowManifest(manifest.value, 0);
  return ok({
    inline: shadow.text,
    ...(detached.kind === 'detached' ? { detached: detached.text } : {}),
    signature,
    keyId: deps.signer.keyId,
    expiresAt: new Date(input.now + ttlSeconds * 1000).toISOString(),
  });
}
