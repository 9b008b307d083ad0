/**
 * The agent's logger: one JSON line per event on stderr. Messages and fields pass through `redact`,
 * so a URL (presigned: its query is a credential) or a secret never reaches a log.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFields = Readonly<Record<string, unknown>>;

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

const levels: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const secretKeys =
  /^(url|urls|files|credentials|secretAccessKey|sessionToken|accessKeyId|signature|key|cert)$/i;

/** Replaces URLs in a text with `<url>`. */
export function redactText(text: string): string {
  return text.replace(/\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>]+/gi, '<url>');
}

/** Redacts URLs in strings and drops the values of keys that hold secrets, at any depth. */
export function redact(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return redactText(value);
  if (value instanceof Error) return redactText(value.message);
  if (depth > 5 || typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1));
  return Object.fromEntries(
    Object.entries(value).map(([k, v]) => [k, secretKeys.test(k) ? '<redacted>' : redact(v, depth + 1)]),
  );
}

export interface LoggerOptions {
  readonly level?: LogLevel;
  readonly write?: (line: string) => void;
  readonly base?: LogFields;
}

export function makeLogger(options: LoggerOptions = {}): Logger {
  const min = levels[options.level ?? 'info'];
  const write = options.write ?? ((line: string) => process.stderr.write(`${line}\n`));
  const base = options.base ?? {};
  const emit = (level: LogLevel, message: string, fields?: LogFields): void => {
    if (levels[level] < min) return;
    const entry = { time: new Date().toISOString(), level, message: redactText(message), ...base, ...fields };
    write(JSON.stringify(redact(entry)));
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (fields) => makeLogger({ ...options, base: { ...base, ...fields } }),
  };
}

/** A logger that drops everything (tests, simulated devices). */
export const silentLogger: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  child: () => silentLogger,
};
