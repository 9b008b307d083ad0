import { updateKey } from '../../adapters/update-store.ts';
import { parseDeploymentRequest } from '../../domain/deployment/index.ts';
import { err, ok, type Result } from '../../domain/result.ts';
import { type Problem, problem } from '../../http/problem.ts';
import { shardCountFor } from '../fanout/sharding.ts';
import type { DeploymentsDeps } from './deps.ts';
import { signDeploymentManifest } from './sign-manifest.ts';
import { startFanout } from './start-fanout.ts';
import { deploymentView } from './views.ts';

/**
 * `POST /deployments`: validates the request, checks the update (404 unknown or not ready, 409 not
 * deployable), signs the deployment's manifest, stores the deployment `scheduled` (holding the
 * update, so it cannot be deleted) and starts the fan-out worker.
 */
export async function createDeployment(
  deps: DeploymentsDeps,
  body: unknown,
  input: { readonly deploymentId: string; readonly now: number },
): Promise<Result<Record<string, unknown>, Problem>> {
  const request = parseDeploymentRequest(body, input.now);
  if (!request.ok)
    return err(problem('DEPLOYMENT_REQUEST_INVALID', request.error.message, request.error.faults));
  const { update: updateId, target, policy } = request.value;

  const update = await deps.updates.get(updateId);
  const name = updateKey(updateId);
  if (!update) return err(problem('UPDATE_NOT_FOUND', `Update ${name} does not exist.`));
  if (update.state !== 'ready') {
    return err(problem('UPDATE_NOT_READY', `Update ${name} is ${update.state}, not ready: commit it first.`));
  }
  if (!update.isDeployable) {
    return err(
      problem(
        'UPDATE_NOT_DEPLOYABLE',
        `Update ${name} is a child update (isDeployable false): deploy its parent.`,
      ),
    );
  }

  const manifest = await signDeploymentManifest(deps, {
    deploymentId: input.deploymentId,
    update,
    policy,
    now: input.now,
  });
  if (!manifest.ok) return manifest;

  const created = await deps.deployments.create(
    {
      deploymentId: input.deploymentId,
      updateId: update.updateId,
      target,
      policy,
      manifest: manifest.value,
      shards: shardCountFor(policy.rollout.ratePerMinute),
    },
    input.now,
  );
  if (!created.ok) {
    // The update was deleted or changed between the read above and the transaction.
    if (created.error.code === 'UPDATE_NOT_READY') {
      return err(problem('UPDATE_NOT_READY', `Update ${name} is no longer ready.`));
    }
    throw new Error(`creating deployment ${input.deploymentId}: ${created.error.code}`);
  }
  deps.observability.logger.info('deployment created', { deploymentId: input.deploymentId });
  await startFanout(deps, input.deploymentId);
  return ok(deploymentView(created.value));
}
