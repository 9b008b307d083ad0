import { relative } from 'node:path';
import { CommanderError } from 'commander';
import { type LocalCloud, startLocalCloud } from './cloud.ts';
import { demoDeviceRoot, demoThingNames, runDemo } from './demo/run-demo.ts';
import { type MainJobOptions, parseLocalCloudOptions } from './options.ts';

function describe(cloud: LocalCloud, ephemeral: boolean): string {
  const show = (path: string): string => {
    const rel = relative(process.cwd(), path);
    return rel === '' ? '.' : rel.startsWith('..') ? path : rel;
  };
  const { endpoints, resources } = cloud;
  return [
    `shadow-ota local cloud is up (${ephemeral ? 'ephemeral: data is removed on exit' : `data in ${show(cloud.stateDir)}`})`,
    `  operator API  ${endpoints.api}`,
    `  S3            ${endpoints.s3}   bucket ${resources.artifactBucket}, access key S3RVER / S3RVER`,
    `  DynamoDB      ${endpoints.dynamodb}   table ${resources.updatesTable}, region ${cloud.region}`,
    `  MQTT          ${endpoints.mqtt} (client id = thing name)   ${endpoints.mqtts} (mutual TLS, CA ${show(resources.iotCaFile)})`,
    `  IoT data      ${endpoints.iotData}   IoT registry ${endpoints.iot}`,
    `  signing key   ${show(resources.signingKeyFile)} (kid ${resources.signingPublicKey.kid}; public JWK beside it)`,
    `endpoints written to ${show(cloud.endpointsFile)}`,
    '',
    `Try:  curl -s ${endpoints.api}/updates`,
    'Stop: Ctrl-C',
  ].join('\n');
}

async function main(): Promise<number> {
  let options: ReturnType<typeof parseLocalCloudOptions>;
  try {
    options = parseLocalCloudOptions(process.argv.slice(2));
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2;
    throw error;
  }
  // Listen for Ctrl-C before anything starts: the default action would end the process without
  // its exit handlers and leave DynamoDB Local's JVM running.
  let firstSignalAt: number | undefined;
  let onStop: (signal: NodeJS.Signals) => void = () => {};
  const handleSignal = (signal: NodeJS.Signals): void => {
    if (firstSignalAt !== undefined) {
      // One Ctrl-C often arrives twice: from the terminal to the whole group, and relayed by the
      // tsx or npm parent. Only a signal well after the first one means "stop waiting".
      if (Date.now() - firstSignalAt < 1500) return;
      // dynamodb.ts still kills the JVM on exit.
      console.error(`\n${signal} again: exiting without waiting`);
      process.exit(130);
    }
    firstSignalAt = Date.now();
    onStop(signal);
  };
  // SIGHUP too (the terminal closed): the JVM, in a process group of its own, would not get it.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, handleSignal);

  let cloud: LocalCloud;
  try {
    cloud = await startLocalCloud({ ...withDemoScheduler(options), ownProcessGroupForDatabase: true });
  } catch (error) {
    // Starting failed after a stop was asked for: what had started was already stopped, which is
    // what was asked.
    if (firstSignalAt === undefined) throw error;
    console.log('stopped while starting');
    return 0;
  }
  console.log(describe(cloud, options.ephemeral));

  let stopFleet = async (): Promise<void> => {};
  let stopping: Promise<number> | undefined;
  const stopAll = (): Promise<number> => {
    stopping ??= stopFleet()
      .then(() => cloud.stop())
      .then(
        () => {
          console.log('stopped');
          return 0;
        },
        (error: unknown) => {
          console.error(error);
          return 1;
        },
      );
    return stopping;
  };
  const stopped = new Promise<number>((resolve) => {
    onStop = (signal) => {
      console.log(`\n${signal}: stopping the local cloud...`);
      stopAll().then(resolve);
    };
  });
  // A signal that came while the services were starting is honoured now.
  if (firstSignalAt !== undefined) onStop('SIGINT');

  if (!options.bare && stopping === undefined) {
    const demo = await runDemo(cloud, {
      devices: options.devices,
      deviceRoot: demoDeviceRoot(cloud.stateDir),
      log: (line) => console.log(line),
      onFleet: (fleet) => {
        stopFleet = fleet.stop;
      },
    }).catch((error: unknown) => {
      // Ctrl-C during the demo stops the services under it; that is not a failure.
      if (stopping) return undefined;
      throw error;
    });
    if (demo === undefined) return stopped;
    const summary = {
      deploymentId: demo.deploymentId,
      status: demo.status,
      devices: demo.devices,
      counts: demo.counts,
      durationSeconds: demo.durationSeconds,
    };
    if (options.exitWhenDone) {
      await stopAll();
      console.log(JSON.stringify(summary));
      return allSucceeded(demo) ? 0 : 1;
    }
    console.log(`\ndeployment ${demo.deploymentId} ${demo.status} in ${demo.durationSeconds} s`);
    console.log(usage(cloud, demo.deploymentId, demoThingNames(options.devices)[0] ?? ''));
  }
  return stopped;
}

/** The demo wants completion noticed within a second; a bare cloud keeps AWS's one-minute schedule. */
function withDemoScheduler(options: MainJobOptions): MainJobOptions {
  return options.bare || options.schedulerIntervalMs !== undefined
    ? options
    : { ...options, schedulerIntervalMs: 1000 };
}

function allSucceeded(result: { devices: number; counts: Readonly<Record<string, number>> }): boolean {
  return result.devices > 0 && (result.counts.succeeded ?? 0) === result.devices;
}

function usage(cloud: LocalCloud, deploymentId: string, someDevice: string): string {
  const api = cloud.endpoints.api;
  return [
    '',
    'The cloud keeps serving; the demo fleet keeps listening for new deployments.',
    `  curl -s ${api}/deployments/${deploymentId}`,
    `  curl -s '${api}/deployments/${deploymentId}/devices?state=succeeded'`,
    `  curl -s ${api}/devices/${someDevice}`,
    `  curl -s ${api}/updates`,
    'Stop: Ctrl-C',
  ].join('\n');
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  },
);
