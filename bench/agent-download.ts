/**
 * Child process of the agent benchmark (bench/agent.ts): runs the agent's real downloader
 * (agent/downloader.ts) on one presigned URL and reports how long it took and how much memory the
 * process held. It runs alone in its process, under tsx as the agent does (agent/bin.js), so its
 * resident set is what a device would see.
 *
 * Once its start-up is over it sends `{ ready: true }`; then input: one IPC message `DownloadJob`.
 * Output: one IPC message `DownloadReport`, then exit.
 */
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { downloadFile } from '../agent/downloader.ts';
import { ok } from '../lambdas/domain/result.ts';

export interface DownloadJob {
  readonly url: string;
  readonly sizeInBytes: number;
  readonly sha256: string;
  readonly destination: string;
}

/** The child has started and settled: the job can be sent. */
export interface ReadyMessage {
  readonly ready: true;
}

export type DownloadReport =
  | {
      readonly ok: true;
      readonly seconds: number;
      /** CPU time of the whole process (every thread, user and kernel) during the download. */
      readonly cpuSeconds: number;
      readonly bytes: number;
      /** RSS before the download started: Node, tsx and the agent's modules. */
      readonly baselineRssBytes: number;
      /** Highest RSS sampled every 50 ms during the download. */
      readonly peakRssSampledBytes: number;
      /**
       * The kernel's RSS high-water mark for this process image (Linux VmHWM). Not getrusage's
       * ru_maxrss: across fork + exec Linux carries over the parent's RSS at the fork, so a child
       * of a big parent would report the parent's size.
       */
      readonly maxRssBytes: number;
      readonly samples: number;
    }
  | { readonly ok: false; readonly error: string };

const sampleEveryMs = 50;

/** Samples RSS on a timer; the timer keeps running while the downloader awaits I/O. */
function startRssSampler(): { stop(): { peak: number; samples: number } } {
  let peak = process.memoryUsage.rss();
  let samples = 1;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
    samples += 1;
  }, sampleEveryMs);
  return {
    stop: () => {
      clearInterval(timer);
      peak = Math.max(peak, process.memoryUsage.rss());
      return { peak, samples: samples + 1 };
    },
  };
}

/** VmHWM from /proc/self/status, in bytes; where there is no /proc, the highest sample stands in. */
async function highWaterRss(): Promise<number> {
  const status = await readFile('/proc/self/status', 'utf8').catch(() => '');
  const kilobytes = /^VmHWM:\s+(\d+) kB$/m.exec(status)?.[1];
  return kilobytes === undefined ? process.memoryUsage.rss() : Number(kilobytes) * 1024;
}

async function runJob(job: DownloadJob): Promise<DownloadReport> {
  const baselineRssBytes = process.memoryUsage.rss();
  const sampler = startRssSampler();
  const started = process.hrtime.bigint();
  const cpuBefore = process.cpuUsage();
  const result = await downloadFile({
    fileId: 'bench',
    expected: { sizeInBytes: job.sizeInBytes, sha256: job.sha256 },
    destination: job.destination,
    source: { url: async () => ok(job.url) },
    retry: { attempts: 1, baseDelayMs: 0, maxDelayMs: 0 },
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const cpu = process.cpuUsage(cpuBefore);
  const { peak, samples } = sampler.stop();
  if (!result.ok) return { ok: false, error: `${result.error.code}: ${result.error.message}` };
  return {
    ok: true,
    seconds,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    bytes: result.value.bytes,
    baselineRssBytes,
    peakRssSampledBytes: peak,
    maxRssBytes: await highWaterRss(),
    samples,
  };
}

const settleWindowMs = 50;
const settleLimitMs = 3000;
/** Less CPU than this (µs, every thread) in a window counts as idle. */
const idleCpuMicros = 2000;

const cpuMicros = (): number => {
  const { user, system } = process.cpuUsage();
  return user + system;
};

/**
 * Resolves once this process's start-up work is over. V8 goes on compiling the loaded modules on
 * background threads for a few hundred ms after they have run (about 0.3 CPU-s here), and a
 * running agent downloads long after its start: timed with the download, that work took the
 * second core from the download's threads (0.80 of SHA-256 in memory against 0.83 when settled,
 * in interleaved runs).
 */
async function settled(): Promise<void> {
  let last = cpuMicros();
  for (let waited = 0; waited < settleLimitMs; waited += settleWindowMs) {
    await sleep(settleWindowMs);
    const now = cpuMicros();
    if (now - last < idleCpuMicros) return;
    last = now;
  }
}

process.once('message', (job: DownloadJob) => {
  runJob(job)
    .catch((error: unknown) => ({ ok: false as const, error: String(error) }))
    .then((report) => process.send?.(report, () => process.exit(0)));
});

await settled();
process.send?.({ ready: true } satisfies ReadyMessage);
