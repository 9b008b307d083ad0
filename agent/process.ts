import { spawn } from 'node:child_process';

export interface ProcessOptions {
  readonly cwd: string;
  /** The whole environment of the child: the agent's own (which may hold credentials) is not passed on. */
  readonly env: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
  /** How much of stdout+stderr to keep (the tail). @default 4096 */
  readonly keepOutputBytes?: number;
}

export interface ProcessOutcome {
  /** Null when the process did not exit by itself (killed, or never started). */
  readonly exitCode: number | null;
  readonly timedOut: boolean;
  readonly aborted: boolean;
  /** Set when the program could not be started (missing, not executable). */
  readonly startError?: string;
  /** The last bytes of stdout and stderr together. */
  readonly output: string;
}

/** The environment handed to scripts and tools: a fixed PATH and locale, nothing inherited. */
export const childEnvironment: Readonly<Record<string, string>> = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  LANG: 'C.UTF-8',
};

/**
 * Runs a program without a shell: `args` go to it as an argv array, so nothing in them is ever
 * interpreted (no globbing, no `;`, no `$(...)`). Kills it (SIGTERM, then SIGKILL) on timeout or abort.
 */
export function runProcess(
  command: string,
  args: readonly string[],
  options: ProcessOptions,
): Promise<ProcessOutcome> {
  const keep = options.keepOutputBytes ?? 4096;
  return new Promise((resolve) => {
    let output = '';
    let timedOut = false;
    let aborted = false;
    let settled = false;
    const child = spawn(command, [...args], {
      cwd: options.cwd,
      env: { ...options.env },
      shell: false,
      // Its own process group, so a stop reaches what the script started too (a `sleep` holding the pipes).
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const collect = (chunk: Buffer): void => {
      output = (output + chunk.toString('utf8')).slice(-keep);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    const signalGroup = (signal: NodeJS.Signals): void => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, signal);
      } catch {
        child.kill(signal);
      }
    };
    const kill = (): void => {
      signalGroup('SIGTERM');
      setTimeout(() => signalGroup('SIGKILL'), 2000).unref();
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, options.timeoutMs);
    const onAbort = (): void => {
      aborted = true;
      kill();
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const finish = (outcome: ProcessOutcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      resolve(outcome);
    };
    child.on('error', (e) => finish({ exitCode: null, timedOut, aborted, startError: e.message, output }));
    child.on('close', (code) => finish({ exitCode: code, timedOut, aborted, output }));
  });
}
