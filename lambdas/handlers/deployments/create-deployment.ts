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
 * update, so it cannot be deleted) and starts the fan-out worker. With an idempotency key
 * (deployments/idempotency.ts) a repeat of the same request answers with the deployment it made.
 */
export interface CreatedDeployment {
  readonly view: Record<string, unknown>;
  readonly deploymentId: string;
  /** An idempotent replay: the deployment an earlier request with the same key created. */
  readonly replayed: boolean;
}

/** The earlier deployment of this idempotency key, if there is one and the request is the same. */
async function replayOf(
  deps: DeploymentsDeps,
  deploymentId: string,
  requestHash: string,
): Promise<Result<CreatedDeployment, Problem> | undefined> {
  const existing = await deps.deployments.get(deploymentId);
  if (!existing) return undefined;
  if (existing.requestHash !== requestHash) {
    return err(
      problem(
        'IDEMPOTENCY_KEY_REUSED',
        `This Idempotency-Key created deployment ${deploymentId} from another request body; use a new key.`,
      ),
    );
  }
  return ok({ view: deploymentView(existing), deploymentId, replayed: true });
}

export async function createDeployment(
  deps: DeploymentsDeps,
  body: unknown,
  input: { readonly deploymentId: string; readonly now: number; readonly requestHash?: string },
): Promise<Result<CreatedDeployment, Problem>> {
  const request = parseDeploymentRequest(body, input.now);
  if (!request.ok)
    return err(problem('DEPLOYMENT_REQUEST_INVALID', request.error.message, request.error.faults));
  const { update: updateId, target, policy } = request.value;
  if (input.requestHash) {
    const replay = await replayOf(deps, input.deploymentId, input.requestHash);
    if (replay) return replay;
  }

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
      ...(input.requestHash ? { requestHash: input.requestHash } : {}),
    },
    input.now,
  );
  if (!created.ok && created.error.code === 'DEPLOYMENT_EXISTS' && input.requestHash) {
    // The same key raced this request and won: answer as its replay.
    const replay = await replayOf(deps, input.deploymentId, input.requestHash);
    if (replay) return replay;
  }
  if (!created.ok) {
    // The update was deleted or changed between the read above and the transaction.
    if (created.error.code === 'UPDATE_NOT_READY') {
      return err(problem('UPDATE_NOT_READY', `Update ${name} is no longer ready.`));
    }
    throw new Error(`creating deployment ${input.deploymentId}: ${created.error.code}`);
  }
  deps.observability.logger.info('deployment created', { deploymentId: input.deploymentId });
  await startFanout(deps, input.deploymentId);
  return ok({ view: deploymentView(created.value), deploymentId: input.deploymentId, replayed: false });
}
