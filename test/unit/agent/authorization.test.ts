import { describe, expect, it } from 'vitest';
import { type AuthorizationPort, type Grant, GrantSource } from '../../../agent/authorization.ts';
import { ok } from '../../../lambdas/domain/result.ts';

/** A port that grants `lifetimeMs` of presigned URLs at the fake clock's time and counts requests. */
function grantingPort(clock: { now: number }, lifetimeMs: number) {
  let requests = 0;
  const port: AuthorizationPort = {
    async request() {
      requests++;
      const grant: Grant = {
        mode: 'presigned',
        manifest: '{"updateId":{}}',
        signature: 'header.payload.signature',
        expiresAt: new Date(clock.now + lifetimeMs).toISOString(),
        origin: 'https://example.test',
        query: `n=${requests}`,
        files: { f1: ['/f1', 'abc'] },
      };
      return ok(grant);
    },
  };
  return { port, requests: () => requests };
}

function sourceFor(lifetimeMs: number) {
  const clock = { now: Date.parse('2026-11-24T08:00:00Z') };
  const granting = grantingPort(clock, lifetimeMs);
  const source = new GrantSource({
    deploymentId: 'dep-1',
    attempt: 1,
    port: granting.port,
    now: () => clock.now,
  });
  return { clock, source, requests: granting.requests };
}

describe('GrantSource', () => {
  it('hands out the signed manifest and the URLs of one grant, asking once', async () => {
    const { source, requests } = sourceFor(900_000);
    expect(await source.signedManifest()).toEqual(
      ok({ manifest: '{"updateId":{}}', signature: 'header.payload.signature' }),
    );
    expect(await source.url('f1', { refresh: false })).toEqual(
      ok('https://example.test/f1?n=1&X-Amz-Signature=abc'),
    );
    expect(requests()).toBe(1);
  });

  it('asks again 30 s before a long grant expires', async () => {
    const { clock, source, requests } = sourceFor(900_000);
    await source.url('f1', { refresh: false });
    clock.now += 900_000 - 31_000;
    await source.url('f1', { refresh: false });
    expect(requests()).toBe(1);
    clock.now += 2_000;
    expect(await source.url('f1', { refresh: false })).toEqual(
      ok('https://example.test/f1?n=2&X-Amz-Signature=abc'),
    );
  });

  it('reuses a grant shorter-lived than the margin for three quarters of its life', async () => {
    const { clock, source, requests } = sourceFor(10_000);
    await source.signedManifest();
    clock.now += 7_000;
    await source.url('f1', { refresh: false });
    expect(requests()).toBe(1);
    clock.now += 1_000;
    await source.url('f1', { refresh: false });
    expect(requests()).toBe(2);
  });

  it('asks again when a URL was refused, however fresh the grant', async () => {
    const { source, requests } = sourceFor(900_000);
    await source.url('f1', { refresh: false });
    expect(await source.url('f1', { refresh: true })).toEqual(
      ok('https://example.test/f1?n=2&X-Amz-Signature=abc'),
    );
    expect(requests()).toBe(2);
  });
});
