/**
 * The operator's side of an end-to-end test on the local cloud (in process, ports 0, ephemeral):
 * imports through the real HTTP API (presigned PUTs, commit), deployments, their executions and
 * counters, and an observer of the download-authorization function. One cloud per test file.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import type { Observability } from '../../../lambdas/observability.ts';
import { type LocalCloud, localBucketName, startLocalCloud } from '../../../local/cloud.ts';

export type Json = Record<string, unknown>;

/** What the local cloud's functions logged (the local CloudWatch), kept for the tests to read. */
interface LogLine {
  readonly message: string;
  readonly fields: Json;
  readonly at: number;
}

function loggingObservability(lines: LogLine[]): Observability {
  const keep = (...args: unknown[]): void => {
    lines.push({ message: String(args[0]), fields: (args[1] ?? {}) as Json, at: Date.now() });
  };
  return {
    logger: { debug: () => {}, info: keep, warn: keep, error: keep },
    count: () => {},
    flush: () => {},
  };
}

/** One file of an import: its name and bytes. */
export interface ImportFile {
  readonly filename: string;
  readonly content: Buffer;
}

/** An update id as the API takes it. */
export interface UpdateIdentity {
  readonly provider: string;
  readonly name: string;
  readonly version: string;
}

/** When the download authorizer answered, for which thing, and how. */
export interface AuthorizationSeen {
  readonly thingName: string;
  readonly at: number;
  readonly answered: string;
}

export class E2eCloud {
  readonly cloud: LocalCloud;
  readonly #logs: LogLine[];
  readonly #dataDir: string;

  private constructor(cloud: LocalCloud, dataDir: string, logs: LogLine[]) {
    this.cloud = cloud;
    this.#dataDir = dataDir;
    this.#logs = logs;
  }

  /** Starts the cloud with a fast scheduler, so deployments end (status, counters) without help. */
  static async start(label: string): Promise<E2eCloud> {
    const dataDir = await mkdtemp(join(tmpdir(), `shadow-ota-${label}-`));
    const logs: LogLine[] = [];
    const cloud = await startLocalCloud(
      {
        host: '127.0.0.1',
        dataDir,
        ephemeral: true,
        bare: true,
        schedulerIntervalMs: 500,
        ports: { api: 0, s3: 0, dynamodb: 0, mqtt: 0, mqtts: 0, iotData: 0, iot: 0 },
      },
      loggingObservability(logs),
    );
    return new E2eCloud(cloud, dataDir, logs);
  }

  async stop(): Promise<void> {
    await this.cloud.stop();
    await rm(this.#dataDir, { recursive: true, force: true });
  }

  /** Every device report the acknowledgement path refused or cut (REPORT_INVALID), as logged. */
  refusedReports(): Json[] {
    const refusals = new Set(['device report refused', 'device report partly dropped']);
    return this.#logs.filter((l) => refusals.has(l.message)).map((l) => l.fields);
  }

  /** The download authorizer's answers to one thing, from its log lines, oldest first. */
  authorizationsOf(thingName: string): AuthorizationSeen[] {
    const answers: Readonly<Record<string, string>> = {
      'download authorized': 'accepted',
      'download request rejected': 'rejected',
    };
    return this.#logs
      .filter((l) => answers[l.message] !== undefined && l.fields.thingName === thingName)
      .map((l) => ({ thingName, at: l.at, answered: answers[l.message] ?? '' }));
  }

  async call(method: string, path: string, body?: unknown): Promise<{ status: number; body: Json }> {
    const res = await fetch(`${this.cloud.endpoints.api}${path}`, {
      method,
      headers: { 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as Json) : {} };
  }

  /**
   * Imports manifests (parent first), uploads every file through its presigned PUT URL and commits
   * the parent. Returns each file's object key (from its upload URL), for tests that tamper with S3.
   */
  async importUpdate(
    manifests: readonly Json[],
    files: readonly ImportFile[],
    parent: UpdateIdentity,
  ): Promise<Map<string, string>> {
    const imported = await this.call('POST', '/updates', { manifests });
    if (imported.status !== 201 && imported.status !== 200) {
      throw new Error(`import answered ${imported.status}: ${JSON.stringify(imported.body)}`);
    }
    const keys = new Map<string, string>();
    const updates = (imported.body.updates ?? []) as { files?: { filename: string; uploadUrl?: string }[] }[];
    for (const update of updates) {
      for (const target of update.files ?? []) {
        const file = files.find((f) => f.filename === target.filename);
        if (!target.uploadUrl || !file) continue;
        const put = await fetch(target.uploadUrl, { method: 'PUT', body: file.content });
        if (put.status !== 200) throw new Error(`upload of ${file.filename} answered ${put.status}`);
        keys.set(file.filename, objectKeyOf(target.uploadUrl));
      }
    }
    const { provider, name, version } = parent;
    const committed = await this.call('POST', `/updates/${provider}/${name}/${version}/commit`);
    if (committed.status !== 200) {
      throw new Error(`commit answered ${committed.status}: ${JSON.stringify(committed.body)}`);
    }
    return keys;
  }

  /** Replaces an artifact behind the service's back (what an attacker with bucket access would do). */
  async replaceObject(objectKey: string, content: Buffer): Promise<void> {
    await this.cloud.clients.s3.send(
      new PutObjectCommand({ Bucket: localBucketName, Key: objectKey, Body: content }),
    );
  }

  async deploy(update: UpdateIdentity, things: readonly string[], policy: Json = {}): Promise<string> {
    const created = await this.call('POST', '/deployments', {
      update,
      target: { things },
      policy: { abort: [], ...policy },
    });
    if (created.status !== 201 && created.status !== 202) {
      throw new Error(`POST /deployments answered ${created.status}: ${JSON.stringify(created.body)}`);
    }
    return String(created.body.deploymentId);
  }

  async cancel(deploymentId: string): Promise<number> {
    return (await this.call('POST', `/deployments/${deploymentId}/cancel`)).status;
  }

  async deployment(deploymentId: string): Promise<Json> {
    return (await this.call('GET', `/deployments/${deploymentId}`)).body;
  }

  /** GET /deployments/{id}/devices, by thing name. */
  async executions(deploymentId: string): Promise<Record<string, Json>> {
    const listed = (await this.call('GET', `/deployments/${deploymentId}/devices?limit=100`)).body;
    const items = (listed.devices ?? []) as Json[];
    return Object.fromEntries(items.map((item) => [String(item.thingName), item]));
  }

  /** The device's execution once it is in a terminal state (reports land asynchronously). */
  async finalExecution(deploymentId: string, thingName: string, timeoutMs = 20_000): Promise<Json> {
    const terminal = ['succeeded', 'failed', 'canceled', 'skipped', 'incompatible', 'timed_out'];
    const execution = await eventually(
      async () => (await this.executions(deploymentId))[thingName],
      (e) => terminal.includes(String(e?.state)),
      timeoutMs,
    ).catch(async (error: unknown) => {
      const listing = await this.call('GET', `/deployments/${deploymentId}/devices?limit=100`);
      const shadow = this.cloud.iot.shadows.get({ thingName, shadowName: 'ota' }, Buffer.from('{}'));
      throw new Error(
        `${(error as Error).message}; devices: ${JSON.stringify(listing.body)}; shadow: ${JSON.stringify(shadow.body)}; logs: ${JSON.stringify(this.#logs.slice(-5))}`,
      );
    });
    return execution ?? {};
  }

  /** The deployment once it ended (completed, canceled, aborted) and its counters caught up. */
  async endedDeployment(deploymentId: string, timeoutMs = 20_000): Promise<Json> {
    await this.cloud.iot.rulesIdle();
    await this.cloud.acknowledgements.countersCaughtUp();
    return eventually(
      () => this.deployment(deploymentId),
      (d) => !['scheduled', 'expanding', 'rolling_out'].includes(String(d.status)),
      timeoutMs,
    );
  }
}

/** `/bucket/key...?X-Amz-...` → `key...` (path-style presigned URL of the local S3). */
function objectKeyOf(uploadUrl: string): string {
  const path = decodeURIComponent(new URL(uploadUrl).pathname);
  return path.split('/').slice(2).join('/');
}

export async function eventually<T>(
  read: () => Promise<T>,
  done: (value: T) => boolean,
  timeoutMs = 15_000,
  intervalMs = 100,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > end)
      throw new Error(`condition not met within ${timeoutMs} ms: ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

export const countsOf = (deployment: Json): Record<string, number> =>
  (deployment.counts ?? {}) as Record<string, number>;
