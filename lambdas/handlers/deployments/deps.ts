import type { ArtifactStore } from '../../adapters/artifact-store.ts';
import type { DeploymentStore } from '../../adapters/deployment-store.ts';
import type { ExecutionStore } from '../../adapters/execution-store.ts';
import type { FleetStore } from '../../adapters/fleet-store.ts';
import type { FunctionInvoker } from '../../adapters/function-invoker.ts';
import type { ShadowWriter } from '../../adapters/shadow-writer.ts';
import type { TargetPages } from '../../adapters/target-pages.ts';
import type { UpdateStore } from '../../adapters/update-store.ts';
import type { Signer } from '../../domain/signing/index.ts';
import type { Observability } from '../../observability.ts';

/** What the deployments API works with; the Lambda builds these from the environment, tests from local clients. */
export interface DeploymentsDeps {
  readonly deployments: DeploymentStore;
  readonly executions: ExecutionStore;
  /** Target pages: a cancel ends the devices still waiting there, the listing shows them. */
  readonly targets: TargetPages;
  readonly fleet: Pick<FleetStore, 'get'>;
  readonly updates: Pick<UpdateStore, 'get' | 'getMany'>;
  readonly artifacts: Pick<ArtifactStore, 'readUpdateManifest'>;
  readonly signer: Signer;
  /** The `ota` shadow, to send the cancel action to devices at work. */
  readonly shadows: Pick<ShadowWriter, 'get' | 'update'>;
  /** Starts the fan-out worker (Lambda `Invoke` with `InvocationType: Event`; in-process locally). */
  readonly invoker: FunctionInvoker;
  readonly observability: Observability;
  readonly tuning: DeploymentsTuning;
}

export interface DeploymentsTuning {
  /**
   * How long a deployment's signature outlives the last device's timeout: a rollout that notifies
   * its last device this long after the start still hands it a valid signature.
   */
  readonly signatureMarginSeconds: number;
  /** Executions one request moves at most (cancel, retry); the rest is left to the worker or a repeat. */
  readonly executionsPerRequest: number;
  /** Devices whose cancel action is sent in parallel. */
  readonly concurrency: number;
}

export const defaultTuning: DeploymentsTuning = {
  signatureMarginSeconds: 7 * 24 * 3600,
  executionsPerRequest: 2000,
  concurrency: 16,
};
