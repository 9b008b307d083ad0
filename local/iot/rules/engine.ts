/**
 * The rules engine: every message published on the broker is matched against each rule's FROM
 * filter and WHERE clause; the SELECT result goes to the rule's actions. A Lambda action invokes
 * an in-process handler asynchronously, the way AWS invokes it (`InvocationType: Event`): the
 * rule only sees whether the invocation was accepted, so an unknown function is an action failure
 * routed to the error action, while an error thrown by the handler is retried twice and then
 * reported to `onLambdaFailure` (Lambda's async on-failure destination), never to the error action.
 * An SQS action sends the SELECT result as JSON text to a local queue (local/queues.ts); only a
 * send that fails (no such queue, a body over SQS's limit) goes to the error action, and what the
 * queue's function does with the message is the queue's business.
 */
import { randomUUID } from 'node:crypto';
import type { Context } from 'aws-lambda';
import type { RuleAction, TopicRuleDefinition } from '../../../lambdas/definitions/rules.ts';
import { functionArn, makeLambdaContext } from '../../lambda-context.ts';
import { type LocalQueue, queueUrl } from '../../queues.ts';
import type { Json, JsonObject } from '../shadow/json.ts';
import { evaluate, type MessageContext, matchesWhere, selectResult } from '../sql/evaluate.ts';
import { type Expression, parseExpression, parseSql, type SelectStatement } from '../sql/parser.ts';
import { topicMatches } from '../topics.ts';

/**
 * A Lambda handler as the local cloud runs it: the deployed module's `handler`. Its event is what
 * its trigger sends: a rule's SELECT result (a JSON object), or a queue's `SQSEvent`.
 */
export type LocalLambdaHandler = (event: unknown, context: Context) => unknown;

/** Finds the handler of a rule's `lambda.function`; undefined when there is no such function. */
export type LambdaResolver = (functionName: string) => LocalLambdaHandler | undefined;

export interface LambdaFailure {
  readonly functionName: string;
  readonly event: JsonObject;
  readonly error: unknown;
  readonly attempts: number;
}

export interface RulesEngineOptions {
  readonly rules: readonly TopicRuleDefinition[];
  readonly resolveLambda: LambdaResolver;
  readonly publish: (topic: string, payload: string, qos: 0 | 1) => void;
  /** Epoch milliseconds. */
  readonly now: () => number;
  readonly region: string;
  readonly accountId: string;
  /** Delays before each retry of a failed async invocation (AWS: two retries, about 1 and 2 minutes). */
  readonly lambdaRetryDelaysMs?: readonly number[];
  readonly onLambdaFailure?: (failure: LambdaFailure) => void;
  /** The local queues `sqs` actions send to, by name; `idle()` waits for them too. */
  readonly queues?: ReadonlyMap<string, LocalQueue>;
}

interface CompiledAction {
  readonly action: RuleAction;
  /** The republish topic's `${...}` templates, parsed once. */
  readonly topicTemplate?: readonly (string | Expression)[];
}

interface CompiledRule {
  readonly definition: TopicRuleDefinition;
  readonly statement: SelectStatement;
  readonly actions: readonly CompiledAction[];
  readonly errorAction?: CompiledAction;
}

interface ActionFailure {
  readonly failedAction: string;
  readonly failedResource: string;
  readonly errorMessage: string;
}

const ruleNamePattern = /^[a-zA-Z0-9_]+$/;

function compileTemplate(topic: string): (string | Expression)[] {
  const parts: (string | Expression)[] = [];
  let rest = topic;
  for (let start = rest.indexOf('${'); start !== -1; start = rest.indexOf('${')) {
    const end = rest.indexOf('}', start);
    if (end === -1) throw new Error(`Unterminated substitution template in topic '${topic}'`);
    if (start > 0) parts.push(rest.slice(0, start));
    parts.push(parseExpression(rest.slice(start + 2, end)));
    rest = rest.slice(end + 1);
  }
  if (rest) parts.push(rest);
  return parts;
}

function compileAction(action: RuleAction): CompiledAction {
  return 'republish' in action
    ? { action, topicTemplate: compileTemplate(action.republish.topic) }
    : { action };
}

/** Parses every rule up front: a rule the engine cannot run is a bug in its definition. */
export function compileRules(rules: readonly TopicRuleDefinition[]): CompiledRule[] {
  const names = new Set<string>();
  return rules.map((definition) => {
    if (!ruleNamePattern.test(definition.name)) throw new Error(`Invalid rule name '${definition.name}'`);
    if (names.has(definition.name)) throw new Error(`Duplicate rule name '${definition.name}'`);
    names.add(definition.name);
    return {
      definition,
      statement: parseSql(definition.sql),
      actions: definition.actions.map(compileAction),
      ...(definition.errorAction ? { errorAction: compileAction(definition.errorAction) } : {}),
    };
  });
}

function parsePayload(payload: Buffer): Json | undefined {
  try {
    return JSON.parse(payload.toString('utf8')) as Json;
  } catch {
    return undefined;
  }
}

export class RulesEngine {
  readonly #rules: CompiledRule[];
  readonly #options: RulesEngineOptions;
  readonly #pending = new Set<Promise<void>>();

  constructor(options: RulesEngineOptions) {
    this.#options = options;
    this.#rules = compileRules(options.rules);
  }

  /** Runs the rules whose FROM filter matches; actions run after this returns, as in AWS. */
  handleMessage(topic: string, payload: Buffer, clientId: string | undefined): void {
    let context: MessageContext | undefined;
    for (const rule of this.#rules) {
      if (!topicMatches(rule.statement.from, topic)) continue;
      context ??= {
        payload: parsePayload(payload),
        topic,
        clientId: clientId ?? 'n/a',
        timestampMs: this.#options.now(),
      };
      if (!matchesWhere(rule.statement, context)) continue;
      const result = selectResult(rule.statement, context);
      this.#track(this.#runActions(rule, result, context, payload));
    }
  }

  /**
   * Resolves when every action started so far (retries included) has finished and the queues have
   * delivered what they hold; a queue's function may publish again, so both are waited for until
   * neither has work.
   */
  async idle(): Promise<void> {
    const queues = [...(this.#options.queues?.values() ?? [])];
    while (this.#pending.size > 0 || queues.some((queue) => !queue.isIdle())) {
      await this.actionsIdle();
      await Promise.all(queues.map((queue) => queue.idle()));
    }
  }

  /** Resolves when every action started so far (retries included) has finished; queues may still hold messages. */
  async actionsIdle(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
  }

  #track(work: Promise<void>): void {
    this.#pending.add(work);
    void work.finally(() => this.#pending.delete(work));
  }

  async #runActions(
    rule: CompiledRule,
    result: JsonObject,
    context: MessageContext,
    payload: Buffer,
  ): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    const failures: ActionFailure[] = [];
    for (const action of rule.actions) {
      const failure = this.#runAction(action, result, context);
      if (failure) failures.push(failure);
    }
    if (failures.length === 0 || !rule.errorAction) return;
    // One error message per rule and message, listing every failed action (AWS's format).
    const errorMessage: JsonObject = {
      ruleName: rule.definition.name,
      topic: context.topic,
      cloudwatchTraceId: randomUUID(),
      clientId: context.clientId,
      base64OriginalPayload: payload.toString('base64'),
      failures: failures.map((f) => ({ ...f })),
    };
    this.#runAction(rule.errorAction, errorMessage, context);
  }

  #runAction(
    compiled: CompiledAction,
    event: JsonObject,
    context: MessageContext,
  ): ActionFailure | undefined {
    const { action } = compiled;
    if ('lambda' in action) return this.#invokeLambda(action.lambda.function, event);
    if ('sqs' in action) return this.#sendToQueue(action.sqs.queue, event);
    const topic = this.#renderTopic(compiled.topicTemplate ?? [], context);
    if (topic === undefined) {
      return {
        failedAction: 'RepublishAction',
        failedResource: action.republish.topic,
        errorMessage: 'A substitution template of the topic evaluated to Undefined',
      };
    }
    this.#options.publish(topic, JSON.stringify(event), action.republish.qos ?? 0);
    return undefined;
  }

  #renderTopic(template: readonly (string | Expression)[], context: MessageContext): string | undefined {
    let topic = '';
    for (const part of template) {
      if (typeof part === 'string') {
        topic += part;
        continue;
      }
      const value = evaluate(part, context);
      if (value === undefined || value === null || typeof value === 'object') return undefined;
      topic += String(value);
    }
    return topic;
  }

  #functionArn(functionName: string): string {
    return functionArn({ functionName, region: this.#options.region, accountId: this.#options.accountId });
  }

  /** SendMessage with the SELECT result as its body; the error message follows AWS's for the call. */
  #sendToQueue(queueName: string, event: JsonObject): ActionFailure | undefined {
    const { region, accountId } = this.#options;
    const queue = this.#options.queues?.get(queueName);
    const failure = (errorMessage: string): ActionFailure => ({
      failedAction: 'SqsAction',
      failedResource: queueUrl({ region, accountId, name: queueName }),
      errorMessage: `Failed to send message to SQS queue. The error received was ${errorMessage}`,
    });
    if (!queue) {
      return failure(
        'The specified queue does not exist (Error Code: AWS.SimpleQueueService.NonExistentQueue)',
      );
    }
    const sent = queue.send(JSON.stringify(event));
    return sent.ok ? undefined : failure(`${sent.message} (Error Code: ${sent.code})`);
  }

  /** The asynchronous Invoke: fails only when the function cannot be invoked at all. */
  #invokeLambda(functionName: string, event: JsonObject): ActionFailure | undefined {
    const handler = this.#options.resolveLambda(functionName);
    if (!handler) {
      return {
        failedAction: 'LambdaAction',
        failedResource: this.#functionArn(functionName),
        errorMessage: `Failed to invoke lambda function. Function not found: ${this.#functionArn(functionName)}`,
      };
    }
    this.#track(this.#runWithRetries(functionName, handler, event));
    return undefined;
  }

  async #runWithRetries(functionName: string, handler: LocalLambdaHandler, event: JsonObject): Promise<void> {
    const delays = this.#options.lambdaRetryDelaysMs ?? [100, 200];
    let attempt = 0;
    for (;;) {
      attempt++;
      try {
        // Each attempt gets its own copy, as each Lambda invocation deserialises its own event.
        await handler(structuredClone(event), this.#context(functionName));
        return;
      } catch (error) {
        const delay = delays[attempt - 1];
        if (delay === undefined) {
          this.#options.onLambdaFailure?.({ functionName, event, error, attempts: attempt });
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  #context(functionName: string): Context {
    const { region, accountId, now } = this.#options;
    return makeLambdaContext({ functionName, region, accountId, now });
  }
}
