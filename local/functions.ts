/**
 * The local cloud's stand-in for Lambda: one registry of in-process handlers, by the logical names
 * of lambdas/definitions/api.ts. The IoT rules engine resolves a rule's `lambda.function` here, the
 * scheduler timer and the stream poller call through it, and handlers that start another function
 * (`FunctionInvoker`) get `invoke`, which behaves like `InvocationType: Event`: it returns once the
 * event is accepted and the handler runs on its own, with a fresh copy of the event.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as wait } from 'node:timers/promises';
import type { Context } from 'aws-lambda';
import type { FunctionInvoker, InvocableFunction } from '../lambdas/adapters/function-invoker.ts';

/** A deployed module's `handler`, as the local cloud calls it. */
export type LocalFunctionHandler = (event: never, context: Context) => unknown;

export interface AsyncInvocationFailure {
  readonly name: InvocableFunction;
  readonly event: unknown;
  readonly error: unknown;
  readonly attempts: number;
}

export interface FunctionRegistryOptions {
  /** Lambda retries a failed async invocation twice; these are the pauses before each retry. @default [100, 200] */
  readonly retryDelaysMs?: readonly number[];
  /** Where an async invocation that failed every attempt goes (Lambda's on-failure destination). */
  readonly onAsyncFailure?: (failure: AsyncInvocationFailure) => void;
  /** The timeout `context.getRemainingTimeInMillis()` counts down from. @default 900_000 (Lambda's maximum) */
  readonly timeoutMs?: number;
  /** Epoch ms. @default Date.now */
  readonly now?: () => number;
}

export interface FunctionRegistry extends FunctionInvoker {
  register(name: InvocableFunction, handler: LocalFunctionHandler): void;
  /** The handler registered under `name`, typed for callers with their own event (rules engine, timers). */
  resolve(name: string): ((event: unknown, context?: Context) => Promise<unknown>) | undefined;
  /** `{ async: true }`: like `Invoke` with `InvocationType: Event`; otherwise waits for the result. */
  invoke(name: InvocableFunction, event: unknown, options?: { readonly async?: boolean }): Promise<void>;
  /** Calls the function and returns its result (`InvocationType: RequestResponse`). */
  call(name: InvocableFunction, event: unknown): Promise<unknown>;
  /** Resolves when every async invocation started so far has finished, retries included. */
  idle(): Promise<void>;
  /**
   * The local cloud is stopping: from now on every invocation's remaining time reads 0, running or
   * new, as when a Lambda's timeout comes. The handlers that watch it (the fan-out worker, the
   * scheduler) then hand over at their next step instead of working on for minutes, and their
   * waits through `sleep` end at once. Nothing is dropped: what they hand over is in the tables.
   */
  drain(): void;
  /** A handler's in-process wait: a timer that ends early once the registry drains. */
  sleep(ms: number): Promise<void>;
}

export class FunctionNotRegisteredError extends Error {
  override readonly name = 'FunctionNotRegisteredError';
  constructor(readonly functionName: string) {
    super(`No local function is registered as "${functionName}"`);
  }
}

export function makeFunctionRegistry(options: FunctionRegistryOptions = {}): FunctionRegistry {
  const handlers = new Map<string, LocalFunctionHandler>();
  const running = new Set<Promise<void>>();
  const now = options.now ?? Date.now;
  const retryDelays = options.retryDelaysMs ?? [100, 200];
  const timeoutMs = options.timeoutMs ?? 900_000;
  const draining = new AbortController();

  function contextFor(name: string): Context {
    const started = now();
    return {
      callbackWaitsForEmptyEventLoop: false,
      functionName: name,
      functionVersion: '$LATEST',
      invokedFunctionArn: `arn:aws:lambda:us-east-1:123456789012:function:${name}`,
      memoryLimitInMB: '1024',
      awsRequestId: randomUUID(),
      logGroupName: `/aws/lambda/${name}`,
      logStreamName: 'local',
      getRemainingTimeInMillis: () =>
        draining.signal.aborted ? 0 : Math.max(0, timeoutMs - (now() - started)),
      done: () => undefined,
      fail: () => undefined,
      succeed: () => undefined,
    };
  }

  function handlerOf(name: string): LocalFunctionHandler {
    const handler = handlers.get(name);
    if (!handler) throw new FunctionNotRegisteredError(name);
    return handler;
  }

  // Each invocation deserialises its own event in Lambda; a copy keeps callers from sharing objects.
  const call = async (name: string, event: unknown, context?: Context): Promise<unknown> =>
    handlerOf(name)(structuredClone(event) as never, context ?? contextFor(name));

  async function runWithRetries(name: InvocableFunction, event: unknown): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await call(name, event);
        return;
      } catch (error) {
        const delay = retryDelays[attempt - 1];
        if (delay === undefined) {
          if (options.onAsyncFailure) options.onAsyncFailure({ name, event, error, attempts: attempt });
          else console.error(`[functions] ${name} failed ${attempt} time(s)`, error);
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  function startAsync(name: InvocableFunction, event: unknown): void {
    handlerOf(name); // An unknown function is refused at once, as Lambda refuses the Invoke call.
    const copy = structuredClone(event);
    const run = new Promise<void>((resolve) => setImmediate(resolve)).then(() => runWithRetries(name, copy));
    running.add(run);
    void run.finally(() => running.delete(run));
  }

  return {
    register(name, handler) {
      handlers.set(name, handler);
    },
    resolve(name) {
      if (!handlers.has(name)) return undefined;
      return (event, context) => call(name, event, context);
    },
    async invoke(name, event, invokeOptions = { async: true }) {
      if (invokeOptions.async === false) {
        await call(name, event);
        return;
      }
      startAsync(name, event);
    },
    call: (name, event) => call(name, event),
    async idle() {
      while (running.size > 0) await Promise.allSettled([...running]);
    },
    drain() {
      draining.abort();
    },
    sleep: (ms) => wait(ms, undefined, { signal: draining.signal }).catch(() => undefined),
  };
}
