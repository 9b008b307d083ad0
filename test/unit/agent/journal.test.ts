import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Journal } from '../../../agent/journal.ts';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'agent-journal-'));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

const updateId = { provider: 'Contoso', name: 'fw', version: '2.0' };

describe('Journal', () => {
  it('keeps units, phase and the reported flag across a reopen (a restart)', async () => {
    const journal = await Journal.open(dir);
    await journal.begin('dep-1', 2, updateId);
    await journal.setUnit('step_0', { state: 'done', result: { resultCode: 700, extendedResultCode: 0 } });
    await journal.setUnit('step_1', { state: 'started' });
    const reopened = await Journal.open(dir);
    expect(reopened.isFor('dep-1', 2)).toBe(true);
    expect(reopened.isFor('dep-1', 1)).toBe(false);
    expect(reopened.unit('step_0')).toEqual({
      state: 'done',
      result: { resultCode: 700, extendedResultCode: 0 },
    });
    expect(reopened.unit('step_1')).toEqual({ state: 'started' });
    await reopened.finish({ state: 'succeeded', lastResult: { resultCode: 700, extendedResultCode: 0 } });
    expect((await Journal.open(dir)).current).toMatchObject({ phase: 'terminal', reportedTerminal: false });
    await reopened.markReported();
    expect((await Journal.open(dir)).current?.reportedTerminal).toBe(true);
  });

  it('forgets the previous deployment when a new one begins (no stale result)', async () => {
    const journal = await Journal.open(dir);
    await journal.begin('dep-1', 1, updateId);
    await journal.finish({ state: 'failed', lastResult: { resultCode: 0, extendedResultCode: 5 } });
    await journal.begin('dep-2', 1, updateId);
    expect(journal.current).toMatchObject({ deploymentId: 'dep-2', phase: 'working', units: {} });
    expect(journal.current?.terminal).toBeUndefined();
  });

  it('tells a downgrade by provider and name, case-insensitively', async () => {
    const journal = await Journal.open(dir);
    await journal.recordInstalled(updateId);
    const reopened = await Journal.open(dir);
    expect(reopened.installed.installedUpdateId).toEqual(updateId);
    expect(reopened.isDowngrade({ provider: 'contoso', name: 'FW', version: '1.9' })).toBe(true);
    expect(reopened.isDowngrade({ provider: 'contoso', name: 'fw', version: '2.0' })).toBe(false);
    expect(reopened.isDowngrade({ provider: 'contoso', name: 'other', version: '0.1' })).toBe(false);
  });

  it('treats an unreadable journal as no journal', async () => {
    await writeFile(join(dir, 'journal.json'), '{"deploymentId": ');
    expect((await Journal.open(dir)).current).toBeUndefined();
  });
});
