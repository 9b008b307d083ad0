/**
 * AWS IoT topic rules, shared by the CDK stack (one `AWS::IoT::TopicRule` per entry) and the local
 * IoT Core's rules engine (local/iot/rules), so a rule's SQL and actions are written once.
 * Pure data: no AWS SDK, no CDK.
 */

import type { QueueId } from './queues.ts';

/** The only IoT SQL version both the stack and the local rules engine speak. */
export type IotSqlVersion = '2016-03-23';

/**
 * Invoke a Lambda function asynchronously with the SELECT result as the event. `function` names
 * the function: the stack maps it to its construct, the local cloud to an in-process handler.
 */
export interface LambdaRuleAction {
  readonly lambda: { readonly function: string };
}

/**
 * Republish the SELECT result to another topic. `topic` may hold substitution templates
 * (`ota/${topic(3)}/errors`), as AWS allows.
 */
export interface RepublishRuleAction {
  readonly republish: { readonly topic: string; readonly qos?: 0 | 1 };
}

/**
 * Send the SELECT result (JSON, not base64) as one message to a queue of the service
 * (lambdas/definitions/queues.ts), whose function takes its messages in batches. The stack maps
 * `queue` to its SQS queue, the local cloud to its local queue.
 */
export interface SqsRuleAction {
  readonly sqs: { readonly queue: QueueId };
}

export type RuleAction = LambdaRuleAction | RepublishRuleAction | SqsRuleAction;

export interface TopicRuleDefinition {
  /** Rule name: letters, digits and underscores (AWS's pattern); the stack's RuleName. */
  readonly name: string;
  readonly description?: string;
  /** `SELECT <fields> FROM '<topic filter>' [WHERE <condition>]`. */
  readonly sql: string;
  readonly awsIotSqlVersion: IotSqlVersion;
  readonly actions: readonly RuleAction[];
  /** Receives AWS's error message (ruleName, topic, failures, ...) when an action fails. */
  readonly errorAction?: RuleAction;
}

/** MQTT topics of the download-authorization request/response (ADR 0040); `<thing>` is the thing name. */
export const downloadTopics = {
  request: (thing: string): string => `ota/things/${thing}/downloads/request`,
  accepted: (thing: string): string => `ota/things/${thing}/downloads/accepted`,
  rejected: (thing: string): string => `ota/things/${thing}/downloads/rejected`,
} as const;

/**
 * The rules the service deploys. `lambda.function` names an entry of `backgroundFunctions`
 * (lambdas/definitions/api.ts).
 */
export const topicRules: readonly TopicRuleDefinition[] = [
  {
    name: 'shadow_ota_acknowledgements',
    description:
      'Device reports on the ota named shadow go to the acknowledgements queue, for the acknowledgement function',
    // The device's own update requests, not `update/documents`: the service's data-plane writes
    // (fan-out, cancel, trim) publish nothing here, so AWS meters a rule trigger per device report
    // only (a WHERE-filtered message is still a trigger).
    sql: "SELECT *, topic(3) AS thingName, timestamp() AS receivedAt FROM '$aws/things/+/shadow/name/ota/update' WHERE NOT isUndefined(state.reported.ota)",
    awsIotSqlVersion: '2016-03-23',
    // Through a queue, so the acknowledgement function takes reports in batches (ADR 0040,
    // "Batched acknowledgements"): one conditional write request per 25 reports, not one each.
    actions: [{ sqs: { queue: 'acknowledgements' } }],
  },
  {
    name: 'shadow_ota_download_requests',
    description: 'Devices ask for download authorization; the answer goes to their accepted/rejected topic',
    sql: "SELECT *, topic(3) AS thingName, clientid() AS clientId FROM 'ota/things/+/downloads/request'",
    awsIotSqlVersion: '2016-03-23',
    actions: [{ lambda: { function: 'downloadAuthorizer' } }],
  },
];
