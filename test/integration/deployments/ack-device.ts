/**
 * A scripted test device: a real MQTT.js connection (client id = thing name, so the local IoT
 * Core's device policy applies) that speaks the `ota` named shadow as ADR 0010 describes: it
 * watches its delta, reads the whole desired document, and reports `reported.ota` as the agent
 * would (downloading, then succeeded with its installed update, or failed with result codes).
 */
import { randomUUID } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';

export interface UpdateIdText {
  readonly provider: string;
  readonly name: string;
  readonly version: string;
}

/** `desired.ota` as the device reads it. */
export interface DesiredOtaSeen {
  readonly deploymentId: string;
  readonly attempt: number;
  readonly action: 'apply' | 'cancel';
  readonly updateId: UpdateIdText;
  readonly manifest?: string;
  readonly signature?: string;
}

export interface ShadowSeen {
  readonly version: number;
  readonly desired?: Record<string, unknown>;
  readonly reported?: Record<string, unknown>;
  readonly delta?: Record<string, unknown>;
}

/** ADU result codes the scripts use (ADR 0010). */
export const aduResult = {
  failure: 0,
  downloadSuccess: 500,
  installSuccess: 600,
  applySuccess: 700,
  installed: 900,
} as const;

interface Waiter {
  readonly match: (topic: string, body: Record<string, unknown>) => boolean;
  readonly resolve: (body: Record<string, unknown>) => void;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export class ScriptedDevice {
  readonly thingName: string;
  readonly client: MqttClient;
  readonly #prefix: string;
  readonly #waiters: Waiter[] = [];
  /** Every delta received, newest last. */
  readonly deltas: Record<string, unknown>[] = [];

  private constructor(client: MqttClient, thingName: string) {
    this.client = client;
    this.thingName = thingName;
    this.#prefix = `$aws/things/${thingName}/shadow/name/ota`;
    client.on('message', (topic, payload) => {
      let body: Record<string, unknown>;
      try {
        const parsed: unknown = JSON.parse(payload.toString());
        body = isObject(parsed) ? parsed : {};
      } catch {
        body = {};
      }
      if (topic === `${this.#prefix}/update/delta`) this.deltas.push(body);
      for (const waiter of [...this.#waiters]) {
        if (!waiter.match(topic, body)) continue;
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        waiter.resolve(body);
      }
    });
  }

  static async connect(mqttUrl: string, thingName: string): Promise<ScriptedDevice> {
    const client = await mqtt.connectAsync(mqttUrl, {
      clientId: thingName,
      reconnectPeriod: 0,
      connectTimeout: 5000,
    });
    const device = new ScriptedDevice(client, thingName);
    const base = device.#prefix;
    await client.subscribeAsync(
      [`${base}/update/delta`, `${base}/update/accepted`, `${base}/update/rejected`, `${base}/get/+`],
      { qos: 1 },
    );
    return device;
  }

  #await(match: Waiter['match'], what: string, timeoutMs: number): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
        reject(new Error(`${this.thingName}: no ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      const waiter: Waiter = {
        match,
        resolve: (body) => {
          clearTimeout(timer);
          resolve(body);
        },
      };
      this.#waiters.push(waiter);
    });
  }

  /** Request/response on the shadow topics, matched by client token. */
  async #request(op: 'update' | 'get', body: Record<string, unknown>): Promise<Record<string, unknown>> {
    const clientToken = randomUUID();
    const answer = this.#await(
      (topic, reply) => topic.startsWith(`${this.#prefix}/${op}/`) && reply.clientToken === clientToken,
      `${op} answer`,
      5000,
    );
    await this.client.publishAsync(`${this.#prefix}/${op}`, JSON.stringify({ ...body, clientToken }), {
      qos: 1,
    });
    return answer;
  }

  /** Reads the `ota` shadow; undefined when the thing has none yet. */
  async getShadow(): Promise<ShadowSeen | undefined> {
    const reply = await this.#request('get', {});
    if (reply.code === 404) return undefined;
    const state = isObject(reply.state) ? reply.state : {};
    return {
      version: Number(reply.version),
      ...(isObject(state.desired) ? { desired: state.desired } : {}),
      ...(isObject(state.reported) ? { reported: state.reported } : {}),
      ...(isObject(state.delta) ? { delta: state.delta } : {}),
    };
  }

  /** The whole `desired.ota` (a delta holds only the keys that differ, so the agent reads the document). */
  async desiredOta(): Promise<DesiredOtaSeen | undefined> {
    const shadow = await this.getShadow();
    const ota = shadow?.desired?.ota;
    return isObject(ota) ? (ota as unknown as DesiredOtaSeen) : undefined;
  }

  /** Waits until the shadow holds a desired document for work (a delta stands on `ota`). */
  async waitForWork(timeoutMs = 10_000): Promise<DesiredOtaSeen> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const shadow = await this.getShadow();
      const ota = shadow?.desired?.ota;
      if (shadow?.delta?.ota !== undefined && isObject(ota)) return ota as unknown as DesiredOtaSeen;
      if (Date.now() > end) throw new Error(`${this.thingName}: no work within ${timeoutMs} ms`);
      await this.#await((topic) => topic === `${this.#prefix}/update/delta`, 'delta', 2000).catch(() => {});
    }
  }

  #seq = 0;

  /** The `seq` of the latest report sent. */
  get lastSeq(): number {
    return this.#seq;
  }

  /** The agent's report sequence: strictly increasing, close to the clock (ADR 0010). */
  #nextSeq(): number {
    this.#seq = Math.max(this.#seq + 1, Date.now());
    return this.#seq;
  }

  /**
   * Merges into `reported.ota` (one shadow update), as an agent's progress report does. With
   * `clearDesiredAt`, also clears `desired.ota`, locked to that shadow version, as the agent's
   * terminal report does.
   */
  async reportMerged(ota: Record<string, unknown>, clearDesiredAt?: number): Promise<number> {
    const reported = { reported: { ota: { ...ota, seq: this.#nextSeq() } } };
    const body =
      clearDesiredAt === undefined
        ? { state: reported }
        : { state: { ...reported, desired: { ota: null } }, version: clearDesiredAt };
    const reply = await this.#request('update', body);
    if (reply.code !== undefined)
      throw new Error(`${this.thingName}: report refused: ${JSON.stringify(reply)}`);
    return Number(reply.version);
  }

  /** The agent's first report on a deployment: it has the document and is downloading. */
  downloading(work: DesiredOtaSeen, extra: Record<string, unknown> = {}): Promise<number> {
    return this.reportMerged({
      state: 'downloading',
      deploymentId: work.deploymentId,
      attempt: work.attempt,
      updateId: work.updateId,
      progress: { step: 0, bytes: 0, totalBytes: 1024 },
      ...extra,
    });
  }

  /** Applied and running the new update: its installed update is the deployed one. */
  succeeded(
    work: DesiredOtaSeen,
    extra: Record<string, unknown> = {},
    clearDesiredAt?: number,
  ): Promise<number> {
    return this.reportMerged(
      {
        state: 'succeeded',
        deploymentId: work.deploymentId,
        attempt: work.attempt,
        updateId: work.updateId,
        installedUpdateId: work.updateId,
        progress: null,
        lastResult: {
          resultCode: aduResult.applySuccess,
          extendedResultCode: 0,
          stepResults: { step_0: { resultCode: aduResult.applySuccess, extendedResultCode: 0 } },
        },
        ...extra,
      },
      clearDesiredAt,
    );
  }

  /** A step failed: ADU's failure code with the handler's extended code, per step. */
  failed(work: DesiredOtaSeen, failedStep = 1, extendedResultCode = 0x30000001): Promise<number> {
    const stepResults: Record<string, unknown> = {};
    for (let step = 0; step <= failedStep; step++) {
      stepResults[`step_${step}`] =
        step < failedStep
          ? { resultCode: aduResult.applySuccess, extendedResultCode: 0 }
          : { resultCode: aduResult.failure, extendedResultCode, resultDetails: `step ${step} failed` };
    }
    return this.reportMerged({
      state: 'failed',
      deploymentId: work.deploymentId,
      attempt: work.attempt,
      updateId: work.updateId,
      progress: null,
      lastResult: {
        resultCode: aduResult.failure,
        extendedResultCode,
        resultDetails: `step ${failedStep} failed`,
        stepResults,
      },
    });
  }

  /** Confirms a cancel action. */
  canceled(work: DesiredOtaSeen): Promise<number> {
    return this.reportMerged({
      state: 'canceled',
      deploymentId: work.deploymentId,
      attempt: work.attempt,
      updateId: work.updateId,
      progress: null,
    });
  }

  async end(): Promise<void> {
    await this.client.endAsync(true);
  }
}
