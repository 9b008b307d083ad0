import { describe, expect, it } from 'vitest';
import { buildReportedOta } from '../../../agent/report.ts';
import { parseReportedOta, reportLimits } from '../../../lambdas/domain/deployment/index.ts';

const updateId = { provider: 'Contoso', name: 'Toaster', version: '1.2' };

describe('reported.ota parser', () => {
  it('reads a complete report', () => {
    const input = {
      state: 'succeeded',
      deploymentId: 'dep-1',
      attempt: 2,
      updateId,
      installedUpdateId: updateId,
      progress: { step: 1, bytes: 10, totalBytes: 10 },
      lastResult: {
        resultCode: 700,
        extendedResultCode: 0,
        resultDetails: 'ok',
        stepResults: { step_0: { resultCode: 700, extendedResultCode: 0 }, step_1: { resultCode: 603 } },
      },
      compatibility: { manufacturer: 'contoso', model: 'toaster' },
    };
    expect(parseReportedOta(input)).toEqual({
      ok: true,
      value: {
        report: {
          ...input,
          lastResult: {
            ...input.lastResult,
            stepResults: {
              step_0: { resultCode: 700, extendedResultCode: 0 },
              step_1: { resultCode: 603, extendedResultCode: 0 },
            },
          },
        },
        warnings: [],
      },
    });
  });

  it('reads a null as absent: the agent clears the ids its report does not carry with null', () => {
    const compatibility = { manufacturer: 'contoso', model: 'toaster' };
    // What the agent sends outside a deployment (first connect, after a result was acknowledged).
    const sent = buildReportedOta({ state: 'idle', compatibility });
    expect(sent).toMatchObject({ deploymentId: null, updateId: null, lastResult: null });
    const result = parseReportedOta(sent);
    expect(result).toEqual({
      ok: true,
      value: { report: { state: 'idle', attempt: 1, compatibility }, warnings: [] },
    });
    expect(result.ok && 'deploymentId' in result.value.report).toBe(false);
  });

  it('defaults the attempt to 1 and drops unknown keys', () => {
    const result = parseReportedOta({ state: 'downloading', deploymentId: 'dep-1', extra: { deep: true } });
    expect(result.ok && result.value.report).toEqual(
      expect.objectContaining({ state: 'downloading', attempt: 1 }),
    );
    expect(result.ok && 'extra' in result.value.report).toBe(false);
  });

  it.each([
    ['not an object', 'succeeded', ''],
    ['null', null, ''],
    ['an array', [], ''],
    ['no state', { deploymentId: 'x' }, '/state'],
    ['an unknown state', { state: 'done' }, '/state'],
    ['a numeric deployment id', { state: 'failed', deploymentId: 5 }, '/deploymentId'],
    ['attempt 0', { state: 'failed', attempt: 0 }, '/attempt'],
  ])('refuses %s', (_name, input, path) => {
    const result = parseReportedOta(input);
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.error.code).toBe('REPORT_INVALID');
      expect(result.error.faults.map((fault) => fault.path)).toContain(path);
    }
  });

  it.each([
    ['installedUpdateId', 'v1.2', '/installedUpdateId'],
    ['progress', { bytes: -1 }, '/progress/bytes'],
    ['lastResult', { resultCode: 'ok' }, '/lastResult/resultCode'],
    [
      'lastResult',
      { resultCode: 0, stepResults: { first: { resultCode: 0 } } },
      '/lastResult/stepResults/first',
    ],
    ['compatibility', { model: 7 }, '/compatibility/model'],
  ])('keeps the state but drops a bad %s, with a warning at %s', (section, value, path) => {
    const result = parseReportedOta({ state: 'failed', deploymentId: 'dep-1', [section]: value });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.value.report.state).toBe('failed');
    expect(result.value.report[section as 'progress']).toBeUndefined();
    expect(result.value.warnings.map((w) => w.path)).toContain(path);
  });

  it('cuts over-long details instead of refusing the report', () => {
    const result = parseReportedOta({
      state: 'failed',
      lastResult: {
        resultCode: 0,
        resultDetails: 'x'.repeat(1000),
        stepResults: { step_0: { resultCode: 0, resultDetails: 'y'.repeat(1000) } },
      },
    });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.value.report.lastResult?.resultDetails).toHaveLength(reportLimits.resultDetailsChars);
    expect(result.value.report.lastResult?.stepResults?.step_0?.resultDetails).toHaveLength(
      reportLimits.stepResultDetailsChars,
    );
  });

  it('accepts signed and unsigned 32-bit extended result codes (ADU shows them signed)', () => {
    for (const extendedResultCode of [-2_141_151_231, 2_150_629_377]) {
      const result = parseReportedOta({ state: 'failed', lastResult: { resultCode: 0, extendedResultCode } });
      expect(result.ok && result.value.report.lastResult?.extendedResultCode).toBe(extendedResultCode);
    }
  });
});
