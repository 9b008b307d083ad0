/** Shared by the local IoT Core tests: real MQTT.js connections and SDK clients with a local endpoint. */
import { IoTClient } from '@aws-sdk/client-iot';
import { IoTDataPlaneClient } from '@aws-sdk/client-iot-data-plane';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { topicMatches } from '../../../local/iot/topics.ts';

export const dummyAws = {
  region: 'us-east-1',
  credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
};

export function dataPlaneClient(endpoint: string, maxAttempts?: number): IoTDataPlaneClient {
  return new IoTDataPlaneClient({ ...dummyAws, endpoint, ...(maxAttempts ? { maxAttempts } : {}) });
}

export function registryClient(endpoint: string): IoTClient {
  return new IoTClient({ ...dummyAws, endpoint });
}

export interface Received {
  readonly topic: string;
  readonly body: Record<string, unknown>;
}

/** A connected client that records what it receives, to wait for a given message. */
export class Device {
  readonly client: MqttClient;
  readonly received: Received[] = [];
  readonly #waiters: { filter: string; resolve: (message: Received) => void; from: number }[] = [];

  private constructor(client: MqttClient) {
    this.client = client;
    client.on('message', (topic, payload) => {
      let body: Record<string, unknown>;
      try {
        body = JSON.parse(payload.toString()) as Record<string, unknown>;
      } catch {
        body = { raw: payload.toString() };
      }
      this.received.push({ topic, body });
      this.#wake();
    });
  }

  static async connect(url: string, clientId: string, options: IClientOptions = {}): Promise<Device> {
    const client = await mqtt.connectAsync(url, {
      clientId,
      reconnectPeriod: 0,
      connectTimeout: 5000,
      ...options,
    });
    return new Device(client);
  }

  async subscribe(...filters: string[]): Promise<void> {
    const grants = await this.client.subscribeAsync(filters, { qos: 1 });
    if (grants.some((grant) => grant.qos === 128))
      throw new Error(`Subscription refused: ${filters.join(', ')}`);
  }

  publish(topic: string, body: unknown): void {
    this.client.publish(topic, typeof body === 'string' ? body : JSON.stringify(body), { qos: 1 });
  }

  /** The next message on `filter` received after `from` (an index into `received`). */
  next(filter: string, from = 0, timeoutMs = 3000): Promise<Received> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`No message on ${filter} within ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.#waiters.push({
        filter,
        from,
        resolve: (message) => {
          clearTimeout(timer);
          resolve(message);
        },
      });
      this.#wake();
    });
  }

  /** Publishes and waits for the reply on `replyFilter`. */
  async request(topic: string, body: unknown, replyFilter: string): Promise<Received> {
    const from = this.received.length;
    this.publish(topic, body);
    return this.next(replyFilter, from);
  }

  /** Every message received on `filter`. */
  on(filter: string): Received[] {
    return this.received.filter((message) => topicMatches(filter, message.topic));
  }

  /** Resolves when the broker closes the connection. */
  closed(timeoutMs = 3000): Promise<void> {
    if (this.client.disconnected || !this.client.connected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('Connection still open')), timeoutMs);
      this.client.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  async end(): Promise<void> {
    await this.client.endAsync(true);
  }

  #wake(): void {
    for (const waiter of [...this.#waiters]) {
      const found = this.received
        .slice(waiter.from)
        .find((message) => topicMatches(waiter.filter, message.topic));
      if (found) {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        waiter.resolve(found);
      }
    }
  }
}

export const settle = (ms = 150): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
