import type { StepResult } from '../codes.ts';
import type { Logger } from '../log.ts';

/** A component of the device (ADU's component enumerator): what reference steps are applied to. */
export interface Component {
  readonly id: string;
  readonly name: string;
  readonly group?: string;
  readonly manufacturer?: string;
  readonly model?: string;
  readonly version?: string;
  readonly properties?: Readonly<Record<string, string>>;
}

/** One verified file of a step, already in the work folder. */
export interface StepFile {
  readonly fileId: string;
  readonly fileName: string;
  /** Absolute path inside the work folder; only ever set after the file's hash verified. */
  readonly path: string;
  readonly sizeInBytes: number;
  readonly sha256: string;
}

/** Everything a handler gets for one step. */
export interface StepContext {
  /** The handler id from the manifest, e.g. `microsoft/script:1`. */
  readonly handler: string;
  readonly handlerProperties: Readonly<Record<string, unknown>>;
  readonly installedCriteria?: string;
  /** The step's files. Before `download`, only those named by `filesForIsInstalled` exist on disk. */
  readonly files: readonly StepFile[];
  /** The step's own folder inside the agent's work directory. */
  readonly workFolder: string;
  /** Set when the step belongs to a child update applied to this component. */
  readonly component?: Component;
  /** Aborted when the deployment is canceled or the agent stops. */
  readonly signal: AbortSignal;
  readonly log: Logger;
}

/**
 * A step handler, as ADU's content handlers: each call answers with an ADU result code.
 * - `isInstalled`: 900 installed (the step is skipped) or 901 not installed.
 * - `download`: after the agent downloaded and verified the step's files (500 success).
 * - `install` (600, or 605/606 to ask for a reboot), `apply` (700, or 705/706).
 * - `cancel`: best effort (800, or 801 unable to cancel).
 * Handlers never throw for an expected failure: they return a failure code (<= 0).
 */
export interface StepHandler {
  /** File ids (of `ctx.files`) needed before `isInstalled` can answer; the rest wait until it says 901. */
  filesForIsInstalled?(
    ctx: Omit<StepContext, 'files'> & { readonly files: readonly Omit<StepFile, 'path'>[] },
  ): readonly string[];
  isInstalled(ctx: StepContext): Promise<StepResult>;
  download?(ctx: StepContext): Promise<StepResult>;
  install(ctx: StepContext): Promise<StepResult>;
  apply(ctx: StepContext): Promise<StepResult>;
  cancel(ctx: StepContext): Promise<StepResult>;
}

/** Handlers by handler id (`microsoft/script:1`); users add their own. */
export interface HandlerRegistry {
  get(handlerId: string): StepHandler | undefined;
}
