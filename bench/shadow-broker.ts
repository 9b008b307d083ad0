/**
 * The local IoT Core in a process of its own for bench/shadow.ts, so the load generator's work and
 * memory are not counted as the broker's. Talks to its parent over IPC:
 * it sends `{ type: 'ready', endpoints }`; it answers `{ type: 'memory' }` with `{ type: 'memory',
 * rss, heapUsed, connections }` after a full GC, and stops on `{ type: 'stop' }`.
 */
import { startLocalIotCore } from '../local/iot/index.ts';

type Request = { type: 'memory' } | { type: 'stop' };

function send(message: unknown): void {
  process.send?.(message);
}

function collectGarbage(): void {
  // Started with --expose-gc; collecting twice clears what the first pass only marked.
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  gc?.();
}

const iot = await startLocalIotCore({ rules: [] });
process.on('message', (message: Request) => {
  if (message.type === 'memory') {
    collectGarbage();
    const { rss, heapUsed } = process.memoryUsage();
    send({ type: 'memory', rss, heapUsed, connections: iot.connectedClients() });
  } else if (message.type === 'stop') {
    void iot.stop().then(() => process.exit(0));
  }
});
send({ type: 'ready', endpoints: iot.endpoints });
