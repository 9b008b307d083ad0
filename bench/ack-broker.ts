/**
 * The local IoT Core in a process of its own for bench/fanout.ts, with the acknowledgement rule
 * (lambdas/definitions/rules.ts) running in its rules engine. The rule's Lambda action is
 * forwarded to the parent over IPC, so the acknowledge handler runs (and is measured) there while
 * the broker's own work stays here. The devices are simulated here too, through the in-process
 * shadow service (no MQTT connections), and this process counts what AWS would meter on their side.
 *
 * IPC: sends `{ type: 'ready', endpoints }`; sends `{ type: 'invoke', id, event }` per rule action
 * and expects `{ type: 'invoked', id, error? }`; answers `{ type: 'report', things, stage }` (each thing's
 * `downloading` or `succeeded` report) with `{ type: 'reported' }`, `{ type: 'settle' }` (rule actions idle) with
 * `{ type: 'settled' }`, `{ type: 'counts' }` with `{ type: 'counts', counts }`; stops on `stop`.
 */
import { desiredFromDelta } from '../agent/desired.ts';
import { buildReportedOta, terminalReport } from '../agent/report.ts';
import { topicRules } from '../lambdas/definitions/rules.ts';
import type { UpdateId } from '../lambdas/domain/manifest/index.ts';
import { startLocalIotCore } from '../local/iot/index.ts';

export type BrokerRequest =
  | { type: 'invoked'; id: number; error?: string }
  | { type: 'report'; things: string[]; stage: 'downloading' | 'succeeded' }
  | { type: 'settle' }
  | { type: 'counts' }
  | { type: 'stop' };

/** What the simulated devices and the rules engine did, as AWS would meter it. */
export interface DeviceSideCounts {
  /** GetThingShadow by devices (the agent reads the document when a delta is not a whole document, ADR 0050). */
  deviceShadowGets: number;
  /** UpdateThingShadow by devices (their reports). */
  deviceShadowUpdates: number;
  /** MQTT PUBLISH received from devices (get and update requests). */
  messagesFromDevices: number;
  /** Replies delivered to devices: get answers, and `update/rejected` (the only update reply they subscribe to). */
  repliesToDevices: number;
  /** `/update/delta` messages: every device subscribes to its delta. */
  deltasToDevices: number;
  /**
   * Messages on the acknowledgement rule's topic: AWS meters every one as a rule triggered,
   * whether or not its WHERE lets the action run.
   */
  acknowledgementRuleTriggers: number;
  /** Those whose WHERE held: each one rule action (a Lambda invocation). */
  acknowledgementRuleActions: number;
  rejectedDeviceRequests: number;
}

const counts: DeviceSideCounts = {
  deviceShadowGets: 0,
  deviceShadowUpdates: 0,
  messagesFromDevices: 0,
  repliesToDevices: 0,
  deltasToDevices: 0,
  acknowledgementRuleTriggers: 0,
  acknowledgementRuleActions: 0,
  rejectedDeviceRequests: 0,
};

const acknowledgementRule = topicRules.find((rule) => rule.name === 'shadow_ota_acknowledgements');
if (!acknowledgementRule) throw new Error('the acknowledgement rule is not defined');
// Deltas reach the simulated devices through the rules engine instead of 10,000 MQTT clients,
// and every message on the acknowledgement rule's topic is counted: bench-only rules, not billed.
const deltaCounter = {
  name: 'bench_deliver_deltas',
  sql: "SELECT *, topic(3) AS thingName FROM '$aws/things/+/shadow/name/ota/update/delta'",
  awsIotSqlVersion: '2016-03-23',
  actions: [{ lambda: { function: 'benchDeliverDelta' } }],
} as const;
const acknowledgementTopic = /FROM '([^']+)'/.exec(acknowledgementRule.sql)?.[1];
if (!acknowledgementTopic) throw new Error('the acknowledgement rule has no topic');
// Every message on the rule's topic is a trigger to AWS, whether or not its WHERE holds.
const triggerCounter = {
  name: 'bench_count_acknowledgement_triggers',
  sql: `SELECT * FROM '${acknowledgementTopic}'`,
  awsIotSqlVersion: '2016-03-23',
  actions: [{ lambda: { function: 'benchCountTriggers' } }],
} as const;

/** The latest delta each device received (`state.ota` and the version), as the agent keeps it. */
const deltas = new Map<string, { ota: unknown; version: number }>();

function deliverDelta(event: unknown): void {
  counts.deltasToDevices++;
  const delta = event as { thingName?: string; version?: number; state?: { ota?: unknown } };
  if (delta.thingName) deltas.set(delta.thingName, { ota: delta.state?.ota, version: delta.version ?? 0 });
}

const waiting = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();
let nextId = 0;

function forwardToParent(event: unknown): Promise<void> {
  counts.acknowledgementRuleActions++;
  const id = nextId++;
  return new Promise<void>((resolve, reject) => {
    waiting.set(id, { resolve, reject });
    process.send?.({ type: 'invoke', id, event });
  });
}

const iot = await startLocalIotCore({
  rules: [acknowledgementRule, deltaCounter, triggerCounter],
  resolveLambda: (name) => {
    if (name === 'acknowledge') return forwardToParent;
    if (name === 'benchDeliverDelta') return deliverDelta;
    if (name === 'benchCountTriggers') return () => void counts.acknowledgementRuleTriggers++;
    return undefined;
  },
});

const compatibility = { manufacturer: 'contoso', model: 'toaster' };
const encode = (value: unknown): Uint8Array => Buffer.from(JSON.stringify(value));

interface DesiredIds {
  deploymentId: string;
  attempt: number;
  updateId: UpdateId;
}

/**
 * The agent on a delta (agent/agent.ts): a whole apply document is used as it is; anything less
 * makes it read the shadow. Then the ids to echo and the version the document was seen in.
 */
function readDesired(thingName: string): { ids: DesiredIds; version: number } | undefined {
  const delta = deltas.get(thingName);
  const fromDelta = desiredFromDelta(delta?.ota);
  if (fromDelta && delta) {
    const { deploymentId, attempt, updateId } = fromDelta;
    return { ids: { deploymentId, attempt, updateId }, version: delta.version };
  }
  counts.deviceShadowGets++;
  counts.messagesFromDevices++;
  const reply = iot.shadows.get({ thingName, shadowName: 'ota' }, encode({}));
  counts.repliesToDevices++;
  if (!reply.ok) {
    counts.rejectedDeviceRequests++;
    return undefined;
  }
  const body = reply.body as { version?: number; state?: { desired?: { ota?: Partial<DesiredIds> } } };
  const ota = body.state?.desired?.ota;
  if (!ota?.deploymentId || ota.attempt === undefined || !ota.updateId) return undefined;
  return {
    ids: { deploymentId: ota.deploymentId, attempt: ota.attempt, updateId: ota.updateId },
    version: body.version ?? 0,
  };
}

/** What each simulated device knows, as the agent does (agent/agent.ts `DesiredLock`, channels.ts `seq`). */
interface DeviceMemory {
  readonly ids: DesiredIds;
  /** The shadow version it expects once its own reports are applied. */
  version: number;
  seq: number;
}

const memory = new Map<string, DeviceMemory>();

/**
 * An agent report (agent/channels.ts): an update request on the device's own topic with the next
 * `seq`, QoS 1 (the broker's PUBACK is not metered); the device subscribes to `update/rejected`
 * only, so an accepted report sends it nothing. The rules engine sees the request, as AWS's does.
 */
function reportAsDevice(
  thingName: string,
  device: DeviceMemory,
  ota: Record<string, unknown>,
  clearDesired: boolean,
): void {
  device.seq = Math.max(device.seq + 1, Date.now());
  const reported = { reported: { ota: { ...ota, seq: device.seq } } };
  const request = clearDesired
    ? { state: { ...reported, desired: { ota: null } }, version: device.version, clientToken: 'c' }
    : { state: reported, clientToken: 'c' };
  const payload = Buffer.from(JSON.stringify(request));
  counts.deviceShadowUpdates++;
  counts.messagesFromDevices++;
  const reply = iot.shadows.update({ thingName, shadowName: 'ota' }, payload);
  if (reply.ok) {
    device.version++;
  } else {
    counts.rejectedDeviceRequests++;
    counts.repliesToDevices++;
  }
  iot.shadows.publishNotifications(reply);
  iot.routeToRules(`$aws/things/${thingName}/shadow/name/ota/update`, payload, thingName);
}

/** The agent on the delta: takes the document (reading the shadow only if it must), reports `downloading` once. */
function startDownload(thingName: string): void {
  const desired = readDesired(thingName);
  if (!desired) return;
  const device: DeviceMemory = { ids: desired.ids, version: desired.version, seq: 0 };
  memory.set(thingName, device);
  reportAsDevice(
    thingName,
    device,
    buildReportedOta({ state: 'downloading', ...desired.ids, compatibility, progress: { step: 1 } }),
    false,
  );
}

/** The agent after installing: the terminal report, with the update it now runs, clearing desired. */
function finishInstall(thingName: string): void {
  const device = memory.get(thingName);
  if (!device) return;
  reportAsDevice(
    thingName,
    device,
    terminalReport(
      device.ids,
      { state: 'succeeded', lastResult: { resultCode: 700, extendedResultCode: 0 } },
      device.ids.updateId,
      compatibility,
    ),
    true,
  );
}

process.on('message', (message: BrokerRequest) => {
  switch (message.type) {
    case 'invoked': {
      const pending = waiting.get(message.id);
      waiting.delete(message.id);
      if (message.error === undefined) pending?.resolve();
      else pending?.reject(new Error(message.error));
      return;
    }
    case 'report':
      for (const thing of message.things)
        if (message.stage === 'downloading') startDownload(thing);
        else finishInstall(thing);
      process.send?.({ type: 'reported' });
      return;
    case 'settle':
      void iot.rulesIdle().then(() => process.send?.({ type: 'settled' }));
      return;
    case 'counts':
      process.send?.({ type: 'counts', counts });
      return;
    case 'stop':
      void iot.stop().then(() => process.exit(0));
      return;
  }
});
process.send?.({ type: 'ready', endpoints: iot.endpoints });
