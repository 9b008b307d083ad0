import { describe, expect, it } from 'vitest';
import type { ExecutionRecord } from '../../../lambdas/adapters/execution-store.ts';
import type { ReportedOta } from '../../../lambdas/domain/deployment/index.ts';
import { fleetNeedsWrite } from '../../../lambdas/handlers/acknowledgements/fleet-report.ts';
import { deviceView } from '../../../lambdas/handlers/deployments/views.ts';

const props = { manufacturer: 'Contoso', model: 'Toaster' };
const v1 = { provider: 'Contoso', name: 'Toaster', version: '1.0' };
const v2 = { provider: 'Contoso', name: 'Toaster', version: '2.0' };
const report = (extra: Partial<ReportedOta>): ReportedOta =>
  ({ state: 'succeeded', ...extra }) as ReportedOta;

describe('fleetNeedsWrite', () => {
  it('writes a device the fleet does not know, whatever it reports', () => {
    expect(fleetNeedsWrite(undefined, report({}))).toBe(true);
  });

  it('writes changed or first-reported properties, and nothing when they are unchanged or unreported', () => {
    const known = { thingName: 't', compatibility: props, installedUpdateId: v1, lastReportAt: 1 };
    expect(fleetNeedsWrite(known, report({ compatibility: { ...props } }))).toBe(false);
    expect(fleetNeedsWrite(known, report({}))).toBe(false);
    expect(fleetNeedsWrite(known, report({ compatibility: { ...props, model: 'Kettle' } }))).toBe(true);
    expect(fleetNeedsWrite({ thingName: 't' }, report({ compatibility: props }))).toBe(true);
  });
});

describe('deviceView', () => {
  const execution = (deploymentId: string, reportedAt: number | undefined, installed?: typeof v1) =>
    ({
      deploymentId,
      thingName: 't',
      updateId: v2,
      state: 'succeeded',
      attempt: 1,
      shard: 0,
      createdAt: '2030-01-01T00:00:00.000Z',
      updatedAt: '2030-01-01T00:00:00.000Z',
      ...(reportedAt !== undefined ? { reportedAt } : {}),
      ...(installed ? { installedUpdateId: installed } : {}),
    }) as ExecutionRecord;

  it('shows the installed update of the newest report, from an execution or from the fleet', () => {
    const fleet = { thingName: 't', installedUpdateId: v1, compatibility: props, lastReportAt: 2000 };
    expect(deviceView('t', fleet, [execution('new', 3000, v2), execution('old', 1000, v1)])).toMatchObject({
      installedUpdateId: v2,
      lastReportAt: new Date(3000).toISOString(),
      compatibility: props,
    });
    // A report outside any deployment after the execution's: the fleet item is newer.
    expect(deviceView('t', { ...fleet, lastReportAt: 4000 }, [execution('new', 3000, v2)])).toMatchObject({
      installedUpdateId: v1,
      lastReportAt: new Date(4000).toISOString(),
    });
    // The newest report without an installed update: the newest one that names it, by report time.
    expect(
      deviceView('t', undefined, [execution('a', 5000), execution('b', 1000, v1), execution('c', 3000, v2)]),
    ).toMatchObject({ installedUpdateId: v2, lastReportAt: new Date(5000).toISOString() });
    // Another page of history: the current state still comes from the newest executions.
    const view = deviceView('t', fleet, [execution('old', 1000, v1)], [execution('new', 3000, v2)]);
    expect(view).toMatchObject({ installedUpdateId: v2, lastReportAt: new Date(3000).toISOString() });
    expect((view.executions as { deploymentId: string }[]).map((e) => e.deploymentId)).toEqual(['old']);
    // An execution that never heard from the device says nothing.
    expect(deviceView('t', undefined, [execution('quiet', undefined)])).not.toHaveProperty(
      'installedUpdateId',
    );
  });
});
