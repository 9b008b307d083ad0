/** What a command may touch, passed in so commands stay testable and free of globals. */
export interface CliIo {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  readonly readFile: (path: string) => Promise<Uint8Array>;
}

/** Exit codes, part of the CLI's stable interface. */
export const exitCodes = { ok: 0, invalid: 1, usage: 2 } as const;
