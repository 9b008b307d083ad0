/**
 * Download authorization in the local cloud: the local STS (sharing its credentials with the S3
 * gateway, so the sessions it issues are enforced there), the download role with the permissions
 * the stack gives it, and the downloadAuthorizer function registered for the IoT rule.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { IoTDataPlaneClient } from '@aws-sdk/client-iot-data-plane';
import type { S3Client } from '@aws-sdk/client-s3';
import { STSClient } from '@aws-sdk/client-sts';
import { env } from '../../lambdas/definitions/environment.ts';
import type { Environment } from '../../lambdas/handlers/config.ts';
import {
  downloadAuthorizerConfigFromEnv,
  makeDownloadAuthorizerFromConfig,
} from '../../lambdas/handlers/download-authorizer.ts';
import type { Observability } from '../../lambdas/observability.ts';
import type { FunctionRegistry } from '../functions.ts';
import { localS3Credentials } from '../s3.ts';
import {
  type CredentialStore,
  makeCredentialStore,
  parsePolicy,
  type RunningLocalSts,
  startLocalSts,
} from '../sts/index.ts';

/** The local account id (the local IoT Core's default too). */
export const localAccountId = '123456789012';
export const localDownloadRoleArn = `arn:aws:iam::${localAccountId}:role/shadow-ota-downloads`;

/** Who may sign requests in the local cloud: the account's key; the STS adds its sessions. */
export function makeLocalCredentials(): CredentialStore {
  return makeCredentialStore([localS3Credentials]);
}

/** The download role's identity policy, as the stack grants it: read the artifact bucket's objects. */
function downloadRolePolicy(bucket: string) {
  const parsed = parsePolicy(
    JSON.stringify({
      Version: '2012-10-17',
      Statement: [{ Effect: 'Allow', Action: 's3:GetObject', Resource: `arn:aws:s3:::${bucket}/*` }],
    }),
  );
  if (!parsed.ok) throw new Error(`bug: the download role policy is invalid: ${parsed.message}`);
  return parsed.policy;
}

export interface LocalDownloads {
  readonly sts: RunningLocalSts;
  /** Variables the download authorizer reads besides the tables (merge into the functions' environment). */
  readonly environment: Environment;
  /** Registers the downloadAuthorizer function; call once the environment holds every table. */
  register(input: {
    readonly environment: Environment;
    readonly dynamodb: DynamoDBClient;
    readonly s3: S3Client;
    readonly functions: FunctionRegistry;
    readonly observability: Observability;
  }): void;
  stop(): Promise<void>;
}

export async function startLocalDownloads(input: {
  readonly host: string;
  readonly region: string;
  readonly bucket: string;
  readonly credentials: CredentialStore;
  /** @default 0 (a free port) */
  readonly stsPort?: number;
}): Promise<LocalDownloads> {
  const sts = await startLocalSts({
    host: input.host,
    port: input.stsPort ?? 0,
    region: input.region,
    accountId: localAccountId,
    credentials: input.credentials,
    roles: [{ roleArn: localDownloadRoleArn, policy: downloadRolePolicy(input.bucket) }],
  });
  const clients: { destroy(): void }[] = [];
  return {
    sts,
    environment: { [env.downloadRoleArn]: localDownloadRoleArn, AWS_REGION: input.region },
    register({ environment, dynamodb, s3, functions, observability }) {
      const config = downloadAuthorizerConfigFromEnv(environment);
      const stsClient = new STSClient({
        endpoint: sts.endpoint,
        region: input.region,
        credentials: localS3Credentials,
      });
      const iotData = new IoTDataPlaneClient({
        region: input.region,
        credentials: localS3Credentials,
        ...(config.iotDataEndpoint ? { endpoint: config.iotDataEndpoint } : {}),
      });
      clients.push(stsClient, iotData);
      functions.register(
        'downloadAuthorizer',
        makeDownloadAuthorizerFromConfig(config, { dynamodb, s3, sts: stsClient, iotData }, observability),
      );
    },
    async stop() {
      for (const client of clients) client.destroy();
      await sts.stop();
    },
  };
}
