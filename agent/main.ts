import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { z } from 'zod';
import type { TrustedKey } from '../lambdas/domain/signing/index.ts';
import { loadAgentConfig } from './config.ts';
import { makeLogger } from './log.ts';
import { startAgent } from './run.ts';
import { startFleet } from './simulate.ts';

/** `shadow-ota-agent`: run the device agent, or a simulated fleet of them. */
const program = new Command('shadow-ota-agent').description('shadow-ota device agent');

function onSignals(stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (): void => {
    if (stopping) return;
    stopping = true;
    void stop().then(() => process.exit(0));
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}

program
  .command('run', { isDefault: true })
  .description('run the agent for one device')
  .option(
    '-c, --config <file>',
    'configuration file (JSON); environment variables SHADOW_OTA_AGENT_* override it',
  )
  .action(async (options: { config?: string }) => {
    const config = await loadAgentConfig(options.config, process.env);
    if (!config.ok) {
      for (const fault of config.error) process.stderr.write(`config${fault.path}: ${fault.message}\n`);
      process.exit(2);
    }
    const running = await startAgent(config.value);
    onSignals(() => running.stop());
  });

const positiveInt = (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`not a positive integer: ${v}`);
  return n;
};
const nonNegative = (v: string): number => {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`not a number >= 0: ${v}`);
  return n;
};

program
  .command('simulate')
  .description('run N simulated devices in this process (plain MQTT, simulated handler)')
  .requiredOption('--count <n>', 'number of devices', positiveInt)
  .requiredOption('--endpoint <url>', 'plain MQTT endpoint, mqtt://host:port')
  .requiredOption('--trusted-keys <file>', 'JSON array of trusted public JWKs')
  .option('--prefix <text>', 'thing name prefix', 'sim-')
  .option('--root <dir>', 'where journals and work files go', join(tmpdir(), 'shadow-ota-fleet'))
  .option(
    '--compatibility <json>',
    'compatibility properties of every device',
    '{"manufacturer":"contoso","model":"sim"}',
  )
  .option('--download-ms <ms>', 'simulated download time', nonNegative, 200)
  .option('--install-ms <ms>', 'simulated install time', nonNegative, 500)
  .option('--apply-ms <ms>', 'simulated apply time', nonNegative, 200)
  .option('--failure-rate <p>', 'probability an install fails (0..1)', nonNegative, 0)
  .option('--s3-endpoint <url>', 'S3 endpoint for STS-mode downloads')
  .action(async (o: Record<string, string | number | undefined>) => {
    const url = new URL(String(o.endpoint));
    const keys = z
      .array(z.looseObject({ kid: z.string() }))
      .parse(JSON.parse(await readFile(String(o.trustedKeys), 'utf8'))) as TrustedKey[];
    const fleet = await startFleet({
      count: Number(o.count),
      prefix: String(o.prefix),
      host: url.hostname,
      port: Number(url.port || 1883),
      trustedKeys: keys,
      root: String(o.root),
      compatibility: z.record(z.string(), z.string()).parse(JSON.parse(String(o.compatibility))),
      handler: {
        downloadMs: Number(o.downloadMs),
        installMs: Number(o.installMs),
        applyMs: Number(o.applyMs),
        failureRate: Number(o.failureRate),
      },
      ...(o.s3Endpoint ? { s3Endpoint: String(o.s3Endpoint) } : {}),
      log: makeLogger({ level: 'warn' }),
    });
    process.stderr.write(`${fleet.agents.length} simulated devices connected\n`);
    onSignals(() => fleet.stop());
  });

await program.parseAsync(process.argv);
