import { describe, expect, it } from 'vitest';
import type { Json } from '../../../local/iot/shadow/json.ts';
import { type MessageContext, matchesWhere, selectResult } from '../../../local/iot/sql/evaluate.ts';
import { SqlSyntaxError } from '../../../local/iot/sql/lexer.ts';
import { parseSql } from '../../../local/iot/sql/parser.ts';
import { isTopicAllowedForThing, parseShadowRequestTopic, topicMatches } from '../../../local/iot/topics.ts';

const payload: Json = {
  current: { state: { reported: { ota: { state: 'succeeded', progress: 100 } } }, version: 7 },
  previous: { state: { reported: { ota: { state: 'installing' } } } },
  list: [{ id: 'a' }, { id: 'b' }],
  count: 3,
  ok: true,
};
const context: MessageContext = {
  payload,
  topic: '$aws/things/dev-1/shadow/name/ota/update/documents',
  clientId: 'dev-1',
  timestampMs: 1_700_000_000_123,
};

function run(sql: string) {
  const statement = parseSql(sql);
  return { passes: matchesWhere(statement, context), result: selectResult(statement, context) };
}

describe('IoT SQL', () => {
  it.each([
    ["SELECT count FROM '#'", { count: 3 }],
    ["SELECT current.state.reported.ota.state FROM '#'", { state: 'succeeded' }],
    [
      "SELECT current.state.reported.ota.state AS newState, current.version AS v FROM '#'",
      { newState: 'succeeded', v: 7 },
    ],
    ["SELECT list[1].id AS second FROM '#'", { second: 'b' }],
    [
      "SELECT topic(3) AS thingName, topic(6) AS shadow, clientid() AS client FROM '#'",
      { thingName: 'dev-1', shadow: 'ota', client: 'dev-1' },
    ],
    ["SELECT timestamp() AS at FROM '#'", { at: 1_700_000_000_123 }],
    ["SELECT count * 2 + 1 AS n, -count AS m FROM '#'", { n: 7, m: -3 }],
    ["SELECT missing.field AS gone, count FROM '#'", { count: 3 }],
    ["SELECT *, topic(3) AS thingName FROM '#'", { ...(payload as object), thingName: 'dev-1' }],
  ])('%s', (sql, expected) => {
    expect(run(sql).result).toEqual(expected);
  });

  it.each([
    ["current.state.reported.ota.state = 'succeeded'", true],
    ['current.state.reported.ota.state <> previous.state.reported.ota.state', true],
    ['current.version >= 7 AND count < 4', true],
    ['current.version > 7 OR ok = true', true],
    ['NOT ok', false],
    ["NOT (count = 3 AND topic(3) = 'dev-2')", true],
    ["missing = 'x'", false],
    ['NOT missing = 1', false],
    ["count = '3'", false],
    ["count < 'z'", false],
    ['isUndefined(missing) AND NOT isUndefined(count)', true],
  ])('WHERE %s → %s', (condition, expected) => {
    expect(run(`SELECT * FROM '#' WHERE ${condition}`).passes).toBe(expected);
  });

  it.each([
    ["SELECT FROM 'a'", /Unexpected FROM/],
    ['SELECT a FROM b', /quoted topic filter/],
    ["SELECT a FROM 'a/#/b'", /'#' must be the last level/],
    ["SELECT nosuch(1) FROM 'a'", /Unsupported function nosuch/],
    ["SELECT a FROM 'a' WHERE", /Unexpected end/],
    ["SELECT a FROM 'a", /Unterminated quoted text/],
  ])('refuses %s', (sql, message) => {
    expect(() => parseSql(sql)).toThrow(SqlSyntaxError);
    expect(() => parseSql(sql)).toThrow(message);
  });
});

describe('topics', () => {
  it.each([
    [
      '$aws/things/+/shadow/name/ota/update/documents',
      '$aws/things/t1/shadow/name/ota/update/documents',
      true,
    ],
    [
      '$aws/things/+/shadow/name/ota/update/documents',
      '$aws/things/t1/shadow/name/x/update/documents',
      false,
    ],
    ['ota/#', 'ota/things/t1/status', true],
    ['ota/#', 'ota', true],
    ['ota/+', 'ota/a/b', false],
  ])('%s matches %s: %s', (filter, topic, expected) => {
    expect(topicMatches(filter, topic)).toBe(expected);
  });

  it.each([
    ['$aws/things/t1/shadow/update', { thingName: 't1', operation: 'update' }],
    ['$aws/things/t1/shadow/name/ota/get', { thingName: 't1', shadowName: 'ota', operation: 'get' }],
    ['$aws/things/t1/shadow/name/ota/update/accepted', undefined],
    ['$aws/things/t1/shadow/list', undefined],
  ])('parses %s', (topic, expected) => {
    expect(parseShadowRequestTopic(topic)).toEqual(expected);
  });

  it.each([
    ['$aws/things/t1/shadow/name/ota/update', true],
    ['$aws/things/t1/shadow/#', true],
    ['ota/things/t1/urls/request', true],
    ['$aws/things/t2/shadow/update', false],
    ['$aws/things/+/shadow/update', false],
    ['ota/things/#', false],
    ['$aws/events/presence/connected/t1', false],
  ])('device policy of t1 on %s: %s', (topic, expected) => {
    expect(isTopicAllowedForThing('t1', topic)).toBe(expected);
  });
});
