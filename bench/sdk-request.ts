/**
 * What one AWS request costs the handler's CPU (issue 4's CPU target): the same conditional
 * `UpdateItem` to DynamoDB Local sent through the AWS SDK v3 document client as the handlers send
 * it (`documentClient`, request log step removed), and through plain `node:http` with a keep-alive
 * agent, signed by the same SigV4 signer the SDK uses (@smithy/signature-v4) and serialized with
 * `JSON.stringify`; and through the per-device handlers' lean document client
 * (fast-document-client.ts). The difference is the SDK's middleware stack, schema serde and
 * response handling.
 *
 * Each client sends a warm-up, then `requests` updates, 16 in flight; CPU is `process.cpuUsage`
 * of this process (DynamoDB Local is a separate JVM). The variants alternate twice so a busy
 * moment does not favour one; the lower of each variant's runs is reported.
 */
import http from 'node:http';
import { CreateTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { marshall } from '@aws-sdk/util-dynamodb';
import { SignatureV4 } from '@smithy/signature-v4';
import { documentClient } from '../lambdas/adapters/dynamodb.ts';
import { fastDocumentClient } from '../lambdas/adapters/fast-document-client.ts';
import { startDynamoDbLocal } from '../local/dynamodb.ts';
import { NodeSha256 } from '../local/sts/sigv4.ts';
import type { Benchmark, BenchmarkOutcome } from './benchmark.ts';

const settings = { requests: 5000, warmup: 1000, inFlight: 16, rounds: 2 } as const;
const credentials = { accessKeyId: 'local', secretAccessKey: 'local' };
const region = 'us-east-1';
const table = 'bench-sdk-request';

/** The update the acknowledgement's usual report sends, in shape: a guarded state move. */
function updateInput(i: number) {
  return {
    TableName: table,
    Key: { deploymentId: 'dep', thingName: `thing-${i % 500}` },
    UpdateExpression: 'SET #state = :state, #order = :order, #at = :at',
    ConditionExpression: 'attribute_not_exists(#order) OR #order < :order',
    ExpressionAttributeNames: { '#state': 'state', '#order': 'reportOrder', '#at': 'reportedAt' },
    ExpressionAttributeValues: { ':state': 'downloading', ':order': i, ':at': 1_700_000_000_000 + i },
    ReturnValues: 'ALL_OLD' as const,
  };
}

async function cpuPerRequestMs(send: (i: number) => Promise<unknown>, from: number): Promise<number> {
  let next = from;
  const end = from + settings.requests;
  const before = process.cpuUsage();
  await Promise.all(
    Array.from({ length: settings.inFlight }, async () => {
      while (next < end) await send(next++);
    }),
  );
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1000 / settings.requests;
}

/** A signed JSON-protocol POST over a keep-alive socket: the floor of any AWS request from Node. */
function plainClient(endpoint: string): (target: string, body: unknown) => Promise<unknown> {
  const url = new URL(endpoint);
  const agent = new http.Agent({ keepAlive: true, maxSockets: settings.inFlight });
  const signer = new SignatureV4({ credentials, region, service: 'dynamodb', sha256: NodeSha256 });
  return async (target, body) => {
    const payload = JSON.stringify(body);
    const signed = await signer.sign({
      method: 'POST',
      protocol: url.protocol,
      hostname: url.hostname,
      port: Number(url.port),
      path: '/',
      headers: {
        host: url.host,
        'content-type': 'application/x-amz-json-1.0',
        'x-amz-target': `DynamoDB_20120810.${target}`,
      },
      body: payload,
    });
    return new Promise((resolve, reject) => {
      const request = http.request(
        { host: url.hostname, port: url.port, method: 'POST', path: '/', agent, headers: signed.headers },
        (response) => {
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            if (response.statusCode === 200) resolve(JSON.parse(text));
            else if (text.includes('ConditionalCheckFailed')) resolve(undefined);
            else reject(new Error(`DynamoDB answered ${response.statusCode}: ${text}`));
          });
        },
      );
      request.on('error', reject);
      request.end(payload);
    });
  };
}

async function run(): Promise<BenchmarkOutcome> {
  const ddb = await startDynamoDbLocal({ port: 0 });
  const client = new DynamoDBClient({ endpoint: ddb.endpoint, region, credentials });
  try {
    await client.send(
      new CreateTableCommand({
        TableName: table,
        BillingMode: 'PAY_PER_REQUEST',
        AttributeDefinitions: [
          { AttributeName: 'deploymentId', AttributeType: 'S' },
          { AttributeName: 'thingName', AttributeType: 'S' },
        ],
        KeySchema: [
          { AttributeName: 'deploymentId', KeyType: 'HASH' },
          { AttributeName: 'thingName', KeyType: 'RANGE' },
        ],
      }),
    );
    const db = documentClient(client);
    const plain = plainClient(ddb.endpoint);
    const viaSdk = (i: number) => db.send(new UpdateCommand(updateInput(i)));
    const fast = fastDocumentClient(client);
    const viaFast = (i: number) => fast.send(new UpdateCommand(updateInput(i)));
    const viaPlain = (i: number) => {
      const input = updateInput(i);
      return plain('UpdateItem', {
        ...input,
        Key: marshall(input.Key),
        ExpressionAttributeValues: marshall(input.ExpressionAttributeValues),
      });
    };
    // Orders only grow, so every update applies: the answer is always a success.
    let order = 0;
    const sdk: number[] = [];
    const bare: number[] = [];
    const lean: number[] = [];
    for (const warmUp of [viaSdk, viaPlain, viaFast]) {
      await cpuPerRequestMs(warmUp, order);
      order += settings.requests;
    }
    for (let round = 0; round < settings.rounds; round++) {
      sdk.push(await cpuPerRequestMs(viaSdk, order));
      order += settings.requests;
      bare.push(await cpuPerRequestMs(viaPlain, order));
      order += settings.requests;
      lean.push(await cpuPerRequestMs(viaFast, order));
      order += settings.requests;
    }
    const sdkMs = Math.min(...sdk);
    const plainMs = Math.min(...bare);
    const leanMs = Math.min(...lean);
    const round3 = (value: number) => Number(value.toFixed(3));
    return {
      targets: { handlerCpuMsPerDevice: 1 },
      measurements: {
        requestsPerVariant: settings.requests,
        inFlight: settings.inFlight,
        sdkDocumentClientCpuMsPerRequest: round3(sdkMs),
        plainSignedHttpCpuMsPerRequest: round3(plainMs),
        fastDocumentClientCpuMsPerRequest: round3(leanMs),
        sdkOverPlainRatio: round3(sdkMs / plainMs),
        sdkOverFastRatio: round3(sdkMs / leanMs),
        runs: { sdk: sdk.map(round3), plain: bare.map(round3), fast: lean.map(round3) },
        notes: [
          'A device update costs at least one shadow write (fan-out) and one execution write per device report (2 reports): three requests, so under 1 ms of handler CPU per device needs each request well under a third of a millisecond, or reports batched.',
          "fast: the document client the per-device handlers use (lambdas/adapters/fast-document-client.ts: aws4 signing, undici keep-alive pool, the SDK's marshalling and exception classes).",
        ],
      },
      // Not a target of its own: the figure that bounds the fan-out benchmark's CPU target.
      targetsMet: { handlerCpuMsPerDevice: 3 * leanMs < 1 },
    };
  } finally {
    client.destroy();
    await ddb.stop();
  }
}

export const sdkRequestBenchmark: Benchmark = {
  name: 'sdk-request',
  description:
    'CPU of one AWS request from a handler: the SDK v3 document client against plain signed HTTP and the lean document client',
  run,
};
