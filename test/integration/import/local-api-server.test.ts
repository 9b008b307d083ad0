import { GetObjectCommand } from '@aws-sdk/client-s3';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { makeArtifactStore } from '../../../lambdas/adapters/artifact-store.ts';
import { generateLocalSigningKey, makeLocalKeySigner } from '../../../lambdas/adapters/local-key-signer.ts';
import { makeUpdateStore } from '../../../lambdas/adapters/update-store.ts';
import { verifyUpdateManifestSignature } from '../../../lambdas/domain/signing/index.ts';
import { makeUpdatesApi } from '../../../lambdas/handlers/updates-api.ts';
import { makeRouter } from '../../../lambdas/http/router.ts';
import { recordingObservability } from '../../../lambdas/observability.ts';
import { type RunningApiServer, startApiServer } from '../../../local/api-server.ts';
import { file, importManifest, uid, updatePath } from './fixtures.ts';
import { createUpdatesTable, documentClient, dynamoDbClient, startTestS3, type TestS3 } from './support.ts';

const db = dynamoDbClient(inject('ddbEndpoint'));
const key = generateLocalSigningKey();
let s3: TestS3;
let server: RunningApiServer;
/** A second server whose handler records the events it receives, to check their shape. */
let echo: RunningApiServer;
const seen: APIGatewayProxyEventV2[] = [];

beforeAll(async () => {
  s3 = await startTestS3('artifacts-http');
  const tableName = await createUpdatesTable(db, 'http');
  const updatesApi = makeUpdatesApi({
    updates: makeUpdateStore({ db: documentClient(db), tableName }),
    artifacts: makeArtifactStore({ s3: s3.client, bucket: s3.bucket }),
    signer: makeLocalKeySigner({ privateKeyPem: key.privateKeyPem }),
    uploadUrlTtlSeconds: 300,
    signatureTtlSeconds: 3600,
    observability: recordingObservability(),
    maxBodyBytes: 64 * 1024,
  });
  server = await startApiServer({
    host: '127.0.0.1',
    port: 0,
    // Deployments are not under test here: an empty router answers 404 for them.
    functions: { updatesApi, deploymentsApi: makeRouter({}) },
    maxPayloadBytes: 256 * 1024,
  });
  const record = async (event: APIGatewayProxyEventV2) => {
    seen.push(event);
    return {
      statusCode: 202,
      headers: { 'x-route': event.routeKey },
      cookies: ['a=1', 'b=2'],
      body: 'ok',
    };
  };
  echo = await startApiServer({
    host: '127.0.0.1',
    port: 0,
    functions: { updatesApi: record, deploymentsApi: record },
  });
});

afterAll(async () => {
  await server.stop();
  await echo.stop();
  await s3.stop();
  db.destroy();
});

describe('the local operator API over real HTTP', () => {
  const files = [file('install.sh', 'echo hello'), file('app.bin', 'application bytes')];

  it('imports, takes uploads through the presigned URLs, commits, and serves the ready update', async () => {
    const id = uid('Http');
    const imported = await fetch(`${server.endpoint}/updates`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(importManifest(id, files)),
    });
    expect(imported.status).toBe(201);
    expect(imported.headers.get('content-type')).toBe('application/json');
    const { updates } = (await imported.json()) as {
      updates: { files: { filename: string; uploadUrl: string }[] }[];
    };
    for (const f of updates[0]?.files ?? []) {
      const body = files.find((x) => x.name === f.filename)?.content;
      expect((await fetch(f.uploadUrl, { method: 'PUT', body })).status).toBe(200);
    }

    const committed = await fetch(`${server.endpoint}${updatePath(id)}/commit`, { method: 'POST' });
    expect(committed.status).toBe(200);
    const got = await fetch(`${server.endpoint}${updatePath(id)}`);
    const update = (await got.json()) as {
      state: string;
      updateManifest: { objectKey: string; signature: string };
    };
    expect(update.state).toBe('ready');

    const object = await s3.client.send(
      new GetObjectCommand({ Bucket: s3.bucket, Key: update.updateManifest.objectKey }),
    );
    const verified = await verifyUpdateManifestSignature({
      jws: update.updateManifest.signature,
      manifest: (await object.Body?.transformToString()) ?? '',
      trustedKeys: [key.publicJwk],
      now: new Date(),
    });
    expect(verified.ok).toBe(true);
  });

  it('answers problem JSON for bad JSON, an unknown route, and a hash mismatch', async () => {
    const bad = await fetch(`${server.endpoint}/updates`, { method: 'POST', body: '{"oops"' });
    expect(bad.status).toBe(400);
    expect(bad.headers.get('content-type')).toBe('application/problem+json');
    expect(((await bad.json()) as { code: string }).code).toBe('BAD_JSON');

    const nowhere = await fetch(`${server.endpoint}/deployments`);
    expect(nowhere.status).toBe(404);

    const id = uid('HttpMismatch');
    const imported = await fetch(`${server.endpoint}/updates`, {
      method: 'POST',
      body: JSON.stringify(importManifest(id, files)),
    });
    const { updates } = (await imported.json()) as { updates: { files: { uploadUrl: string }[] }[] };
    for (const f of updates[0]?.files ?? [])
      await fetch(f.uploadUrl, { method: 'PUT', body: 'not what was declared' });
    const refused = await fetch(`${server.endpoint}${updatePath(id)}/commit`, { method: 'POST' });
    expect(refused.status).toBe(409);
    expect(((await refused.json()) as { message: string }).message).toContain('install.sh');
  });

  it('413 from the handler above its body limit, and from the server above API Gateway’s', async () => {
    const handlerLimit = await fetch(`${server.endpoint}/updates`, {
      method: 'POST',
      body: 'x'.repeat(100 * 1024),
    });
    expect(handlerLimit.status).toBe(413);
    expect(((await handlerLimit.json()) as { code: string }).code).toBe('PAYLOAD_TOO_LARGE');

    const gatewayLimit = await fetch(`${server.endpoint}/updates`, {
      method: 'POST',
      body: 'x'.repeat(300 * 1024),
    });
    expect(gatewayLimit.status).toBe(413);
  });
});

describe('the API Gateway payload 2.0 event the local server builds', () => {
  it('carries the route, path parameters, query, lower-cased headers, cookies and a text body', async () => {
    const res = await fetch(`${echo.endpoint}/updates/Contoso/Toaster/1.0/commit?a=1&a=2&b=x%20y`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Trace': 't1', Cookie: 'session=abc; theme=dark' },
      body: '{"k":1}',
    });
    expect(res.status).toBe(202);
    expect(res.headers.get('x-route')).toBe('POST /updates/{provider}/{name}/{version}/commit');
    expect(res.headers.get('set-cookie')).toBe('a=1, b=2');
    const event = seen.at(-1);
    expect(event).toMatchObject({
      version: '2.0',
      routeKey: 'POST /updates/{provider}/{name}/{version}/commit',
      rawPath: '/updates/Contoso/Toaster/1.0/commit',
      rawQueryString: 'a=1&a=2&b=x%20y',
      queryStringParameters: { a: '1,2', b: 'x y' },
      pathParameters: { provider: 'Contoso', name: 'Toaster', version: '1.0' },
      cookies: ['session=abc', 'theme=dark'],
      body: '{"k":1}',
      isBase64Encoded: false,
      requestContext: {
        routeKey: 'POST /updates/{provider}/{name}/{version}/commit',
        stage: '$default',
        http: { method: 'POST', path: '/updates/Contoso/Toaster/1.0/commit', protocol: 'HTTP/1.1' },
      },
    });
    expect(event?.headers['x-trace']).toBe('t1');
    expect(event?.headers.cookie).toBeUndefined();
    expect(event?.requestContext.time).toMatch(/^\d{2}\/[A-Z][a-z]{2}\/\d{4}:\d{2}:\d{2}:\d{2} \+0000$/);
  });

  it('base64-encodes a binary body', async () => {
    const bytes = Buffer.from([0, 1, 2, 250, 251]);
    await fetch(`${echo.endpoint}/updates`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: bytes,
    });
    expect(seen.at(-1)).toMatchObject({ isBase64Encoded: true, body: bytes.toString('base64') });
  });

  it('404 for a path no route matches, without invoking the handler', async () => {
    const before = seen.length;
    expect((await fetch(`${echo.endpoint}/updates/only/two`)).status).toBe(404);
    expect((await fetch(`${echo.endpoint}/updates`, { method: 'PUT' })).status).toBe(404);
    expect(seen.length).toBe(before);
  });
});
