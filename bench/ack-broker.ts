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
  /** get/update `accepted` or `rejected` replies the devices subscribe to. */
  repliesToDevices: number;
  /** `/update/delta` messages: every device subscribes to its delta. */
  deltasToDevices: number;
  /**
   * Documents messages on the acknowledgement rule's topic: AWS meters every one as a rule
   * triggered, whether or not its WHERE lets the action run.
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
// and every documents message is counted: bench-only rules, not billed.
const deltaCounter = {
  name: 'bench_deliver_deltas',
  sql: "SELECT *, topic(3) AS thingName FROM '$aws/things/+/shadow/name/ota/update/delta'",
  awsIotSqlVersion: '2016-03-23',
  actions: [{ lambda: { function: 'benchDeliverDelta' } }],
} as const;
const documentsCounter = {
  name: 'bench_count_documents',
  sql: "SELECT * FROM '$aws/things/+/shadow/name/ota/update/documents'",
  awsIotSqlVersion: '2016-03-23',
  actions: [{ lambda: { function: 'benchCountDocuments' } }],
} as const;

/** The latest delta each device received (`state.ota`), as the agent keeps it. */
const deltas = new Map<string, unknown>();

function deliverDelta(event: unknown): void {
  counts.deltasToDevices++;
  const delta = event as { thingName?: string; state?: { ota?: unknown } };
  if (delta.thingName) deltas.set(delta.thingName, delta.state?.ota);
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
  rules: [acknowledgementRule, deltaCounter, documentsCounter],
  resolveLambda: (name) => {
    if (name === 'acknowledge') return forwardToParent;
    if (name === 'benchDeliverDelta') return deliverDelta;
    if (name === 'benchCountDocuments') return () => void counts.acknowledgementRuleTriggers++;
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
 * makes it read the shadow. Then the ids to echo.
 */
function readDesired(thingName: string): DesiredIds | undefined {
  const fromDelta = desiredFromDelta(deltas.get(thingName));
  if (fromDelta) {
    const { deploymentId, attempt, updateId } = fromDelta;
    return { deploymentId, attempt, updateId };
  }
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
