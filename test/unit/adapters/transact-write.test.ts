/**
 * Transaction outcomes DynamoDB Local cannot be made to produce on demand (a collision with
 * another transaction), injected with aws-sdk-client-mock.
 */
import { DynamoDBClient, TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, TransactWriteCommand } from '@aws-sdk/lib-dynamodb';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it } from 'vitest';
import { transactWrite } from '../../../lambdas/adapters/dynamodb.ts';

const documents = mockClient(DynamoDBDocumentClient);
const db = DynamoDBDocumentClient.from(
  new DynamoDBClient({ region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } }),
);
const input = { TransactItems: [] };

function canceled(...codes: string[]): TransactionCanceledException {
  return new TransactionCanceledException({
    message: 'Transaction cancelled',
    $metadata: {},
    CancellationReasons: codes.map((Code) => ({ Code })),
  });
}

afterEach(() => documents.reset());

describe('transactWrite', () => {
  it('runs a transaction again that collided with another one, until it goes through', async () => {
    documents
      .on(TransactWriteCommand)
      .rejectsOnce(canceled('TransactionConflict', 'None'))
      .rejectsOnce(canceled('None', 'TransactionConflict'))
      .resolves({});
    expect(await transactWrite(db, input, [1, 1, 1])).toEqual({ ok: true, value: undefined });
    expect(documents.commandCalls(TransactWriteCommand)).toHaveLength(3);
  });

  it('gives up once its retries are spent, throwing the collision', async () => {
    documents.on(TransactWriteCommand).rejects(canceled('TransactionConflict'));
    await expect(transactWrite(db, input, [1, 1])).rejects.toBeInstanceOf(TransactionCanceledException);
    expect(documents.commandCalls(TransactWriteCommand)).toHaveLength(3);
  });

  it('answers failed conditions by position, without retrying', async () => {
    documents
      .on(TransactWriteCommand)
      .rejects(canceled('None', 'ConditionalCheckFailed', 'TransactionConflict'));
    expect(await transactWrite(db, input, [1, 1])).toEqual({ ok: false, error: [1] });
    expect(documents.commandCalls(TransactWriteCommand)).toHaveLength(1);
  });

  it('throws any other cancellation at once', async () => {
    documents.on(TransactWriteCommand).rejects(canceled('ValidationError', 'None'));
    await expect(transactWrite(db, input, [1, 1])).rejects.toBeInstanceOf(TransactionCanceledException);
    expect(documents.commandCalls(TransactWriteCommand)).toHaveLength(1);
  });
});
