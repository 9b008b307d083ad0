import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { TrustedKey } from '../lambdas/domain/signing/index.ts';
import type { AgentConfig } from './config.ts';
import { makeSimulatedHandler, type SimulatedHandlerOptions } from './handlers/simulated.ts';
import type { Component, HandlerRegistry } from './handlers/types.ts';
import { type Logger, silentLogger } from './log.ts';
import { type RunningAgent, startAgent } from './run.ts';

export interface FleetOptions {
  readonly count: number;
  /** Thing names are `<prefix><index>`, index from 1, zero-padded to the count's width. */
  readonly prefix: string;
  /** Plain MQTT endpoint (client id = thing name), e.g. the local IoT Core's. */
  readonly host: string;
  readonly port: number;
  readonly trustedKeys: readonly TrustedKey[];
  /** Each device keeps its journal and work files under `<root>/<thing>/`. */
  readonly root: string;
  readonly compatibility: Readonly<Record<string, string>>;
  /** Components every simulated device has (reference steps apply child updates to them). @default [] */
  readonly components?: readonly Component[];
  readonly handler: SimulatedHandlerOptions;
  readonly s3Endpoint?: string;
  readonly log?: Logger;
  /** Devices connecting at once. @default 20 */
  readonly concurrency?: number;
}

export function simulatedThingName(prefix: string, index: number, count: number): string {
  return `${prefix}${String(index).padStart(String(count).length, '0')}`;
}

/**
 * N agents in one process over plain MQTT, each with its own journal, every handler id served by the
 * simulated handler (durations, failure rate). Downloads and reports are real: the service cannot
 * tell them from devices.
 */
export async function startFleet(
  options: FleetOptions,
): Promise<{ agents: RunningAgent[]; stop(): Promise<void> }> {
  const agents: RunningAgent[] = [];
  const names = Array.from({ length: options.count }, (_, i) =>
    simulatedThingName(options.prefix, i + 1, options.count),
  );
  const concurrency = options.concurrency ?? 20;
  for (let i = 0; i < names.length; i += concurrency) {
    const batch = names.slice(i, i + concurrency);
    agents.push(
      ...(await Promise.all(
        batch.map(async (thingName) => {
          const dir = join(options.root, thingName);
          await mkdir(dir, { recursive: true });
          const config: AgentConfig = {
            thingName,
            mqtt: { host: options.host, port: options.port },
            workDir: join(dir, 'work'),
            stateDir: join(dir, 'state'),
            trustedKeys: options.trustedKeys,
            compatibility: options.compatibility,
            components: options.components ?? [],
            handlers: {},
            ...(options.s3Endpoint ? { s3Endpoint: options.s3Endpoint } : {}),
            progressIntervalMs: 0,
            logLevel: 'warn',
          };
          // One handler per device: it remembers what that device installed, nothing more.
          const handler = makeSimulatedHandler(options.handler);
          const handlers: HandlerRegistry = { get: () => handler };
          return startAgent(config, { handlers, log: (options.log ?? silentLogger).child({ thingName }) });
        }),
      )),
    );
  }
  return {
    agents,
    async stop() {
      await Promise.all(agents.map((a) => a.stop()));
    },
  };
}
