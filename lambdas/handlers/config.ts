/** Configuration is missing or malformed: a deployment bug, so it throws (once, at cold start). */
export class ConfigurationError extends Error {
  override readonly name = 'ConfigurationError';
  constructor(
    message: string,
    readonly variables: readonly string[],
  ) {
    super(message);
  }
}

export type Environment = Readonly<Record<string, string | undefined>>;

/**
 * Reads the named variables, all of them required: `fromEnv({ table: 'UPDATES_TABLE' })(process.env)`
 * gives `{ table: '...' }` or throws one error naming every variable that is missing or empty.
 */
export function fromEnv<const Spec extends Record<string, string>>(
  spec: Spec,
): (env: Environment) => { readonly [K in keyof Spec]: string } {
  return (env) => {
    const missing = Object.values(spec).filter((name) => !env[name]);
    if (missing.length > 0) {
      throw new ConfigurationError(`Missing environment variable(s): ${missing.join(', ')}`, missing);
    }
    return Object.fromEntries(Object.entries(spec).map(([key, name]) => [key, env[name] as string])) as {
      readonly [K in keyof Spec]: string;
    };
  };
}

/** A positive integer from the environment, or `fallback` when the variable is unset. */
export function positiveIntegerFromEnv(env: Environment, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) {
    throw new ConfigurationError(`${name} must be a positive integer, not "${raw}"`, [name]);
  }
  return value;
}
