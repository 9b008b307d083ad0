import type { TestProject } from 'vitest/node';
import { startDynamoDbLocal } from '../../local/dynamodb.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Endpoint of the DynamoDB Local shared by every test file; each file uses its own table names. */
    ddbEndpoint: string;
  }
}

/** One DynamoDB Local (a JVM) for the whole run: starting one per file would cost ~3 s each. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const ddb = await startDynamoDbLocal({ port: 0 });
  project.provide('ddbEndpoint', ddb.endpoint);
  return () => ddb.stop();
}
