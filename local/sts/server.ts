/**
 * A local AWS STS endpoint speaking the query protocol the SDK's STSClient uses (form-encoded POST,
 * XML answers): `AssumeRole` and `GetCallerIdentity`. Callers sign with SigV4 (verified like AWS);
 * AssumeRole checks the role exists, the session name, the duration against the role's maximum and
 * the session policy (parsed, at most 2,048 characters as AWS allows), and issues temporary
 * credentials that the local S3 gateway then enforces.
 */
import { createHash, randomUUID } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { CredentialStore, Principal } from './credentials.ts';
import { type PolicyDocument, parsePolicy } from './policy.ts';
import { parseRawQuery, verifySigV4 } from './sigv4.ts';

export interface LocalRole {
  readonly roleArn: string;
  /** The role's identity policy: what any session of it may do at most. */
  readonly policy: PolicyDocument;
  /** @default 3600 (the AWS default for a role) */
  readonly maxSessionDurationSeconds?: number;
}

export interface LocalStsOptions {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly region: string;
  readonly accountId: string;
  readonly credentials: CredentialStore;
  readonly roles: readonly LocalRole[];
  /** Epoch ms. @default Date.now */
  readonly now?: () => number;
}

export interface RunningLocalSts {
  readonly endpoint: string;
  readonly port: number;
  stop(): Promise<void>;
}

/** AWS's bounds (AssumeRole API reference). */
export const assumeRoleLimits = {
  minDurationSeconds: 900,
  defaultDurationSeconds: 3600,
  maxPolicyCharacters: 2048,
  roleSessionName: /^[\w+=,.@-]{2,64}$/,
} as const;

const MAX_BODY_BYTES = 64 * 1024;
const XMLNS = 'https://sts.amazonaws.com/doc/2011-06-15/';

class StsError {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly message: string,
  ) {}
}

export function xmlEscape(text: string): string {
  return text.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

function errorXml(error: StsError, requestId: string): string {
  const type = error.status >= 500 ? 'Receiver' : 'Sender';
  return `<ErrorResponse xmlns="${XMLNS}"><Error><Type>${type}</Type><Code>${error.code}</Code><Message>${xmlEscape(error.message)}</Message></Error><RequestId>${requestId}</RequestId></ErrorResponse>`;
}

async function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).byteLength;
    if (size > MAX_BODY_BYTES) return undefined;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

function roleNameOf(roleArn: string): string {
  return roleArn.slice(roleArn.lastIndexOf('/') + 1);
}

function assumeRole(
  params: Map<string, string>,
  caller: Principal,
  options: LocalStsOptions,
  now: number,
): string {
  if (caller.kind !== 'account') {
    // Role chaining exists in AWS, but the local cloud has no use for it: refuse rather than guess.
    throw new StsError(403, 'AccessDenied', 'role sessions cannot assume roles in the local cloud');
  }
  const roleArn = params.get('RoleArn') ?? '';
  const sessionName = params.get('RoleSessionName') ?? '';
  const role = options.roles.find((r) => r.roleArn === roleArn);
  if (!role)
    throw new StsError(403, 'AccessDenied', `Not authorized to perform sts:AssumeRole on ${roleArn}`);
  if (!assumeRoleLimits.roleSessionName.test(sessionName)) {
    throw new StsError(
      400,
      'ValidationError',
      "1 validation error detected: Value at 'roleSessionName' failed to satisfy constraint",
    );
  }
  const maxDuration = role.maxSessionDurationSeconds ?? assumeRoleLimits.defaultDurationSeconds;
  const durationText = params.get('DurationSeconds');
  const duration =
    durationText === undefined ? assumeRoleLimits.defaultDurationSeconds : Number(durationText);
  if (
    !Number.isInteger(duration) ||
    duration < assumeRoleLimits.minDurationSeconds ||
    duration > maxDuration
  ) {
    throw new StsError(
      400,
      'ValidationError',
      `The requested DurationSeconds exceeds the MaxSessionDuration set for this role (${assumeRoleLimits.minDurationSeconds}-${maxDuration}).`,
    );
  }
  const policyText = params.get('Policy');
  let sessionPolicy: PolicyDocument | undefined;
  if (policyText !== undefined) {
    if (policyText.length > assumeRoleLimits.maxPolicyCharacters) {
      throw new StsError(
        400,
        'PackedPolicyTooLarge',
        'Packed policy consumes more than 100% of allotted space',
      );
    }
    const parsed = parsePolicy(policyText);
    if (!parsed.ok) throw new StsError(400, 'MalformedPolicyDocument', parsed.message);
    sessionPolicy = parsed.policy;
  }
  const session = options.credentials.issue({
    expiresAt: now + duration * 1000,
    roleArn,
    roleSessionName: sessionName,
    rolePolicy: role.policy,
    ...(sessionPolicy ? { sessionPolicy } : {}),
  });
  const roleId = `AROA${createHash('sha256').update(roleArn).digest('hex').slice(0, 17).toUpperCase()}`;
  const assumedArn = `arn:aws:sts::${options.accountId}:assumed-role/${roleNameOf(roleArn)}/${sessionName}`;
  const packedSize =
    policyText === undefined
      ? 0
      : Math.ceil((policyText.length * 100) / assumeRoleLimits.maxPolicyCharacters);
  return `<AssumeRoleResult><Credentials><AccessKeyId>${session.accessKeyId}</AccessKeyId><SecretAccessKey>${xmlEscape(session.secretAccessKey)}</SecretAccessKey><SessionToken>${xmlEscape(session.sessionToken)}</SessionToken><Expiration>${new Date(session.expiresAt).toISOString()}</Expiration></Credentials><AssumedRoleUser><AssumedRoleId>${roleId}:${xmlEscape(sessionName)}</AssumedRoleId><Arn>${xmlEscape(assumedArn)}</Arn></AssumedRoleUser><PackedPolicySize>${packedSize}</PackedPolicySize></AssumeRoleResult>`;
}

function callerIdentity(caller: Principal, options: LocalStsOptions): string {
  const arn =
    caller.kind === 'account'
      ? `arn:aws:iam::${options.accountId}:root`
      : `arn:aws:sts::${options.accountId}:assumed-role/${roleNameOf(caller.roleArn)}/${caller.roleSessionName}`;
  return `<GetCallerIdentityResult><Arn>${xmlEscape(arn)}</Arn><UserId>${caller.accessKeyId}</UserId><Account>${options.accountId}</Account></GetCallerIdentityResult>`;
}

async function handle(req: IncomingMessage, options: LocalStsOptions): Promise<string> {
  const now = (options.now ?? Date.now)();
  const url = req.url ?? '/';
  const queryStart = url.indexOf('?');
  const body = await readBody(req);
  if (body === undefined) throw new StsError(413, 'RequestEntityTooLarge', 'request body too large');
  const query = parseRawQuery(queryStart === -1 ? '' : url.slice(queryStart + 1));
  const form = parseRawQuery(body.toString('utf8').replaceAll('+', '%20'));
  if (!query || !form) throw new StsError(400, 'MalformedQueryString', 'the query or form body is malformed');
  const verified = await verifySigV4(
    {
      method: req.method ?? 'GET',
      rawPath: queryStart === -1 ? url : url.slice(0, queryStart),
      query,
      headers: req.headers,
    },
    {
      service: 'sts',
      region: options.region,
      credentials: options.credentials,
      now,
      bodySha256Hex: createHash('sha256').update(body).digest('hex'),
    },
  );
  if (!verified.ok) throw new StsError(verified.error.status, verified.error.code, verified.error.message);
  const params = new Map([...query, ...form]);
  const action = params.get('Action');
  const caller = verified.value.principal;
  if (action === 'AssumeRole') return assumeRole(params, caller, options, now);
  if (action === 'GetCallerIdentity') return callerIdentity(caller, options);
  throw new StsError(400, 'InvalidAction', `Could not find operation ${action ?? ''} for version 2011-06-15`);
}

function respond(res: ServerResponse, status: number, xml: string, requestId: string): void {
  res.writeHead(status, { 'content-type': 'text/xml', 'x-amzn-requestid': requestId });
  res.end(xml);
}

export async function startLocalSts(options: LocalStsOptions): Promise<RunningLocalSts> {
  const server = http.createServer((req, res) => {
    const requestId = randomUUID();
    handle(req, options).then(
      (result) => {
        const action = result.startsWith('<AssumeRoleResult>') ? 'AssumeRole' : 'GetCallerIdentity';
        respond(
          res,
          200,
          `<${action}Response xmlns="${XMLNS}">${result}<ResponseMetadata><RequestId>${requestId}</RequestId></ResponseMetadata></${action}Response>`,
          requestId,
        );
      },
      (error: unknown) => {
        const stsError =
          error instanceof StsError ? error : new StsError(500, 'InternalFailure', 'internal error');
        respond(res, stsError.status, errorXml(stsError, requestId), requestId);
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const host = options.host.includes(':')
    ? `[${options.host}]`
    : options.host === '0.0.0.0'
      ? '127.0.0.1'
      : options.host;
  return {
    endpoint: `http://${host}:${port}`,
    port,
    stop: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}
