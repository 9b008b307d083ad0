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
  const cloud = await startLocalCloud(options);
  console.log(describe(cloud, options.ephemeral));
  // Later (issue 5): unless --bare, register the demo fleet and deploy the sample update here.

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) {
        // A second Ctrl-C: leave now; dynamodb.ts still kills the JVM on exit.
        console.error(`\n${signal} again: exiting without waiting`);
        process.exit(130);
      }
      stopping = true;
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
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  },
);
