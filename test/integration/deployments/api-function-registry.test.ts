import { describe, expect, it } from 'vitest';
import { type AsyncInvocationFailure, makeFunctionRegistry } from '../../../local/functions.ts';

describe('the local function registry', () => {
  it('invokes asynchronously with a copy of the event, after the caller has moved on', async () => {
    const registry = makeFunctionRegistry();
    const seen: unknown[] = [];
    registry.register('fanoutWorker', (event: { n: number }) => {
      seen.push(event);
    });
    const event = { n: 1 };
    await registry.invoke('fanoutWorker', event);
    event.n = 2;
    expect(seen).toEqual([]);
    await registry.idle();
    expect(seen).toEqual([{ n: 1 }]);
  });

  it('retries a failing async invocation twice, then reports it to the on-failure destination', async () => {
    const failures: AsyncInvocationFailure[] = [];
    const registry = makeFunctionRegistry({ retryDelaysMs: [1, 1], onAsyncFailure: (f) => failures.push(f) });
    let calls = 0;
    registry.register('scheduler', () => {
      calls++;
      throw new Error('boom');
    });
    await registry.invoke('scheduler', { tick: 1 });
    await registry.idle();
    expect(calls).toBe(3);
    expect(failures).toMatchObject([{ name: 'scheduler', event: { tick: 1 }, attempts: 3 }]);
  });

  it('refuses an unknown function at once and resolves a known one for the rules engine', async () => {
    const registry = makeFunctionRegistry();
    await expect(registry.invoke('acknowledge', {})).rejects.toThrow(/acknowledge/);
    expect(registry.resolve('acknowledge')).toBeUndefined();
    registry.register('acknowledge', (event: { a: number }, context) => ({
      a: event.a,
      fn: context.functionName,
    }));
    expect(await registry.resolve('acknowledge')?.({ a: 5 })).toEqual({ a: 5, fn: 'acknowledge' });
    expect(await registry.call('acknowledge', { a: 6 })).toEqual({ a: 6, fn: 'acknowledge' });
  });

  it('waits for the handler when asked for a synchronous invocation', async () => {
    const registry = makeFunctionRegistry();
    let done = false;
    registry.register('countersStream', async () => {
      await new Promise((resolve) => setTimeout(resolve, 20));
      done = true;
    });
    await registry.invoke('countersStream', {}, { async: false });
    expect(done).toBe(true);
  });

  it('drains: running and new invocations read no time left, and waits through sleep end at once', async () => {
    const registry = makeFunctionRegistry({ timeoutMs: 60_000 });
    const remaining: number[] = [];
    let slept = -1;
    registry.register('fanoutWorker', async (_event: unknown, context) => {
      remaining.push(context.getRemainingTimeInMillis());
      const before = Date.now();
      await registry.sleep(30_000);
      slept = Date.now() - before;
      remaining.push(context.getRemainingTimeInMillis());
    });
    await registry.invoke('fanoutWorker', {});
    await new Promise((resolve) => setTimeout(resolve, 20));
    registry.drain();
    await registry.idle();
    expect(remaining[0]).toBeGreaterThan(59_000);
    expect(remaining[1]).toBe(0);
    expect(slept).toBeLessThan(5_000);
    // A new invocation after the drain gets no time either, and its waits do not wait.
    await registry.invoke('fanoutWorker', {});
    await registry.idle();
    expect(remaining.slice(2)).toEqual([0, 0]);
    expect(slept).toBeLessThan(5_000);
  });
});
