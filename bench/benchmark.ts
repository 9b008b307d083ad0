/** The contract between `bench/run.ts` and a benchmark module. */

export interface BenchmarkOutcome {
  /** What the benchmark aims for, in the units of `measurements`. */
  readonly targets: Readonly<Record<string, number>>;
  readonly measurements: Readonly<Record<string, unknown>>;
  /** One entry per target: was it met? */
  readonly targetsMet: Readonly<Record<string, boolean>>;
}

export interface Benchmark {
  /** File name of the result: `bench/results/<name>.json`. */
  readonly name: string;
  readonly description: string;
  run(): Promise<BenchmarkOutcome>;
}
