import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { freePort, startDynamoDbLocal } from '../../../local/dynamodb.ts';

describe('DynamoDB Local', () => {
  it('refuses a port something already listens on, rather than taking that listener for its own', async () => {
    const port = await freePort();
    const squatter = net.createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => squatter.listen(port, '127.0.0.1', resolve));
    try {
      await expect(startDynamoDbLocal({ port })).rejects.toThrow(`port ${port} is already in use`);
    } finally {
      await new Promise((resolve) => squatter.close(resolve));
    }
  });
});
