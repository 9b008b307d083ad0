import { resolve } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import type { LocalQueueTimings } from './iot/index.ts';

export interface LocalCloudPorts {
  readonly api: number;
  readonly s3: number;
  readonly dynamodb: number;
  /** Plain MQTT (development: the client id is the thing name). */
  readonly mqtt: number;
  /** MQTT over TLS with client certificates. */
  readonly mqtts: number;
  /** IoT data-plane HTTP API (shadows, Publish). */
  readonly iotData: number;
  /** IoT registry HTTP API (things, groups). */
  readonly iot: number;
}

export interface LocalCloudOptions {
  readonly host: string;
  /** Where endpoints.json goes and, unless ephemeral, where every service keeps its data. */
  readonly dataDir: string;
  readonly ephemeral: boolean;
  readonly ports: LocalCloudPorts;
  /** `npm run cloud`: services only, no demo fleet and no deployment. */
  readonly bare: boolean;

  /** How often the scheduler runs (EventBridge: every minute). @default 60000; 0: only on demand. */
  readonly schedulerIntervalMs?: number;
  /**
   * Runs DynamoDB Local's JVM in a process group of its own. A Ctrl-C at the terminal then reaches
   * only the Node side, which stops the services in order and the JVM last, instead of every poller
   * failing against a database that died first. Only for a process that stops the cloud on SIGINT,
   * SIGTERM and SIGHUP (local/main.ts): otherwise the JVM would outlive it. @default false
   */
  readonly ownProcessGroupForDatabase?: boolean;
  /**
   * Local timings of the queues (tests shorten the batching window).
   * @default the definitions' batching windows, a visibility timeout of 1 s
   */
  readonly queues?: LocalQueueTimings;
}

/** The main job's options: the local cloud's, plus the demo's. */
export interface MainJobOptions extends LocalCloudOptions {
  /** Size of the simulated demo fleet. */
  readonly devices: number;
  /** End after the demo deployment with one JSON line; exit 0 only if every device succeeded. */
  readonly exitWhenDone: boolean;
}

/** Ports people can remember; 0 asks for any free port. */
export const defaultPorts: LocalCloudPorts = {
  api: 4100,
  s3: 4568,
  dynamodb: 8000,
  mqtt: 1883,
  mqtts: 8883,
  iotData: 4101,
  iot: 4102,
};

/** Environment variables that set the same options as the flags (flags win). */
export const optionEnv = {
  dataDir: 'SHADOW_OTA_DATA_DIR',
  ephemeral: 'SHADOW_OTA_EPHEMERAL',
  host: 'SHADOW_OTA_HOST',
  apiPort: 'SHADOW_OTA_API_PORT',
  s3Port: 'SHADOW_OTA_S3_PORT',
  dynamodbPort: 'SHADOW_OTA_DYNAMODB_PORT',
  mqttPort: 'SHADOW_OTA_MQTT_PORT',
  mqttsPort: 'SHADOW_OTA_MQTTS_PORT',
  iotDataPort: 'SHADOW_OTA_IOT_DATA_PORT',
  iotPort: 'SHADOW_OTA_IOT_PORT',
} as const;

function port(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > 65535)
    throw new InvalidArgumentError('a port is a number from 0 (any free port) to 65535');
  return n;
}

function deviceCount(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1 || n > 10_000)
    throw new InvalidArgumentError('the demo fleet has 1 to 10000 devices');
  return n;
}

/** The command line of the local cloud; `parse` exits with a usage message (code 2) on bad flags. */
export function localCloudCommand(): Command {
  return new Command('shadow-ota-cloud')
    .description(
      'Run shadow-ota on this machine: DynamoDB Local, an S3-compatible server, the local AWS IoT Core and the operator API.',
    )
    .addOption(
      new Option('--data-dir <dir>', 'where data and endpoints.json are kept')
        .env(optionEnv.dataDir)
        .default('.data'),
    )
    .option(
      '--ephemeral',
      `keep data in a temporary directory, removed on exit (or ${optionEnv.ephemeral}=1)`,
      false,
    )
    .addOption(
      new Option('--host <host>', 'address the services listen on').env(optionEnv.host).default('127.0.0.1'),
    )
    .addOption(
      new Option('--api-port <port>', 'operator API port (0: any free port)')
        .env(optionEnv.apiPort)
        .argParser(port)
        .default(defaultPorts.api),
    )
    .addOption(
      new Option('--s3-port <port>', 'S3 port (0: any free port)')
        .env(optionEnv.s3Port)
        .argParser(port)
        .default(defaultPorts.s3),
    )
    .addOption(
      new Option('--dynamodb-port <port>', 'DynamoDB Local port (0: any free port)')
        .env(optionEnv.dynamodbPort)
        .argParser(port)
        .default(defaultPorts.dynamodb),
    )
    .addOption(
      new Option('--mqtt-port <port>', 'plain MQTT port (0: any free port)')
        .env(optionEnv.mqttPort)
        .argParser(port)
        .default(defaultPorts.mqtt),
    )
    .addOption(
      new Option('--mqtts-port <port>', 'MQTT over mutual TLS port (0: any free port)')
        .env(optionEnv.mqttsPort)
        .argParser(port)
        .default(defaultPorts.mqtts),
    )
    .addOption(
      new Option('--iot-data-port <port>', 'IoT data-plane HTTP port (0: any free port)')
        .env(optionEnv.iotDataPort)
        .argParser(port)
        .default(defaultPorts.iotData),
    )
    .addOption(
      new Option('--iot-port <port>', 'IoT registry HTTP port (0: any free port)')
        .env(optionEnv.iotPort)
        .argParser(port)
        .default(defaultPorts.iot),
    )
    .option('--bare', 'only the cloud services, no demo fleet (what `npm run cloud` runs)', false)
    .addOption(
      new Option('--devices <n>', 'size of the simulated demo fleet').argParser(deviceCount).default(100),
    )
    .option(
      '--exit-when-done',
      'after the demo deployment print one JSON line and exit (0 only if every device succeeded)',
      false,
    )
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
}

interface ParsedFlags {
  dataDir: string;
  ephemeral: boolean;
  host: string;
  apiPort: number;
  s3Port: number;
  dynamodbPort: number;
  mqttPort: number;
  mqttsPort: number;
  iotDataPort: number;
  iotPort: number;
  bare: boolean;
  devices: number;
  exitWhenDone: boolean;
}

/** Parses `argv` (without node and the script) into options; throws commander's error on bad input. */
export function parseLocalCloudOptions(
  argv: readonly string[],
  environment: Readonly<Record<string, string | undefined>> = process.env,
): MainJobOptions {
  const flags = localCloudCommand()
    .parse([...argv], { from: 'user' })
    .opts<ParsedFlags>();
  return {
    host: flags.host,
    dataDir: resolve(flags.dataDir),
    // Commander takes any value of a boolean's variable as true; here "0" and "false" mean off.
    ephemeral: flags.ephemeral || !['', '0', 'false', undefined].includes(environment[optionEnv.ephemeral]),
    ports: {
      api: flags.apiPort,
      s3: flags.s3Port,
      dynamodb: flags.dynamodbPort,
      mqtt: flags.mqttPort,
      mqtts: flags.mqttsPort,
      iotData: flags.iotDataPort,
      iot: flags.iotPort,
    },
    bare: flags.bare,
    devices: flags.devices,
    exitWhenDone: flags.exitWhenDone,
  };
}
