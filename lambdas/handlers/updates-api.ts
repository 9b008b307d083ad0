import { readFileSync } from 'node:fs';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { KMSClient } from '@aws-sdk/client-kms';
import { S3Client } from '@aws-sdk/client-s3';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { type ArtifactStore, makeArtifactStore } from '../adapters/artifact-store.ts';
import { documentClient } from '../adapters/dynamodb.ts';
import { makeKmsSigner } from '../adapters/kms-signer.ts';
import { makeLocalKeySigner } from '../adapters/local-key-signer.ts';
import { makeUpdateStore, type UpdateIdentity, type UpdateStore } from '../adapters/update-store.ts';
import { env } from '../definitions/environment.ts';
import { updatesTable } from '../definitions/tables.ts';
import type { Signer } from '../domain/signing/index.ts';
import { maxBodyBytes, parseJsonBody } from '../http/body.ts';
import type { ProblemCode } from '../http/problem.ts';
import { type HttpResponse, jsonResponse, noContent, problemResponse } from '../http/response.ts';
import { makeObservedRouter } from '../http/router.ts';
import { type Observability, outcome, powertools } from '../observability.ts';
import { ConfigurationError, type Environment, fromEnv, positiveIntegerFromEnv } from './config.ts';
import { commitUpdate } from './updates/commit-update.ts';
import { importUpdates } from './updates/import-update.ts';
import { deleteUpdate, getUpdate, listUpdates } from './updates/manage-updates.ts';
import { makeManifestPublisher } from './updates/publisher.ts';

export interface UpdatesApiDeps {
  readonly updates: UpdateStore;
  readonly artifacts: ArtifactStore;
  readonly signer: Signer;
  readonly uploadUrlTtlSeconds: number;
  readonly signatureTtlSeconds: number;
  readonly clock?: () => Date;
  readonly observability?: Observability;
  readonly maxBodyBytes?: number;
}

export type UpdatesApiHandler = (event: APIGatewayProxyEventV2) => Promise<HttpResponse>;

/** Path parameters of `/updates/{provider}/{name}/{version}`; API Gateway guarantees them on these routes. */
function updateIdOf(event: APIGatewayProxyEventV2): UpdateIdentity {
  const p = event.pathParameters ?? {};
  return { provider: p.provider ?? '', name: p.name ?? '', version: p.version ?? '' };
}

/**
 * The operator API for updates, built from explicit dependencies: the Lambda builds it from the
 * environment below, tests and the local cloud from local clients. Same code either way.
 */
export function makeUpdatesApi(deps: UpdatesApiDeps): UpdatesApiHandler {
  const clock = deps.clock ?? (() => new Date());
  const obs = deps.observability ?? powertools;
  const publisher = makeManifestPublisher({
    artifacts: deps.artifacts,
    signer: deps.signer,
    signatureTtlSeconds: deps.signatureTtlSeconds,
  });

  const rejected = (code: ProblemCode): void => {
    if (code !== 'INTERNAL') obs.logger.info('request refused', { code });
  };

  return makeObservedRouter(
    {
      'POST /updates': async (event) => {
        const body = parseJsonBody(event, deps.maxBodyBytes ?? maxBodyBytes);
        if (!body.ok) return problemResponse(body.error);
        const result = await importUpdates(
          { updates: deps.updates, artifacts: deps.artifacts, uploadUrlTtlSeconds: deps.uploadUrlTtlSeconds },
          body.value,
          clock(),
        );
        if (!result.ok) {
          obs.count(outcome.importRejected);
          rejected(result.error.code);
          return problemResponse(result.error);
        }
        obs.count(result.value.created ? outcome.updateImported : outcome.updateReimported);
        return jsonResponse(result.value.created ? 201 : 200, { updates: result.value.updates });
      },
      'POST /updates/{provider}/{name}/{version}/commit': async (event) => {
        const result = await commitUpdate(
          { updates: deps.updates, artifacts: deps.artifacts, publisher },
          updateIdOf(event),
          clock(),
        );
        if (!result.ok) {
          obs.count(outcome.commitRejected);
          rejected(result.error.code);
          return problemResponse(result.error);
        }
        obs.count(outcome.updateCommitted);
        return jsonResponse(200, { updates: result.value.updates });
      },
      'GET /updates': async (event) => {
        const q = event.queryStringParameters ?? {};
        const result = await listUpdates(deps, {
          ...(q.limit !== undefined ? { limit: q.limit } : {}),
          ...(q.state !== undefined ? { state: q.state } : {}),
          ...(q.nextToken !== undefined ? { nextToken: q.nextToken } : {}),
        });
        return result.ok ? jsonResponse(200, result.value) : problemResponse(result.error);
      },
      'GET /updates/{provider}/{name}/{version}': async (event) => {
        const result = await getUpdate(deps, updateIdOf(event));
        return result.ok ? jsonResponse(200, result.value) : problemResponse(result.error);
      },
      'DELETE /updates/{provider}/{name}/{version}': async (event) => {
        const result = await deleteUpdate(deps, updateIdOf(event));
        if (!result.ok) {
          rejected(result.error.code);
          return problemResponse(result.error);
        }
        obs.count(outcome.updateDeleted);
        return noContent();
      },
    },
    obs,
  );
}

export type SignerConfig =
  | { readonly kind: 'kms'; readonly keyId: string }
  | { readonly kind: 'local'; readonly keyFile: string };

/** The manifest signer the configuration names: KMS in AWS, a local PEM key in the local cloud. */
export function makeSigner(config: SignerConfig, kms?: KMSClient): Signer {
  return config.kind === 'kms'
    ? makeKmsSigner({ kms: kms ?? new KMSClient({}), keyId: config.keyId })
    : makeLocalKeySigner({ privateKeyPem: readFileSync(config.keyFile, 'utf8') });
}

export interface UpdatesApiConfig {
  readonly updatesTable: string;
  readonly artifactBucket: string;
  readonly signer: SignerConfig;
  readonly uploadUrlTtlSeconds: number;
  readonly signatureTtlSeconds: number;
}

export const defaults = {
  uploadUrlTtlSeconds: 15 * 60,
  /** A committed update's signature lasts 90 days; deployments sign again with their own expiry. */
  signatureTtlSeconds: 90 * 24 * 60 * 60,
} as const;

/** Reads the configuration once; throws one error naming every missing or malformed variable. */
export function updatesApiConfigFromEnv(environment: Environment): UpdatesApiConfig {
  const kind = environment[env.signerKind];
  const keyVariable = kind === 'local' ? env.localSigningKeyFile : env.signingKeyId;
  const required = [env.updatesTable, env.artifactBucket, env.signerKind, keyVariable];
  const missing = required.filter((name) => !environment[name]);
  if (kind !== undefined && kind !== '' && kind !== 'kms' && kind !== 'local') missing.push(env.signerKind);
  if (missing.length > 0) {
    throw new ConfigurationError(
      `Missing or invalid environment variable(s): ${missing.join(', ')} (${env.signerKind} is "kms" or "local")`,
      missing,
    );
  }
  const values = fromEnv({
    updatesTable: env.updatesTable,
    artifactBucket: env.artifactBucket,
    key: keyVariable,
  })(environment);
  const signer: SignerConfig =
    kind === 'local' ? { kind: 'local', keyFile: values.key } : { kind: 'kms', keyId: values.key };
  return {
    updatesTable: values.updatesTable,
    artifactBucket: values.artifactBucket,
    signer,
    uploadUrlTtlSeconds: positiveIntegerFromEnv(
      environment,
      env.uploadUrlTtlSeconds,
      defaults.uploadUrlTtlSeconds,
    ),
    signatureTtlSeconds: positiveIntegerFromEnv(
      environment,
      env.signatureTtlSeconds,
      defaults.signatureTtlSeconds,
    ),
  };
}

export interface UpdatesApiClients {
  readonly dynamodb?: DynamoDBClient;
  readonly s3?: S3Client;
  readonly kms?: KMSClient;
}

/**
 * Builds the API from configuration. Clients default to AWS's (endpoints and credentials from the
 * usual chain); the local cloud passes clients for its local endpoints.
 */
export function makeUpdatesApiFromConfig(
  config: UpdatesApiConfig,
  clients: UpdatesApiClients = {},
  observability?: Observability,
): UpdatesApiHandler {
  const db = documentClient(clients.dynamodb);
  const signer = makeSigner(config.signer, clients.kms);
  return makeUpdatesApi({
    updates: makeUpdateStore({
      db,
      tableName: config.updatesTable,
      byStateIndex: updatesTable.globalIndexes[0]?.indexName,
    }),
    artifacts: makeArtifactStore({ s3: clients.s3 ?? new S3Client({}), bucket: config.artifactBucket }),
    signer,
    uploadUrlTtlSeconds: config.uploadUrlTtlSeconds,
    signatureTtlSeconds: config.signatureTtlSeconds,
    ...(observability ? { observability } : {}),
  });
}

let built: UpdatesApiHandler | undefined;

/** The Lambda entry point: configuration is read on the first invocation, once. */
export const handler = (event: APIGatewayProxyEventV2): Promise<HttpResponse> => {
  built ??= makeUpdatesApiFromConfig(updatesApiConfigFromEnv(process.env));
  return built(event);
};
