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
  SHADOW_STATE_LIMIT_BYTES,
} from '../../../lambdas/domain/deployment/index.ts';

const updateId = { provider: 'Contoso', name: 'Toaster', version: '1.2' };
/** An ES256 JWS binding 20 files is about 2.8 KB. */
const signature = `eyJhbGciOiJFUzI1NiJ9.${'p'.repeat(2700)}.${'s'.repeat(86)}`;

function input(manifestText: string, extra: Partial<DesiredOtaInput> = {}): DesiredOtaInput {
  return {
    deploymentId: 'dep-0123456789abcdef',
    attempt: 1,
    updateId,
    manifest: { kind: 'inline', text: manifestText },
    signature,
    ...extra,
  };
}

const mini = {
  kind: 'detached' as const,
  text: JSON.stringify({ updateId, detachedManifestFileId: 'f1', files: {} }),
};

describe('desired.ota', () => {
  it('carries the ids, the attempt, the action, the manifest text as is and the signature', () => {
    const text = '{"updateId":{"provider":"Contoso"},"n":1.0}';
    const result = buildDesiredOta(input(text));
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
                manifest: text,
                signature,
                job: { deploymentId: 'dep-0123456789abcdef', attempt: 1, updateId },
              },
            },
          },
        },
        delivery: 'inline',
        bytes: expect.any(Number),
      },
    });
  });

  it('falls back to the detached form when the inline manifest does not fit', () => {
    const result = buildDesiredOta(input('m'.repeat(DESIRED_OTA_BUDGET_BYTES), { detachedFallback: mini }));
    expect(result.ok && result.value.delivery).toBe('detached');
    expect(result.ok && result.value.document.state.desired.ota?.manifest).toBe(mini.text);
  });

  it('refuses a document that fits in no form, naming its size', () => {
    const result = buildDesiredOta(input('m'.repeat(DESIRED_OTA_BUDGET_BYTES)));
    expect(result).toEqual({
      ok: false,
      error: expect.objectContaining({ code: 'DESIRED_TOO_LARGE', limit: DESIRED_OTA_BUDGET_BYTES }),
    });
  });

  it('counts bytes as UTF-8 after JSON escaping, as the shadow service does', () => {
    const ascii = buildDesiredOta(input('"a"'));
    const wide = buildDesiredOta(input('"é"'));
    expect(ascii.ok && wide.ok && wide.value.bytes - ascii.value.bytes).toBe(1);
    expect(ascii.ok && ascii.value.bytes).toBe(jsonBytes(ascii.ok && ascii.value.document.state.desired.ota));
  });

  it('fits the 8 KB shadow with the largest inline manifest and the largest report, within 6 levels', () => {
    const inlineLimit = 3072; // the manifest module inlines manifests up to this many bytes, escaped
    const desired = buildDesiredOta(input('m'.repeat(inlineLimit - 2)));
    expect(desired.ok && desired.value.delivery).toBe('inline');
    if (!desired.ok) return;

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
