/**
 * The download grant sent with the notification (ADR 0040, "The grant with the notification"):
 * once a device's desired document is sent and its execution marked `notified`, the worker
 * publishes on the device's own `accepted` topic what the download authorizer would answer it
 * (the signed manifest and presigned GETs), so a device that is online starts without a request
 * (a message, a rule run and an authorizer invocation fewer). Best effort: a device that was offline, or whose grant expired,
 * asks as before. STS deployments are not pushed: an AssumeRole per device would not keep up
 * with the fan-out's rate.
 */
import type { DeploymentRecord } from '../../adapters/deployment-store.ts';
import type { DownloadCredentials } from '../../adapters/download-credentials.ts';
import type { ExecutionRecord } from '../../adapters/execution-store.ts';
import type { IotPublisher } from '../../adapters/iot-publisher.ts';
import { type UpdateStore, updateKey } from '../../adapters/update-store.ts';
import { downloadTopics } from '../../definitions/rules.ts';
import type { Observability } from '../../observability.ts';
import { grantMessage, mintPresignedGrant } from '../downloads/authorize.ts';
import { type DownloadableFile, readyUpdateFiles } from '../downloads/files.ts';

export interface GrantPusher {
  /**
   * Publishes the device's grant. Sends nothing for STS mode or an update that is not ready, and
   * never throws: a grant that does not come is asked for.
   */
  push(deployment: DeploymentRecord, execution: ExecutionRecord): Promise<void>;
}

export interface GrantPusherDeps {
  readonly updates: Pick<UpdateStore, 'get' | 'getMany'>;
  readonly credentials: Pick<DownloadCredentials, 'presignGets'>;
  readonly publisher: IotPublisher;
  readonly observability: Observability;
  /** Epoch ms. */
  readonly now: () => number;
}

const MAX_CACHED_UPDATES = 16;

export function makeGrantPusher(deps: GrantPusherDeps): GrantPusher {
  // A ready update's files do not change while a deployment holds it: read once per container.
  const filesByUpdate = new Map<string, Promise<readonly DownloadableFile[] | undefined>>();
  const filesOf = (deployment: DeploymentRecord): Promise<readonly DownloadableFile[] | undefined> => {
    const key = updateKey(deployment.updateId);
    let files = filesByUpdate.get(key);
    if (!files) {
      // A worker serves one deployment at a time: a handful of updates is all there ever is.
      if (filesByUpdate.size >= MAX_CACHED_UPDATES) filesByUpdate.clear();
      files = readyUpdateFiles(deps.updates, deployment.updateId)
        .then((set) => (set ? [...set.files.values()] : undefined))
        .catch(() => undefined);
      filesByUpdate.set(key, files);
      void files.then((found) => {
        if (!found) filesByUpdate.delete(key);
      });
    }
    return files;
  };
  return {
    async push(deployment, execution) {
      if (deployment.policy.download.mode !== 'presigned') return;
      try {
        const files = await filesOf(deployment);
        if (!files) return;
        const grant = await mintPresignedGrant(
          deps.credentials,
          deployment,
          execution.attempt,
          files,
          deps.now(),
        );
        await deps.publisher.publish(downloadTopics.accepted(execution.thingName), grantMessage(grant), 0);
      } catch (error) {
        // The device asks for its grant when this one does not come.
        deps.observability.logger.warn('download grant not pushed', {
          deploymentId: deployment.deploymentId,
          thingName: execution.thingName,
          error: error instanceof Error ? error.message : String(error),
        });
      }
    },
  };
}
