import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { IoTDataPlaneClient } from '@aws-sdk/client-iot-data-plane';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { type ExecutionStore, makeExecutionStore } from '../adapters/execution-store.ts';
import { fastDocumentClient } from '../adapters/fast-document-client.ts';
import { fastIotData } from '../adapters/fast-iot-data.ts';
import { makeFleetStore } from '../adapters/fleet-store.ts';
import { makeShadowWriter, shadowWriterClient } from '../adapters/shadow-writer.ts';
import { env } from '../definitions/environment.ts';
import { type Observability, powertools } from '../observability.ts';
import {
  type AcknowledgeDeps,
  type AckOutcome,
  applyShadowReport,
  applyShadowReports,
  type BatchAcknowledgeDeps,
  type ShadowReport,
} from './acknowledgements/apply-report.ts';
import { parseDeviceReportEvent } from './acknowledgements/device-report-event.ts';
import { type Environment, fromEnv } from './config.ts';

/**
 * The acknowledgement Lambda (ADR 0040): the IoT rule on the device's own `ota` shadow update
 * topic sends each request a device published, with `thingName` and `receivedAt`, to the
 * `acknowledgements` queue, and the queue's event source mapping invokes this function with them
 * in batches ("Batched acknowledgements"). It records each device's report on its execution
 * (acknowledgements/apply-report.ts) and never fails a message for a bad or foreign document:
 * only an infrastructure failure sends a message back to the queue, and what fails every delivery
 * goes to the dead-letter queue while the reconciliation sweep repairs the record from the shadow.
 * `makeAcknowledge` applies one rule event the same way, on its own.
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

export interface AcknowledgeQueueDeps extends Omit<BatchAcknowledgeDeps, 'observability'> {
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
      const report = reportOfEvent(observability, event);
      if (typeof report === 'string') return { kind: report };
      return await applyShadowReport(core, report, clock());
    } finally {
      observability.flush();
    }
  };
}

/** The report a rule event carries, or why it carries none (logged when it is not an event at all). */
function reportOfEvent(
  observability: Observability,
  event: unknown,
): ShadowReport | 'event_invalid' | 'not_about_ota' {
  const request = parseDeviceReportEvent(event);
  if (!request.ok) {
    observability.logger.warn('not a device report event', { faults: request.error.faults });
    return 'event_invalid';
  }
  const { thingName, receivedAt, reportedOta, clearsDesired } = request.value;
  if (reportedOta === undefined) return 'not_about_ota';
  return { thingName, reportedAt: receivedAt, reportedOta, clearsDesired };
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
export interface AcknowledgeParts extends BatchAcknowledgeDeps {
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

/** Takes the `acknowledgements` queue's messages in batches (lambdas/definitions/queues.ts). */
export type AcknowledgeQueueHandler = (event: SQSEvent) => Promise<SQSBatchResponse>;

/** A message body that is not JSON is a report the rule could not have sent: logged and dropped. */
function eventOfBody(body: string): unknown {
  try {
    return JSON.parse(body) as unknown;
  } catch {
    return undefined;
  }
}

/**
 * The queue's batch: each message is one rule event (the SELECT result as its body), applied
 * together (`applyShadowReports`). A message whose report failed on an infrastructure error is
 * answered as a batch item failure, so SQS delivers it again (and after `maxReceiveCount`
 * deliveries moves it to the dead-letter queue, while the reconciliation sweep repairs the record
 * from the shadow); a message that is not a device report is logged and done.
 */
export function makeAcknowledgeQueue(deps: AcknowledgeQueueDeps): AcknowledgeQueueHandler {
  const observability = deps.observability ?? powertools;
  const clock = deps.clock ?? Date.now;
  const core: BatchAcknowledgeDeps = { ...deps, observability };
  return async (event) => {
    try {
      const reports: ShadowReport[] = [];
      const reportIds: string[] = [];
      for (const record of event.Records) {
        const report = reportOfEvent(observability, eventOfBody(record.body));
        if (typeof report === 'string') continue;
        reports.push(report);
        reportIds.push(record.messageId);
      }
      const results = await applyShadowReports(core, reports, clock());
      const failures = results.flatMap((result, i) => {
        if (result.ok) return [];
        observability.logger.error('device report failed; left to the queue', {
          thingName: reports[i]?.thingName,
          error: result.error as Error,
        });
        return [{ itemIdentifier: reportIds[i] as string }];
      });
      return { batchItemFailures: failures };
    } finally {
      observability.flush();
    }
  };
}

let built: AcknowledgeQueueHandler | undefined;

/** The Lambda entry point: the `acknowledgements` queue's event source mapping (ReportBatchItemFailures). */
export const handler = (event: SQSEvent): Promise<SQSBatchResponse> => {
  built ??= makeAcknowledgeQueue(acknowledgeDepsFromConfig(acknowledgeConfigFromEnv(process.env)));
  return built(event);
};
