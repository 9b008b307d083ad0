/**
 * A deployment's signature expires (ADR 0040: start + device timeout + a week's margin), and an
 * agent refuses an expired manifest. A retry can come long after that, so before devices are sent
 * the document again the signature is renewed when it would not outlive their new attempt.
 */
import type { DeploymentRecord } from '../../adapters/deployment-store.ts';
import { err, ok, type Result } from '../../domain/result.ts';
import { signatureExpiry } from '../../domain/signing/index.ts';
import { type Problem, problem } from '../../http/problem.ts';
import type { DeploymentsDeps } from './deps.ts';
import { signDeploymentManifest } from './sign-manifest.ts';

/** A signature is renewed when it would expire within a device's timeout plus this. */
export const RENEW_BEFORE_SECONDS = 24 * 3600;

/** True when devices notified at `now` could still be working when the signature expires. */
export function signatureNeedsRenewal(deployment: DeploymentRecord, now: number): boolean {
  const expiresAt = signatureExpiry(deployment.manifest.signature);
  if (expiresAt === undefined) return true;
  const neededUntil = now / 1000 + deployment.policy.deviceTimeoutSeconds + RENEW_BEFORE_SECONDS;
  return expiresAt < neededUntil;
}

export async function renewSignatureIfNeeded(
  deps: Pick<
    DeploymentsDeps,
    'deployments' | 'updates' | 'artifacts' | 'signer' | 'tuning' | 'observability'
  >,
  deployment: DeploymentRecord,
  now: number,
): Promise<Result<DeploymentRecord, Problem>> {
  if (!signatureNeedsRenewal(deployment, now)) return ok(deployment);
  const update = await deps.updates.get(deployment.updateId);
  if (update?.state !== 'ready') {
    return err(problem('UPDATE_NOT_READY', 'The deployment’s update is no longer ready (deleted?).'));
  }
  const signed = await signDeploymentManifest(deps, {
    deploymentId: deployment.deploymentId,
    update,
    policy: deployment.policy,
    now,
  });
  if (!signed.ok) return signed;
  const replaced = await deps.deployments.replaceManifest(deployment.deploymentId, signed.value, now);
  if (!replaced.ok) {
    return err(problem('DEPLOYMENT_NOT_FOUND', `Deployment ${deployment.deploymentId} does not exist.`));
  }
  deps.observability.logger.info('deployment signature renewed', { deploymentId: deployment.deploymentId });
  return ok(replaced.value);
}
