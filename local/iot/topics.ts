/** MQTT topic names of the shadow service and the device policy, and MQTT filter matching. Pure. */

export type ShadowOperation = 'update' | 'get' | 'delete';

export interface ShadowAddress {
  readonly thingName: string;
  /** Absent for the classic (unnamed) shadow. */
  readonly shadowName?: string;
}

export interface ShadowRequestTopic extends ShadowAddress {
  readonly operation: ShadowOperation;
}

const operations = new Set<string>(['update', 'get', 'delete']);

/** `$aws/things/<thing>/shadow[/name/<shadow>]`. */
export function shadowTopicPrefix({ thingName, shadowName }: ShadowAddress): string {
  return shadowName === undefined
    ? `$aws/things/${thingName}/shadow`
    : `$aws/things/${thingName}/shadow/name/${shadowName}`;
}

/** Recognises a shadow request topic (`.../update`, `/get`, `/delete`); anything else is undefined. */
export function parseShadowRequestTopic(topic: string): ShadowRequestTopic | undefined {
  if (!topic.startsWith('$aws/things/')) return undefined;
  const parts = topic.split('/');
  const thingName = parts[2];
  if (!thingName || parts[3] !== 'shadow') return undefined;
  if (parts.length === 5) {
    const operation = parts[4];
    return operation && operations.has(operation)
      ? { thingName, operation: operation as ShadowOperation }
      : undefined;
  }
  if (parts.length === 7 && parts[4] === 'name') {
    const shadowName = parts[5];
    const operation = parts[6];
    return shadowName && operation && operations.has(operation)
      ? { thingName, shadowName, operation: operation as ShadowOperation }
      : undefined;
  }
  return undefined;
}

/** Does an MQTT topic name match a topic filter with `+` and `#`? */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    const level = f[i];
    if (level === '#') return true;
    if (i >= t.length) return false;
    if (level !== '+' && level !== t[i]) return false;
  }
  return f.length === t.length;
}

/** The topic prefixes the device policy grants a thing (the same as the CDK stack's IoT policy). */
export function deviceTopicPrefixes(thingName: string): readonly string[] {
  return [`$aws/things/${thingName}/shadow/`, `ota/things/${thingName}/`];
}

/**
 * Device policy: a thing may publish to and subscribe under its own shadow and `ota/things/<thing>/`
 * topics only. As in an IoT policy, `+` and `#` are literal characters there, so a filter with a
 * wildcard in place of the thing name is refused, while one after the prefix is allowed.
 */
export function isTopicAllowedForThing(thingName: string, topicOrFilter: string): boolean {
  return deviceTopicPrefixes(thingName).some((prefix) => topicOrFilter.startsWith(prefix));
}
