import { randomUUID } from 'node:crypto';
import { downloadTopics } from '../lambdas/definitions/rules.ts';
import { OTA_SHADOW_NAME } from '../lambdas/domain/deployment/index.ts';
import { err, ok, type Result } from '../lambdas/domain/result.ts';
import type { AuthorizationPort, Grant } from './authorization.ts';
import { grantShape } from './authorization.ts';
import { type AgentError, agentError } from './codes.ts';
import type { DeviceConnection } from './mqtt.ts';

/** The `ota` shadow as the agent sees it: its desired and reported sections and version. */
export interface ShadowSnapshot {
  readonly desired?: Record<string, unknown>;
  readonly reported?: Record<string, unknown>;
  readonly version: number;
}

export interface ShadowDelta {
  readonly state: Record<string, unknown>;
  readonly version: number;
}

/** A report the shadow service refused (it answered on `update/rejected`). */
export interface ReportRejected {
  /** 400, 409 (the version lock), 413, 429, 500, ... */
  readonly code: number;
  readonly message: string;
}

/** What the agent needs of the shadow service. */
export interface ShadowPort {
  /** The whole shadow; `undefined` when it does not exist yet. */
  get(): Promise<Result<ShadowSnapshot | undefined, AgentError>>;
  /**
   * Writes `reported.ota` (keys set to null are removed) with the next report sequence number. With
   * `clearDesiredAt`, the same update also clears `desired.ota`, on condition that the shadow is
   * still at that version. Resolves once the broker has the request (its PUBACK): the shadow's
   * `accepted` answer is not subscribed to (AWS meters every message delivered to a device), and a
   * refusal arrives through `onRejected`.
   */
  report(ota: Record<string, unknown>, clearDesiredAt?: number): Promise<Result<void, AgentError>>;
  onDelta(listener: (delta: ShadowDelta) => void): void;
  onRejected(listener: (rejected: ReportRejected) => void): void;
}

type Waiter = { resolve: (answer: { accepted: boolean; body: Record<string, unknown> }) => void };

const asRecord = (v: unknown): Record<string, unknown> | undefined =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;

function parseBody(payload: Buffer): Record<string, unknown> | undefined {
  try {
    return asRecord(JSON.parse(payload.toString('utf8')));
  } catch {
    return undefined;
  }
}

/**
 * Request/response over MQTT matched by clientToken: subscribe to `accepted` and `rejected` once,
 * publish the request, wait for the answer carrying our token (answers to other clients, or to the
 * service's own desired updates, are ignored). An accepted message with no token at all is the
 * service's own, unasked: it goes to `unasked` when given.
 */
class RequestResponse {
  readonly #waiters = new Map<string, Waiter>();

  async listen(
    connection: DeviceConnection,
    accepted: string,
    rejected: string,
    unasked?: (body: Record<string, unknown>) => void,
  ): Promise<void> {
    const route = (isAccepted: boolean) => (payload: Buffer) => {
      const body = parseBody(payload);
      const token = typeof body?.clientToken === 'string' ? body.clientToken : undefined;
      if (body && isAccepted && body.clientToken === undefined) unasked?.(body);
      const waiter = token ? this.#waiters.get(token) : undefined;
      if (!body || !token || !waiter) return;
      this.#waiters.delete(token);
      waiter.resolve({ accepted: isAccepted, body });
    };
    await connection.subscribe(accepted, route(true));
    await connection.subscribe(rejected, route(false));
  }

  async ask(
    connection: DeviceConnection,
    topic: string,
    body: Record<string, unknown>,
    timeoutMs: number,
  ): Promise<{ accepted: boolean; body: Record<string, unknown> } | undefined> {
    const clientToken = randomUUID();
    const answer = new Promise<{ accepted: boolean; body: Record<string, unknown> } | undefined>(
      (resolve) => {
        const timer = setTimeout(() => {
          this.#waiters.delete(clientToken);
          resolve(undefined);
        }, timeoutMs);
        this.#waiters.set(clientToken, {
          resolve: (a) => {
            clearTimeout(timer);
            resolve(a);
          },
        });
      },
    );
    try {
      await connection.publish(topic, { ...body, clientToken });
    } catch {
      // Offline: the answer will not come; the timeout ends the wait.
    }
    return answer;
  }
}

export interface ChannelOptions {
  /** @default 10000 */
  readonly timeoutMs?: number;
  /** Attempts for one authorization request before giving up. @default 3 */
  readonly authorizationAttempts?: number;
  /** Epoch ms, to judge a pushed grant's remaining life. @default Date.now */
  readonly now?: () => number;
}

/** The `ota` named shadow over MQTT (`$aws/things/<thing>/shadow/name/ota/...`). */
export async function openShadowChannel(
  connection: DeviceConnection,
  thingName: string,
  options: ChannelOptions = {},
): Promise<ShadowPort> {
  const base = `$aws/things/${thingName}/shadow/name/${OTA_SHADOW_NAME}`;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const gets = new RequestResponse();
  const listeners: ((delta: ShadowDelta) => void)[] = [];
  const rejectedListeners: ((rejected: ReportRejected) => void)[] = [];
  /** Tokens of our reports still worth matching a refusal to (the newest few). */
  const sentTokens = new Set<string>();
  let seq = 0;
  await gets.listen(connection, `${base}/get/accepted`, `${base}/get/rejected`);
  await connection.subscribe(`${base}/update/rejected`, (payload) => {
    const body = parseBody(payload);
    const token = typeof body?.clientToken === 'string' ? body.clientToken : undefined;
    if (!body || !token || !sentTokens.delete(token)) return;
    const rejected = { code: Number(body.code), message: String(body.message ?? '') };
    for (const l of rejectedListeners) l(rejected);
  });
  await connection.subscribe(`${base}/update/delta`, (payload) => {
    const body = parseBody(payload);
    const state = asRecord(body?.state);
    if (state && typeof body?.version === 'number')
      for (const l of listeners) l({ state, version: body.version });
  });
  return {
    async get() {
      const answer = await gets.ask(connection, `${base}/get`, {}, timeoutMs);
      if (!answer) return err(agentError('INTERNAL', 'no answer to the shadow get'));
      if (!answer.accepted) {
        return answer.body.code === 404
          ? ok(undefined)
          : err(agentError('INTERNAL', `shadow get refused: ${String(answer.body.message)}`));
      }
      const state = asRecord(answer.body.state) ?? {};
      const desired = asRecord(state.desired);
      const reported = asRecord(state.reported);
      return ok({
        ...(desired ? { desired } : {}),
        ...(reported ? { reported } : {}),
        version: typeof answer.body.version === 'number' ? answer.body.version : 0,
      });
    },
    async report(ota, clearDesiredAt) {
      // Strictly increasing, and close to the clock so that a restarted agent keeps increasing.
      seq = Math.max(seq + 1, Date.now());
      const clientToken = randomUUID();
      const reported = { reported: { ota: { ...ota, seq } } };
      const body =
        clearDesiredAt === undefined
          ? { state: reported, clientToken }
          : { state: { ...reported, desired: { ota: null } }, version: clearDesiredAt, clientToken };
      sentTokens.add(clientToken);
      if (sentTokens.size > MAX_TRACKED_REPORTS) sentTokens.delete(sentTokens.values().next().value ?? '');
      try {
        await connection.publish(`${base}/update`, body);
        return ok(undefined);
      } catch (e) {
        sentTokens.delete(clientToken);
        return err(agentError('INTERNAL', `report not sent: ${e instanceof Error ? e.message : String(e)}`));
      }
    },
    onDelta(listener) {
      listeners.push(listener);
    },
    onRejected(listener) {
      rejectedListeners.push(listener);
    },
  };
}

/** Refusals come within a second or so; a handful of reports in flight is all there ever is. */
const MAX_TRACKED_REPORTS = 32;

/**
 * Grants the service sent unasked with a notification (ADR 0040), by deployment and attempt: a
 * request for that attempt takes its grant instead of asking, once, while it has half its life
 * (or 30 s) left. The first request of an attempt waits a moment for one, since the grant is sent
 * just after the desired document. Only the newest few are kept: a device runs one deployment at
 * a time.
 */
class PushedGrants {
  readonly #grants = new Map<string, { readonly grant: Grant; readonly receivedAt: number }>();
  readonly #waiting = new Map<string, () => void>();
  readonly #now: () => number;

  constructor(now: () => number) {
    this.#now = now;
  }

  keep(body: Record<string, unknown>): void {
    const grant = grantShape.safeParse(body);
    const { deploymentId, attempt } = body;
    if (!grant.success || typeof deploymentId !== 'string' || typeof attempt !== 'number') return;
    const key = pushedKey(deploymentId, attempt);
    this.#grants.delete(key);
    this.#grants.set(key, { grant: grant.data, receivedAt: this.#now() });
    for (const oldest of this.#grants.keys()) {
      if (this.#grants.size <= MAX_PUSHED_GRANTS) break;
      this.#grants.delete(oldest);
    }
    this.#waiting.get(key)?.();
  }

  async take(deploymentId: string, attempt: number, waitMs: number): Promise<Grant | undefined> {
    const key = pushedKey(deploymentId, attempt);
    if (!this.#grants.has(key) && waitMs > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, waitMs);
        this.#waiting.set(key, () => {
          clearTimeout(timer);
          resolve();
        });
      });
      this.#waiting.delete(key);
    }
    const kept = this.#grants.get(key);
    this.#grants.delete(key);
    if (!kept) return undefined;
    const expiresAt = Date.parse(kept.grant.expiresAt);
    const needed = Math.min(PUSHED_GRANT_MIN_LIFE_MS, (expiresAt - kept.receivedAt) / 2);
    return expiresAt - this.#now() > needed ? kept.grant : undefined;
  }
}

const pushedKey = (deploymentId: string, attempt: number): string => `${attempt} ${deploymentId}`;
const MAX_PUSHED_GRANTS = 4;
/** A pushed grant about to expire is not worth starting a download with. */
const PUSHED_GRANT_MIN_LIFE_MS = 30_000;

/** Download authorization over MQTT (ADR 0040): request, then the accepted or rejected answer. */
export async function openAuthorizationChannel(
  connection: DeviceConnection,
  thingName: string,
  options: ChannelOptions = {},
): Promise<AuthorizationPort> {
  const rr = new RequestResponse();
  const timeoutMs = options.timeoutMs ?? 10_000;
  const attempts = options.authorizationAttempts ?? 3;
  const pushed = new PushedGrants(options.now ?? Date.now);
  await rr.listen(
    connection,
    downloadTopics.accepted(thingName),
    downloadTopics.rejected(thingName),
    (body) => pushed.keep(body),
  );
  return {
    async request(deploymentId, request = {}): Promise<Result<Grant, AgentError>> {
      const { files, attempt } = request;
      const sent =
        files || attempt === undefined
          ? undefined
          : await pushed.take(deploymentId, attempt, request.awaitPushedMs ?? 0);
      if (sent) return ok(sent);
      for (let i = 0; i < attempts; i++) {
        const answer = await rr.ask(
          connection,
          downloadTopics.request(thingName),
          {
            deploymentId,
            ...(attempt !== undefined ? { attempt } : {}),
            ...(files ? { files: [...files] } : {}),
          },
          timeoutMs,
        );
        if (!answer) continue;
        if (!answer.accepted) {
          return err(
            agentError(
              'AUTHORIZATION_REJECTED',
              `${String(answer.body.code)}: ${String(answer.body.message)}`,
              false,
            ),
          );
        }
        const grant = grantShape.safeParse(answer.body);
        if (!grant.success)
          return err(agentError('AUTHORIZATION_INVALID', 'the download authorization does not parse'));
        return ok(grant.data);
      }
      return err(agentError('AUTHORIZATION_TIMEOUT', `no download authorization after ${attempts} requests`));
    },
  };
}
