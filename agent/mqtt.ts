import { io, iot, mqtt } from 'aws-iot-device-sdk-v2';
import type { Logger } from './log.ts';

/** How the agent reaches the broker: mutual TLS as on AWS IoT Core, or plain MQTT for development. */
export interface MqttEndpoint {
  readonly host: string;
  readonly port: number;
  /** Client certificate, key and CA (PEM text). Absent: plain TCP (local development only). */
  readonly tls?: { readonly cert: string; readonly key: string; readonly ca?: string };
  /** @default 30 */
  readonly keepAliveSeconds?: number;
  /** Automatic reconnect backoff once connected. @default 1..60 s */
  readonly reconnectMinSeconds?: number;
  readonly reconnectMaxSeconds?: number;
}

type Handler = (payload: Buffer) => void;

let sharedClient: mqtt.MqttClient | undefined;
/** One client (one event loop group and bootstrap) serves every connection in the process. */
const client = (): mqtt.MqttClient => {
  sharedClient ??= new mqtt.MqttClient();
  return sharedClient;
};

function buildConfig(endpoint: MqttEndpoint, clientId: string): mqtt.MqttConnectionConfig {
  const keepAlive = endpoint.keepAliveSeconds ?? 30;
  const reconnect = { min: endpoint.reconnectMinSeconds ?? 1, max: endpoint.reconnectMaxSeconds ?? 60 };
  if (endpoint.tls) {
    let builder = iot.AwsIotMqttConnectionConfigBuilder.new_mtls_builder(endpoint.tls.cert, endpoint.tls.key);
    if (endpoint.tls.ca) builder = builder.with_certificate_authority(endpoint.tls.ca);
    return builder
      .with_endpoint(endpoint.host)
      .with_port(endpoint.port)
      .with_client_id(clientId)
      .with_clean_session(true)
      .with_keep_alive_seconds(keepAlive)
      .with_reconnect_min_sec(reconnect.min)
      .with_reconnect_max_sec(reconnect.max)
      .build();
  }
  return {
    host_name: endpoint.host,
    port: endpoint.port,
    client_id: clientId,
    clean_session: true,
    keep_alive: keepAlive,
    use_websocket: false,
    // Plain TCP needs explicit socket options (TOOLCHAIN.md §6).
    socket_options: new io.SocketOptions(),
    reconnect_min_sec: reconnect.min,
    reconnect_max_sec: reconnect.max,
  };
}

/**
 * Subscriptions take QoS 0. AWS meters a device's PUBACK under MQTT 3.1.1 as a whole 5 KB message,
 * so QoS 1 would double the cost of every delta and reply; and QoS 1 buys nothing here: a clean
 * session drops queued messages on a disconnect anyway, the agent reads its shadow after every
 * reconnect, and a request whose reply is lost times out and is asked again.
 */
const SUBSCRIBE_QOS = mqtt.QoS.AtMostOnce;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The device's MQTT 3.1.1 connection through the official AWS IoT Device SDK v2. The first connect
 * is retried with exponential backoff; afterwards the SDK reconnects by itself (1..60 s). With a
 * clean session the broker forgets subscriptions on a reconnect, so they are made again whenever
 * the session was not resumed, and every (re)connect is announced (the agent then reads its shadow).
 */
export class DeviceConnection {
  readonly #connection: mqtt.MqttClientConnection;
  readonly #handlers = new Map<string, Handler>();
  readonly #connected: ((resumed: boolean) => void)[] = [];
  readonly #log: Logger;
  #closed = false;

  private constructor(connection: mqtt.MqttClientConnection, log: Logger) {
    this.#connection = connection;
    this.#log = log;
    connection.on('interrupt', (error) => log.warn('connection interrupted', { error: String(error) }));
    connection.on('resume', (_code, sessionPresent) => {
      void this.#afterReconnect(sessionPresent);
    });
  }

  /** Connects, retrying with backoff (and jitter) until it works or `signal` aborts. */
  static async open(
    endpoint: MqttEndpoint,
    clientId: string,
    log: Logger,
    signal?: AbortSignal,
  ): Promise<DeviceConnection> {
    for (let attempt = 0; ; attempt++) {
      const connection = client().new_connection(buildConfig(endpoint, clientId));
      try {
        await connection.connect();
        log.info('connected', { host: endpoint.host, port: endpoint.port, tls: endpoint.tls !== undefined });
        return new DeviceConnection(connection, log);
      } catch (e) {
        await connection.disconnect().catch(() => undefined);
        if (signal?.aborted) throw e;
        const delay = Math.min(60_000, 1000 * 2 ** Math.min(attempt, 6)) * (0.5 + Math.random() / 2);
        log.warn('connect failed, retrying', { attempt, delayMs: Math.round(delay), error: String(e) });
        await sleep(delay);
        if (signal?.aborted) throw e;
      }
    }
  }

  /** Called after every reconnect (not the first connect), once subscriptions are back. */
  onReconnected(listener: (resumed: boolean) => void): void {
    this.#connected.push(listener);
  }

  async subscribe(topic: string, handler: Handler): Promise<void> {
    this.#handlers.set(topic, handler);
    await this.#connection.subscribe(topic, SUBSCRIBE_QOS, (_t, payload) => handler(Buffer.from(payload)));
  }

  async publish(topic: string, body: unknown): Promise<void> {
    await this.#connection.publish(topic, JSON.stringify(body), mqtt.QoS.AtLeastOnce);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#connection.disconnect().catch(() => undefined);
  }

  async #afterReconnect(sessionPresent: boolean): Promise<void> {
    this.#log.info('reconnected', { sessionPresent });
    if (!sessionPresent) {
      for (const [topic, handler] of this.#handlers) {
        try {
          await this.#connection.subscribe(topic, SUBSCRIBE_QOS, (_t, payload) =>
            handler(Buffer.from(payload)),
          );
        } catch (e) {
          this.#log.warn('resubscribe failed', { topic, error: String(e) });
        }
      }
    }
    for (const listener of this.#connected) listener(sessionPresent);
  }
}
