/**
 * Evaluates parsed IoT SQL against one message. AWS's `Undefined` (a missing field, a comparison of
 * mismatched types) is `undefined` here: it drops out of the SELECT result and makes WHERE false.
 */
import { randomUUID } from 'node:crypto';
import { isJsonObject, type Json, type JsonObject, jsonEquals } from '../shadow/json.ts';
import type { Expression, SelectStatement } from './parser.ts';

export interface MessageContext {
  /** The payload parsed as JSON, or undefined when it is not JSON. */
  readonly payload: Json | undefined;
  readonly topic: string;
  /** The publishing client's id; AWS gives `n/a` for messages without one. */
  readonly clientId: string;
  /** Epoch milliseconds when the message arrived. */
  readonly timestampMs: number;
}

type Value = Json | undefined;

function readPath(root: Value, segments: readonly (string | number)[]): Value {
  let value = root;
  for (const segment of segments) {
    if (typeof segment === 'number') {
      value = Array.isArray(value) ? value[segment] : undefined;
    } else {
      value = isJsonObject(value) ? value[segment] : undefined;
    }
    if (value === undefined) return undefined;
  }
  return value;
}

function topicLevel(topic: string, level: Value): Value {
  if (level === undefined) return topic;
  if (typeof level !== 'number' || !Number.isInteger(level) || level < 1) return undefined;
  return topic.split('/')[level - 1];
}

function callFunction(name: string, args: readonly Expression[], context: MessageContext): Value {
  switch (name) {
    case 'topic':
      return topicLevel(context.topic, args[0] ? evaluate(args[0], context) : undefined);
    case 'timestamp':
      return context.timestampMs;
    case 'clientid':
      return context.clientId;
    case 'newuuid':
      return randomUUID();
    case 'isundefined':
      return args[0] ? evaluate(args[0], context) === undefined : undefined;
    default:
      return undefined;
  }
}

function compare(operator: string, left: Value, right: Value): Value {
  if (left === undefined || right === undefined) return undefined;
  if (operator === '=') return jsonEquals(left, right);
  if (operator === '<>') return !jsonEquals(left, right);
  const comparable =
    (typeof left === 'number' && typeof right === 'number') ||
    (typeof left === 'string' && typeof right === 'string');
  if (!comparable) return undefined;
  switch (operator) {
    case '<':
      return left < right;
    case '<=':
      return left <= right;
    case '>':
      return left > right;
    default:
      return left >= right;
  }
}

function arithmetic(operator: string, left: Value, right: Value): Value {
  if (typeof left !== 'number' || typeof right !== 'number') return undefined;
  switch (operator) {
    case '+':
      return left + right;
    case '-':
      return left - right;
    case '*':
      return left * right;
    case '/':
      return right === 0 ? undefined : left / right;
    default:
      return right === 0 ? undefined : left % right;
  }
}

/** Three-valued logic: false beats Undefined in AND, true beats it in OR. */
function logical(operator: 'AND' | 'OR', left: Value, right: Value): Value {
  const l = typeof left === 'boolean' ? left : undefined;
  const r = typeof right === 'boolean' ? right : undefined;
  if (operator === 'AND') {
    if (l === false || r === false) return false;
    return l === true && r === true ? true : undefined;
  }
  if (l === true || r === true) return true;
  return l === false && r === false ? false : undefined;
}

export function evaluate(expression: Expression, context: MessageContext): Value {
  switch (expression.type) {
    case 'literal':
      return expression.value;
    case 'path':
      return readPath(context.payload, expression.segments);
    case 'call':
      return callFunction(expression.name, expression.args, context);
    case 'not': {
      const value = evaluate(expression.operand, context);
      return typeof value === 'boolean' ? !value : undefined;
    }
    case 'negate': {
      const value = evaluate(expression.operand, context);
      return typeof value === 'number' ? -value : undefined;
    }
    case 'binary': {
      const { operator } = expression;
      const left = evaluate(expression.left, context);
      const right = evaluate(expression.right, context);
      if (operator === 'AND' || operator === 'OR') return logical(operator, left, right);
      if (operator === '+' || operator === '-' || operator === '*' || operator === '/' || operator === '%') {
        return arithmetic(operator, left, right);
      }
      return compare(operator, left, right);
    }
  }
}

/** The WHERE clause passes only when it evaluates to true (false and Undefined both drop the message). */
export function matchesWhere(statement: SelectStatement, context: MessageContext): boolean {
  return statement.where === undefined || evaluate(statement.where, context) === true;
}

/** The SELECT result: `*` spreads the payload object, other items add their value under their name. */
export function selectResult(statement: SelectStatement, context: MessageContext): JsonObject {
  const result: JsonObject = {};
  for (const item of statement.select) {
    if (item.type === 'all') {
      if (isJsonObject(context.payload)) Object.assign(result, context.payload);
      continue;
    }
    const value = evaluate(item.expression, context);
    if (value !== undefined) result[item.name] = value;
  }
  return result;
}
