import { randomUUID } from 'node:crypto';
import * as dynamodbModel from '@aws-sdk/client-dynamodb';
import { type DynamoDBClient, DynamoDBServiceException } from '@aws-sdk/client-dynamodb';
import {
  BatchExecuteStatementCommand,
  BatchGetCommand,
  BatchWriteCommand,
  DeleteCommand,
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  ScanCommand,
  TransactWriteCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import { marshall, unmarshall } from '@aws-sdk/util-dynamodb';
import {
  type AwsHttp,
  type AwsHttpResponse,
  jsonBodyOf,
  MiddlewareChain,
  makeAwsHttp,
  metadataOf,
  onePerClient,
  retriesOn,
  type ServiceModel,
  serviceErrorOf,
  withRetries,
} from './aws-http.ts';

/**
 * The document client of the per-device handlers: the commands of `@aws-sdk/lib-dynamodb` they
 * send, with the same marshalling (undefined attributes dropped), the same outputs and the same
 * exception classes (`ConditionalCheckFailedException` with its marshalled `Item`, as the SDK leaves it,
 * `TransactionCanceledException` with its reasons), sent as signed JSON over `undici` (see aws-http.ts for why). A command it
 * does not know is refused at once, not sent.
 */

type Item = Record<string, unknown>;
type Wire = Record<string, unknown>;

const MARSHALL = { removeUndefinedValues: true } as const;

const toWire = (value: unknown): unknown =>
  value === undefined ? undefined : marshall(value as Item, MARSHALL);
const fromWire = (value: unknown): unknown =>
  value === undefined ? undefined : unmarshall(value as Record<string, dynamodbModel.AttributeValue>);

/** A copy of `input` with the named attribute maps converted by `convert`. */
function converting(input: Wire, fields: readonly string[], convert: (value: unknown) => unknown): Wire {
  const out: Wire = { ...input };
  for (const field of fields) if (input[field] !== undefined) out[field] = convert(input[field]);
  return out;
}

const ITEM_FIELDS = ['Key', 'Item', 'ExpressionAttributeValues', 'ExclusiveStartKey'] as const;
const OUTPUT_FIELDS = ['Item', 'Attributes', 'LastEvaluatedKey'] as const;

function simpleIn(input: Wire): Wire {
  return converting(input, ITEM_FIELDS, toWire);
}

function simpleOut(output: Wire): Wire {
  const out = converting(output, OUTPUT_FIELDS, fromWire);
  if (Array.isArray(output.Items)) out.Items = output.Items.map(fromWire);
  return out;
}

function mapTables(tables: unknown, convert: (request: Wire) => Wire): Wire | undefined {
  if (!tables) return undefined;
  return Object.fromEntries(
    Object.entries(tables as Wire).map(([table, value]) => [table, convert(value as Wire)]),
  );
}

const batchGetKeys =
  (convert: (value: unknown) => unknown) =>
  (request: Wire): Wire => ({ ...request, Keys: (request.Keys as unknown[]).map(convert) });

function batchGetIn(input: Wire): Wire {
  return { ...input, RequestItems: mapTables(input.RequestItems, batchGetKeys(toWire)) };
}

function batchGetOut(output: Wire): Wire {
  const out: Wire = { ...output };
  if (output.Responses)
    out.Responses = Object.fromEntries(
      Object.entries(output.Responses as Record<string, unknown[]>).map(([t, items]) => [
        t,
        items.map(fromWire),
      ]),
    );
  if (output.UnprocessedKeys) out.UnprocessedKeys = mapTables(output.UnprocessedKeys, batchGetKeys(fromWire));
  return out;
}

function writeRequests(convert: (value: unknown) => unknown) {
  return (requests: Wire): Wire =>
    (requests as unknown as Wire[]).map((request) => ({
      ...(request.PutRequest
        ? { PutRequest: converting(request.PutRequest as Wire, ['Item'], convert) }
        : {}),
      ...(request.DeleteRequest
        ? { DeleteRequest: converting(request.DeleteRequest as Wire, ['Key'], convert) }
        : {}),
    })) as unknown as Wire;
}

function batchWriteIn(input: Wire): Wire {
  return { ...input, RequestItems: mapTables(input.RequestItems, writeRequests(toWire)) };
}

function batchWriteOut(output: Wire): Wire {
  const out: Wire = { ...output };
  if (output.UnprocessedItems)
    out.UnprocessedItems = mapTables(output.UnprocessedItems, writeRequests(fromWire));
  return out;
}

/** PartiQL parameters are attribute values, as the SDK marshals them. */
function batchStatementIn(input: Wire): Wire {
  const statements = (input.Statements as Wire[]).map((statement) =>
    statement.Parameters === undefined
      ? statement
      : { ...statement, Parameters: marshall(statement.Parameters as unknown[], MARSHALL) },
  );
  return { ...input, Statements: statements };
}

function batchStatementOut(output: Wire): Wire {
  if (!Array.isArray(output.Responses)) return output;
  const responses = (output.Responses as Wire[]).map((response) => {
    const out: Wire = converting(response, ['Item'], fromWire);
    const error = response.Error as Wire | undefined;
    if (error?.Item !== undefined) out.Error = converting(error, ['Item'], fromWire);
    return out;
  });
  return { ...output, Responses: responses };
}

const TRANSACT_KINDS = ['Put', 'Update', 'Delete', 'ConditionCheck'] as const;

function transactWriteIn(input: Wire): Wire {
  const items = (input.TransactItems as Wire[]).map((entry) =>
    Object.fromEntries(
      TRANSACT_KINDS.filter((kind) => entry[kind] !== undefined).map((kind) => [
        kind,
        converting(entry[kind] as Wire, ['Key', 'Item', 'ExpressionAttributeValues'], toWire),
      ]),
    ),
  );
  // The SDK fills this in so that a retried transaction is not run twice: DynamoDB answers a
  // repeat of a token it has seen (for 10 minutes) with the first run's outcome.
  return { ...input, TransactItems: items, ClientRequestToken: input.ClientRequestToken ?? randomUUID() };
}

/**
 * Binary attribute values go as base64, as the SDK sends them (`marshall` leaves them as
 * Uint8Arrays, which JSON would spell as objects). Only a request that holds one pays for the
 * second pass: in JSON text an object can follow `"B":` only where a binary value was.
 */
const BINARY_IN_REQUEST = /[{,]"B":\{|[{,]"BS":\[\{/;
const BINARY_IN_ANSWER = /[{,]"B":"|[{,]"BS":\[/;

export function wireJsonOf(input: Wire): string {
  const json = JSON.stringify(input);
  return BINARY_IN_REQUEST.test(json) ? JSON.stringify(input, base64Binary) : json;
}

function base64Binary(this: Record<string, unknown>, key: string, value: unknown): unknown {
  const raw = this[key];
  if (!(raw instanceof Uint8Array)) return value;
  return Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64');
}

/** An answer's JSON with binary values back as Uint8Arrays, as the SDK gives them. */
export function outputOf(text: string): Wire {
  return (BINARY_IN_ANSWER.test(text) ? JSON.parse(text, binaryFromBase64) : JSON.parse(text)) as Wire;
}

function binaryFromBase64(key: string, value: unknown): unknown {
  if (key === 'B' && typeof value === 'string') return bytesOf(value);
  if (key === 'BS' && Array.isArray(value) && value.every((entry) => typeof entry === 'string'))
    return value.map(bytesOf);
  return value;
}

const bytesOf = (base64: string): Uint8Array => new Uint8Array(Buffer.from(base64, 'base64'));

interface Operation {
  /** The DynamoDB API action (`X-Amz-Target`). */
  readonly action: string;
  readonly toWire: (input: Wire) => Wire;
  readonly fromWire: (output: Wire) => Wire;
}

const operations = new Map<unknown, Operation>([
  [GetCommand, { action: 'GetItem', toWire: simpleIn, fromWire: simpleOut }],
  [PutCommand, { action: 'PutItem', toWire: simpleIn, fromWire: simpleOut }],
  [UpdateCommand, { action: 'UpdateItem', toWire: simpleIn, fromWire: simpleOut }],
  [DeleteCommand, { action: 'DeleteItem', toWire: simpleIn, fromWire: simpleOut }],
  [QueryCommand, { action: 'Query', toWire: simpleIn, fromWire: simpleOut }],
  [ScanCommand, { action: 'Scan', toWire: simpleIn, fromWire: simpleOut }],
  [BatchGetCommand, { action: 'BatchGetItem', toWire: batchGetIn, fromWire: batchGetOut }],
  [BatchWriteCommand, { action: 'BatchWriteItem', toWire: batchWriteIn, fromWire: batchWriteOut }],
  [
    BatchExecuteStatementCommand,
    { action: 'BatchExecuteStatement', toWire: batchStatementIn, fromWire: batchStatementOut },
  ],
  [TransactWriteCommand, { action: 'TransactWriteItems', toWire: transactWriteIn, fromWire: (o) => o }],
]);

const dynamoDb: ServiceModel<DynamoDBServiceException> = {
  exports: dynamodbModel,
  base: DynamoDBServiceException,
};

/** An error answer as the SDK would throw it (with any items it carries, still marshalled, as the SDK leaves them). */
export function dynamoDbErrorOf(response: AwsHttpResponse, attempts: number): DynamoDBServiceException {
  // Binary values in the items an error carries come back as bytes, as the SDK gives them.
  const { __type: _type, ...fields } = jsonBodyOf(response, outputOf);
  return serviceErrorOf(dynamoDb, response, attempts, fields);
}

/**
 * Parameters whose attribute values this client would not convert (the legacy conditions and
 * key conditions, item collection metrics): refused rather than sent wrong. No store uses them.
 */
const UNCONVERTED_FIELDS = ['Expected', 'AttributeUpdates', 'KeyConditions', 'QueryFilter', 'ScanFilter'];

function refuseUnconverted(input: Wire): void {
  const field = UNCONVERTED_FIELDS.find((name) => input[name] !== undefined);
  if (field) throw new Error(`the fast document client does not convert ${field}; use expressions`);
  const metrics = input.ReturnItemCollectionMetrics;
  if (metrics !== undefined && metrics !== 'NONE')
    throw new Error('the fast document client does not convert ItemCollectionMetrics');
}

/** The document client's `send`, for the commands listed above. */
export type DocumentSender = Pick<DynamoDBDocumentClient, 'send'>;

export interface FastDocumentClient {
  send(command: { input: object }): Promise<Wire>;
  /** As an SDK client's: the benchmark counts requests with it. */
  readonly middlewareStack: MiddlewareChain;
  /** The same client (connections, middleware) sending each request once: its caller retries, with fresh values. */
  readonly once: FastDocumentClient;
}

function makeFastDocumentClient(
  http: AwsHttp,
  middlewareStack: MiddlewareChain = new MiddlewareChain(),
  attempts?: number,
): FastDocumentClient {
  let once: FastDocumentClient | undefined;
  const post = async (action: string, wireInput: Wire): Promise<Wire> => {
    const maxAttempts = attempts ?? (await http.target).maxAttempts;
    const body = wireJsonOf(wireInput);
    return withRetries(
      async (attempt) => {
        const response = await http.send({
          method: 'POST',
          path: '/',
          headers: {
            'content-type': 'application/x-amz-json-1.0',
            'x-amz-target': `DynamoDB_20120810.${action}`,
          },
          body,
        });
        if (response.status !== 200) throw dynamoDbErrorOf(response, attempt);
        const output = outputOf(response.body.toString('utf8'));
        return { ...output, $metadata: metadataOf(response, attempt) };
      },
      retriesOn(http, maxAttempts),
    );
  };
  return {
    middlewareStack,
    get once() {
      once ??= makeFastDocumentClient(http, middlewareStack, 1);
      return once;
    },
    async send(command) {
      const operation = operations.get(command.constructor);
      if (!operation) throw new Error(`the fast document client does not send ${command.constructor.name}`);
      refuseUnconverted(command.input as Wire);
      const output = await middlewareStack.run(
        `${operation.action}Command`,
        operation.toWire(command.input as Wire),
        (wireInput) => post(operation.action, wireInput),
      );
      return operation.fromWire(output);
    },
  };
}

/**
 * The fast document client on the SDK client's configuration, one per SDK client (so the stores
 * of one handler share its connections, and a benchmark can reach it to count).
 */
export function fastDocumentClient(
  client: DynamoDBClient = new dynamodbModel.DynamoDBClient({}),
): DocumentSender {
  return fastDocumentClientOf(client) as unknown as DocumentSender;
}

/** The fast document client without retries of its own, for a caller whose retries must carry fresh values. */
export function fastDocumentClientOnce(client: DynamoDBClient): DocumentSender {
  return fastDocumentClientOf(client).once as unknown as DocumentSender;
}

/** The fast client itself (its middleware stack), for the benchmark. */
export const fastDocumentClientOf = onePerClient((client: DynamoDBClient) =>
  // The SDK's DynamoDB client backs off from 25 ms, not the 50 of other services.
  makeFastDocumentClient(makeAwsHttp(client as never, 'dynamodb', 25)),
);
