import { relative } from 'node:path';
import { CommanderError } from 'commander';
import { type LocalCloud, startLocalCloud } from './cloud.ts';
import { parseLocalCloudOptions } from './options.ts';

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
  process.on('SIGINT', handleSignal);
  process.on('SIGTERM', handleSignal);

  let cloud: LocalCloud;
  try {
    cloud = await startLocalCloud(options);
  } catch (error) {
    // Ctrl-C also reaches DynamoDB Local's JVM (same process group), so starting fails; what has
    // started was already stopped, which is what was asked.
    if (firstSignalAt === undefined) throw error;
    console.log('stopped while starting');
    return 0;
  }
  console.log(describe(cloud, options.ephemeral));
  // Later (issue 5): unless --bare, register the demo fleet and deploy the sample update here.

  return new Promise<number>((resolve) => {
    onStop = (signal) => {
      console.log(`\n${signal}: stopping the local cloud...`);
      cloud.stop().then(
        () => {
          console.log('stopped');
          resolve(0);
        },
        (error: unknown) => {
          console.error(error);
          resolve(1);
        },
      );
    };
    // A signal that came while the services were starting is honoured now.
    if (firstSignalAt !== undefined) onStop('SIGINT');
  });
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  },
);
