import { z } from 'zod';
import { err, type Fault, ok, pointer, type Result } from '../result.ts';
import { faultsFromZod } from './faults.ts';
import { jsonBytes, REPORTED_OTA_BUDGET_BYTES } from './shadow.ts';

/**
 * `reported.ota`, written by the device agent. The parser never throws: the core (state, ids,
 * attempt) must be valid or the report is refused; an invalid optional section (progress, result,
 * compatibility, installed update) is dropped with a warning, so one bad field never hides a
 * device's state. Over-long texts are cut, not refused, for the same reason.
 */
export const deviceReportedStates = [
  'idle',
  'downloading',
  'installing',
  'applying',
  'succeeded',
  'failed',
  'canceled',
  'skipped',
  'incompatible',
] as const;
export type DeviceReportedState = (typeof deviceReportedStates)[number];

export const reportLimits = {
  resultDetailsChars: 128,
  stepResultDetailsChars: 64,
  /** ADU allows at most 10 steps per update. */
  maxStepResults: 10,
  maxCompatibilityProperties: 10,
  idChars: 128,
} as const;

function truncated(max: number) {
  return z.string().transform((text) => (text.length > max ? text.slice(0, max) : text));
}

/** A 32-bit result code as ADU reports it (extended codes appear signed in the twin). */
const resultCode = z.int().min(-2_147_483_648).max(4_294_967_295);

const reportedUpdateIdSchema = z.object({
  provider: z.string().min(1).max(reportLimits.idChars),
  name: z.string().min(1).max(reportLimits.idChars),
  version: z.string().min(1).max(reportLimits.idChars),
});

const stepResultSchema = z.object({
  resultCode,
  extendedResultCode: resultCode.default(0),
  resultDetails: truncated(reportLimits.stepResultDetailsChars).optional(),
});

const lastResultSchema = z.object({
  resultCode,
  extendedResultCode: resultCode.default(0),
  resultDetails: truncated(reportLimits.resultDetailsChars).optional(),
  stepResults: z
    .record(
      z.string().regex(/^step_\d{1,2}$/, 'step results are named step_0, step_1, ...'),
      stepResultSchema,
    )
    .refine((steps) => Object.keys(steps).length <= reportLimits.maxStepResults, {
      message: `at most ${reportLimits.maxStepResults} step results`,
    })
    .optional(),
});

const progressSchema = z.object({
  /** Index of the step at work. */
  step: z.int().min(0).optional(),
  bytes: z.int().min(0).optional(),
  totalBytes: z.int().min(0).optional(),
});

const compatibilitySchema = z
  .record(z.string().min(1).max(32), z.string().min(1).max(64))
  .refine((props) => Object.keys(props).length <= reportLimits.maxCompatibilityProperties, {
    message: `at most ${reportLimits.maxCompatibilityProperties} properties`,
  });

const coreSchema = z.object({
  state: z.enum(deviceReportedStates),
  deploymentId: z.string().min(1).max(reportLimits.idChars).optional(),
  /** The attempt of the desired document the device acted on; absent means 1. */
  attempt: z.int().min(1).default(1),
  updateId: reportedUpdateIdSchema.optional(),
  /**
   * The device's report sequence: strictly increasing per device (the agent uses
   * max(previous + 1, its clock in ms)). It orders one device's reports, which the acknowledgement
   * rule (on the device's own update topic) sees without a shadow version. Absent: the time the
   * rule received the report orders it.
   */
  seq: z.int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
});

export type ReportedOta = z.output<typeof coreSchema> & {
  readonly installedUpdateId?: z.output<typeof reportedUpdateIdSchema>;
  readonly progress?: z.output<typeof progressSchema>;
  readonly lastResult?: z.output<typeof lastResultSchema>;
  readonly compatibility?: z.output<typeof compatibilitySchema>;
};
export type LastResult = z.output<typeof lastResultSchema>;
export type ReportedProgress = z.output<typeof progressSchema>;

export interface ParsedReport {
  readonly report: ReportedOta;
  /** Optional sections that were dropped, with why. */
  readonly warnings: readonly Fault[];
}

export interface ReportInvalid {
  readonly code: 'REPORT_INVALID';
  readonly message: string;
  readonly faults: readonly Fault[];
}

function prefixed(section: string, faults: readonly Fault[]): Fault[] {
  return faults.map((fault) => ({ ...fault, path: `${pointer([section])}${fault.path}` }));
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * A null is how a device deletes a key from its shadow, which merges every update into the
 * document: the agent sends null for each id its report does not carry. It means absent.
 */
function withoutNulls(input: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(input).filter(([, value]) => value !== null));
}

/** Parses `state.reported.ota` from a shadow document. `input` is whatever was there, even nothing. */
export function parseReportedOta(input: unknown): Result<ParsedReport, ReportInvalid> {
  if (!isPlainObject(input)) {
    return err({
      code: 'REPORT_INVALID',
      message: 'reported.ota is not an object',
      faults: [{ path: '', message: 'must be an object' }],
    });
  }
  const core = coreSchema.safeParse(withoutNulls(input));
  if (!core.success) {
    return err({
      code: 'REPORT_INVALID',
      message: 'reported.ota has an invalid core',
      faults: faultsFromZod(core.error),
    });
  }
  const warnings: Fault[] = [];
  const section = <T>(name: string, schema: z.ZodType<T>): T | undefined => {
    const value = input[name];
    if (value === undefined || value === null) return undefined;
    const parsed = schema.safeParse(value);
    if (parsed.success) return parsed.data;
    warnings.push(...prefixed(name, faultsFromZod(parsed.error)));
    return undefined;
  };
  const report: ReportedOta = {
    ...core.data,
    installedUpdateId: section('installedUpdateId', reportedUpdateIdSchema),
    progress: section('progress', progressSchema),
    lastResult: section('lastResult', lastResultSchema),
    compatibility: section('compatibility', compatibilitySchema),
  };
  return ok({ report, warnings });
}

type Reducer = (report: ReportedOta) => ReportedOta;

function withStepDetails(report: ReportedOta, cut: (details: string) => string | undefined): ReportedOta {
  const steps = report.lastResult?.stepResults;
  if (!report.lastResult || !steps) return report;
  const stepResults = Object.fromEntries(
    Object.entries(steps).map(([name, step]) => {
      const { resultDetails, ...codes } = step;
      const kept = resultDetails === undefined ? undefined : cut(resultDetails);
      return [name, kept === undefined ? codes : { ...codes, resultDetails: kept }];
    }),
  );
  return { ...report, lastResult: { ...report.lastResult, stepResults } };
}

function withDetails(report: ReportedOta, cut: (details: string) => string | undefined): ReportedOta {
  if (!report.lastResult || report.lastResult.resultDetails === undefined) return report;
  const { resultDetails, ...rest } = report.lastResult;
  const kept = cut(resultDetails);
  return { ...report, lastResult: kept === undefined ? rest : { ...rest, resultDetails: kept } };
}

const shorten = (max: number) => (text: string) => text.slice(0, max);
const drop = () => undefined;

/** Least useful first: step texts, then the overall text, then progress. State, ids and codes always stay. */
const reducers: readonly Reducer[] = [
  (r) => withStepDetails(r, shorten(16)),
  (r) => withStepDetails(r, drop),
  (r) => withDetails(r, shorten(32)),
  (r) => withDetails(r, drop),
  ({ progress: _progress, ...rest }) => rest,
];

/**
 * For the agent: cuts a report down to its share of the shadow (the shadow refuses a document past
 * 8 KB outright, and a refused report is a lost report). Detail texts go first; the state, the ids
 * and every result code are kept. Returns the input unchanged when it already fits.
 */
export function fitReportedOta(report: ReportedOta, budget: number = REPORTED_OTA_BUDGET_BYTES): ReportedOta {
  let fitted = report;
  for (const reduce of reducers) {
    if (jsonBytes(fitted) <= budget) return fitted;
    fitted = reduce(fitted);
  }
  return fitted;
}
