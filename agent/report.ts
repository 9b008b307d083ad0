import { fitReportedOta, type ReportedOta } from '../lambdas/domain/deployment/index.ts';
import type { UpdateId } from '../lambdas/domain/manifest/index.ts';
import type { StepResult } from './codes.ts';
import type { TerminalOutcome } from './journal.ts';

export type ReportState = ReportedOta['state'];

export interface ReportInput {
  readonly state: ReportState;
  readonly deploymentId?: string;
  readonly attempt?: number;
  readonly updateId?: UpdateId;
  readonly installedUpdateId?: UpdateId;
  readonly progress?: { readonly step?: number; readonly bytes?: number; readonly totalBytes?: number };
  readonly lastResult?: StepResult & { readonly stepResults?: Readonly<Record<string, StepResult>> };
  readonly compatibility: Readonly<Record<string, string>>;
}

const plainId = (id: UpdateId): UpdateId => ({ provider: id.provider, name: id.name, version: id.version });

/**
 * `reported.ota` as the agent writes it (ADR 0010): the ids echoed, `installedUpdateId` as an object,
 * cut to its budget by `fitReportedOta`. Keys the report does not carry are sent as null, because the
 * shadow merges: a progress or result left from an earlier deployment would otherwise stay.
 */
export function buildReportedOta(input: ReportInput): Record<string, unknown> {
  const report: ReportedOta = {
    state: input.state,
    attempt: input.attempt ?? 1,
    ...(input.deploymentId ? { deploymentId: input.deploymentId } : {}),
    ...(input.updateId ? { updateId: plainId(input.updateId) } : {}),
    ...(input.installedUpdateId ? { installedUpdateId: plainId(input.installedUpdateId) } : {}),
    ...(input.progress ? { progress: input.progress } : {}),
    ...(input.lastResult
      ? {
          lastResult: {
            resultCode: input.lastResult.resultCode,
            extendedResultCode: input.lastResult.extendedResultCode,
            ...(input.lastResult.resultDetails ? { resultDetails: input.lastResult.resultDetails } : {}),
            ...(input.lastResult.stepResults
              ? { stepResults: stepResultsOf(input.lastResult.stepResults) }
              : {}),
          },
        }
      : {}),
    compatibility: { ...input.compatibility },
  };
  const fitted = fitReportedOta(report);
  return {
    deploymentId: null,
    updateId: null,
    installedUpdateId: null,
    progress: null,
    lastResult: null,
    ...fitted,
  };
}

function stepResultsOf(steps: Readonly<Record<string, StepResult>>): Record<string, StepResult> {
  return Object.fromEntries(
    Object.entries(steps).map(([k, r]) => [
      k,
      {
        resultCode: r.resultCode,
        extendedResultCode: r.extendedResultCode,
        ...(r.resultDetails ? { resultDetails: r.resultDetails.slice(0, 64) } : {}),
      },
    ]),
  );
}

/** The terminal report of a journaled outcome. */
export function terminalReport(
  entry: { readonly deploymentId: string; readonly attempt: number; readonly updateId: UpdateId },
  outcome: TerminalOutcome,
  installedUpdateId: UpdateId | undefined,
  compatibility: Readonly<Record<string, string>>,
): Record<string, unknown> {
  const details = outcome.lastResult.resultDetails;
  return buildReportedOta({
    state: outcome.state,
    deploymentId: entry.deploymentId,
    attempt: entry.attempt,
    updateId: entry.updateId,
    ...(installedUpdateId ? { installedUpdateId } : {}),
    lastResult: {
      resultCode: outcome.lastResult.resultCode,
      extendedResultCode: outcome.lastResult.extendedResultCode,
      ...(details ? { resultDetails: details.slice(0, 128) } : {}),
      ...(outcome.lastResult.stepResults ? { stepResults: outcome.lastResult.stepResults } : {}),
    },
    compatibility,
  });
}
