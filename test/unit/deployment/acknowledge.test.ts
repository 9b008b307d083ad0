import { describe, expect, it } from 'vitest';
import {
  decideReport,
  deviceReportedStates,
  type Execution,
  type ExecutionState,
  executionStates,
  type ForwardReport,
  forwardReport,
  isAllowedTransition,
  type ReportedOta,
  reportOrderOf,
  timeOutIfDue,
} from '../../../lambdas/domain/deployment/index.ts';

const T0 = Date.parse('2030-06-01T12:00:00Z');
const deployed = { provider: 'Contoso', name: 'Toaster', version: '1.2' };
const previous = { provider: 'Contoso', name: 'Toaster', version: '1.1' };

function execution(state: ExecutionState, extra: Partial<Execution> = {}): Execution {
  return {
    deploymentId: 'dep-1',
    thingName: 'thing-1',
    updateId: deployed,
    state,
    attempt: 1,
    notifiedAt: T0,
    reportOrder: 10,
    reportedAt: T0 + 1000,
    ...extra,
  };
}

function report(ota: Partial<ReportedOta>, seq = 11, reportedAt = T0 + 2000) {
  return {
    ota: { state: 'downloading', deploymentId: 'dep-1', attempt: 1, seq, ...ota } as ReportedOta,
    reportedAt,
  };
}

describe('device report → execution transition', () => {
  it.each([
    ['notified', 'downloading', {}, 'downloading'],
    ['notified', 'installing', {}, 'installing'],
    ['downloading', 'applying', {}, 'applying'],
    ['queued', 'downloading', {}, 'downloading'],
    ['applying', 'succeeded', { installedUpdateId: deployed }, 'succeeded'],
    ['notified', 'skipped', { installedUpdateId: deployed }, 'skipped'],
    ['installing', 'failed', { lastResult: { resultCode: 0, extendedResultCode: 1 } }, 'failed'],
    ['notified', 'canceled', {}, 'canceled'],
    ['notified', 'incompatible', {}, 'incompatible'],
    [
      'downloading',
      'succeeded',
      { installedUpdateId: { provider: 'contoso', name: 'TOASTER', version: '1.02' } },
      'succeeded',
    ],
  ] as const)('%s + device %s %j → %s', (from, state, extra, to) => {
    const decision = decideReport(execution(from), report({ state, ...extra }));
    expect(decision).toEqual(
      expect.objectContaining({ kind: 'transition', transition: { from, to, reason: 'device_report' } }),
    );
    if (decision.kind === 'transition') {
      expect(decision.next).toEqual(
        expect.objectContaining({ state: to, reportOrder: 11, reportedAt: T0 + 2000 }),
      );
      expect(isAllowedTransition(decision.transition.from, decision.transition.to)).toBe(true);
    }
  });
});

describe('success needs the deployed update installed, not an exit code', () => {
  it.each([
    ['no installed update', {}],
    ['the previous update', { installedUpdateId: previous }],
  ])('a device saying succeeded with %s waits in applying', (_name, extra) => {
    const decision = decideReport(execution('installing'), report({ state: 'succeeded', ...extra }));
    expect(decision).toEqual(
      expect.objectContaining({
        kind: 'transition',
        transition: { from: 'installing', to: 'applying', reason: 'device_report' },
      }),
    );
  });

  it('records the unconfirmed success as progress while already applying', () => {
    const decision = decideReport(
      execution('applying'),
      report({ state: 'succeeded', installedUpdateId: previous }),
    );
    expect(decision).toEqual(
      expect.objectContaining({
        kind: 'progress',
        state: 'applying',
        note: expect.stringContaining('Contoso/Toaster/1.1'),
      }),
    );
  });

  it('a skipped report that does not name the deployed update is not a success either', () => {
    const decision = decideReport(execution('notified'), report({ state: 'skipped' }));
    expect(decision.kind === 'transition' && decision.transition.to).toBe('applying');
  });
});

describe('reports that change nothing', () => {
  it.each([
    [
      'an older shadow version',
      execution('installing'),
      report({ state: 'succeeded', installedUpdateId: deployed }, 9, T0),
      'stale',
      'STALE_REPORT',
    ],
    [
      'the same shadow version',
      execution('installing'),
      report({ state: 'failed' }, 10),
      'duplicate',
      'DUPLICATE_REPORT',
    ],
    [
      'another deployment',
      execution('notified'),
      report({ deploymentId: 'dep-0', state: 'failed' }),
      'ignored',
      'OTHER_DEPLOYMENT',
    ],
    [
      'no deployment at all',
      execution('notified'),
      report({ deploymentId: undefined, state: 'idle' }),
      'ignored',
      'OTHER_DEPLOYMENT',
    ],
    [
      'a previous attempt',
      execution('notified', { attempt: 2 }),
      report({ attempt: 1, state: 'failed' }),
      'ignored',
      'PREVIOUS_ATTEMPT',
    ],
    [
      'a finished execution',
      execution('succeeded'),
      report({ state: 'failed' }),
      'ignored',
      'ALREADY_TERMINAL',
    ],
    [
      'a canceled execution',
      execution('canceled'),
      report({ state: 'succeeded', installedUpdateId: deployed }),
      'ignored',
      'ALREADY_TERMINAL',
    ],
    ['an idle device', execution('notified'), report({ state: 'idle' }), 'ignored', 'NO_PROGRESS'],
  ] as const)('ignores %s', (_name, current, incoming, kind, code) => {
    expect(decideReport(current, incoming)).toEqual(
      expect.objectContaining({ kind, code, reason: expect.any(String) }),
    );
  });

  it('keeps the state when a device goes back a step (re-download after a reboot) but records the report', () => {
    const decision = decideReport(execution('installing'), report({ state: 'downloading' }));
    expect(decision).toEqual(
      expect.objectContaining({
        kind: 'progress',
        state: 'installing',
        next: expect.objectContaining({ state: 'installing', reportOrder: 11 }),
      }),
    );
  });

  it('records a same-state report as progress', () => {
    const decision = decideReport(
      execution('downloading'),
      report({ state: 'downloading', progress: { bytes: 5 } }),
    );
    expect(decision.kind).toBe('progress');
  });

  it('applies the first report of an execution that has none yet', () => {
    const first = execution('notified', { reportOrder: undefined, reportedAt: undefined });
    expect(decideReport(first, report({ state: 'downloading' }, 1)).kind).toBe('transition');
  });
});

describe('ordering: out-of-order delivery converges on the newest report', () => {
  it('applies reports delivered in any order to the same end state', () => {
    const reports = [
      report({ state: 'downloading' }, 11),
      report({ state: 'installing' }, 12),
      report({ state: 'succeeded', installedUpdateId: deployed }, 13),
    ];
    const orders = [
      [0, 1, 2],
      [2, 1, 0],
      [1, 2, 0],
      [2, 0, 1],
      [0, 2, 1, 2, 0],
    ];
    for (const order of orders) {
      let current = execution('notified');
      for (const index of order) {
        const incoming = reports[index];
        if (!incoming) throw new Error('bad index');
        const decision = decideReport(current, incoming);
        if (decision.kind === 'transition' || decision.kind === 'progress') current = decision.next;
      }
      expect(current.state).toBe('succeeded');
    }
  });

  it('orders a report without a sequence by the time it arrived', () => {
    const unnumbered = { ota: { state: 'installing', deploymentId: 'dep-1', attempt: 1 } as ReportedOta };
    const current = execution('downloading', { reportOrder: T0 + 5000, reportedAt: T0 + 5000 });
    expect(reportOrderOf({ ...unnumbered, reportedAt: T0 + 6000 })).toBe(T0 + 6000);
    expect(decideReport(current, { ...unnumbered, reportedAt: T0 + 6000 }).kind).toBe('transition');
    expect(decideReport(current, { ...unnumbered, reportedAt: T0 + 5000 }).kind).toBe('duplicate');
    expect(decideReport(current, { ...unnumbered, reportedAt: T0 + 4000 }).kind).toBe('stale');
  });
});

describe('late and cancel reports', () => {
  it.each([
    ['succeeded', { installedUpdateId: deployed }, 'succeeded'],
    ['failed', {}, 'failed'],
  ] as const)('a timed-out device that reports %s late is corrected to %s', (state, extra, to) => {
    expect(decideReport(execution('timed_out'), report({ state, ...extra }))).toEqual(
      expect.objectContaining({
        kind: 'transition',
        transition: { from: 'timed_out', to, reason: 'late_report' },
      }),
    );
  });

  it('a timed-out device reporting progress stays timed out', () => {
    expect(decideReport(execution('timed_out'), report({ state: 'installing' })).kind).toBe('ignored');
  });

  it('a device confirming a requested cancel ends canceled for the cancel reason', () => {
    const decision = decideReport(
      execution('downloading', { cancelReason: 'aborted' }),
      report({ state: 'canceled' }),
    );
    expect(decision).toEqual(
      expect.objectContaining({ transition: { from: 'downloading', to: 'canceled', reason: 'aborted' } }),
    );
  });

  it('a device asked to cancel that finished anyway is a success (cancel is best effort)', () => {
    const decision = decideReport(
      execution('applying', { cancelReason: 'canceled_by_operator' }),
      report({ state: 'succeeded', installedUpdateId: deployed }),
    );
    expect(decision.kind === 'transition' && decision.transition.to).toBe('succeeded');
  });
});

describe('a device that reports before its notification is recorded', () => {
  it('starts its clock at its first report, so it can still time out', () => {
    const queued = execution('queued', {
      notifiedAt: undefined,
      reportOrder: undefined,
      reportedAt: undefined,
    });
    const decision = decideReport(queued, report({ state: 'downloading' }, 1, T0 + 5000));
    expect(decision.kind === 'transition' && decision.next).toMatchObject({
      state: 'downloading',
      notifiedAt: T0 + 5000,
    });
    if (decision.kind !== 'transition') return;
    expect(timeOutIfDue(decision.next, T0 + 5000 + 60_000, 60).kind).toBe('transition');
  });

  it('keeps the notification time it has', () => {
    const decision = decideReport(execution('notified'), report({ state: 'downloading' }));
    expect(decision.kind === 'transition' && decision.next.notifiedAt).toBe(T0);
  });
});

describe('a report that needs no read first (forwardReport)', () => {
  const reportedStates = deviceReportedStates;
  const installedVariants = [undefined, deployed, previous] as const;
  const executionVariants: readonly Partial<Execution>[] = [
    {},
    { reportOrder: undefined, reportedAt: undefined },
    { notifiedAt: undefined },
    { reportOrder: 11 },
    { reportOrder: 12 },
    { attempt: 2 },
    { cancelReason: 'aborted' },
    { updateId: previous },
    { updateId: { provider: 'contoso', name: 'TOASTER', version: '1.02' } },
  ];

  /** What the adapter's condition checks, written out over a domain execution. */
  function holds(precondition: ForwardReport, e: Execution): boolean {
    const updateMatches =
      precondition.updateId === undefined ||
      (e.updateId.provider === precondition.updateId.provider &&
        e.updateId.name === precondition.updateId.name &&
        e.updateId.version === precondition.updateId.version);
    return (
      e.deploymentId === precondition.deploymentId &&
      e.attempt === precondition.attempt &&
      (e.reportOrder === undefined || e.reportOrder < precondition.order) &&
      precondition.from.includes(e.state) &&
      updateMatches
    );
  }

  it('moves every execution its conditions hold for exactly as decideReport does, for the device’s reason', () => {
    let checked = 0;
    for (const state of reportedStates)
      for (const installedUpdateId of installedVariants) {
        const r = report({ state, ...(installedUpdateId ? { installedUpdateId } : {}) });
        const precondition = forwardReport(r);
        if (!precondition) continue;
        for (const from of executionStates)
          for (const variant of executionVariants) {
            const e = execution(from, variant);
            if (!holds(precondition, e)) continue;
            checked++;
            const next = {
              ...e,
              ...precondition.changes,
              notifiedAt: e.notifiedAt ?? precondition.changes.reportedAt,
              state: precondition.to,
            };
            // In its own state, a report is progress: the same record (and the stored reason is
            // the device's already, as only its reports lead into these states).
            if (e.state === precondition.to) {
              expect(decideReport(e, r)).toMatchObject({ kind: 'progress', state: precondition.to, next });
              continue;
            }
            expect(decideReport(e, r)).toEqual({
              kind: 'transition',
              transition: { from, to: precondition.to, reason: 'device_report' },
              next,
            });
          }
      }
    // Enough combinations to mean something: every reported state that has a fast path, from several states.
    expect(checked).toBeGreaterThan(100);
  });

  it('covers progress in the state a device report led into, never a device going back or the fan-out’s notified', () => {
    expect(forwardReport(report({ state: 'installing' }))?.from).toEqual([
      'queued',
      'notified',
      'downloading',
      'installing',
    ]);
    expect(forwardReport(report({ state: 'downloading' }))?.from).toEqual([
      'queued',
      'notified',
      'downloading',
    ]);
    expect(forwardReport(report({ state: 'failed' }))?.from).not.toContain('failed');
  });

  it('offers no fast path where the outcome depends on more than its conditions', () => {
    expect(forwardReport(report({ state: 'idle' }))).toBeUndefined();
    expect(forwardReport(report({ state: 'canceled' }))).toBeUndefined();
    expect(forwardReport(report({ deploymentId: undefined }))).toBeUndefined();
    // A late report of a timed-out device is decided on the stored execution.
    expect(forwardReport(report({ state: 'failed' }))?.from).not.toContain('timed_out');
  });

  it('asks a success claim for the deployed update to name it, and waits in applying without one', () => {
    expect(forwardReport(report({ state: 'succeeded', installedUpdateId: deployed }))).toEqual(
      expect.objectContaining({ to: 'succeeded', updateId: deployed }),
    );
    const unnamed = forwardReport(report({ state: 'succeeded' }));
    expect(unnamed?.to).toBe('applying');
    expect(unnamed?.updateId).toBeUndefined();
    expect(unnamed?.from).toEqual(['queued', 'notified', 'downloading', 'installing', 'applying']);
  });
});
