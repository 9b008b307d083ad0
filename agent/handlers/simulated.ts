import { agentError, failureOf, resultCodes, type StepResult } from '../codes.ts';
import type { StepContext, StepHandler } from './types.ts';

export const SIMULATED_HANDLER_ID = 'shadow-ota/simulated:1';

export interface SimulatedHandlerOptions {
  readonly downloadMs?: number;
  readonly installMs?: number;
  readonly applyMs?: number;
  /** Probability (0..1) that install fails. @default 0 */
  readonly failureRate?: number;
  /** @default Math.random */
  readonly random?: () => number;
}

const wait = (ms: number, signal: AbortSignal): Promise<boolean> =>
  new Promise((resolve) => {
    if (signal.aborted) return resolve(false);
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve(false);
    };
    // The listener goes when the wait ends, or every phase of every step would leave one behind.
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });

/**
 * For load tests and demos: pretends to download, install and apply (waits), fails at the given
 * rate, and remembers what it installed (by installedCriteria) so a second deployment is skipped.
 * Used for every handler id by `shadow-ota-agent simulate`.
 */
export function makeSimulatedHandler(options: SimulatedHandlerOptions = {}): StepHandler {
  const random = options.random ?? Math.random;
  const installed = new Set<string>();
  const phase = async (ctx: StepContext, ms: number | undefined, success: number): Promise<StepResult> => {
    if (!(await wait(ms ?? 0, ctx.signal))) return failureOf(agentError('CANCELED', 'simulation stopped'));
    return { resultCode: success, extendedResultCode: 0 };
  };
  return {
    filesForIsInstalled: () => [],
    isInstalled: async (ctx) => ({
      resultCode:
        ctx.installedCriteria && installed.has(ctx.installedCriteria)
          ? resultCodes.isInstalledInstalled
          : resultCodes.isInstalledNotInstalled,
      extendedResultCode: 0,
    }),
    download: (ctx) => phase(ctx, options.downloadMs, resultCodes.downloadSuccess),
    install: async (ctx) => {
      const result = await phase(ctx, options.installMs, resultCodes.installSuccess);
      if (result.resultCode > 0 && random() < (options.failureRate ?? 0)) {
        return failureOf(agentError('SIMULATED_FAILURE', 'the simulated install failed', false));
      }
      return result;
    },
    apply: async (ctx) => {
      const result = await phase(ctx, options.applyMs, resultCodes.applySuccess);
      if (result.resultCode > 0 && ctx.installedCriteria) installed.add(ctx.installedCriteria);
      return result;
    },
    cancel: async () => ({ resultCode: resultCodes.cancelSuccess, extendedResultCode: 0 }),
  };
}
