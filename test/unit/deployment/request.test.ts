import { describe, expect, it } from 'vitest';
import {
  type DeploymentRequestInput,
  deploymentDefaults,
  deploymentLimits,
  parseDeploymentRequest,
} from '../../../lambdas/domain/deployment/index.ts';

const NOW = Date.parse('2030-06-01T12:00:00Z');
const update = { provider: 'Contoso', name: 'Toaster', version: '1.2.0' };

function minimal(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { update, target: { thingGroups: ['toasters'] }, ...overrides };
}

function faultsOf(input: unknown) {
  const result = parseDeploymentRequest(input, NOW);
  if (result.ok) throw new Error('expected faults');
  expect(result.error.code).toBe('DEPLOYMENT_REQUEST_INVALID');
  return result.error.faults;
}

describe('deployment request: defaults', () => {
  it('fills every policy default when the policy is left out', () => {
    const result = parseDeploymentRequest(minimal(), NOW);
    expect(result).toEqual({
      ok: true,
      value: {
        update,
        target: { thingGroups: ['toasters'], things: [], compatibility: [] },
        policy: {
          rollout: { ratePerMinute: deploymentDefaults.ratePerMinute },
          abort: [{ failureType: 'ANY_FAILURE', thresholdPercent: 50, minFinishedDevices: 10 }],
          deviceTimeoutSeconds: 86_400,
          download: { mode: 'presigned', credentialLifetimeSeconds: 900 },
          rollback: false,
        },
      },
    });
  });

  it('keeps an explicit empty abort list: no automatic abort', () => {
    const result = parseDeploymentRequest(minimal({ policy: { abort: [] } }), NOW);
    expect(result.ok && result.value.policy.abort).toEqual([]);
  });

  it('accepts a full policy and converts the start time to epoch ms', () => {
    const input: DeploymentRequestInput = {
      update,
      target: {
        things: ['thing-1', 'a:b_c-d'],
        compatibility: [{ manufacturer: 'contoso', model: 'toaster' }],
      },
      policy: {
        rollout: {
          ratePerMinute: 600,
          ramp: { startRatePerMinute: 10, factor: 2, increaseAfterSucceeded: 5 },
        },
        abort: [{ failureType: 'FAILED', thresholdPercent: 12.5, minFinishedDevices: 40 }],
        deviceTimeoutSeconds: 3600,
        startAt: '2030-06-01T14:00:00+02:00',
        download: { mode: 'sts', credentialLifetimeSeconds: 1800 },
        rollback: true,
      },
    };
    const result = parseDeploymentRequest(input, NOW);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.value.policy.startAt).toBe(Date.parse('2030-06-01T12:00:00Z'));
    expect(result.value.policy.rollout.ramp).toEqual({
      startRatePerMinute: 10,
      factor: 2,
      increaseAfterSucceeded: 5,
    });
    expect(result.value.policy.download).toEqual({ mode: 'sts', credentialLifetimeSeconds: 1800 });
    expect(result.value.policy.rollback).toBe(true);
  });
});

describe('deployment request: every fault with its JSON pointer', () => {
  const tooManyThings = Array.from({ length: deploymentLimits.maxThings + 1 }, (_, i) => `t${i}`);
  it.each([
    ['a missing update', { target: { things: ['a'] } }, '/update'],
    ['a bad update version', minimal({ update: { ...update, version: '1' } }), '/update/version'],
    ['a missing target', { update }, '/target'],
    ['an empty target', minimal({ target: {} }), '/target'],
    ['a target with empty lists', minimal({ target: { things: [], thingGroups: [] } }), '/target'],
    ['a thing name with a space', minimal({ target: { things: ['ok', 'bad name'] } }), '/target/things/1'],
    [
      'a thing name of 129 characters',
      minimal({ target: { things: ['x'.repeat(129)] } }),
      '/target/things/0',
    ],
    ['an empty thing name', minimal({ target: { things: [''] } }), '/target/things/0'],
    ['a duplicate thing', minimal({ target: { things: ['a', 'b', 'a'] } }), '/target/things/2'],
    ['too many things', minimal({ target: { things: tooManyThings } }), '/target/things'],
    ['a thing group with a slash', minimal({ target: { thingGroups: ['a/b'] } }), '/target/thingGroups/0'],
    ['an empty compatibility set', minimal({ target: { compatibility: [{}] } }), '/target/compatibility/0'],
    ['an unknown target field', minimal({ target: { things: ['a'], devices: ['b'] } }), '/target/devices'],
    ['an unknown top-level field', minimal({ name: 'x' }), '/name'],
    [
      'a rate of zero',
      minimal({ policy: { rollout: { ratePerMinute: 0 } } }),
      '/policy/rollout/ratePerMinute',
    ],
    [
      'a fractional rate',
      minimal({ policy: { rollout: { ratePerMinute: 1.5 } } }),
      '/policy/rollout/ratePerMinute',
    ],
    [
      'a rate above the largest account quota',
      minimal({ policy: { rollout: { ratePerMinute: deploymentLimits.maxRatePerMinute + 1 } } }),
      '/policy/rollout/ratePerMinute',
    ],
    [
      'a misspelt rollout field',
      minimal({ policy: { rollout: { ratePerMinut: 5 } } }),
      '/policy/rollout/ratePerMinut',
    ],
    [
      'a ramp starting above the rate',
      minimal({
        policy: {
          rollout: {
            ratePerMinute: 10,
            ramp: { startRatePerMinute: 20, factor: 2, increaseAfterSucceeded: 1 },
          },
        },
      }),
      '/policy/rollout/ramp/startRatePerMinute',
    ],
    [
      'a ramp factor of 1',
      minimal({
        policy: { rollout: { ramp: { startRatePerMinute: 1, factor: 1, increaseAfterSucceeded: 1 } } },
      }),
      '/policy/rollout/ramp/factor',
    ],
    [
      'a ramp with no step',
      minimal({ policy: { rollout: { ramp: { startRatePerMinute: 1, factor: 2 } } } }),
      '/policy/rollout/ramp/increaseAfterSucceeded',
    ],
    [
      'an unknown failure type',
      minimal({ policy: { abort: [{ failureType: 'REJECTED', thresholdPercent: 5 }] } }),
      '/policy/abort/0/failureType',
    ],
    [
      'a threshold of 0 percent',
      minimal({ policy: { abort: [{ failureType: 'FAILED', thresholdPercent: 0 }] } }),
      '/policy/abort/0/thresholdPercent',
    ],
    [
      'a threshold above 100 percent',
      minimal({ policy: { abort: [{ failureType: 'FAILED', thresholdPercent: 101 }] } }),
      '/policy/abort/0/thresholdPercent',
    ],
    [
      'two criteria for one failure type',
      minimal({
        policy: {
          abort: [
            { failureType: 'FAILED', thresholdPercent: 5 },
            { failureType: 'FAILED', thresholdPercent: 9 },
          ],
        },
      }),
      '/policy/abort/1/failureType',
    ],
    [
      'a device timeout of 1 second',
      minimal({ policy: { deviceTimeoutSeconds: 1 } }),
      '/policy/deviceTimeoutSeconds',
    ],
    [
      'a device timeout over 7 days',
      minimal({ policy: { deviceTimeoutSeconds: deploymentLimits.maxDeviceTimeoutSeconds + 1 } }),
      '/policy/deviceTimeoutSeconds',
    ],
    [
      'a start time without a time zone',
      minimal({ policy: { startAt: '2030-06-01T13:00:00' } }),
      '/policy/startAt',
    ],
    ['a start time an hour ago', minimal({ policy: { startAt: '2030-06-01T11:00:00Z' } }), '/policy/startAt'],
    [
      'a start time two years ahead',
      minimal({ policy: { startAt: '2032-06-01T12:00:00Z' } }),
      '/policy/startAt',
    ],
    [
      'an unknown download mode',
      minimal({ policy: { download: { mode: 'https' } } }),
      '/policy/download/mode',
    ],
    [
      'STS credentials shorter than AssumeRole allows',
      minimal({ policy: { download: { mode: 'sts', credentialLifetimeSeconds: 600 } } }),
      '/policy/download/credentialLifetimeSeconds',
    ],
    [
      'presigned URLs living over an hour',
      minimal({ policy: { download: { credentialLifetimeSeconds: 7200 } } }),
      '/policy/download/credentialLifetimeSeconds',
    ],
    ['a rollback flag that is a string', minimal({ policy: { rollback: 'yes' } }), '/policy/rollback'],
  ])('refuses %s at %s', (_name, input, path) => {
    expect(faultsOf(input).map((fault) => fault.path)).toContain(path);
  });

  it('accepts a start time within the clock-skew tolerance in the past', () => {
    const startAt = new Date(NOW - deploymentLimits.startAtPastToleranceMs + 1000).toISOString();
    expect(parseDeploymentRequest(minimal({ policy: { startAt } }), NOW).ok).toBe(true);
  });

  it('accepts a presigned lifetime under the STS minimum', () => {
    const result = parseDeploymentRequest(
      minimal({ policy: { download: { credentialLifetimeSeconds: 60 } } }),
      NOW,
    );
    expect(result.ok).toBe(true);
  });

  it('reports all faults at once, not only the first', () => {
    const paths = faultsOf({
      update: { provider: 'Contoso', name: 'Toaster' },
      target: { things: ['bad name'] },
      policy: { rollout: { ratePerMinute: -1 }, deviceTimeoutSeconds: 0, rollback: 1 },
    }).map((fault) => fault.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        '/update/version',
        '/target/things/0',
        '/policy/rollout/ratePerMinute',
        '/policy/deviceTimeoutSeconds',
        '/policy/rollback',
      ]),
    );
  });

  it.each([null, undefined, 42, 'text', [], [update]])('never throws on %j', (input) => {
    expect(faultsOf(input)).toEqual([expect.objectContaining({ path: '' })]);
  });
});
