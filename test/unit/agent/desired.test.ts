import { describe, expect, it } from 'vitest';
import { desiredFromDelta } from '../../../agent/desired.ts';
import { buildDesiredOta } from '../../../lambdas/domain/deployment/index.ts';

const updateId = { provider: 'Contoso', name: 'Toaster', version: '1.2' };

function desiredOta(attempt: number): Record<string, unknown> {
  const built = buildDesiredOta({ deploymentId: 'dep-1', attempt, updateId });
  if (!built.ok) throw new Error(built.error.message);
  return built.value.document.state.desired.ota as Record<string, unknown>;
}

/** What the shadow service sends: desired leaves that differ from reported, nothing else. */
function deltaAgainst(desired: Record<string, unknown>, reported: Record<string, unknown>) {
  return Object.fromEntries(
    Object.entries(desired).filter(([key, value]) => JSON.stringify(reported[key]) !== JSON.stringify(value)),
  );
}

describe('desiredFromDelta', () => {
  it('rebuilds a new attempt whose ids the device already reports, without reading the shadow', () => {
    const reported = { state: 'failed', deploymentId: 'dep-1', attempt: 2, updateId };
    const delta = deltaAgainst(desiredOta(2), reported);
    expect(delta).not.toHaveProperty('deploymentId');
    expect(delta).not.toHaveProperty('updateId');
    expect(desiredFromDelta(delta)).toEqual({
      deploymentId: 'dep-1',
      attempt: 2,
      action: 'apply',
      updateId,
    });
  });

  it('asks for a read when the delta is not a whole apply document', () => {
    expect(desiredFromDelta({ action: 'cancel' })).toBeUndefined();
    const { job: _job, ...withoutJob } = desiredOta(1);
    expect(desiredFromDelta(withoutJob)).toBeUndefined();
    const { action: _action, ...withoutAction } = desiredOta(1);
    expect(desiredFromDelta(withoutAction)).toBeUndefined();
    expect(desiredFromDelta(undefined)).toBeUndefined();
    expect(
      desiredFromDelta({ ...desiredOta(1), job: { deploymentId: 'dep-1', attempt: 0, updateId } }),
    ).toBeUndefined();
  });
});
