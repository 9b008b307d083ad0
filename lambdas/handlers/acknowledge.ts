import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { IoTDataPlaneClient } from '@aws-sdk/client-iot-data-plane';
import { type ExecutionStore, makeExecutionStore } from '../adapters/execution-store.ts';
import { fastDocumentClient } from '../adapters/fast-document-client.ts';
import { fastIotData } from '../adapters/fast-iot-data.ts';
import { makeFleetStore } from '../adapters/fleet-store.ts';
import { makeShadowWriter, shadowWriterClient } from '../adapters/shadow-writer.ts';
import { env } from '../definitions/environment.ts';
import { type Observability, powertools } from '../observability.ts';
import { type AcknowledgeDeps, type AckOutcome, applyShadowReport } from './acknowledgements/apply-report.ts';
import { parseDeviceReportEvent } from './acknowledgements/device-report-event.ts';
import { type Environment, fromEnv } from './config.ts';

/**
 * The acknowledgement Lambda (ADR 0040): the IoT rule on the device's own `ota` shadow update
 * topic invokes it asynchronously with the request the device published, `thingName` and
 * `receivedAt`. It records the device's report on its execution (acknowledgements/apply-report.ts)
 * and never throws for a bad or foreign document: only an infrastructure failure makes Lambda
 * retry, and what fails every retry goes to the on-failure destination while the reconciliation
 * sweep repairs the record from the shadow.
 */
export type AcknowledgeResult =
  | AckOutcome
  /** Not a device update request (logged and dropped). */
  | { readonly kind: 'event_invalid' }
  /** The request carries no `reported.ota` (a device writing something else). */
  | { readonly kind: 'not_about_ota' };

export type AcknowledgeHandler = (event: unknown) => Promise<AcknowledgeResult>;

export interface AcknowledgeHandlerDeps extends Omit<AcknowledgeDeps, 'observability'> {
  readonly observability?: Observability;
  /** Epoch ms. @default Date.now */
  readonly clock?: () => number;
}

export function makeAcknowledge(deps: AcknowledgeHandlerDeps): AcknowledgeHandler {
  const observability = deps.observability ?? powertools;
  const clock = deps.clock ?? Date.now;
  const core: AcknowledgeDeps = { ...deps, observability };
  return async (event) => {
    try {
      const request = parseDeviceReportEvent(event);
      if (!request.ok) {
        observability.logger.warn('not a device report event', { faults: request.error.faults });
        return { kind: 'event_invalid' };
      }
      const { thingName, receivedAt, reportedOta, clearsDesired } = request.value;
      if (reportedOta === undefined) return { kind: 'not_about_ota' };
      return await applyShadowReport(
        core,
        { thingName, reportedAt: receivedAt, reportedOta, clearsDesired },
        clock(),
      );
    } finally {
      observability.flush();
    }
  };
}

export interface AcknowledgeConfig {
  readonly executionsTable: string;
  readonly fleetTable: string;
  /** The IoT data-plane endpoint; the SDK's default for the region when absent. */
  readonly iotDataEndpoint?: string;
}

export function acknowledgeConfigFromEnv(environment: Environment): AcknowledgeConfig {
  const tables = fromEnv({ executionsTable: env.executionsTable, fleetTable: env.fleetTable })(environment);
  const endpoint = environment[env.iotDataEndpoint];
  return { ...tables, ...(endpoint ? { iotDataEndpoint: endpoint } : {}) };
}

export interface AcknowledgeClients {
  readonly dynamodb?: DynamoDBClient;
  readonly iotData?: IoTDataPlaneClient;
}

/** The stores and the shadow writer the acknowledgement and the reconciliation sweep share. */
export interface AcknowledgeParts extends AcknowledgeDeps {
  readonly executions: ExecutionStore;
}

/** Clients default to AWS's; the local cloud passes clients for its endpoints. */
export function acknowledgeDepsFromConfig(
  config: AcknowledgeConfig,
  clients: AcknowledgeClients = {},
  observability: Observability = powertools,
): AcknowledgeParts {
  // The per-device path: lean signed requests on the SDK clients' configuration (aws-http.ts).
  const db = fastDocumentClient(clients.dynamodb);
  const iotData = fastIotData(clients.iotData ?? shadowWriterClient(config.iotDataEndpoint));
  return {
    executions: makeExecutionStore({ db, tableName: config.executionsTable }),
    fleet: makeFleetStore({ db, tableName: config.fleetTable }),
    shadows: makeShadowWriter({ iotData }),
    observability,
  };
}

export function makeAcknowledgeFromConfig(
  config: AcknowledgeConfig,
  clients: AcknowledgeClients = {},
  observability?: Observability,
): AcknowledgeHandler {
  return makeAcknowledge(acknowledgeDepsFromConfig(config, clients, observability));
}

let built: AcknowledgeHandler | undefined;

/** The Lambda entry point (IoT rule `shadow_ota_acknowledgements`, invoked asynchronously). */
export const handler = (event: unknown): Promise<AcknowledgeResult> => {
  built ??= makeAcknowledgeFromConfig(acknowledgeConfigFromEnv(process.env));
  return built(event);
};
