/**
 * Shadow benchmark (issue 3): UpdateThingShadow requests per second through the data-plane HTTP
 * API while 1,000 device connections are subscribed to their delta topics (every update publishes
 * a delta, and every delta must arrive), then the broker's memory per idle connection with 10,000
 * connections. The broker runs in a child process (bench/shadow-broker.ts).
 */
import { type ChildProcess, fork } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { IoTDataPlaneClient, UpdateThingShadowCommand } from '@aws-sdk/client-iot-data-plane';
import mqtt, { type MqttClient } from 'mqtt';
import type { LocalIotCoreEndpoints } from '../local/iot/index.ts';
import type { Benchmark, BenchmarkOutcome } from './benchmark.ts';

const targets = { updatesPerSecond: 5000, idleConnections: 10_000 } as const;
const settings = {
  subscribedDevices: 1000,
  warmupUpdates: 3000,
  updates: 40_000,
  httpConcurrency: 128,
  sdkUpdates: 5000,
  sdkConcurrency: 64,
  idleConnections: targets.idleConnections,
} as const;

interface Memory {
  readonly rss: number;
  readonly heapUsed: number;
  readonly connections: number;
}

/** The broker process, with a request/answer helper over IPC. */
class BrokerProcess {
  readonly #child: ChildProcess;
  readonly endpoints: LocalIotCoreEndpoints;

  private constructor(child: ChildProcess, endpoints: LocalIotCoreEndpoints) {
    this.#child = child;
    this.endpoints = endpoints;
  }

  static async start(): Promise<BrokerProcess> {
    const script = join(dirname(fileURLToPath(import.meta.url)), 'shadow-broker.ts');
    // BENCH_CPU_PROF=<dir> writes a CPU profile of the broker, to see where its time goes.
    const profile = process.env.BENCH_CPU_PROF
      ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`]
      : [];
    const child = fork(script, [], {
      execArgv: ['--import', 'tsx', '--expose-gc', ...profile],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const endpoints = await new Promise<LocalIotCoreEndpoints>((resolve, reject) => {
      child.once('message', (message: { type: string; endpoints: LocalIotCoreEndpoints }) =>
        resolve(message.endpoints),
      );
      child.once('exit', (code) => reject(new Error(`broker exited with ${code}`)));
    });
    return new BrokerProcess(child, endpoints);
  }

  memory(): Promise<Memory> {
    return new Promise((resolve) => {
      this.#child.once('message', (message: Memory) => resolve(message));
      this.#child.send({ type: 'memory' });
    });
  }

  async stop(): Promise<void> {
    const exited = new Promise((resolve) => this.#child.once('exit', resolve));
    this.#child.send({ type: 'stop' });
    await exited;
  }
}

function portOf(url: string): number {
  return Number(new URL(url).port);
}

async function inBatches<T>(count: number, batch: number, make: (i: number) => Promise<T>): Promise<T[]> {
  const all: T[] = [];
  for (let start = 0; start < count; start += batch) {
    const size = Math.min(batch, count - start);
    all.push(...(await Promise.all(Array.from({ length: size }, (_, k) => make(start + k)))));
  }
  return all;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

/** Runs `total` jobs with at most `concurrency` in flight; resolves with each job's latency in ms. */
async function drive(
  total: number,
  concurrency: number,
  job: (i: number) => Promise<void>,
): Promise<number[]> {
  const latencies: number[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < total) {
      const i = next++;
      const started = performance.now();
      await job(i);
      latencies.push(performance.now() - started);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return latencies.sort((a, b) => a - b);
}

/** A keep-alive POST of the exact request the SDK's UpdateThingShadow sends (signature aside). */
function rawUpdater(endpoint: string, concurrency: number): (thing: string, body: string) => Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const { hostname, port } = new URL(endpoint);
  return (thing, body) =>
    new Promise((resolve, reject) => {
      const request = http.request(
        {
          agent,
          hostname,
          port,
          method: 'POST',
          path: `/things/${thing}/shadow?name=ota`,
          headers: { 'content-type': 'application/octet-stream', 'content-length': Buffer.byteLength(body) },
        },
        (response) => {
          response.resume();
          response.on('end', () =>
            response.statusCode === 200 ? resolve() : reject(new Error(`HTTP ${response.statusCode}`)),
          );
        },
      );
      request.on('error', reject);
      request.end(body);
    });
}

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return true;
}

async function measureUpdates(): Promise<Record<string, unknown>> {
  const broker = await BrokerProcess.start();
  let deltas = 0;
  const devices: MqttClient[] = await inBatches(settings.subscribedDevices, 100, async (i) => {
    const client = await mqtt.connectAsync(broker.endpoints.mqtt, {
      clientId: `dev-${i}`,
      reconnectPeriod: 0,
    });
    client.on('message', () => {
      deltas++;
    });
    await client.subscribeAsync(`$aws/things/dev-${i}/shadow/name/ota/update/delta`, { qos: 0 });
    return client;
  });

  const update = rawUpdater(broker.endpoints.iotData, settings.httpConcurrency);
  const send = (i: number): Promise<void> =>
    update(
      `dev-${i % settings.subscribedDevices}`,
      JSON.stringify({ state: { desired: { ota: { deploymentId: 'bench', seq: i } } } }),
    );

  await drive(settings.warmupUpdates, settings.httpConcurrency, send);
  await waitFor(() => deltas >= settings.warmupUpdates, 30_000);
  deltas = 0;

  const started = performance.now();
  const latencies = await drive(settings.updates, settings.httpConcurrency, (i) =>
    send(settings.warmupUpdates + i),
  );
  const answered = performance.now();
  const allDelivered = await waitFor(() => deltas >= settings.updates, 30_000);
  const delivered = performance.now();
  const deltasDelivered = deltas;
  const seconds = (delivered - started) / 1000;

  // The same through the AWS SDK v3 client (SigV4 signing and all), which costs the caller more CPU.
  const sdk = new IoTDataPlaneClient({
    endpoint: broker.endpoints.iotData,
    region: 'us-east-1',
    credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' },
  });
  const sdkStarted = performance.now();
  await drive(settings.sdkUpdates, settings.sdkConcurrency, async (i) => {
    await sdk.send(
      new UpdateThingShadowCommand({
        thingName: `dev-${i % settings.subscribedDevices}`,
        shadowName: 'ota',
        payload: Buffer.from(
          JSON.stringify({ state: { desired: { ota: { deploymentId: 'sdk', seq: i } } } }),
        ),
      }),
    );
  });
  const sdkSeconds = (performance.now() - sdkStarted) / 1000;
  sdk.destroy();

  const memory = await broker.memory();
  await Promise.all(devices.map((device) => device.endAsync(true)));
  await broker.stop();
  return {
    subscribedConnections: settings.subscribedDevices,
    updates: settings.updates,
    httpConcurrency: settings.httpConcurrency,
    secondsUntilAllDeltasDelivered: round(seconds),
    updatesPerSecond: Math.round(settings.updates / seconds),
    responsesPerSecond: Math.round(settings.updates / ((answered - started) / 1000)),
    deltasDelivered,
    allDeltasDelivered: allDelivered,
    latencyMs: {
      p50: round(percentile(latencies, 50)),
      p99: round(percentile(latencies, 99)),
      max: round(latencies.at(-1) ?? 0),
    },
    sdkClient: {
      updates: settings.sdkUpdates,
      concurrency: settings.sdkConcurrency,
      updatesPerSecond: Math.round(settings.sdkUpdates / sdkSeconds),
    },
    brokerRssBytesAfter: memory.rss,
  };
}

/** A minimal MQTT 3.1.1 CONNECT (clean session, 5-minute keep-alive) for `clientId`. */
function connectPacket(clientId: string): Buffer {
  const id = Buffer.from(clientId);
  const variable = Buffer.from([0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x01, 0x2c]);
  const payload = Buffer.concat([Buffer.from([id.length >> 8, id.length & 0xff]), id]);
  const remaining = variable.length + payload.length;
  return Buffer.concat([Buffer.from([0x10, remaining]), variable, payload]);
}

/** Opens a bare TCP connection and completes the MQTT handshake: a device doing nothing after. */
function idleConnection(port: number, clientId: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(connectPacket(clientId)));
    socket.once('data', (data) => {
      if (data[0] === 0x20 && data[3] === 0x00) resolve(socket);
      else reject(new Error(`CONNACK refused for ${clientId}`));
    });
    socket.once('error', reject);
  });
}

async function measureIdleConnections(): Promise<Record<string, unknown>> {
  const broker = await BrokerProcess.start();
  const before = await broker.memory();
  const port = portOf(broker.endpoints.mqtt);
  const started = performance.now();
  const sockets = await inBatches(settings.idleConnections, 500, (i) => idleConnection(port, `idle-${i}`));
  const connectSeconds = (performance.now() - started) / 1000;
  const after = await broker.memory();
  for (const socket of sockets) socket.destroy();
  await broker.stop();
  return {
    connections: after.connections,
    secondsToConnect: round(connectSeconds),
    brokerRssBytes: { before: before.rss, after: after.rss },
    brokerHeapBytes: { before: before.heapUsed, after: after.heapUsed },
    rssBytesPerConnection: Math.round((after.rss - before.rss) / settings.idleConnections),
    heapBytesPerConnection: Math.round((after.heapUsed - before.heapUsed) / settings.idleConnections),
  };
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}

export const shadowBenchmark: Benchmark = {
  name: 'shadow',
  description: 'Data-plane shadow updates/s with 1,000 subscribed devices; broker memory per idle connection',
  async run(): Promise<BenchmarkOutcome> {
    const updates = await measureUpdates();
    const idle = await measureIdleConnections();
    return {
      targets,
      measurements: { dataPlaneUpdates: updates, idleConnections: idle },
      targetsMet: {
        updatesPerSecond:
          (updates.updatesPerSecond as number) >= targets.updatesPerSecond &&
          updates.allDeltasDelivered === true,
        idleConnections: (idle.connections as number) >= targets.idleConnections,
      },
    };
  },
};
