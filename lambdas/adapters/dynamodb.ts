import { DynamoDBClient, TransactionCanceledException } from '@aws-sdk/client-dynamodb';
import {
  DynamoDBDocumentClient,
  TransactWriteCommand,
  type TransactWriteCommandInput,
} from '@aws-sdk/lib-dynamodb';
import { err, ok, type Result } from '../domain/result.ts';
import { withoutSdkRequestLog } from './sdk-clients.ts';

/**
 * The document client every handler uses: undefined attributes are dropped rather than refused,
 * since optional fields of our records are often absent. AWS's client when none is given.
 */
export function documentClient(client?: DynamoDBClient): DynamoDBDocumentClient {
  // The document client runs on the given client's middleware stack.
  return DynamoDBDocumentClient.from(withoutSdkRequestLog(client ?? new DynamoDBClient({})), {
    marshallOptions: { removeUndefinedValues: true },
  });
}

/** Which items of a canceled transaction failed their condition, by position. */
function failedConditions(error: TransactionCanceledException): number[] {
  return (error.CancellationReasons ?? []).flatMap((reason, i) =>
    reason.Code === 'ConditionalCheckFailed' ? [i] : [],
  );
}

/**
 * Runs a transaction; a failed condition is an expected outcome (the positions of the items whose
 * condition failed), anything else is thrown.
 */
export async function transactWrite(
  db: Pick<DynamoDBDocumentClient, 'send'>,
  input: TransactWriteCommandInput,
): Promise<Result<void, number[]>> {
  try {
    await db.send(new TransactWriteCommand(input));
    return ok(undefined);
  } catch (error) {
    if (error instanceof TransactionCanceledException) {
      const failed = failedConditions(error);
      if (failed.length > 0) return err(failed);
    }
    throw error;
  }
}
