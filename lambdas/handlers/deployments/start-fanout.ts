import type { DeploymentsDeps } from './deps.ts';

/**
 * Starts the fan-out worker for a deployment. A failed start is logged, not surfaced: the
 * deployment is stored and the scheduler resumes every active deployment within a minute.
 */
export async function startFanout(
  deps: Pick<DeploymentsDeps, 'invoker' | 'observability'>,
  deploymentId: string,
): Promise<void> {
  try {
    await deps.invoker.invoke('fanoutWorker', { deploymentId });
  } catch (error) {
    deps.observability.logger.warn('fan-out worker not started; the scheduler will resume it', {
      deploymentId,
      error: error as Error,
    });
  }
}
