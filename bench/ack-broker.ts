/**
 * The local IoT Core in a process of its own for bench/fanout.ts, with the acknowledgement rule
 * (lambdas/definitions/rules.ts) running in its rules engine. The rule's SQS action fills the
 * local acknowledgements queue, whose event source mapping's batches are forwarded to the parent
 * over IPC, so the acknowledge handler runs (and is measured) there while the broker's and the
 * queue's own work stays here. The executions table's write units are metered here too, from
 * its stream (bench/write-units.ts). The devices are simulated here too, through the in-process
 * shadow service (no MQTT connections), and this process counts what AWS would meter on their side.
 *
 * Both of the service's device-facing rules run here: the acknowledgement rule and the download
 * rule, whose Lambda action (the real download authorizer, in the parent) answers each device's
 * download request through the data plane, as in AWS.
 *
 * IPC: sends `{ type: 'ready', endpoints }`; sends `{ type: 'invoke', id, function, event }` per
 * invocation (a queue batch for `acknowledge`) and expects `{ type: 'invoked', id, error? }`; answers `{ type: 'report', things, stage }` (each
 * thing's download request, or its `succeeded` report) with `{ type: 'reported' }`,
 * `{ type: 'settle' }` (rule actions idle) with `{ type: 'settled' }`, `{ type: 'counts' }` with
 * `{ type: 'counts', counts }`; stops on `stop`. The executions stream is read here too, as Lambda's
 * event source mapping reads it (`pollStream`, `streamCaughtUp`, `stopStream`, each answered by
 * one message): its batches go to the parent as `countersStream` invocations.
 */
import { DynamoDBStreamsClient } from '@aws-sdk/client-dynamodb-streams';
import type { DynamoDBStreamEvent, SQSEvent } from 'aws-lambda';
import { desiredFromDelta } from '../agent/desired.ts';
import { terminalReport } from '../agent/report.ts';
import { downloadTopics, topicRules } from '../lambdas/definitions/rules.ts';
import { executionsTable } from '../lambdas/definitions/tables.ts';
import type { UpdateId } from '../lambdas/domain/manifest/index.ts';
import { sampleDeviceCompatibility } from '../local/demo/sample-update.ts';
import { startLocalIotCore } from '../local/iot/index.ts';
import { type StreamPoller, startStreamPoller } from '../local/streams.ts';
import { type Image, writeUnitsOfChange } from './write-units.ts';

/** Where the executions stream is read from: DynamoDB Local, as Lambda's event source mapping would. */
export interface StreamSource {
  readonly endpoint: string;
  readonly region: string;
  readonly credentials: { accessKeyId: string; secretAccessKey: string };
  readonly tableName: string;
  readonly batchSize: number;
  readonly maxBatchingWindowMs: number;
}

export type BrokerRequest =
  | { type: 'invoked'; id: number; error?: string }
  | { type: 'pollStream'; source: StreamSource }
  | { type: 'streamCaughtUp' }
  | { type: 'stopStream' }
  | { type: 'report'; things: string[]; stage: 'downloading' | 'succeeded' }
  | { type: 'settle' }
  | { type: 'counts' }
  | { type: 'stop' };

/** What the simulated devices and the rules engine did, as AWS would meter it. */
export interface DeviceSideCounts {
  /**
   * Shadow operations as AWS meters them: each request in 1 KB units of its document (ADR 0060),
   * device reports and GETs alike.
   */
  deviceShadowOpUnits: number;
  /** Every message below as AWS meters it: in 5 KB units of payload plus topic. */
  messageUnits: number;
  /** Download requests devices published (`ota/things/<thing>/downloads/request`). */
  downloadRequests: number;
  /** Download answers delivered to devices (`accepted` or `rejected`), published by the authorizer. */
  downloadAnswersToDevices: number;
  /** Of those, `rejected` ones: the benchmark expects none. */
  downloadRejections: number;
  /** Of those, grants the fan-out sent unasked with the notification. */
  grantsPushedToDevices: number;
  /** Messages on the download rule's topic (each a rule triggered) and its actions run. */
  downloadRuleTriggers: number;
  downloadRuleActions: number;
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
  /** Those whose WHERE held: each one rule action (an SQS SendMessage to the acknowledgements queue). */
  acknowledgementRuleActions: number;
  rejectedDeviceRequests: number;
  /** Messages the rule sent to the acknowledgements queue (one SQS request each: well under 64 KB). */
  sqsSendMessages: number;
  /** The event source mapping's requests: ReceiveMessage and DeleteMessageBatch take ten messages at most. */
  sqsReceiveRequests: number;
  sqsDeleteRequests: number;
  /** Batches the queue's event source mapping invoked the acknowledge function with. */
  acknowledgementBatches: number;
  /**
   * Write units of the executions table's changes, metered from its stream (bench/write-units.ts):
   * the fan-out's `notified` marks, and everything else (the acknowledgements).
   */
  executionWriteUnitsByFanout: number;
  executionWriteUnitsByAcknowledgement: number;
}

const counts: DeviceSideCounts = {
  deviceShadowOpUnits: 0,
  messageUnits: 0,
  downloadRequests: 0,
  downloadAnswersToDevices: 0,
  downloadRejections: 0,
  grantsPushedToDevices: 0,
  downloadRuleTriggers: 0,
  downloadRuleActions: 0,
  deviceShadowGets: 0,
  deviceShadowUpdates: 0,
  messagesFromDevices: 0,
  repliesToDevices: 0,
  deltasToDevices: 0,
  acknowledgementRuleTriggers: 0,
  acknowledgementRuleActions: 0,
  rejectedDeviceRequests: 0,
  sqsSendMessages: 0,
  sqsReceiveRequests: 0,
  sqsDeleteRequests: 0,
  acknowledgementBatches: 0,
  executionWriteUnitsByFanout: 0,
  executionWriteUnitsByAcknowledgement: 0,
};

const ruleNamed = (name: string) => {
  const rule = topicRules.find((r) => r.name === name);
  if (!rule) throw new Error(`the ${name} rule is not defined`);
  return rule;
};
const acknowledgementRule = ruleNamed('shadow_ota_acknowledgements');
const downloadRule = ruleNamed('shadow_ota_download_requests');
const topicOf = (rule: { sql: string }): string => {
  const topic = /FROM '([^']+)'/.exec(rule.sql)?.[1];
  if (!topic) throw new Error(`rule has no topic: ${rule.sql}`);
  return topic;
};

/** AWS meters a shadow operation per 1 KB of its document, a message per 5 KB of payload and topic. */
const SHADOW_OP_UNIT_BYTES = 1024;
const MESSAGE_UNIT_BYTES = 5 * 1024;
const unitsOf = (bytes: number, unit: number): number => Math.max(1, Math.ceil(bytes / unit));
const meterMessage = (topic: string, payloadBytes: number): void => {
  counts.messageUnits += unitsOf(Buffer.byteLength(topic) + payloadBytes, MESSAGE_UNIT_BYTES);
};
/** A message's payload size from the event a `SELECT *, topic() AS benchTopic, ...` rule received. */
function deliveredBytes(event: Record<string, unknown>): { topic: string; bytes: number } {
  const { benchTopic, thingName: _thing, ...payload } = event;
  return { topic: String(benchTopic), bytes: Buffer.byteLength(JSON.stringify(payload)) };
}

// Messages delivered to the simulated devices are seen through the rules engine instead of 10,000
// MQTT clients, and every message on a service rule's topic is counted: bench-only rules, not billed.
const benchRule = (name: string, topic: string, fn: string) =>
  ({
    name,
    sql: `SELECT *, topic() AS benchTopic, topic(3) AS thingName FROM '${topic}'`,
    awsIotSqlVersion: '2016-03-23',
    actions: [{ lambda: { function: fn } }],
  }) as const;
const benchRules = [
  benchRule('bench_deliver_deltas', '$aws/things/+/shadow/name/ota/update/delta', 'benchDeliverDelta'),
  // Every message on a rule's topic is a trigger to AWS, whether or not its WHERE holds.
  benchRule('bench_count_acknowledgement_triggers', topicOf(acknowledgementRule), 'benchCountAckTriggers'),
  benchRule('bench_count_download_triggers', topicOf(downloadRule), 'benchCountDownloadTriggers'),
  benchRule('bench_deliver_download_answers', 'ota/things/+/downloads/+', 'benchDeliverDownloadAnswer'),
];

/** The latest delta each device received (`state.ota` and the version), as the agent keeps it. */
const deltas = new Map<string, { ota: unknown; version: number }>();

function deliverDelta(event: unknown): void {
  counts.deltasToDevices++;
  const delta = event as { thingName?: string; version?: number; state?: { ota?: unknown } };
  const { topic, bytes } = deliveredBytes(event as Record<string, unknown>);
  meterMessage(topic, bytes);
  if (delta.thingName) deltas.set(delta.thingName, { ota: delta.state?.ota, version: delta.version ?? 0 });
}

/** Devices that got their grant unasked, with their notification (the fan-out sends it). */
const pushedGrants = new Set<string>();

/** A grant reaching the device, which subscribes to its `accepted` and `rejected` topics. */
function deliverDownloadAnswer(event: unknown): void {
  const body = event as Record<string, unknown>;
  const { topic, bytes } = deliveredBytes(body);
  if (topic.endsWith('/downloads/request')) return;
  if (topic.endsWith('/downloads/accepted') && body.clientToken === undefined) {
    counts.grantsPushedToDevices++;
    if (typeof body.thingName === 'string') pushedGrants.add(body.thingName);
  }
  counts.downloadAnswersToDevices++;
  if (topic.endsWith('/downloads/rejected')) counts.downloadRejections++;
  meterMessage(topic, bytes);
}

const waiting = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();
let nextId = 0;

/** SQS hands out and deletes ten messages a request at most. */
const SQS_MESSAGES_PER_REQUEST = 10;

/** A batch of the acknowledgements queue: its first deliveries were the rule's actions. */
function meterAcknowledgementBatch(event: SQSEvent): void {
  const records = event.Records;
  const first = records.filter((r) => r.attributes.ApproximateReceiveCount === '1').length;
  counts.acknowledgementBatches++;
  counts.acknowledgementRuleActions += first;
  counts.sqsSendMessages += first;
  counts.sqsReceiveRequests += Math.ceil(records.length / SQS_MESSAGES_PER_REQUEST);
  counts.sqsDeleteRequests += Math.ceil(records.length / SQS_MESSAGES_PER_REQUEST);
}

function forwardToParent(
  fn: 'acknowledge' | 'downloadAuthorizer' | 'countersStream',
  event: unknown,
): Promise<void> {
  if (fn === 'acknowledge') meterAcknowledgementBatch(event as SQSEvent);
  if (fn === 'downloadAuthorizer') counts.downloadRuleActions++;
  const id = nextId++;
  return new Promise<void>((resolve, reject) => {
    waiting.set(id, { resolve, reject });
    process.send?.({ type: 'invoke', id, function: fn, event });
  });
}

const iot = await startLocalIotCore({
  rules: [acknowledgementRule, downloadRule, ...benchRules],
  resolveLambda: (name) => {
    if (name === 'acknowledge' || name === 'downloadAuthorizer')
      return (event: unknown) => forwardToParent(name, event);
    if (name === 'benchDeliverDelta') return deliverDelta;
    if (name === 'benchDeliverDownloadAnswer') return deliverDownloadAnswer;
    if (name === 'benchCountAckTriggers') return () => void counts.acknowledgementRuleTriggers++;
    if (name === 'benchCountDownloadTriggers') return () => void counts.downloadRuleTriggers++;
    return undefined;
  },
});

const compatibility = sampleDeviceCompatibility;
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
  const getTopic = `$aws/things/${thingName}/shadow/name/ota/get`;
  meterMessage(getTopic, 2);
  const reply = iot.shadows.get({ thingName, shadowName: 'ota' }, encode({}));
  counts.repliesToDevices++;
  const replyBytes = Buffer.byteLength(JSON.stringify(reply.body));
  // A GET is metered by the document it returns.
  counts.deviceShadowOpUnits += unitsOf(replyBytes, SHADOW_OP_UNIT_BYTES);
  meterMessage(`${getTopic}/${reply.ok ? 'accepted' : 'rejected'}`, replyBytes);
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
  const topic = `$aws/things/${thingName}/shadow/name/ota/update`;
  counts.deviceShadowUpdates++;
  counts.deviceShadowOpUnits += unitsOf(payload.length, SHADOW_OP_UNIT_BYTES);
  counts.messagesFromDevices++;
  meterMessage(topic, payload.length);
  const reply = iot.shadows.update({ thingName, shadowName: 'ota' }, payload);
  if (reply.ok) {
    device.version++;
  } else {
    counts.rejectedDeviceRequests++;
    counts.repliesToDevices++;
    meterMessage(`${topic}/rejected`, Buffer.byteLength(JSON.stringify(reply.body)));
  }
  iot.shadows.publishNotifications(reply);
  iot.routeToRules(topic, payload, thingName);
}

/**
 * The agent on the delta: takes the document (reading the shadow only if it must) and the grant
 * that came with it; without one it asks for download authorization (agent/authorization.ts),
 * which records `downloading`. It sends no report of its own until the end (ADR 0050).
 */
function startDownload(thingName: string): void {
  const desired = readDesired(thingName);
  if (!desired) return;
  const device: DeviceMemory = { ids: desired.ids, version: desired.version, seq: 0 };
  memory.set(thingName, device);
  // The grant that came with the notification is used as it is (agent/channels.ts PushedGrants).
  if (!pushedGrants.delete(thingName)) requestDownload(thingName, device.ids.deploymentId);
}

/** A download-authorization request, as the agent publishes it: QoS 1, no files named (all of them). */
function requestDownload(thingName: string, deploymentId: string): void {
  const topic = downloadTopics.request(thingName);
  const payload = encode({ clientToken: `${thingName}-1`, deploymentId });
  counts.downloadRequests++;
  counts.messagesFromDevices++;
  meterMessage(topic, payload.length);
  iot.routeToRules(topic, Buffer.from(payload), thingName);
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

/** Each change's write units, by who made it: a `notified` mark is the fan-out's. */
function meterExecutionWrites(event: DynamoDBStreamEvent): void {
  for (const record of event.Records) {
    const before = record.dynamodb?.OldImage as Image | undefined;
    const after = record.dynamodb?.NewImage as Image | undefined;
    const units = writeUnitsOfChange(executionsTable, before, after);
    if (after?.reason?.S === 'notified') counts.executionWriteUnitsByFanout += units;
    else counts.executionWriteUnitsByAcknowledgement += units;
  }
}

let poller: StreamPoller | undefined;
let streams: DynamoDBStreamsClient | undefined;

/**
 * Lambda's event source mapping reads the executions stream (at no request charge, and not in the
 * function's CPU): here, beside the rules engine, each batch forwarded as an invocation.
 */
async function pollStream(source: StreamSource): Promise<void> {
  const { endpoint, region, credentials, tableName, batchSize, maxBatchingWindowMs } = source;
  streams = new DynamoDBStreamsClient({ endpoint, region, credentials });
  poller = await startStreamPoller({
    streams,
    tableName,
    region,
    idleDelayMs: 50,
    batchSize,
    maxBatchingWindowMs,
    handler: (event) => {
      meterExecutionWrites(event);
      return forwardToParent('countersStream', event);
    },
    onError: (error) => console.warn('  counters stream batch failed; retrying', error),
  });
}

async function stopStream(): Promise<void> {
  await poller?.stop();
  streams?.destroy();
  poller = undefined;
}

process.on('message', (message: BrokerRequest) => {
  switch (message.type) {
    case 'pollStream':
      void pollStream(message.source).then(() => process.send?.({ type: 'streamPolled' }));
      return;
    case 'streamCaughtUp':
      void (poller?.caughtUp() ?? Promise.resolve()).then(() => process.send?.({ type: 'streamCaughtUp' }));
      return;
    case 'stopStream':
      void stopStream().then(() => process.send?.({ type: 'streamStopped' }));
      return;
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
