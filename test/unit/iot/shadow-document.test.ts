import { describe, expect, it } from 'vitest';
import {
  applyDelete,
  applyUpdate,
  computeDelta,
  getDocument,
  parseUpdateRequest,
  type ShadowSlot,
  type StoredShadow,
  shadowLimits,
  type UpdateRequest,
} from '../../../local/iot/shadow/document.ts';
import type { JsonObject } from '../../../local/iot/shadow/json.ts';

const t0 = 1_700_000_000;
const bytes = (value: unknown): Uint8Array =>
  Buffer.from(typeof value === 'string' ? value : JSON.stringify(value));

function request(body: unknown): UpdateRequest {
  const parsed = parseUpdateRequest(bytes(body));
  if (!parsed.ok) throw new Error(`unexpected rejection: ${parsed.error.message}`);
  return parsed.value;
}

function update(slot: ShadowSlot, body: unknown, now = t0) {
  const outcome = applyUpdate(slot, request(body), now);
  if (!outcome.ok) throw new Error(`unexpected rejection: ${outcome.error.message}`);
  return outcome.value;
}

function nested(depth: number): JsonObject {
  let value: JsonObject = { leaf: 1 };
  for (let i = 1; i < depth; i++) value = { [`l${i}`]: value };
  return value;
}

describe('parseUpdateRequest', () => {
  it.each([
    ['not JSON', '{"state":', 400, 'Invalid JSON', ''],
    ['a JSON array', '[1]', 400, 'Invalid JSON', ''],
    ['no state', { clientToken: 'a' }, 400, 'Missing required node: state', '/state'],
    ['state a string', { state: 'on' }, 400, 'State node must be an object', '/state'],
    [
      'desired an array',
      { state: { desired: [1] } },
      400,
      'Desired node must be an object',
      '/state/desired',
    ],
    [
      'reported a number',
      { state: { reported: 3 } },
      400,
      'Reported node must be an object',
      '/state/reported',
    ],
    ['delta in state', { state: { delta: { a: 1 } } }, 400, 'State contains an invalid node', '/state/delta'],
    [
      'null in an array',
      { state: { desired: { a: [1, null] } } },
      400,
      'State contains an invalid node',
      '/state/desired/a/1',
    ],
    ['version not an integer', { state: {}, version: 1.5 }, 400, 'Invalid version', '/version'],
    [
      'clientToken too long',
      { state: {}, clientToken: 'x'.repeat(65) },
      400,
      'Invalid clientToken',
      '/clientToken',
    ],
    [
      '7 levels deep',
      { state: { desired: nested(7) } },
      400,
      'JSON contains too many levels of nesting; maximum is 6',
      '/state/desired',
    ],
  ])('rejects %s', (_case, body, code, message, path) => {
    const result = parseUpdateRequest(bytes(body));
    expect(result).toEqual({ ok: false, error: { code, message, path } });
  });

  it('rejects a payload that is not UTF-8 with 415', () => {
    const result = parseUpdateRequest(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]));
    expect(result.ok || result.error.code).toBe(415);
  });

  it('accepts 6 levels of nesting and a 64-byte clientToken', () => {
    const result = parseUpdateRequest(bytes({ state: { desired: nested(6) }, clientToken: 'x'.repeat(64) }));
    expect(result.ok).toBe(true);
  });
});

describe('applyUpdate', () => {
  it('creates a shadow at version 1 with per-leaf metadata in seconds', () => {
    const outcome = update({}, { state: { desired: { fw: '2.0', cfg: { a: 1 } } } });
    expect(outcome.shadow).toEqual({
      state: { desired: { fw: '2.0', cfg: { a: 1 } } },
      metadata: { desired: { fw: { timestamp: t0 }, cfg: { a: { timestamp: t0 } } } },
      version: 1,
    });
    expect(outcome.documents.previous).toBeNull();
  });

  it('merges key by key, replaces arrays whole, and deletes with null', () => {
    const first = update({}, { state: { reported: { a: 1, b: { c: 2, d: 3 }, list: [1, 2, 3] } } });
    const second = update(
      { shadow: first.shadow },
      { state: { reported: { a: null, b: { c: null, e: 4 }, list: [9] } } },
      t0 + 5,
    );
    expect(second.shadow.state.reported).toEqual({ b: { d: 3, e: 4 }, list: [9] });
    expect(second.shadow.metadata.reported).toEqual({
      b: { d: { timestamp: t0 }, e: { timestamp: t0 + 5 } },
      list: [{ timestamp: t0 + 5 }],
    });
    expect(second.shadow.version).toBe(2);
  });

  it('removes a whole section with null, and all state with "state": null while the shadow survives', () => {
    const first = update({}, { state: { desired: { a: 1 }, reported: { a: 2 } } });
    const noDesired = update({ shadow: first.shadow }, { state: { desired: null } });
    expect(noDesired.shadow.state).toEqual({ reported: { a: 2 } });
    const empty = update({ shadow: noDesired.shadow }, { state: null });
    expect(empty.shadow).toEqual({ state: {}, metadata: {}, version: 3 });
  });

  it('removes objects left empty by deletes', () => {
    const first = update({}, { state: { desired: { ota: { id: 'd1' } } } });
    const second = update({ shadow: first.shadow }, { state: { desired: { ota: { id: null } } } });
    expect(second.shadow.state).toEqual({});
  });

  it('increments the version on an update that changes nothing', () => {
    const first = update({}, { state: { reported: { a: 1 } } });
    expect(update({ shadow: first.shadow }, { state: { reported: { a: 1 } } }).shadow.version).toBe(2);
  });

  it('accepts a matching version and refuses another with 409, changing nothing', () => {
    const first = update({}, { state: { reported: { a: 1 } } });
    expect(
      applyUpdate({ shadow: first.shadow }, request({ state: { reported: { a: 2 } }, version: 1 }), t0).ok,
    ).toBe(true);
    const conflict = applyUpdate(
      { shadow: first.shadow },
      request({ state: { reported: { a: 2 } }, version: 7 }),
      t0,
    );
    expect(conflict).toEqual({
      ok: false,
      error: { code: 409, message: 'Version conflict', path: '/version' },
    });
  });

  it('refuses a merged state over 8 KB with 413', () => {
    const first = update({}, { state: { reported: { a: 'x'.repeat(5000) } } });
    const tooBig = applyUpdate(
      { shadow: first.shadow },
      request({ state: { desired: { b: 'y'.repeat(4000) } } }),
      t0,
    );
    expect(tooBig.ok || tooBig.error).toEqual({
      code: 413,
      message: 'The payload exceeds the maximum size allowed',
      path: '/state',
    });
    expect(shadowLimits.maxStateBytes).toBe(8192);
  });

  it('echoes the request state, its metadata and the clientToken in accepted and documents', () => {
    const outcome = update({}, { state: { desired: { a: 1, b: null } }, clientToken: 'tok' });
    expect(outcome.accepted).toEqual({
      state: { desired: { a: 1, b: null } },
      metadata: { desired: { a: { timestamp: t0 }, b: { timestamp: t0 } } },
      version: 1,
      timestamp: t0,
      clientToken: 'tok',
    });
    expect(outcome.documents.clientToken).toBe('tok');
  });

  it('continues the version of a shadow deleted within 48 hours, and restarts after', () => {
    const tombstone = { version: 9, deletedAt: t0 };
    expect(update({ tombstone }, { state: { reported: { a: 1 } } }, t0 + 3600).shadow.version).toBe(10);
    expect(update({ tombstone }, { state: { reported: { a: 1 } } }, t0 + 49 * 3600).shadow.version).toBe(1);
  });
});

describe('delta', () => {
  it.each([
    ['a missing reported leaf', { a: 1 }, {}, { a: 1 }],
    ['an equal leaf', { a: 1 }, { a: 1 }, undefined],
    ['a nested difference, keeping its path', { o: { x: 1, y: 2 } }, { o: { x: 1, y: 3 } }, { o: { y: 2 } }],
    ['keys only in reported', { a: 1 }, { a: 1, extra: true }, undefined],
    ['a different array, whole', { l: [1, 2] }, { l: [1] }, { l: [1, 2] }],
    ['an object where reported has a scalar', { o: { x: 1 } }, { o: 5 }, { o: { x: 1 } }],
  ])('%s', (_case, desired, reported, expected) => {
    expect(computeDelta(desired, reported)).toEqual(expected);
  });

  it('publishes the difference with the desired metadata of its leaves', () => {
    const outcome = update(
      {},
      { state: { desired: { fw: '2', keep: 1 }, reported: { keep: 1 } }, clientToken: 'c' },
    );
    expect(outcome.delta).toEqual({
      version: 1,
      timestamp: t0,
      state: { fw: '2' },
      metadata: { fw: { timestamp: t0 } },
      clientToken: 'c',
    });
  });

  it('publishes no delta when the update leaves desired and reported equal', () => {
    const first = update({}, { state: { desired: { fw: '2' } } });
    expect(update({ shadow: first.shadow }, { state: { reported: { fw: '2' } } }).delta).toBeUndefined();
  });

  it('publishes only the differences on paths the request wrote', () => {
    const first = update({}, { state: { desired: { ota: { deployment: 'd1' } } } });
    // A progress report elsewhere under reported.ota does not resend the standing delta.
    const progress = update(
      { shadow: first.shadow },
      { state: { reported: { ota: { state: 'downloading' } } } },
    );
    expect(progress.delta).toBeUndefined();
    // A report that contradicts desired on the same path does.
    const contradiction = update(
      { shadow: progress.shadow },
      { state: { reported: { ota: { deployment: 'd0' } } } },
    );
    expect(contradiction.delta?.state).toEqual({ ota: { deployment: 'd1' } });
  });

  it('is part of GET, with the full state and metadata', () => {
    const { shadow } = update({}, { state: { desired: { a: 1, b: 2 }, reported: { a: 1 } } });
    expect(getDocument(shadow, t0 + 1, 'g')).toEqual({
      state: { desired: { a: 1, b: 2 }, reported: { a: 1 }, delta: { b: 2 } },
      metadata: shadow.metadata,
      version: 1,
      timestamp: t0 + 1,
      clientToken: 'g',
    });
  });
});

describe('applyDelete', () => {
  const shadow: StoredShadow = {
    state: { reported: { a: 1 } },
    metadata: { reported: { a: { timestamp: t0 } } },
    version: 4,
  };

  it('answers with the deleted version and leaves a tombstone', () => {
    expect(applyDelete(shadow, 'ota', { clientToken: 'd' }, t0 + 2)).toEqual({
      ok: true,
      value: {
        tombstone: { version: 4, deletedAt: t0 + 2 },
        accepted: { version: 4, timestamp: t0 + 2, clientToken: 'd' },
      },
    });
  });

  it('is 404 for a missing shadow', () => {
    expect(applyDelete(undefined, 'ota', {}, t0)).toEqual({
      ok: false,
      error: { code: 404, message: "No shadow exists with name: 'ota'", path: '' },
    });
  });
});
