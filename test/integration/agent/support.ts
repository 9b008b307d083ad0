/**
 * The world an agent test runs in: the local IoT Core (broker, shadows, mTLS), a file server for
 * downloads, and the service side played by the test: it signs manifests, writes desired.ota, and
 * answers download requests with URLs.
 */
import { createHash, generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import type { AgentConfig } from '../../../agent/config.ts';
import { downloadTopics } from '../../../lambdas/definitions/rules.ts';
import { compactPresignedUrls } from '../../../lambdas/domain/downloads/presigned.ts';
import {
  canonicalJson,
  type FullUpdateManifest,
  fileIdFor,
  type UpdateFile,
  type UpdateId,
  type UpdateStep,
} from '../../../lambdas/domain/manifest/index.ts';
import { type Signer, signUpdateManifest, type TrustedKey } from '../../../lambdas/domain/signing/index.ts';
import { type LocalIotCore, startLocalIotCore } from '../../../local/iot/index.ts';
import { aduTestScript } from '../../support/adu-script.ts';
import { readLines } from '../../support/files.ts';
import { FileServer } from '../../unit/agent/file-server.ts';

export const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('base64');

export function makeSigner(keyId: string): { signer: Signer; trusted: TrustedKey } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = publicKey.export({ format: 'jwk' });
  const signer: Signer = {
    keyId,
    sign: async (data) =>
      new Uint8Array(sign('sha256', data, { key: privateKey as KeyObject, dsaEncoding: 'ieee-p1363' })),
  };
  return { signer, trusted: { ...jwk, kid: keyId } as TrustedKey };
}

/** The install script the test devices run (test/support/adu-script.ts). */
export const testScript = aduTestScript;

export interface FileSpec {
  readonly name: string;
  readonly body: Buffer;
}

export interface BuiltUpdate {
  readonly manifest: FullUpdateManifest;
  readonly children: FullUpdateManifest[];
  /** fileId → body, for the file server (parent files, child manifests, child files). */
  readonly bodies: Map<string, Buffer>;
}

const fileEntry = (f: FileSpec): UpdateFile => ({
  fileName: f.name,
  sizeInBytes: f.body.length,
  hashes: { sha256: sha256(f.body) },
});

/** Builds a full update manifest from named files and steps that name files by file name. */
export function buildManifest(
  updateId: UpdateId,
  compatibility: Record<string, string>[],
  files: readonly FileSpec[],
  steps: readonly (
    | { handler: string; files: string[]; handlerProperties?: Record<string, unknown> }
    | { child: FullUpdateManifest }
  )[],
): { manifest: FullUpdateManifest; bodies: Map<string, Buffer> } {
  const bodies = new Map<string, Buffer>();
  const entries: Record<string, UpdateFile> = {};
  for (const f of files) {
    const id = fileIdFor(updateId, f.name);
    entries[id] = fileEntry(f);
    bodies.set(id, f.body);
  }
  const built: UpdateStep[] = steps.map((s) => {
    if ('child' in s) {
      const text = Buffer.from(canonicalJson(s.child));
      const name = `${s.child.updateId.provider}.${s.child.updateId.name}.${s.child.updateId.version}.updatemanifest.json`;
      const id = fileIdFor(updateId, name);
      entries[id] = fileEntry({ name, body: text });
      bodies.set(id, text);
      return { type: 'reference', detachedManifestFileId: id };
    }
    return {
      handler: s.handler,
      files: s.files.map((n) => fileIdFor(updateId, n)),
      ...(s.handlerProperties ? { handlerProperties: s.handlerProperties } : {}),
    };
  });
  return {
    manifest: {
      manifestVersion: '4',
      updateId,
      compatibility,
      instructions: { steps: built },
      files: entries,
      createdDateTime: '2026-11-01T00:00:00Z',
    },
    bodies,
  };
}

export interface DeployOptions {
  readonly deploymentId: string;
  readonly attempt?: number;
  readonly action?: 'apply' | 'cancel';
  readonly manifest: FullUpdateManifest;
  readonly children?: FullUpdateManifest[];
  readonly signer?: Signer;
  readonly ttlSeconds?: number;
  readonly rollback?: boolean;
  /** Replaces the signature (bad signature tests). */
  readonly signature?: string;
}

/** A device's request on its `ota` shadow, as the observing rule passes it on. */
export interface ShadowRequestSeen {
  readonly topic: string;
  readonly state?: {
    readonly reported?: { readonly ota?: Record<string, unknown> };
    readonly desired?: unknown;
  };
  readonly version?: number;
}

const observeRule = {
  name: 'test_observe_shadow_requests',
  sql: "SELECT *, topic() AS topic FROM '$aws/things/+/shadow/name/ota/+'",
  awsIotSqlVersion: '2016-03-23',
  actions: [{ lambda: { function: 'observe' } }],
} as const;

export class World {
  readonly root: string;
  readonly iot: LocalIotCore;
  readonly files: FileServer;
  readonly service: MqttClient;
  readonly signer: Signer;
  readonly trusted: TrustedKey;
  /** Download requests seen, newest last. */
  readonly downloadRequests: { thing: string; body: Record<string, unknown> }[] = [];
  /** When set, download requests are refused with this code. */
  rejectDownloads: string | undefined;
  /** Token put in the URLs handed out (the file server may be told to accept only some). */
  urlToken = 'good';
  /** The signed manifest of each deployment, handed out with its download authorization. */
  readonly #signed = new Map<string, { manifest: string; signature: string }>();

  private constructor(root: string, iot: LocalIotCore, files: FileServer, service: MqttClient) {
    this.root = root;
    this.iot = iot;
    this.files = files;
    this.service = service;
    const { signer, trusted } = makeSigner('test-key-1');
    this.signer = signer;
    this.trusted = trusted;
    service.on('message', (topic, payload) => this.#answer(topic, payload));
  }

  /** `observe` sees every request a device publishes on its `ota` shadow (get, update). */
  static async start(options: { observe?: (request: ShadowRequestSeen) => void } = {}): Promise<World> {
    const root = await mkdtemp(join(tmpdir(), 'agent-it-'));
    const { observe } = options;
    const iot = await startLocalIotCore({
      adminClientIds: ['test-service'],
      ...(observe
        ? {
            rules: [observeRule],
            resolveLambda: (name: string) =>
              name === 'observe' ? async (event: unknown) => observe(event as ShadowRequestSeen) : undefined,
          }
        : {}),
    });
    const files = new FileServer();
    await files.start();
    const service = await mqtt.connectAsync(iot.endpoints.mqtt, {
      clientId: 'test-service',
      reconnectPeriod: 0,
    });
    await service.subscribeAsync('ota/things/+/downloads/request', { qos: 1 });
    return new World(root, iot, files, service);
  }

  async stop(): Promise<void> {
    await this.service.endAsync(true);
    await this.files.stop();
    await this.iot.stop();
    await rm(this.root, { recursive: true, force: true });
  }

  serve(bodies: Map<string, Buffer>): void {
    for (const [id, body] of bodies) this.files.files.set(`/files/${id}`, { body });
  }

  /** A device's configuration (plain MQTT unless `tls` is given) with its own folders. */
  async deviceConfig(
    thingName: string,
    overrides: Partial<AgentConfig> = {},
  ): Promise<AgentConfig & { readonly scriptState: string }> {
    const dir = join(this.root, thingName);
    const scriptState = join(dir, 'script-state');
    await mkdir(scriptState, { recursive: true });
    const url = new URL(this.iot.endpoints.mqtt);
    return {
      thingName,
      mqtt: { host: url.hostname, port: Number(url.port) },
      workDir: join(dir, 'work'),
      stateDir: join(dir, 'state'),
      trustedKeys: [this.trusted],
      compatibility: { manufacturer: 'contoso', model: 'toaster' },
      components: [],
      handlers: { file: { destinations: { config: join(dir, 'installed', 'app.conf') } } },
      progressIntervalMs: 0,
      logLevel: 'warn',
      scriptState,
      ...overrides,
    };
  }

  /**
   * Signs a deployment's manifest as the deployments API does and keeps it for the download
   * authorization, which hands it out (ADR 0010).
   */
  async sign(options: DeployOptions): Promise<string> {
    const signature =
      options.signature ??
      (await signUpdateManifest({
        manifest: options.manifest,
        children: options.children ?? [],
        signer: options.signer ?? this.signer,
        now: new Date(),
        ttlSeconds: options.ttlSeconds ?? 3600,
        extraClaims: { deploymentId: options.deploymentId, rollback: options.rollback ?? false },
      }));
    this.#signed.set(options.deploymentId, { manifest: canonicalJson(options.manifest), signature });
    return signature;
  }

  /** Signs the deployment, then writes desired.ota as the fan-out does (every key) and publishes the delta. */
  async deploy(thingName: string, options: DeployOptions): Promise<void> {
    await this.sign(options);
    const { provider, name, version } = options.manifest.updateId;
    const ota = {
      deploymentId: options.deploymentId,
      attempt: options.attempt ?? 1,
      action: options.action ?? 'apply',
      updateId: { provider, name, version },
    };
    this.writeDesired(thingName, { ota });
  }

  writeDesired(thingName: string, desired: Record<string, unknown>): void {
    const reply = this.iot.shadows.update(
      { thingName, shadowName: 'ota' },
      Buffer.from(JSON.stringify({ state: { desired } })),
    );
    if (!reply.ok) throw new Error(`shadow update refused: ${JSON.stringify(reply.body)}`);
    this.iot.shadows.publishNotifications(reply);
  }

  cancel(thingName: string): void {
    this.writeDesired(thingName, { ota: { action: 'cancel' } });
  }

  reported(thingName: string): Record<string, unknown> | undefined {
    const reply = this.iot.shadows.get({ thingName, shadowName: 'ota' }, Buffer.from('{}'));
    if (!reply.ok) return undefined;
    const state = (reply.body as { state?: { reported?: { ota?: Record<string, unknown> } } }).state;
    return state?.reported?.ota;
  }

  async waitForReported(
    thingName: string,
    predicate: (ota: Record<string, unknown>) => boolean,
    timeoutMs = 15_000,
  ): Promise<Record<string, unknown>> {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      const ota = this.reported(thingName);
      if (ota && predicate(ota)) return ota;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(
      `reported.ota of ${thingName} never matched; last: ${JSON.stringify(this.reported(thingName))}`,
    );
  }

  #answer(topic: string, payload: Buffer): void {
    const thing = topic.split('/')[2] ?? '';
    const body = JSON.parse(payload.toString()) as Record<string, unknown>;
    this.downloadRequests.push({ thing, body });
    if (this.rejectDownloads) {
      this.iot.publish(
        downloadTopics.rejected(thing),
        JSON.stringify({
          clientToken: body.clientToken,
          code: this.rejectDownloads,
          message: 'refused by the test',
        }),
        1,
      );
      return;
    }
    this.iot.publish(
      downloadTopics.accepted(thing),
      JSON.stringify({ clientToken: body.clientToken, ...this.#grant(String(body.deploymentId)) }),
      1,
    );
  }

  /** The grant the service would answer for a deployment the test signed, valid `lifetimeMs`. */
  #grant(deploymentId: string, lifetimeMs = 600_000, attempt = 1): Record<string, unknown> {
    const signed = this.#signed.get(deploymentId);
    if (!signed) throw new Error(`the test never signed deployment ${deploymentId}`);
    // As the authorizer sends them: the URLs' shared part once, each file's path and signature.
    const urls = new Map(
      [...this.files.files.keys()]
        .filter((p) => p.startsWith('/files/'))
        .map((p) => {
          const url = this.files.url(p, this.urlToken);
          return [p.slice('/files/'.length), `${url}${url.includes('?') ? '&' : '?'}X-Amz-Signature=test`];
        }),
    );
    const compact = compactPresignedUrls(urls);
    if (!compact.ok) throw new Error(compact.error.message);
    return {
      deploymentId,
      attempt,
      mode: 'presigned',
      expiresAt: new Date(Date.now() + lifetimeMs).toISOString(),
      ...signed,
      ...compact.value,
    };
  }

  /** Signs the deployment and sends its grant unasked, as the fan-out does with a notification. */
  async pushGrant(thingName: string, options: DeployOptions, lifetimeMs?: number): Promise<void> {
    await this.sign(options);
    const grant = this.#grant(options.deploymentId, lifetimeMs, options.attempt ?? 1);
    this.iot.publish(downloadTopics.accepted(thingName), JSON.stringify(grant), 0);
  }
}

export async function writeExecutable(path: string, text: string): Promise<void> {
  await writeFile(path, text);
  await chmod(path, 0o755);
}

/** Waits (10 s at most) until the test script logged `call` in `scriptState`'s calls.log. */
export async function waitForCall(scriptState: string, call: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await readLines(join(scriptState, 'calls.log'))).includes(call) && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 20));
}

/** A `microsoft/script:1` step running the test script with its state folder and criteria. */
export function scriptStep(state: string, criteria: string, extra = '') {
  return {
    handler: 'microsoft/script:1',
    files: ['install.sh'],
    handlerProperties: {
      scriptFileName: 'install.sh',
      arguments: `--state ${state} ${extra}`.trim(),
      installedCriteria: criteria,
    },
  };
}

export { readLines } from '../../support/files.ts';
