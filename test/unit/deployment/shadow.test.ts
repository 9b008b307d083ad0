import { describe, expect, it } from 'vitest';
import {
  buildCancelDocument,
  buildDesiredOta,
  buildTrimDocument,
  DESIRED_OTA_BUDGET_BYTES,
  type DesiredOtaInput,
  desiredBelongsTo,
  fitReportedOta,
  jsonBytes,
  jsonDepth,
  parseReportedOta,
  REPORTED_OTA_BUDGET_BYTES,
  reportLimits,
  SHADOW_MAX_DEPTH,
  SHADOW_OP_METERING_BYTES,
  SHADOW_STATE_LIMIT_BYTES,
} from '../../../lambdas/domain/deployment/index.ts';

const updateId = { provider: 'Contoso', name: 'Toaster', version: '1.2' };

function input(extra: Partial<DesiredOtaInput> = {}): DesiredOtaInput {
  return { deploymentId: 'dep-0123456789abcdef', attempt: 1, updateId, ...extra };
}

/** The longest ids the service makes or accepts: 64-character names, four 10-digit version parts. */
const largest: DesiredOtaInput = {
  deploymentId: 'd'.repeat(64),
  attempt: 2_147_483_647,
  updateId: {
    provider: 'p'.repeat(64),
    name: 'n'.repeat(64),
    version: '2147483647.2147483647.2147483647.2147483647',
  },
};

describe('desired.ota', () => {
  it('carries the ids, the attempt and the action, repeated under job, and no manifest or signature', () => {
    const result = buildDesiredOta(input());
    expect(result).toEqual({
      ok: true,
      value: {
        document: {
          state: {
            desired: {
              ota: {
                deploymentId: 'dep-0123456789abcdef',
                attempt: 1,
                action: 'apply',
                updateId,
                job: { deploymentId: 'dep-0123456789abcdef', attempt: 1, updateId },
              },
            },
          },
        },
        bytes: expect.any(Number),
      },
    });
  });

  it('stays within one metered shadow operation (1 KB) with the longest ids', () => {
    const result = buildDesiredOta(largest);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.value.bytes).toBe(jsonBytes(result.value.document.state.desired.ota));
    expect(jsonBytes(result.value.document)).toBeLessThanOrEqual(SHADOW_OP_METERING_BYTES);
  });

  it('refuses ids too long for the shadow, naming the size', () => {
    const result = buildDesiredOta(input({ deploymentId: 'd'.repeat(DESIRED_OTA_BUDGET_BYTES) }));
    expect(result).toEqual({
      ok: false,
      error: expect.objectContaining({ code: 'DESIRED_TOO_LARGE', limit: DESIRED_OTA_BUDGET_BYTES }),
    });
  });

  it('counts bytes as UTF-8 after JSON escaping, as the shadow service does', () => {
    const ascii = buildDesiredOta(input({ deploymentId: 'dep-a' }));
    const wide = buildDesiredOta(input({ deploymentId: 'dep-é' }));
    // Written twice: at the top and under job.
    expect(ascii.ok && wide.ok && wide.value.bytes - ascii.value.bytes).toBe(2);
  });

  it('fits the 8 KB shadow with the longest ids and the largest report, within 6 levels', () => {
    const desired = buildDesiredOta(largest);
    if (!desired.ok) throw new Error('the largest ids do not fit');

    const reported = parseReportedOta(largestReport());
    expect(reported.ok).toBe(true);
    if (!reported.ok) return;
    const fitted = fitReportedOta(reported.value.report);
    expect(jsonBytes(fitted)).toBeLessThanOrEqual(REPORTED_OTA_BUDGET_BYTES);

    const state = { desired: desired.value.document.state.desired, reported: { ota: fitted } };
    expect(jsonBytes(state)).toBeLessThanOrEqual(SHADOW_STATE_LIMIT_BYTES);
    expect(jsonDepth(state.desired)).toBeLessThanOrEqual(SHADOW_MAX_DEPTH);
    expect(jsonDepth(state.reported)).toBeLessThanOrEqual(SHADOW_MAX_DEPTH);
  });
});

/** Everything at its limit: ten steps, every text as long as the parser keeps, five properties. */
function largestReport() {
  const step = {
    resultCode: 700,
    extendedResultCode: -2_141_151_231,
    resultDetails: 'd'.repeat(reportLimits.stepResultDetailsChars),
  };
  return {
    state: 'succeeded',
    deploymentId: 'dep-0123456789abcdef',
    attempt: 99,
    updateId,
    installedUpdateId: updateId,
    progress: { step: 9, bytes: 2_147_483_648, totalBytes: 2_147_483_648 },
    lastResult: {
      resultCode: 700,
      extendedResultCode: -2_141_151_231,
      resultDetails: 'r'.repeat(reportLimits.resultDetailsChars),
      stepResults: Object.fromEntries(
        Array.from({ length: reportLimits.maxStepResults }, (_, i) => [`step_${i}`, step]),
      ),
    },
    compatibility: Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`property${i}`, 'v'.repeat(16)])),
  };
}

describe('fitting reported.ota into its budget', () => {
  it('cuts detail texts, never the state, the ids or a result code', () => {
    const parsed = parseReportedOta(largestReport());
    if (!parsed.ok) throw new Error('largest report should parse');
    const original = parsed.value.report;
    expect(jsonBytes(original)).toBeGreaterThan(REPORTED_OTA_BUDGET_BYTES);

    const fitted = fitReportedOta(original);
    expect(jsonBytes(fitted)).toBeLessThanOrEqual(REPORTED_OTA_BUDGET_BYTES);
    expect(fitted).toEqual(
      expect.objectContaining({
        state: original.state,
        deploymentId: original.deploymentId,
        attempt: original.attempt,
        installedUpdateId: original.installedUpdateId,
        compatibility: original.compatibility,
      }),
    );
    expect(fitted.lastResult?.resultCode).toBe(700);
    for (const [name, step] of Object.entries(original.lastResult?.stepResults ?? {})) {
      expect(fitted.lastResult?.stepResults?.[name]).toEqual(
        expect.objectContaining({ resultCode: step.resultCode, extendedResultCode: step.extendedResultCode }),
      );
    }
  });

  it('leaves a report that fits untouched', () => {
    const report = {
      state: 'failed' as const,
      attempt: 1,
      lastResult: { resultCode: 0, extendedResultCode: 5, resultDetails: 'disk full' },
    };
    expect(fitReportedOta(report)).toBe(report);
  });

  it('cuts step texts before the overall text', () => {
    const parsed = parseReportedOta(largestReport());
    if (!parsed.ok) throw new Error('largest report should parse');
    const budget = jsonBytes(parsed.value.report) - 100;
    const fitted = fitReportedOta(parsed.value.report, budget);
    expect(fitted.lastResult?.resultDetails).toHaveLength(reportLimits.resultDetailsChars);
    expect(fitted.lastResult?.stepResults?.step_0?.resultDetails).toHaveLength(16);
  });
});

describe('cancel and trim documents', () => {
  it('switches the action to cancel, locked to the version the caller saw', () => {
    expect(buildCancelDocument(17)).toEqual({
      state: { desired: { ota: { action: 'cancel' } } },
      version: 17,
    });
  });

  it('clears desired.ota so no delta stands, locked to the version the caller saw', () => {
    expect(buildTrimDocument(18)).toEqual({ state: { desired: { ota: null } }, version: 18 });
  });

  it.each([
    [{ deploymentId: 'dep-1', attempt: 2 }, 'dep-1', 2, true],
    [{ deploymentId: 'dep-1', attempt: 1 }, 'dep-1', 2, true],
    [{ deploymentId: 'dep-1', attempt: 3 }, 'dep-1', 2, false],
    [{ deploymentId: 'dep-2', attempt: 1 }, 'dep-1', 1, false],
    [{ deploymentId: 'dep-1' }, 'dep-1', 1, false],
    [null, 'dep-1', 1, false],
    ['dep-1', 'dep-1', 1, false],
  ] as const)('desired %j belongs to %s attempt %i: %s', (desired, deploymentId, attempt, expected) => {
    expect(desiredBelongsTo(desired, deploymentId, attempt)).toBe(expected);
  });
});

describe('json helpers', () => {
  it.each([
    [1, 0],
    [{}, 1],
    [[], 1],
    [{ a: { b: [1] } }, 3],
    [{ a: 1, b: { c: { d: {} } } }, 4],
  ])('depth of %j is %i', (value, depth) => {
    expect(jsonDepth(value)).toBe(depth);
  });
});
