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
  /** GetThingShadow by devices (the agent reads the document on a delta, ADR 0050). */
  deviceShadowGets: number;
  /** UpdateThingShadow by devices (their reports). */
  deviceShadowUpdates: number;
  /** MQTT PUBLISH received from devices (get and update requests). */
  messagesFromDevices: number;
  /** get/update `accepted` or `rejected` replies the devices subscribe to. */
  repliesToDevices: number;
  /** `/update/delta` messages: every device subscribes to its delta. */
  deltasToDevices: number;
  /** Documents events that matched the acknowledgement rule (each one rule action). */
  acknowledgementRuleTriggers: number;
  rejectedDeviceRequests: number;
}

const counts: DeviceSideCounts = {
  deviceShadowGets: 0,
  deviceShadowUpdates: 0,
  messagesFromDevices: 0,
  repliesToDevices: 0,
  deltasToDevices: 0,
  acknowledgementRuleTriggers: 0,
  rejectedDeviceRequests: 0,
};

const acknowledgementRule = topicRules.find((rule) => rule.name === 'shadow_ota_acknowledgements');
if (!acknowledgementRule) throw new Error('the acknowledgement rule is not defined');
// Counts deltas in the rules engine instead of subscribing 10,000 MQTT clients; not billed.
const deltaCounter = {
  name: 'bench_count_deltas',
  sql: "SELECT * FROM '$aws/things/+/shadow/name/ota/update/delta'",
  awsIotSqlVersion: '2016-03-23',
  actions: [{ lambda: { function: 'benchCountDelta' } }],
} as const;

const waiting = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();
let nextId = 0;

function forwardToParent(event: unknown): Promise<void> {
  counts.acknowledgementRuleTriggers++;
  const id = nextId++;
  return new Promise<void>((resolve, reject) => {
    waiting.set(id, { resolve, reject });
    process.send?.({ type: 'invoke', id, event });
  });
}

const iot = await startLocalIotCore({
  rules: [acknowledgementRule, deltaCounter],
  resolveLambda: (name) => {
    if (name === 'acknowledge') return forwardToParent;
    if (name === 'benchCountDelta') return () => void counts.deltasToDevices++;
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

/** The agent on a delta: reads the whole document (ADR 0050) and takes the ids to echo. */
function readDesired(thingName: string): DesiredIds | undefined {
  counts.deviceShadowGets++;
  counts.messagesFromDevices++;
  const reply = iot.shadows.get({ thingName, shadowName: 'ota' }, encode({}));
  counts.repliesToDevices++;
  if (!reply.ok) {
    counts.rejectedDeviceRequests++;
    return undefined;
  }
  const body = reply.body as { state?: { desired?: { ota?: Partial<DesiredIds> } } };
  const ota = body.state?.desired?.ota;
  if (!ota?.deploymentId || ota.attempt === undefined || !ota.updateId) return undefined;
  return { deploymentId: ota.deploymentId, attempt: ota.attempt, updateId: ota.updateId };
}

/** An agent report: UpdateThingShadow on `reported.ota`, as over MQTT (reply, then delta and documents). */
function reportAsDevice(thingName: string, ota: Record<string, unknown>): void {
  counts.deviceShadowUpdates++;
  counts.messagesFromDevices++;
  const reply = iot.shadows.update(
    { thingName, shadowName: 'ota' },
    encode({ state: { reported: { ota } } }),
  );
  counts.repliesToDevices++;
  if (!reply.ok) counts.rejectedDeviceRequests++;
  iot.shadows.publishNotifications(reply);
}

/** Ids each device read from its shadow, echoed in its later reports. */
const readIds = new Map<string, DesiredIds>();

/** The agent on the delta: reads the document, then reports `downloading` once. */
function startDownload(thingName: string): void {
  const desired = readDesired(thingName);
  if (!desired) return;
  readIds.set(thingName, desired);
  reportAsDevice(
    thingName,
    buildReportedOta({ state: 'downloading', ...desired, compatibility, progress: { step: 1 } }),
  );
}

/** The agent after installing: the terminal report, with the update it now runs. */
function finishInstall(thingName: string): void {
  const desired = readIds.get(thingName);
  if (!desired) return;
  reportAsDevice(
    thingName,
    terminalReport(
      desired,
      { state: 'succeeded', lastResult: { resultCode: 700, extendedResultCode: 0 } },
      desired.updateId,
      compatibility,
    ),
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
