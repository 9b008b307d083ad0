/**
 * Agent benchmark (issue 5): download-and-verify throughput and peak memory of the agent's real
 * downloader (agent/downloader.ts) on a 1 GiB artifact served by the local S3 (local/s3.ts: the
 * SigV4-checking gateway in front of s3rver) through a presigned GET, and again on 100 MiB to show
 * that memory does not grow with the size.
 *
 * The yardstick is this machine's SHA-256 speed, measured in the same run over the same file read
 * from disk in chunks (node:crypto), just before and just after the download; the faster of the two
 * is used, so a busy moment does not make the target easier; SHA-256 of data already in memory, the
 * stricter reading, is measured the same way around the downloads and judged beside it. Each size is
 * downloaded `BENCH_AGENT_RUNS` times (default 5: single downloads vary by a tenth here) and the
 * median taken. Two ceilings that bound any download-to-disk are measured beside it, on the same
 * bytes: writing the file to disk (1 MiB writes + fsync), and the local S3 serving it to a client
 * that discards it.
 *
 * The downloader runs in a child process (bench/agent-download.ts) so its resident set is its own:
 * RSS sampled every 50 ms and the kernel's high-water mark (VmHWM). It runs as plain JavaScript
 * bundled by esbuild with the settings of the shipped agent (agent/build.ts, `npm run build:agent`;
 * throughput and the judged peak memory are taken from these runs), then once under tsx as
 * agent/bin.js starts it in a development checkout where no bundle was built (reported, not judged:
 * tsx's loader thread alone costs about 37 MB).
 *
 * `BENCH_AGENT_SIZES_MIB=100,1024` overrides the sizes (e.g. `=100` for a quick look); the default
 * is what the issue asks for.
 */
import { fork } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, open, readdir, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { finished } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { build } from 'esbuild';
import { freeBytesOnDisk } from '../agent/downloader.ts';
import { httpGet } from '../agent/http-get.ts';
import { localS3Credentials, type RunningS3Server, startS3Server } from '../local/s3.ts';
import type { DownloadJob, DownloadReport } from './agent-download.ts';
import type { Benchmark, BenchmarkOutcome } from './benchmark.ts';

const MiB = 1 << 20;
const MB = 1e6;
const targets = { throughputToSha256Ratio: 0.8, peakMemoryMB: 100 } as const;
const defaultSizesMiB = [1024, 100] as const;
const bucket = 'bench-artifacts';
const region = 'us-east-1';
const here = dirname(fileURLToPath(import.meta.url));

/** How the child process runs the downloader. */
interface Runner {
  readonly script: string;
  readonly execArgv: readonly string[];
}

interface MemoryFigures {
  readonly baselineRssMB: number;
  readonly peakRssSampledMB: number;
  readonly maxRssMB: number;
  readonly peakMemoryMB: number;
}

interface Yardstick {
  readonly before: number;
  readonly after: number;
  readonly used: number;
}

interface SizeResult {
  readonly sizeBytes: number;
  readonly sha256FileMBps: Yardstick;
  readonly sha256InMemoryMBps: Yardstick;
  readonly diskWriteMBps: number;
  readonly localS3GetMBps: number;
  readonly downloadSeconds: number;
  /** The median of the bundled downloads. */
  readonly downloadMBps: number;
  readonly downloadRunsMBps: readonly number[];
  /** The agent process's CPU time per GiB downloaded (all its threads), median of the bundled runs. */
  readonly agentCpuSecondsPerGiB: number;
  readonly ratioToSha256: number;
  readonly ratioToSha256InMemory: number;
  readonly ratioToDiskWrite: number;
  readonly ratioToLocalS3Get: number;
  readonly memoryBundled: MemoryFigures;
  readonly memoryUnderTsx: MemoryFigures & { readonly downloadMBps: number };
}

const round = (value: number, digits = 1): number => Math.round(value * 10 ** digits) / 10 ** digits;
const secondsSince = (started: bigint): number => Number(process.hrtime.bigint() - started) / 1e9;

/** Bundled downloads per size; the median is reported, so one busy moment neither flatters nor sinks it. */
function runsFromEnvironment(): number {
  const runs = Number(process.env.BENCH_AGENT_RUNS ?? 5);
  if (!Number.isInteger(runs) || runs <= 0) {
    throw new Error(`BENCH_AGENT_RUNS must be a positive integer, got "${process.env.BENCH_AGENT_RUNS}"`);
  }
  return runs;
}

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
};

const yardstick = (before: number, after: number): Yardstick => ({
  before: round(before),
  after: round(after),
  used: round(Math.max(before, after)),
});

function sizesFromEnvironment(): readonly number[] {
  const text = process.env.BENCH_AGENT_SIZES_MIB;
  if (!text) return defaultSizesMiB;
  const sizes = text.split(',').map(Number);
  if (sizes.some((size) => !Number.isInteger(size) || size <= 0)) {
    throw new Error(`BENCH_AGENT_SIZES_MIB must be positive integers (MiB), got "${text}"`);
  }
  return sizes;
}

/**
 * Writes `bytes` of incompressible data without holding it: one random MiB repeated, each copy
 * stamped with its index so no two MiB are equal.
 */
async function writeArtifact(path: string, bytes: number): Promise<void> {
  const block = randomBytes(MiB);
  const out = createWriteStream(path, { highWaterMark: 4 * MiB });
  for (let offset = 0, index = 0; offset < bytes; offset += MiB, index += 1) {
    const piece = Buffer.from(block.subarray(0, Math.min(MiB, bytes - offset)));
    piece.writeUInt32BE(index, 0);
    if (!out.write(piece)) await once(out, 'drain');
  }
  out.end();
  await finished(out);
}

/**
 * Flushes every file under `directory` to disk. The set-up writes GiBs through the page cache (the
 * source, the S3 object); left dirty, the kernel writes them back 30 s later, in the middle of the
 * timed downloads, whose own writes then wait behind them.
 */
async function flushWrites(directory: string): Promise<void> {
  const entries = await readdir(directory, { recursive: true, withFileTypes: true });
  for (const entry of entries.filter((e) => e.isFile())) {
    const handle = await open(join(entry.parentPath, entry.name), 'r');
    await handle.sync().finally(() => handle.close());
  }
}

/** SHA-256 over the file read in 1 MiB chunks: the speed the downloader's verification is held to. */
async function sha256OfFile(path: string, bytes: number): Promise<{ sha256: string; mbPerSecond: number }> {
  const hash = createHash('sha256');
  const started = process.hrtime.bigint();
  for await (const chunk of createReadStream(path, { highWaterMark: MiB })) hash.update(chunk as Buffer);
  return { sha256: hash.digest('base64'), mbPerSecond: bytes / MB / secondsSince(started) };
}

/** SHA-256 of data already in memory: the CPU's ceiling, for reference. */
function sha256InMemoryMBps(): number {
  const data = randomBytes(64 * MiB);
  const rounds = 8;
  const started = process.hrtime.bigint();
  for (let i = 0; i < rounds; i += 1) createHash('sha256').update(data).digest();
  return (rounds * data.length) / MB / secondsSince(started);
}

/** Copies the file with 1 MiB writes and an fsync: what putting these bytes on this disk costs. */
async function diskWriteMBps(source: string, target: string, bytes: number): Promise<number> {
  const out = await open(target, 'w');
  const started = process.hrtime.bigint();
  try {
    for await (const chunk of createReadStream(source, { highWaterMark: MiB }))
      await out.write(chunk as Buffer);
    await out.sync();
  } finally {
    await out.close();
  }
  const mbPerSecond = bytes / MB / secondsSince(started);
  await unlink(target);
  return mbPerSecond;
}

/**
 * The local S3 serving the object to a client that only counts the bytes: the server's ceiling.
 * The client is the agent's own GET (agent/http-get.ts) reading into one reused buffer, so the
 * figure is the server's, not a client's (node:http's client alone was slower than the download).
 */
async function localS3GetMBps(url: string): Promise<number> {
  const started = process.hrtime.bigint();
  const region = Buffer.allocUnsafe(4 * MiB);
  let bytes = 0;
  const response = await httpGet(url, {}, { idleMs: 30_000, signal: undefined });
  await response.readBody({
    region: () => region,
    received: (n) => {
      bytes += n;
      return true;
    },
  });
  return bytes / MB / secondsSince(started);
}

async function uploadArtifact(s3: S3Client, key: string, path: string, bytes: number): Promise<void> {
  await s3.send(
    new PutObjectCommand({ Bucket: bucket, Key: key, Body: createReadStream(path), ContentLength: bytes }),
  );
}

/** Bundles the child script (and the downloader with it) into plain JavaScript, as a device would run it. */
async function bundleDownloader(directory: string): Promise<Runner> {
  const outfile = join(directory, 'agent-download.mjs');
  await build({
    entryPoints: [join(here, 'agent-download.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile,
    logLevel: 'warning',
  });
  return { script: outfile, execArgv: [] };
}

const tsxRunner: Runner = { script: join(here, 'agent-download.ts'), execArgv: ['--import', 'tsx'] };

/** Runs the agent's downloader in its own process and waits for its report. */
async function downloadInChild(runner: Runner, job: DownloadJob): Promise<DownloadReport & { ok: true }> {
  const child = fork(runner.script, [], {
    execArgv: [...runner.execArgv],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise<never>((_, reject) => {
    child.once('exit', (code) =>
      reject(new Error(`the download process exited with ${code} before reporting`)),
    );
  });
  exited.catch(() => undefined);
  // The job goes only once the child has settled: its start-up is not part of a download.
  await Promise.race([once(child, 'message'), exited]);
  const reported = once(child, 'message') as Promise<[DownloadReport]>;
  child.send(job);
  const [report] = await Promise.race([reported, exited]);
  if (!report.ok) throw new Error(`the agent's download failed: ${report.error}`);
  return report;
}

function memoryOf(report: DownloadReport & { ok: true }): MemoryFigures {
  return {
    baselineRssMB: round(report.baselineRssBytes / MB),
    peakRssSampledMB: round(report.peakRssSampledBytes / MB),
    maxRssMB: round(report.maxRssBytes / MB),
    peakMemoryMB: round(Math.max(report.peakRssSampledBytes, report.maxRssBytes) / MB),
  };
}

async function measureSize(
  s3: S3Client,
  directory: string,
  bundled: Runner,
  sizeMiB: number,
  runs: number,
): Promise<SizeResult> {
  const sizeBytes = sizeMiB * MiB;
  const source = join(directory, `source-${sizeMiB}`);
  const key = `bench/artifact-${sizeMiB}.bin`;
  await writeArtifact(source, sizeBytes);
  await flushWrites(directory);
  const before = await sha256OfFile(source, sizeBytes);
  const disk = await diskWriteMBps(source, join(directory, `copy-${sizeMiB}`), sizeBytes);
  await uploadArtifact(s3, key, source, sizeBytes);
  await flushWrites(directory);
  const url = await getSignedUrl(s3, new GetObjectCommand({ Bucket: bucket, Key: key }), { expiresIn: 3600 });
  const server = await localS3GetMBps(url);
  const job = (run: string): DownloadJob => ({
    url,
    sizeInBytes: sizeBytes,
    sha256: before.sha256,
    destination: join(directory, `downloaded-${sizeMiB}-${run}`),
  });
  const inMemoryBefore = sha256InMemoryMBps();
  const plain: (DownloadReport & { ok: true })[] = [];
  // Each run to a file of its own, all deleted after the runs: deleting a GiB right before a timed
  // run (ext4 here discards the freed blocks, and the host then punches them out) cost the next
  // download 0.02-0.04 of the ratio in interleaved runs.
  for (let run = 0; run < runs; run += 1) plain.push(await downloadInChild(bundled, job(String(run))));
  const inMemoryAfter = sha256InMemoryMBps();
  await Promise.all(plain.map((_, run) => unlink(job(String(run)).destination)));
  const underTsx = await downloadInChild(tsxRunner, job('tsx'));
  await unlink(job('tsx').destination);
  const after = await sha256OfFile(source, sizeBytes);
  await unlink(source);
  const fileYardstick = yardstick(before.mbPerSecond, after.mbPerSecond);
  const inMemory = yardstick(inMemoryBefore, inMemoryAfter);
  const seconds = median(plain.map((report) => report.seconds));
  const downloadMBps = sizeBytes / MB / seconds;
  const peakBundled = plain.reduce((a, b) => (b.maxRssBytes > a.maxRssBytes ? b : a));
  return {
    sizeBytes,
    sha256FileMBps: fileYardstick,
    sha256InMemoryMBps: inMemory,
    diskWriteMBps: round(disk),
    localS3GetMBps: round(server),
    downloadSeconds: round(seconds, 2),
    downloadMBps: round(downloadMBps),
    downloadRunsMBps: plain.map((report) => round(sizeBytes / MB / report.seconds)),
    agentCpuSecondsPerGiB: round(
      median(plain.map((report) => report.cpuSeconds)) / (sizeBytes / (1 << 30)),
      2,
    ),
    ratioToSha256: round(downloadMBps / fileYardstick.used, 3),
    ratioToSha256InMemory: round(downloadMBps / inMemory.used, 3),
    ratioToDiskWrite: round(downloadMBps / disk, 3),
    ratioToLocalS3Get: round(downloadMBps / server, 3),
    memoryBundled: memoryOf(peakBundled),
    memoryUnderTsx: { ...memoryOf(underTsx), downloadMBps: round(sizeBytes / MB / underTsx.seconds) },
  };
}

async function startLocalS3(directory: string): Promise<{ server: RunningS3Server; s3: S3Client }> {
  const server = await startS3Server({ host: '127.0.0.1', port: 0, directory, buckets: [bucket] });
  const s3 = new S3Client({
    endpoint: server.endpoint,
    region,
    forcePathStyle: true,
    credentials: localS3Credentials,
  });
  return { server, s3 };
}

function logRun(sizeMiB: number, r: SizeResult): void {
  console.log(
    `  ${sizeMiB} MiB: ${r.downloadMBps} MB/s (median of ${r.downloadRunsMBps.join(', ')}) = ` +
      `${r.ratioToSha256InMemory} of SHA-256 in memory (${r.sha256InMemoryMBps.used} MB/s), ` +
      `${r.ratioToSha256} of SHA-256 of the file (${r.sha256FileMBps.used} MB/s), ` +
      `${r.ratioToDiskWrite} of disk write (${r.diskWriteMBps}), ${r.ratioToLocalS3Get} of local S3 GET (${r.localS3GetMBps}); ` +
      `agent CPU ${r.agentCpuSecondsPerGiB} s/GiB; ` +
      `peak ${r.memoryBundled.peakMemoryMB} MB bundled, ${r.memoryUnderTsx.peakMemoryMB} MB under tsx`,
  );
}

/**
 * Fails at once, not with ENOSPC after minutes: each bundled run keeps its file until the runs of
 * its size end, beside the source file and the S3 object.
 */
async function checkFreeDisk(directory: string, sizesMiB: readonly number[], runs: number): Promise<void> {
  const needed = Math.max(...sizesMiB) * MiB * (runs + 2) + 256 * MiB;
  const free = await freeBytesOnDisk(directory);
  if (free < needed) {
    const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(1)} GiB`;
    throw new Error(`the agent benchmark needs ${gib(needed)} free in ${directory}, there is ${gib(free)}`);
  }
}

async function run(): Promise<BenchmarkOutcome> {
  const sizes = sizesFromEnvironment();
  const runsPerSize = runsFromEnvironment();
  const directory = await mkdtemp(join(tmpdir(), 'shadow-ota-bench-agent-'));
  const { server, s3 } = await startLocalS3(join(directory, 's3'));
  try {
    await checkFreeDisk(directory, sizes, runsPerSize);
    const bundled = await bundleDownloader(directory);
    const runs: SizeResult[] = [];
    for (const sizeMiB of sizes) {
      const result = await measureSize(s3, directory, bundled, sizeMiB, runsPerSize);
      logRun(sizeMiB, result);
      runs.push(result);
    }
    const largest = runs.reduce((a, b) => (b.sizeBytes > a.sizeBytes ? b : a));
    const peakMemoryMB = Math.max(...runs.map((r) => r.memoryBundled.peakMemoryMB));
    const peakMemoryMBUnderTsx = Math.max(...runs.map((r) => r.memoryUnderTsx.peakMemoryMB));
    return {
      targets: {
        ...targets,
        throughputToSha256InMemoryRatio: targets.throughputToSha256Ratio,
      },
      measurements: {
        throughputToSha256Ratio: largest.ratioToSha256,
        // The stricter reading of "the machine's SHA-256 speed": hashing data already in memory.
        throughputToSha256InMemoryRatio: largest.ratioToSha256InMemory,
        peakMemoryMB,
        peakMemoryMBUnderTsx,
        largestArtifactBytes: largest.sizeBytes,
        sha256InMemoryMBps: largest.sha256InMemoryMBps.used,
        downloadsPerSize: runsPerSize,
        runs,
        notes: [
          'MB = 10^6 bytes. Throughput: artifact size / wall time of downloadFile (GET, hash, write, rename; no fsync: ADR 0050), the median of downloadsPerSize bundled downloads (each listed in downloadRunsMBps).',
          'SHA-256 yardstick: node:crypto over the same file read in 1 MiB chunks, before and after the downloads; the faster is used. It moves with the machine (520–1,440 MB/s seen: the chunks are fresh memory, which faults in the hypervisor), so the ratio to SHA-256 of data in memory (stable, ~1,450–1,800 MB/s; 64 MiB hashed 8 times just before and just after the bundled downloads, the faster used) is reported and judged beside it.',
          'agentCpuSecondsPerGiB: CPU time of the downloading process (every thread, user and kernel) per GiB, the median of the bundled runs: what the agent itself costs, whatever the server on the same machine takes.',
          "Ceilings on the same bytes: diskWriteMBps (1 MiB buffered writes + fsync, no network, no hash: what the downloader did before ADR 0050 dropped the fsync and writes O_DIRECT) and localS3GetMBps (presigned GET through the gateway, body discarded by the agent's own HTTP client).",
          'Peak memory: the downloading process as a whole (Node itself is about 41 MB), max of RSS sampled every 50 ms and the kernel high-water mark (VmHWM); bundled = esbuild bundle on plain node, as agent/bin.js runs the agent wherever the bundle was built (a device; judged); underTsx = its development fallback in a checkout without the bundle (reported, not judged: the tsx loader thread alone is about 37 MB).',
          'The local S3 (gateway + s3rver, one Node thread) runs in the benchmark process on the same machine and competes for its CPUs.',
        ],
      },
      targetsMet: {
        throughputToSha256Ratio: largest.ratioToSha256 >= targets.throughputToSha256Ratio,
        throughputToSha256InMemoryRatio: largest.ratioToSha256InMemory >= targets.throughputToSha256Ratio,
        peakMemoryMB: peakMemoryMB < targets.peakMemoryMB,
      },
    };
  } finally {
    s3.destroy();
    await server.stop();
    await rm(directory, { recursive: true, force: true });
  }
}

export const agentBenchmark: Benchmark = {
  name: 'agent',
  description:
    "Agent download-and-verify of a 1 GiB artifact from the local S3: throughput vs this machine's SHA-256 speed, and peak memory",
  run,
};
