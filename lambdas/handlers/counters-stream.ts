import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { DynamoDBStreamEvent } from 'aws-lambda';
import { type CounterBatches, makeCounterBatches } from '../adapters/counter-batches.ts';
import { type DeploymentStore, isActiveStatus, makeDeploymentStore } from '../adapters/deployment-store.ts';
import { fastDocumentClient } from '../adapters/fast-document-client.ts';
import { env } from '../definitions/environment.ts';
import { evaluateAbort } from '../domain/deployment/index.ts';
import { type Observability, outcome, powertools } from '../observability.ts';
import {
  addsFinished,
  batchKey,
  countsByDeployment,
  type DeploymentCounts,
} from './acknowledgements/stream-counters.ts';
import { type Environment, fromEnv } from './config.ts';

/**
 * The counter projection (ADR 0040): the executions table's stream, batch by batch, becomes one
 * counters write per deployment per batch, exactly once under redelivery (counter-batches.ts).
 * Counters are exact here, so this is also where abort criteria are evaluated: once per batch
 * that adds finished devices, never on a count that lags behind.
 */
export interface CountersStreamDeps {
  readonly counters: CounterBatches;
  readonly deployments: Pick<DeploymentStore, 'get' | 'recordAbort'>;
  readonly observability?: Observability;
  /** Epoch ms. @default Date.now */
  readonly clock?: () => number;
}

export type CountersStreamHandler = (event: DynamoDBStreamEvent) => Promise<void>;

/** Stream records live 24 hours; a marker outliving them by a day can never meet its batch again. */
const MARKER_LIFETIME_SECONDS = 48 * 3600;

async function abortIfDue(
  deps: CountersStreamDeps,
  obs: Observability,
  deploymentId: string,
  now: number,
): Promise<void> {
  const deployment = await deps.deployments.get(deploymentId);
  if (!deployment || !isActiveStatus(deployment.status)) return;
  const decision = evaluateAbort(deployment.counters, deployment.policy.abort);
  if (!decision.abort) return;
  const ended = await deps.deployments.recordAbort(deploymentId, decision.reason, now);
  if (ended.ok) {
    obs.count(outcome.deploymentAborted);
    obs.logger.warn('deployment aborted', { deploymentId, reason: decision.reason });
  }
}

async function countOne(
  deps: CountersStreamDeps,
  obs: Observability,
  counts: DeploymentCounts,
  now: number,
): Promise<void> {
  const { deploymentId, deltas } = counts;
  const added = await deps.counters.add(deploymentId, deltas, {
    key: batchKey(counts),
    expiresAt: Math.floor(now / 1000) + MARKER_LIFETIME_SECONDS,
  });
  if (!added.ok && added.error.code === 'DEPLOYMENT_NOT_FOUND') {
    obs.logger.warn('counters for an unknown deployment dropped', { deploymentId, deltas });
    return;
  }
  if (!added.ok) obs.count(outcome.countersBatchRedelivered);
  // Also on a redelivery: the attempt that counted may have failed before it evaluated.
  if (addsFinished(deltas)) await abortIfDue(deps, obs, deploymentId, now);
}

export function makeCountersStream(deps: CountersStreamDeps): CountersStreamHandler {
  const obs = deps.observability ?? powertools;
  const clock = deps.clock ?? Date.now;
  return async (event) => {
    try {
      const now = clock();
      // Deployments are independent items: count them in parallel; any failure fails the batch,
      // and its redelivery skips what was already counted.
      await Promise.all(countsByDeployment(event.Records ?? []).map((c) => countOne(deps, obs, c, now)));
    } finally {
      obs.flush();
    }
  };
}

export interface CountersStreamConfig {
  readonly deploymentsTable: string;
  readonly updatesTable: string;
}

export function countersStreamConfigFromEnv(environment: Environment): CountersStreamConfig {
  return fromEnv({ deploymentsTable: env.deploymentsTable, updatesTable: env.updatesTable })(environment);
}

export function makeCountersStreamFromConfig(
  config: CountersStreamConfig,
  clients: { readonly dynamodb?: DynamoDBClient } = {},
  observability?: Observability,
): CountersStreamHandler {
  // Every batch of reports lands here: lean signed requests (aws-http.ts).
  const db = fastDocumentClient(clients.dynamodb);
  return makeCountersStream({
    counters: makeCounterBatches({ db, tableName: config.deploymentsTable }),
    deployments: makeDeploymentStore({
      db,
      tableName: config.deploymentsTable,
      updatesTableName: config.updatesTable,
    }),
    ...(observability ? { observability } : {}),
  });
}

let built: CountersStreamHandler | undefined;

/** The Lambda entry point (DynamoDB Streams event source on the executions table). */
export const handler = (event: DynamoDBStreamEvent): Promise<void> => {
  built ??= makeCountersStreamFromConfig(countersStreamConfigFromEnv(process.env));
  return built(event);
};
