import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';

/**
 * The one place Powertools is configured (STYLE.md). Log level, sampling and whether metrics are
 * emitted come from Powertools' own environment variables (POWERTOOLS_LOG_LEVEL,
 * POWERTOOLS_METRICS_DISABLED), which the stack and the local cloud set.
 */
export const serviceName = 'shadow-ota';
export const metricsNamespace = 'ShadowOta';

export const logger = new Logger({ serviceName });
export const metrics = new Metrics({ namespace: metricsNamespace, serviceName });

/** Domain outcomes we count; one name each, so dashboards and alarms can rely on them. */
export const outcome = {
  updateImported: 'UpdateImported',
  updateReimported: 'UpdateReimportedIdentical',
  importRejected: 'ImportRejected',
  updateCommitted: 'UpdateCommitted',
  commitRejected: 'CommitRejected',
  updateDeleted: 'UpdateDeleted',
  // Acknowledgements (lambdas/handlers/acknowledge.ts) and the counter projection.
  deviceSucceeded: 'DeviceSucceeded',
  deviceFailed: 'DeviceFailed',
  staleReportIgnored: 'StaleReportIgnored',
  duplicateReportIgnored: 'DuplicateReportIgnored',
  reportInvalid: 'ReportInvalid',
  ackConflictRetried: 'AckConflictRetried',
  desiredTrimmed: 'DesiredTrimmed',
  executionReconciled: 'ExecutionReconciled',
  countersBatchRedelivered: 'CountersBatchRedelivered',
  deploymentAborted: 'DeploymentAborted',
  /** A write a PartiQL batch left to be sent on its own (throttled, a second one for its row). */
  batchWriteSentAlone: 'BatchWriteSentAlone',
  // Download authorization (lambdas/handlers/download-authorizer.ts).
  downloadAuthorized: 'DownloadAuthorized',
  downloadRejected: 'DownloadRejected',
} as const;

export type Outcome = (typeof outcome)[keyof typeof outcome];

/** What handlers need from logging and metrics, so tests and the local cloud can pass their own. */
export interface Observability {
  readonly logger: Pick<Logger, 'debug' | 'info' | 'warn' | 'error'>;
  count(name: Outcome, value?: number): void;
  /** Emits what was counted during one invocation (Lambda: EMF on stdout). */
  flush(): void;
}

export const powertools: Observability = {
  logger,
  count: (name, value = 1) => metrics.addMetric(name, MetricUnit.Count, value),
  // Publishing nothing makes Powertools warn on every read-only request.
  flush: () => {
    if (metrics.hasStoredMetrics()) metrics.publishStoredMetrics();
  },
};

/** Logs nothing and counts in memory: for tests that assert on outcomes. */
export function recordingObservability(): Observability & { readonly counts: Map<Outcome, number> } {
  const counts = new Map<Outcome, number>();
  const silent = (): void => {};
  return {
    counts,
    logger: { debug: silent, info: silent, warn: silent, error: silent },
    count: (name, value = 1) => counts.set(name, (counts.get(name) ?? 0) + value),
    flush: silent,
  };
}
