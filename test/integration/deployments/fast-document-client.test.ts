import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  ConditionalCheckFailedException,
  ResourceNotFoundException,
  TransactionCanceledException,
} from '@aws-sdk/client-dynamodb';
import {
  BatchExecuteStatementCommand,
  BatchGetCommand,
  BatchWriteCommand,
  DeleteCommand,
  GetCommand,
  PutCommand,
  QueryCommand,
  ScanCommand,
  TransactWriteCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import {
  fastDocumentClient,
  fastDocumentClientOf,
  fastDocumentClientOnce,
} from '../../../lambdas/adapters/fast-document-client.ts';
import { updatesTable } from '../../../lambdas/definitions/tables.ts';
import { ensureTable } from '../../../local/tables.ts';
import { documentClient, dynamoDbClient } from '../import/support.ts';

// The lean client against DynamoDB Local, answer for answer beside the SDK's document client.
const sdkClient = dynamoDbClient(inject('ddbEndpoint'));
const sdk = documentClient(sdkClient);
const fast = fastDocumentClient(sdkClient);
const TableName = `fast-client-${randomUUID().slice(0, 8)}`;
const item = (sk: string) => ({
  pk: 'p',
  sk,
  n: 7,
  big: 2 ** 40,
  tags: new Set(['a', 'b']),
  nested: { list: [1, 'two', { three: true }], empty: null },
  dropped: undefined,
});

beforeAll(async () => {
  await ensureTable(sdkClient, updatesTable, TableName);
});

describe('the fast document client', () => {
  it('puts, gets, updates and deletes items as the SDK document client does', async () => {
    await fast.send(new PutCommand({ TableName, Item: item('1') }));
    const viaFast = await fast.send(new GetCommand({ TableName, Key: { pk: 'p', sk: '1' } }));
    const viaSdk = await sdk.send(new GetCommand({ TableName, Key: { pk: 'p', sk: '1' } }));
    expect(viaFast.Item).toEqual(viaSdk.Item);
    expect(viaFast.Item).toEqual({ ...item('1'), dropped: undefined });
    const updated = await fast.send(
      new UpdateCommand({
        TableName,
        Key: { pk: 'p', sk: '1' },
        UpdateExpression: 'SET n = n + :one',
        ExpressionAttributeValues: { ':one': 1 },
        ReturnValues: 'ALL_NEW',
      }),
    );
    expect(updated.Attributes?.n).toBe(8);
    const deleted = await fast.send(
      new DeleteCommand({ TableName, Key: { pk: 'p', sk: '1' }, ReturnValues: 'ALL_OLD' }),
    );
    expect(deleted.Attributes?.n).toBe(8);
    expect((await fast.send(new GetCommand({ TableName, Key: { pk: 'p', sk: '1' } }))).Item).toBeUndefined();
  });

  it('throws the SDK exception, with the item a refused condition returns (marshalled, as the SDK leaves it)', async () => {
    await fast.send(new PutCommand({ TableName, Item: item('2') }));
    const refused = fast.send(
      new PutCommand({
        TableName,
        Item: item('2'),
        ConditionExpression: 'attribute_not_exists(pk)',
        ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
      }),
    );
    await expect(refused).rejects.toBeInstanceOf(ConditionalCheckFailedException);
    await expect(refused).rejects.toMatchObject({
      Item: { sk: { S: '2' }, n: { N: '7' } },
      $metadata: { httpStatusCode: 400 },
    });
    const viaSdk = await sdk
      .send(
        new PutCommand({
          TableName,
          Item: item('2'),
          ConditionExpression: 'attribute_not_exists(pk)',
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        }),
      )
      .catch((error: ConditionalCheckFailedException) => error);
    const viaFast = await refused.catch((error: ConditionalCheckFailedException) => error);
    expect((viaFast as ConditionalCheckFailedException).Item).toEqual(
      (viaSdk as ConditionalCheckFailedException).Item,
    );
    await expect(
      fast.send(new GetCommand({ TableName: 'no-such-table', Key: { pk: 'p', sk: '1' } })),
    ).rejects.toBeInstanceOf(ResourceNotFoundException);
  });

  it('queries and scans page by page', async () => {
    await fast.send(
      new BatchWriteCommand({
        RequestItems: {
          [TableName]: ['a', 'b', 'c'].map((sk) => ({ PutRequest: { Item: item(`q-${sk}`) } })),
        },
      }),
    );
    const first = await fast.send(
      new QueryCommand({
        TableName,
        KeyConditionExpression: 'pk = :p AND begins_with(sk, :q)',
        ExpressionAttributeValues: { ':p': 'p', ':q': 'q-' },
        Limit: 2,
      }),
    );
    expect(first.Items?.map((i) => i.sk)).toEqual(['q-a', 'q-b']);
    expect(first.LastEvaluatedKey).toEqual({ pk: 'p', sk: 'q-b' });
    const rest = await fast.send(
      new QueryCommand({
        TableName,
        KeyConditionExpression: 'pk = :p AND begins_with(sk, :q)',
        ExpressionAttributeValues: { ':p': 'p', ':q': 'q-' },
        ExclusiveStartKey: first.LastEvaluatedKey,
      }),
    );
    expect(rest.Items?.map((i) => i.sk)).toEqual(['q-c']);
    const scanned = await fast.send(new ScanCommand({ TableName }));
    expect(scanned.Items?.length).toBeGreaterThanOrEqual(3);
  });

  it('batch-gets items across keys', async () => {
    const answer = await fast.send(
      new BatchGetCommand({
        RequestItems: {
          [TableName]: {
            Keys: [
              { pk: 'p', sk: 'q-a' },
              { pk: 'p', sk: 'missing' },
            ],
          },
        },
      }),
    );
    expect(answer.Responses?.[TableName]?.map((i) => i.sk)).toEqual(['q-a']);
    expect(answer.Responses?.[TableName]?.[0]?.tags).toEqual(new Set(['a', 'b']));
  });

  it('runs a batch of PartiQL statements as the SDK does: parameters marshalled, refused items unmarshalled', async () => {
    const statements = (n: number) =>
      new BatchExecuteStatementCommand({
        Statements: ['s-a', 's-b', 's-none'].map((sk) => ({
          Statement: `UPDATE "${TableName}" SET "n" = ? SET "nested" = ? WHERE "pk" = ? AND "sk" = ? AND "n" = ?`,
          Parameters: [n + 1, { list: [n], tags: new Set(['x']) }, 'p', sk, n],
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        })),
      });
    await fast.send(new PutCommand({ TableName, Item: { ...item('s-a'), n: 1 } }));
    await fast.send(new PutCommand({ TableName, Item: { ...item('s-b'), n: 5 } }));
    const viaFast = await fast.send(statements(1));
    expect(viaFast.Responses?.map((r) => r.Error?.Code ?? 'ok')).toEqual([
      'ok',
      'ConditionalCheckFailed',
      'ConditionalCheckFailed',
    ]);
    expect(viaFast.Responses?.[1]?.Error?.Item).toEqual({ ...item('s-b'), n: 5, dropped: undefined });
    expect(viaFast.Responses?.[2]?.Error?.Item).toBeUndefined();
    const written = await fast.send(new GetCommand({ TableName, Key: { pk: 'p', sk: 's-a' } }));
    expect(written.Item).toMatchObject({ n: 2, nested: { list: [1], tags: new Set(['x']) } });
    // The same batch once more through the SDK: refused alike, with the same item.
    const viaSdk = await sdk.send(statements(1));
    expect(viaSdk.Responses?.map((r) => r.Error?.Code ?? 'ok')).toEqual([
      'ConditionalCheckFailed',
      'ConditionalCheckFailed',
      'ConditionalCheckFailed',
    ]);
    expect(viaSdk.Responses?.[1]?.Error?.Item).toEqual(viaFast.Responses?.[1]?.Error?.Item);
  });

  it('writes a transaction, and names the refused item of a canceled one', async () => {
    await fast.send(
      new TransactWriteCommand({
        TransactItems: [
          { Put: { TableName, Item: item('t-1') } },
          {
            Update: {
              TableName,
              Key: { pk: 'p', sk: 'q-a' },
              UpdateExpression: 'SET n = :n',
              ExpressionAttributeValues: { ':n': 70 },
            },
          },
        ],
      }),
    );
    expect((await sdk.send(new GetCommand({ TableName, Key: { pk: 'p', sk: 'q-a' } }))).Item?.n).toBe(70);
    const canceled = fast.send(
      new TransactWriteCommand({
        TransactItems: [
          { Put: { TableName, Item: item('t-2') } },
          {
            ConditionCheck: {
              TableName,
              Key: { pk: 'p', sk: 't-1' },
              ConditionExpression: 'n = :n',
              ExpressionAttributeValues: { ':n': 0 },
              ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
            },
          },
        ],
      }),
    );
    await expect(canceled).rejects.toBeInstanceOf(TransactionCanceledException);
    const error = (await canceled.catch((e: unknown) => e)) as TransactionCanceledException;
    expect(error.CancellationReasons?.map((r) => r.Code)).toEqual(['None', 'ConditionalCheckFailed']);
    expect(error.CancellationReasons?.[1]?.Item).toMatchObject({ sk: { S: 't-1' }, n: { N: '7' } });
    expect((await sdk.send(new GetCommand({ TableName, Key: { pk: 'p', sk: 't-2' } }))).Item).toBeUndefined();
  });

  it('refuses a command it does not know, and counts what it sends through its middleware', async () => {
    class OtherCommand {
      readonly input = {};
    }
    await expect(fast.send(new OtherCommand() as never)).rejects.toThrow(/does not send OtherCommand/);
    const seen: string[] = [];
    fastDocumentClientOf(sdkClient).middlewareStack.add((next, context) => async (args) => {
      seen.push(`${context.commandName} ${String(args.input.TableName)}`);
      return next(args);
    });
    await fast.send(new GetCommand({ TableName, Key: { pk: 'p', sk: 'q-b' } }));
    expect(seen).toEqual([`GetItemCommand ${TableName}`]);
  });

  it('sends binary values as the SDK does, and reads them back as bytes', async () => {
    const binary = {
      pk: 'p',
      sk: 'bin',
      b: new Uint8Array([0, 1, 254, 255]),
      bs: new Set([new Uint8Array([7])]),
    };
    await fast.send(new PutCommand({ TableName, Item: binary }));
    const viaSdk = await sdk.send(new GetCommand({ TableName, Key: { pk: 'p', sk: 'bin' } }));
    const viaFast = await fast.send(new GetCommand({ TableName, Key: { pk: 'p', sk: 'bin' } }));
    expect(viaSdk.Item).toEqual(binary);
    expect(viaFast.Item).toEqual(viaSdk.Item);
    expect(viaFast.Item?.b).toBeInstanceOf(Uint8Array);
    const refuse = (client: typeof fast) =>
      client
        .send(
          new PutCommand({
            TableName,
            Item: binary,
            ConditionExpression: 'attribute_not_exists(pk)',
            ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
          }),
        )
        .then(
          () => undefined,
          (error: ConditionalCheckFailedException) => error.Item,
        );
    // In an error's item too, bytes as the SDK gives them (the item itself left marshalled).
    const [fromFast, fromSdk] = await Promise.all([refuse(fast), refuse(sdk)]);
    expect(fromFast?.b?.B).toBeInstanceOf(Uint8Array);
    expect(fromFast).toEqual(fromSdk);
  });

  it.each([
    ['Expected', new PutCommand({ TableName, Item: item('x'), Expected: { n: { Exists: false } } })],
    ['ScanFilter', new ScanCommand({ TableName, ScanFilter: { n: { ComparisonOperator: 'NOT_NULL' } } })],
    [
      'ItemCollectionMetrics',
      new PutCommand({ TableName, Item: item('x'), ReturnItemCollectionMetrics: 'SIZE' }),
    ],
  ])('refuses %s, which it would not convert, before sending anything', async (field, command) => {
    await expect(fast.send(command as never)).rejects.toThrow(new RegExp(`does not convert ${field}`));
    expect((await sdk.send(new GetCommand({ TableName, Key: { pk: 'p', sk: 'x' } }))).Item).toBeUndefined();
  });

  it('retries a transaction whose answer was lost without running it twice', async () => {
    const proxy = await answerLostOnce(inject('ddbEndpoint'), 'TransactWriteItems');
    try {
      const viaProxy = fastDocumentClient(dynamoDbClient(proxy.origin));
      const once = await viaProxy.send(
        new TransactWriteCommand({
          TransactItems: [
            { Put: { TableName, Item: item('once'), ConditionExpression: 'attribute_not_exists(pk)' } },
          ],
        }),
      );
      expect(proxy.lost).toBe(1);
      expect(once.$metadata.attempts).toBe(2);
      expect((await sdk.send(new GetCommand({ TableName, Key: { pk: 'p', sk: 'once' } }))).Item?.n).toBe(7);
    } finally {
      await proxy.close();
    }
  });
});

describe('the fast document client without retries', () => {
  it("sends a request once: a lost answer is its caller's to retry", async () => {
    const proxy = await answerLostOnce(inject('ddbEndpoint'), 'UpdateItem');
    try {
      const once = fastDocumentClientOnce(dynamoDbClient(proxy.origin));
      const lost = once.send(
        new UpdateCommand({
          TableName,
          Key: { pk: 'p', sk: 'once-only' },
          UpdateExpression: 'ADD n :one',
          ExpressionAttributeValues: { ':one': 1 },
        }),
      );
      await expect(lost).rejects.toMatchObject({ name: 'InternalServerError', $metadata: { attempts: 1 } });
      expect(proxy.lost).toBe(1);
      // DynamoDB ran it once; nothing sent it again.
      expect((await sdk.send(new GetCommand({ TableName, Key: { pk: 'p', sk: 'once-only' } }))).Item?.n).toBe(
        1,
      );
    } finally {
      await proxy.close();
    }
  });
});

/**
 * A proxy to DynamoDB Local that forwards everything but answers the first request of `action`
 * with a 500 after DynamoDB ran it: an answer lost on the way back.
 */
async function answerLostOnce(endpoint: string, action: string) {
  let lost = 0;
  const server = createServer(async (request, response) => {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const forwarded = await fetch(endpoint, {
      method: 'POST',
      headers: Object.fromEntries(
        Object.entries(request.headers).filter(([name]) => name !== 'host' && name !== 'content-length'),
      ) as Record<string, string>,
      body: Buffer.concat(chunks),
    });
    const body = Buffer.from(await forwarded.arrayBuffer());
    if (lost === 0 && String(request.headers['x-amz-target']).endsWith(`.${action}`)) {
      lost++;
      response.writeHead(500, { 'x-amzn-errortype': 'InternalServerError' }).end('{}');
      return;
    }
    response.writeHead(forwarded.status, { 'content-type': 'application/x-amz-json-1.0' }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    get lost() {
      return lost;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
