/**
 * `npm run bench [-- name ...]`: runs the benchmarks (all of them, or those named) one after the
 * other and writes each one's result to `bench/results/<name>.json`, with the machine beside it.
 *
 * To add a benchmark, write a module exporting a `Benchmark` and list it in `benchmarks` below.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { agentBenchmark } from './agent.ts';
import type { Benchmark } from './benchmark.ts';
import { fanoutBenchmark } from './fanout.ts';
import { sdkRequestBenchmark } from './sdk-request.ts';
import { shadowBenchmark } from './shadow.ts';

const benchmarks: readonly Benchmark[] = [
  shadowBenchmark,
  fanoutBenchmark,
  sdkRequestBenchmark,
  agentBenchmark,
];

const resultsDir = join(dirname(fileURLToPath(import.meta.url)), 'results');

function machine(): Record<string, unknown> {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    totalMemoryBytes: os.totalmem(),
    platform: `${os.platform()} ${os.release()}`,
    node: process.version,
    // The machine is shared: a high load average means the figures are pessimistic.
    loadAverage1mAtStart: Math.round((os.loadavg()[0] ?? 0) * 100) / 100,
  };
}

async function main(): Promise<void> {
  const wanted = process.argv.slice(2);
  const unknown = wanted.filter((name) => !benchmarks.some((b) => b.name === name));
  if (unknown.length > 0) {
    throw new Error(
      `Unknown benchmark(s): ${unknown.join(', ')}; known: ${benchmarks.map((b) => b.name).join(', ')}`,
    );
  }
  await mkdir(resultsDir, { recursive: true });
  for (const benchmark of benchmarks) {
    if (wanted.length > 0 && !wanted.includes(benchmark.name)) continue;
    console.log(`▶ ${benchmark.name}: ${benchmark.description}`);
    const started = new Date();
    // Taken before the run: the load average is the machine's, not the benchmark's own.
    const machineAtStart = machine();
    const outcome = await benchmark.run();
    const file = join(resultsDir, `${benchmark.name}.json`);
    const report = {
      benchmark: benchmark.name,
      description: benchmark.description,
      date: started.toISOString(),
      machine: machineAtStart,
      ...outcome,
    };
    await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
    const verdict = Object.entries(outcome.targetsMet)
      .map(([target, met]) => `${target}: ${met ? 'met' : 'MISSED'}`)
      .join(', ');
    console.log(`✔ ${benchmark.name} → ${file} (${verdict})`);
  }
}

await main();
