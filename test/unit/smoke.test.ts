import { CreateTableCommand, DynamoDBClient, ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { describe, expect, inject, it } from 'vitest';

describe('DynamoDB Local from the global setup', () => {
  it('answers over a real connection', async () => {
    const db = new DynamoDBClient({
      endpoint: inject('ddbEndpoint'),
      region: 'us-east-1',
      credentials: { accessKeyId: 'x', secretAccessKey: 'x' },
    });
    await db.send(
      new CreateTableCommand({
        TableName: 'smoke',
        BillingMode: 'PAY_PER_REQUEST',
        AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
        KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
      }),
    );
    const tables = await db.send(new ListTablesCommand({}));
    expect(tables.TableNames).toContain('smoke');
  });
});
