/**
 * The Device Shadow service: applies requests from MQTT topics or the data-plane HTTP API to the
 * store and publishes what AWS publishes. An HTTP update answers in the response but publishes the
 * same `/delta` and `/documents` an MQTT update does; an MQTT request also gets `/accepted` or
 * `/rejected`.
 */
import { thingNamePattern } from '../../../lambdas/domain/deployment/request.ts';
import type { RateLimiter } from '../rate-limit.ts';
import { type ShadowAddress, type ShadowRequestTopic, shadowTopicPrefix } from '../topics.ts';
import {
  applyDelete,
  applyUpdate,
  errorDocument,
  getDocument,
  noShadowError,
  parsePlainRequest,
  parseUpdateRequest,
  readClientToken,
  type ShadowError,
  shadowErrors,
} from './document.ts';
import type { JsonObject } from './json.ts';
import { classicShadow, type ShadowStore } from './store.ts';

/** A message the service publishes after its reply: an update's `/delta` and `/documents`. */
export interface ShadowNotification {
  readonly topic: string;
  readonly payload: string;
}

export type ShadowReply =
  | { readonly ok: true; readonly body: JsonObject; readonly notifications?: readonly ShadowNotification[] }
  | { readonly ok: false; readonly error: ShadowError; readonly body: JsonObject };

export interface ShadowServiceOptions {
  readonly store: ShadowStore;
  /** Publishes a message through the broker (and so through the rules engine). */
  readonly publish: (topic: string, payload: string) => void;
  /** Epoch milliseconds. */
  readonly now: () => number;
  readonly rateLimiter: RateLimiter;
}

const shadowNamePattern = /^[a-zA-Z0-9:_-]{1,64}$/;

/** AWS's name rules; a request naming an invalid thing or shadow is a 400. */
export function validateAddress(address: ShadowAddress): ShadowError | undefined {
  if (!thingNamePattern.test(address.thingName)) {
    return { code: 400, message: 'Invalid thing name', path: '/thingName' };
  }
  if (address.shadowName !== undefined && !shadowNamePattern.test(address.shadowName)) {
    return { code: 400, message: 'Invalid shadow name', path: '/shadowName' };
  }
  return undefined;
}

export interface NamedShadowPage {
  readonly results: string[];
  readonly nextToken?: string;
  readonly timestamp: number;
}

export class ShadowService {
  readonly #options: ShadowServiceOptions;

  constructor(options: ShadowServiceOptions) {
    this.#options = options;
  }

  update(address: ShadowAddress, payload: Uint8Array): ShadowReply {
    const nowSeconds = this.#nowSeconds();
    const refused = this.#precheck(address);
    if (refused) return this.#rejected(refused, payload, nowSeconds);
    const request = parseUpdateRequest(payload);
    if (!request.ok) return this.#rejected(request.error, payload, nowSeconds);
    const { store } = this.#options;
    const shadowName = address.shadowName ?? classicShadow;
    const outcome = applyUpdate(store.slot(address.thingName, shadowName), request.value, nowSeconds);
    if (!outcome.ok) return this.#rejected(outcome.error, payload, nowSeconds);
    store.put(address.thingName, shadowName, outcome.value.shadow);
    const prefix = shadowTopicPrefix(address);
    const { delta, documents } = outcome.value;
    const notifications: ShadowNotification[] = [];
    if (delta) notifications.push({ topic: `${prefix}/update/delta`, payload: JSON.stringify(delta) });
    notifications.push({ topic: `${prefix}/update/documents`, payload: JSON.stringify(documents) });
    return { ok: true, body: outcome.value.accepted, notifications };
  }

  get(address: ShadowAddress, payload: Uint8Array): ShadowReply {
    const nowSeconds = this.#nowSeconds();
    const refused = this.#precheck(address);
    if (refused) return this.#rejected(refused, payload, nowSeconds);
    const request = parsePlainRequest(payload);
    if (!request.ok) return this.#rejected(request.error, payload, nowSeconds);
    const shadow = this.#options.store.slot(address.thingName, address.shadowName ?? classicShadow).shadow;
    if (!shadow)
      return this.#rejected(noShadowError(address.shadowName ?? address.thingName), payload, nowSeconds);
    return { ok: true, body: getDocument(shadow, nowSeconds, request.value.clientToken) };
  }

  delete(address: ShadowAddress, payload: Uint8Array): ShadowReply {
    const nowSeconds = this.#nowSeconds();
    const refused = this.#precheck(address);
    if (refused) return this.#rejected(refused, payload, nowSeconds);
    const request = parsePlainRequest(payload);
    if (!request.ok) return this.#rejected(request.error, payload, nowSeconds);
    const { store } = this.#options;
    const shadowName = address.shadowName ?? classicShadow;
    const outcome = applyDelete(
      store.slot(address.thingName, shadowName).shadow,
      address.shadowName ?? address.thingName,
      request.value,
      nowSeconds,
    );
    if (!outcome.ok) return this.#rejected(outcome.error, payload, nowSeconds);
    store.remove(address.thingName, shadowName, outcome.value.tombstone);
    return { ok: true, body: outcome.value.accepted };
  }

  /** ListNamedShadowsForThing: names in order; `nextToken` is the last name of the page. */
  listNamedShadows(thingName: string, pageSize: number, nextToken?: string): NamedShadowPage {
    const names = this.#options.store.namedShadows(thingName);
    const start = nextToken ? names.findIndex((name) => name > nextToken) : 0;
    const from = start === -1 ? names.length : start;
    const results = names.slice(from, from + pageSize);
    const more = from + pageSize < names.length;
    const last = results.at(-1);
    return { results, ...(more && last ? { nextToken: last } : {}), timestamp: this.#nowSeconds() };
  }

  /** Handles a request published on a shadow topic: replies on `/accepted` or `/rejected`. */
  handleMqttRequest(request: ShadowRequestTopic, payload: Uint8Array): void {
    const reply = this[request.operation](request, payload);
    const topic = `${shadowTopicPrefix(request)}/${request.operation}/${reply.ok ? 'accepted' : 'rejected'}`;
    this.#options.publish(topic, JSON.stringify(reply.body));
    this.publishNotifications(reply);
  }

  /** Publishes an accepted update's `/delta` and `/documents`; callers send their reply first, as AWS orders them. */
  publishNotifications(reply: ShadowReply): void {
    if (!reply.ok || !reply.notifications) return;
    for (const { topic, payload } of reply.notifications) this.#options.publish(topic, payload);
  }

  #precheck(address: ShadowAddress): ShadowError | undefined {
    const invalid = validateAddress(address);
    if (invalid) return invalid;
    if (!this.#options.rateLimiter.allow(address.thingName, this.#options.now())) {
      return { ...shadowErrors.throttled, path: '' };
    }
    return undefined;
  }

  #rejected(error: ShadowError, payload: Uint8Array, nowSeconds: number): ShadowReply {
    return { ok: false, error, body: errorDocument(error, nowSeconds, readClientToken(payload)) };
  }

  #nowSeconds(): number {
    return Math.floor(this.#options.now() / 1000);
  }
}
