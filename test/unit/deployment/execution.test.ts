import { describe, expect, it } from 'vitest';
import {
  cancel,
  deadlineOf,
  type Execution,
  type ExecutionState,
  initialState,
  isAllowedTransition,
  notify,
  ownsDevice,
  retry,
  supersede,
  timeOutIfDue,
} from '../../../lambdas/domain/deployment/index.ts';

const T0 = Date.parse('2030-06-01T12:00:00Z');

function execution(state: ExecutionState, extra: Partial<Execution> = {}): Execution {
  return {
    deploymentId: 'dep-1',
    thingName: 'thing-1',
    updateId: { provider: 'Contoso', name: 'Toaster', version: '1.2' },
    state,
    attempt: 1,
    ...(state === 'queued' ? {} : { notifiedAt: T0 }),
    ...extra,
  };
}

describe('initial state', () => {
  it.each([
    [true, 'queued'],
    [false, 'incompatible'],
  ] as const)('compatible=%s starts %s', (compatible, state) => {
    expect(initialState(compatible)).toBe(state);
  });
});

describe('notify', () => {
  it('moves a queued execution to notified and starts its clock', () => {
    const result = notify(execution('queued'), T0 + 5);
    expect(result).toEqual({
      ok: true,
      value: {
        kind: 'transition',
        transition: { from: 'queued', to: 'notified', reason: 'notified' },
        next: expect.objectContaining({ state: 'notified', notifiedAt: T0 + 5 }),
      },
    });
  });

  it.each(['notified', 'downloading', 'succeeded', 'canceled'] as const)(
    'refuses a %s execution',
    (state) => {
      expect(notify(execution(state), T0)).toEqual({
        ok: false,
        error: expect.objectContaining({ code: 'NOT_NOTIFIABLE' }),
      });
    },
  );
});

describe('cancel', () => {
  it.each(['canceled_by_operator', 'aborted'] as const)('ends a queued execution at once (%s)', (reason) => {
    const result = cancel(execution('queued'), reason);
    expect(result.ok && result.value).toEqual(
      expect.objectContaining({ kind: 'transition', transition: { from: 'queued', to: 'canceled', reason } }),
    );
  });

  it.each(['notified', 'downloading', 'installing', 'applying'] as const)(
    'asks a %s device to cancel and keeps its state until it answers',
    (state) => {
      const result = cancel(execution(state), 'canceled_by_operator');
      expect(result.ok && result.value).toEqual({
        kind: 'cancel_requested',
        next: expect.objectContaining({ state, cancelReason: 'canceled_by_operator' }),
      });
    },
  );

  it('does not ask twice', () => {
    const result = cancel(execution('downloading', { cancelReason: 'aborted' }), 'canceled_by_operator');
    expect(result.ok && result.value.kind).toBe('unchanged');
  });

  it.each(['succeeded', 'failed', 'timed_out', 'canceled', 'skipped', 'incompatible'] as const)(
    'refuses a %s execution',
    (state) => {
      expect(cancel(execution(state), 'canceled_by_operator')).toEqual({
        ok: false,
        error: expect.objectContaining({ code: 'NOT_CANCELABLE' }),
      });
    },
  );
});

describe('supersede', () => {
  it.each(['queued', 'notified', 'downloading', 'installing', 'applying'] as const)(
    'ends a %s execution canceled with reason superseded',
    (state) => {
      expect(supersede(execution(state))).toEqual(
        expect.objectContaining({
          kind: 'transition',
          transition: { from: state, to: 'canceled', reason: 'superseded' },
        }),
      );
    },
  );

  it.each(['succeeded', 'failed', 'canceled'] as const)('leaves a %s execution alone', (state) => {
    expect(supersede(execution(state)).kind).toBe('unchanged');
  });
});

describe('retry', () => {
  it.each(['failed', 'timed_out'] as const)('re-queues a %s execution as the next attempt', (state) => {
    const result = retry(execution(state, { attempt: 2, cancelReason: 'aborted', reportOrder: 7 }));
    expect(result.ok).toBe(true);
    if (!result.ok || result.value.kind !== 'transition') return;
    expect(result.value.transition).toEqual({ from: state, to: 'queued', reason: 'retry' });
    expect(result.value.next).toEqual(
      expect.objectContaining({
        state: 'queued',
        attempt: 3,
        notifiedAt: undefined,
        cancelReason: undefined,
        reportOrder: 7,
      }),
    );
  });

  it.each(['queued', 'notified', 'applying', 'succeeded', 'canceled', 'skipped', 'incompatible'] as const)(
    'refuses a %s execution',
    (state) => {
      expect(retry(execution(state))).toEqual({
        ok: false,
        error: expect.objectContaining({ code: 'NOT_RETRYABLE' }),
      });
    },
  );
});

describe('timeout sweep', () => {
  const timeout = 600;
  it.each([
    ['notified', T0 + 600_000, 'timed_out'],
    ['downloading', T0 + 600_000, 'timed_out'],
    ['applying', T0 + 900_000, 'timed_out'],
    ['installing', T0 + 599_999, undefined],
    ['queued', T0 + 10 ** 9, undefined],
    ['succeeded', T0 + 10 ** 9, undefined],
    ['timed_out', T0 + 10 ** 9, undefined],
  ] as const)('a %s device at %i ends %s', (state, now, expected) => {
    const result = timeOutIfDue(execution(state), now, timeout);
    if (expected === undefined) expect(result.kind).toBe('unchanged');
    else
      expect(result).toEqual(
        expect.objectContaining({ transition: { from: state, to: expected, reason: 'timeout' } }),
      );
  });

  it('ends a device that never confirmed a cancel as canceled, for the cancel reason', () => {
    const result = timeOutIfDue(execution('installing', { cancelReason: 'aborted' }), T0 + 600_000, timeout);
    expect(result).toEqual(
      expect.objectContaining({ transition: { from: 'installing', to: 'canceled', reason: 'aborted' } }),
    );
  });

  it('counts the deadline from the notification', () => {
    expect(deadlineOf(execution('downloading', { notifiedAt: T0 + 1 }), 60)).toBe(T0 + 60_001);
    expect(deadlineOf(execution('queued'), 60)).toBeUndefined();
  });
});

describe('every command produces only allowed transitions', () => {
  const states = [
    'queued',
    'notified',
    'downloading',
    'installing',
    'applying',
    'succeeded',
    'failed',
    'timed_out',
    'canceled',
    'skipped',
    'incompatible',
  ] as const;
  it.each(states)('from %s', (state) => {
    const outcomes = [
      notify(execution(state), T0),
      cancel(execution(state), 'aborted'),
      retry(execution(state)),
    ].flatMap((result) => (result.ok ? [result.value] : []));
    outcomes.push(supersede(execution(state)), timeOutIfDue(execution(state), T0 + 10 ** 9, 1));
    for (const outcome of outcomes) {
      if (outcome.kind === 'transition')
        expect(isAllowedTransition(outcome.transition.from, outcome.transition.to)).toBe(true);
    }
  });
});

describe('ownsDevice: whether a newer deployment\u2019s execution holds the device', () => {
  it('owns it once it reached the device, whatever its state now', () => {
    expect(ownsDevice(execution('notified', { notifiedAt: 1 }))).toBe(true);
    expect(ownsDevice(execution('succeeded', { notifiedAt: 1 }))).toBe(true);
    expect(ownsDevice(execution('canceled', { notifiedAt: 1 }))).toBe(true);
    // A retried attempt will be sent again.
    expect(ownsDevice(execution('queued', { attempt: 2 }))).toBe(true);
  });

  it('does not own a device it never reached', () => {
    expect(ownsDevice(execution('incompatible'))).toBe(false);
    // Canceled while it waited: never notified.
    expect(ownsDevice({ ...execution('queued'), state: 'canceled' })).toBe(false);
  });
});
