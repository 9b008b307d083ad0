/**
 * The local AWS IoT Core: MQTT broker (plain + mutual TLS), Device Shadow service, data-plane and
 * registry HTTP APIs, rules engine and lifecycle events, in this process, with the local SQS queues
 * the rules' `sqs` actions send to (local/queues.ts). See docs/adr for what it reproduces of AWS and
 * what it leaves out.
 *
 *   const iot = await startLocalIotCore({ dataDir, rules: topicRules, resolveLambda });
 *   // iot.endpoints.{mqtt, mqtts, iotData, iot}; ... await iot.stop();
 */

import { type QueueDefinition, queues as queueDefinitions } from '../../lambdas/definitions/queues.ts';
import { type TopicRuleDefinition, topicRules } from '../../lambdas/definitions/rules.ts';
import { tlsDirOf } from '../layout.ts';
import { type DeadLetter, type LocalQueue, type LocalQueueOptions, startLocalQueue } from '../queues.ts';
import { startBroker } from './broker.ts';
import {
  type ClientCertificate,
  issueClientCertificate,
  loadOrCreateTlsMaterial,
  type TlsMaterial,
} from './certs.ts';
import { startHttpServer } from './http/common.ts';
import { makeDataPlaneHandler } from './http/data-plane.ts';
import { makeRegistryHandler } from './http/registry-api.ts';
import { makeRateLimiter, type ShadowRateLimits } from './rate-limit.ts';
import { Registry } from './registry.ts';
import { type LambdaFailure, type LambdaResolver, RulesEngine } from './rules/engine.ts';
import { ShadowService } from './shadow/service.ts';
import { ShadowStore } from './shadow/store.ts';
import { parseShadowRequestTopic } from './topics.ts';

export type { DeadLetter, LocalQueue } from '../queues.ts';
export type { ClientCertificate, TlsMaterial } from './certs.ts';
export type { ShadowRateLimits } from './rate-limit.ts';
export type { Registry } from './registry.ts';
export type { LambdaFailure, LambdaResolver, LocalLambdaHandler } from './rules/engine.ts';
export type { ShadowService } from './shadow/service.ts';

export interface LocalIotCorePorts {
  /** Plain MQTT (development; the client id is the thing name). 0 or absent picks a free port. */
  readonly mqtt?: number;
  /** MQTT over TLS with client certificates. */
  readonly mqtts?: number;
  /** Data-plane HTTP API (shadows, Publish). */
  readonly iotData?: number;
  /** Registry HTTP API (things, groups, DescribeEndpoint). */
  readonly iot?: number;
}

export interface LocalIotCoreOptions {
  /** @default '127.0.0.1' */
  readonly host?: string;
  readonly ports?: LocalIotCorePorts;
  /** Shadows, registry and TLS material persist here; everything is ephemeral when absent. */
  readonly dataDir?: string;
  /** CA and server certificate; default: kept in `<dataDir>/tls`, or made afresh when ephemeral. */
  readonly tls?: TlsMaterial;
  /** Shadow API quotas; default off. */
  readonly rateLimits?: ShadowRateLimits;
  /** @default topicRules from lambdas/definitions/rules.ts */
  readonly rules?: readonly TopicRuleDefinition[];
  /** Maps a rule's `lambda.function` to an in-process handler; default: no functions. */
  readonly resolveLambda?: LambdaResolver;
  /** Where an async invocation that failed all its attempts goes (Lambda's on-failure destination). */
  readonly onLambdaFailure?: (failure: LambdaFailure) => void;
  /** Delays before retrying a failed async invocation. @default [100, 200] */
  readonly lambdaRetryDelaysMs?: readonly number[];
  /**
   * The queues rules send to, by name; each one's function is found through `resolveLambda`.
   * @default queues from lambdas/definitions/queues.ts
   */
  readonly queues?: Readonly<Record<string, QueueDefinition>>;
  /** Local timings of every queue (visibility timeout, batching window, concurrency). */
  readonly queueOptions?: LocalQueueTimings;
  /** Where a message that failed its last delivery goes (the dead-letter queue), besides the queue's own list. */
  readonly onDeadLetter?: (letter: DeadLetter) => void;
  /** Client ids allowed every topic (backend services, test observers); devices get the device policy. */
  readonly adminClientIds?: readonly string[];
  /** @default 'us-east-1' */
  readonly region?: string;
  /** @default '123456789012' */
  readonly accountId?: string;
  /** Epoch milliseconds. @default Date.now */
  readonly now?: () => number;
  /** How often dirty shadows are written behind. @default 1000 */
  readonly flushIntervalMs?: number;
}

export type LocalQueueTimings = Pick<
  LocalQueueOptions,
  'visibilityTimeoutMs' | 'maxBatchingWindowMs' | 'concurrency' | 'deadLetterLimit'
>;

export interface LocalIotCoreEndpoints {
  /** `mqtt://host:port` */
  readonly mqtt: string;
  /** `mqtts://host:port` */
  readonly mqtts: string;
  /** `http://host:port`, for `new IoTDataPlaneClient({ endpoint })`. */
  readonly iotData: string;
  /** `http://host:port`, for `new IoTClient({ endpoint })`. */
  readonly iot: string;
}

export interface LocalIotCore {
  readonly endpoints: LocalIotCoreEndpoints;
  /** PEM of the CA that signs the server and client certificates (devices trust it). */
  readonly caCertificate: string;
  readonly registry: Registry;
  readonly shadows: ShadowService;
  /** The queues rules send to, by name (their dead letters, for tests and the developer). */
  readonly queues: ReadonlyMap<string, LocalQueue>;
  /** Issues a client certificate whose CN is `thingName`, for the mTLS listener. */
  issueClientCertificate(thingName: string): Promise<ClientCertificate>;
  /** Publishes as the service itself (as the data-plane Publish does). */
  publish(topic: string, payload: string | Buffer, qos?: 0 | 1): void;
  /**
   * Hands a device's PUBLISH to the rules engine, as the broker does for a connected device
   * (benchmarks simulate devices through `shadows` without MQTT connections).
   */
  routeToRules(topic: string, payload: Buffer, clientId: string): void;
  connectedClients(): number;
  /**
   * Resolves when every rule action started so far has finished (retries included) and the queues
   * have delivered their messages (a batching window and failed messages' visibility timeouts included).
   */
  rulesIdle(): Promise<void>;
  /** Writes dirty shadows now. */
  flush(): Promise<void>;
  /** Stops listening, waits for rule actions, delivers what the queues hold, flushes and compacts persistence. */
  stop(): Promise<void>;
}

export async function startLocalIotCore(options: LocalIotCoreOptions = {}): Promise<LocalIotCore> {
  const host = options.host ?? '127.0.0.1';
  const ports = options.ports ?? {};
  const now = options.now ?? Date.now;
  const region = options.region ?? 'us-east-1';
  const accountId = options.accountId ?? '123456789012';
  const tls =
    options.tls ?? (await loadOrCreateTlsMaterial(options.dataDir ? tlsDirOf(options.dataDir) : undefined));

  const store = await ShadowStore.open({
    ...(options.dataDir ? { dataDir: options.dataDir } : {}),
    ...(options.flushIntervalMs ? { flushIntervalMs: options.flushIntervalMs } : {}),
  });
  const registry = await Registry.open({
    ...(options.dataDir ? { dataDir: options.dataDir } : {}),
    region,
    accountId,
    now,
  });

  // The broker, the shadow service and the rules engine call each other; `publish` closes the loop.
  let publish: (topic: string, payload: string | Buffer, qos: 0 | 1) => void = () => {
    throw new Error('The broker is not running yet');
  };
  const shadows = new ShadowService({
    store,
    publish: (topic, payload) => publish(topic, payload, 0),
    now,
    rateLimiter: makeRateLimiter(options.rateLimits),
  });
  const resolveLambda = options.resolveLambda ?? (() => undefined);
  const queues = startQueues({ ...options, resolveLambda, region, accountId });
  const rules = new RulesEngine({
    rules: options.rules ?? topicRules,
    resolveLambda,
    queues,
    publish: (topic, payload, qos) => publish(topic, payload, qos),
    now,
    region,
    accountId,
    ...(options.lambdaRetryDelaysMs ? { lambdaRetryDelaysMs: options.lambdaRetryDelaysMs } : {}),
    ...(options.onLambdaFailure ? { onLambdaFailure: options.onLambdaFailure } : {}),
  });

  const broker = await startBroker({
    host,
    mqttPort: ports.mqtt ?? 0,
    mqttsPort: ports.mqtts ?? 0,
    tls,
    adminClientIds: new Set(options.adminClientIds ?? []),
    now,
    onMessage(topic, payload, clientId) {
      const request = parseShadowRequestTopic(topic);
      if (request) shadows.handleMqttRequest(request, payload);
      rules.handleMessage(topic, payload, clientId);
    },
  });
  publish = broker.publish;

  const dataPlane = await startHttpServer(
    host,
    ports.iotData ?? 0,
    makeDataPlaneHandler({ shadows, publish: (topic, payload, qos) => publish(topic, payload, qos) }),
  );
  const dataEndpointAddress = `${host}:${dataPlane.port}`;
  const control = await startHttpServer(
    host,
    ports.iot ?? 0,
    makeRegistryHandler({ registry, dataEndpointAddress }),
  );

  return {
    endpoints: {
      mqtt: `mqtt://${host}:${broker.mqttPort}`,
      mqtts: `mqtts://${host}:${broker.mqttsPort}`,
      iotData: `http://${dataEndpointAddress}`,
      iot: `http://${host}:${control.port}`,
    },
    caCertificate: tls.ca.cert,
    registry,
    shadows,
    queues,
    issueClientCertificate: (thingName) => issueClientCertificate(tls.ca, thingName),
    publish: (topic, payload, qos = 0) => publish(topic, payload, qos),
    routeToRules: (topic, payload, clientId) => rules.handleMessage(topic, payload, clientId),
    connectedClients: () => broker.connectedClients(),
    rulesIdle: () => rules.idle(),
    flush: () => store.flush(),
    async stop() {
      await Promise.all([dataPlane.close(), control.close()]);
      await broker.close();
      // The queues take what the last actions send, then deliver it without waiting for a batch to
      // fill; retries would outlive the functions' clients, which the cloud stops first.
      await rules.actionsIdle();
      await Promise.all([...queues.values()].map((queue) => queue.stop()));
      await rules.actionsIdle();
      await Promise.all([store.close(), registry.close()]);
    },
  };
}

function startQueues(
  options: LocalIotCoreOptions & {
    readonly resolveLambda: LambdaResolver;
    readonly region: string;
    readonly accountId: string;
  },
): Map<string, LocalQueue> {
  const definitions: Readonly<Record<string, QueueDefinition>> = options.queues ?? queueDefinitions;
  return new Map(
    Object.entries(definitions).map(([name, definition]) => [
      name,
      startLocalQueue({
        ...options.queueOptions,
        name,
        definition,
        resolveFunction: options.resolveLambda,
        region: options.region,
        accountId: options.accountId,
        ...(options.onDeadLetter ? { onDeadLetter: options.onDeadLetter } : {}),
      }),
    ]),
  );
}
