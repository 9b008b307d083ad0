import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  makeUpdateStore,
  type NewUpdate,
  type UpdateIdentity,
  type UpdateStore,
  updateKey,
} from '../../../lambdas/adapters/update-store.ts';
import { createUpdatesTable, documentClient, dynamoDbClient } from './support.ts';

const db = dynamoDbClient(inject('ddbEndpoint'));
let store: UpdateStore;
const now = new Date('2026-11-23T10:00:00Z');

function newUpdate(id: UpdateIdentity, extra: Partial<NewUpdate> = {}): NewUpdate {
  return {
    updateId: id,
    importDigest: `digest-${updateKey(id)}`,
    importManifest: JSON.stringify({ updateId: id }),
    isDeployable: true,
    files: [
      {
        filename: 'a.bin',
        sizeInBytes: 3,
        sha256: 'x',
        objectKey: `k/${updateKey(id)}/a.bin`,
        manifestPath: '/files/0',
      },
    ],
    children: [],
    referencedBy: [],
    ...extra,
  };
}

const id = (name: string, version = '1.0'): UpdateIdentity => ({ provider: 'Contoso', name, version });
const manifest = { objectKey: 'm.json', sha256: 'h', sizeInBytes: 10, signature: 'a.b.c', keyId: 'k1' };

beforeAll(async () => {
  const tableName = await createUpdatesTable(db, 'store');
  store = makeUpdateStore({ db: documentClient(db), tableName });
});

afterAll(() => db.destroy());

describe('update store', () => {
  it('reserves an update as pending and reads it back under any spelling of its id', async () => {
    const created = await store.reserve([newUpdate(id('Toaster'))], [], now);
    expect(created.ok).toBe(true);
    const record = await store.get({ provider: 'contoso', name: 'TOASTER', version: '1.00' });
    expect(record).toMatchObject({ state: 'pending', activeDeployments: 0, createdAt: now.toISOString() });
    expect(record?.files[0]?.filename).toBe('a.bin');
  });

  it('refuses to reserve an updateId twice, naming it', async () => {
    await store.reserve([newUpdate(id('Kettle'))], [], now);
    const again = await store.reserve([newUpdate(id('Kettle'), { importDigest: 'other' })], [], now);
    expect(again).toEqual({ ok: false, error: { code: 'UPDATE_CONFLICT', updateIds: [id('Kettle')] } });
    expect((await store.get(id('Kettle')))?.importDigest).toBe(`digest-${updateKey(id('Kettle'))}`);
  });

  it('writes a parent with its children in one transaction, or nothing', async () => {
    const parent = id('Vacuum');
    await store.reserve([newUpdate(id('Motor'))], [], now);
    // The second child already exists: the whole set is refused and the parent is not written.
    const refused = await store.reserve(
      [newUpdate(parent, { children: [id('Camera')] }), newUpdate(id('Motor'))],
      [],
      now,
    );
    expect(refused.ok).toBe(false);
    expect(await store.get(parent)).toBeUndefined();
  });

  it('links an existing child to a new parent, and refuses a missing child', async () => {
    await store.reserve([newUpdate(id('Steamer'))], [], now);
    const parent = id('Robot');
    const linked = await store.reserve(
      [newUpdate(parent, { children: [id('Steamer')] })],
      [{ child: id('Steamer'), parent }],
      now,
    );
    expect(linked.ok).toBe(true);
    expect((await store.get(id('Steamer')))?.referencedBy).toEqual([updateKey(parent)]);

    const orphan = await store.reserve(
      [newUpdate(id('Robot', '2.0'), { children: [id('Nowhere')] })],
      [{ child: id('Nowhere'), parent: id('Robot', '2.0') }],
      now,
    );
    expect(orphan).toEqual({ ok: false, error: { code: 'UPDATE_CONFLICT', updateIds: [id('Nowhere')] } });
    expect(await store.get(id('Nowhere'))).toBeUndefined();
  });

  it('refuses to link a child that has children of its own', async () => {
    const grandChild = id('Leaf');
    const child = id('Branch');
    await store.reserve([newUpdate(grandChild)], [], now);
    await store.reserve(
      [newUpdate(child, { children: [grandChild] })],
      [{ child: grandChild, parent: child }],
      now,
    );
    const result = await store.reserve([newUpdate(id('Tree'))], [{ child, parent: id('Tree') }], now);
    expect(result.ok).toBe(false);
  });

  it('marks pending updates ready once; a second commit finds them not pending', async () => {
    await store.reserve([newUpdate(id('Oven'))], [], now);
    expect((await store.markReady([{ updateId: id('Oven'), updateManifest: manifest }], now)).ok).toBe(true);
    const record = await store.get(id('Oven'));
    expect(record).toMatchObject({
      state: 'ready',
      committedAt: now.toISOString(),
      updateManifest: manifest,
    });
    const again = await store.markReady(
      [{ updateId: id('Oven'), updateManifest: { ...manifest, sha256: 'other' } }],
      now,
    );
    expect(again).toEqual({ ok: false, error: { code: 'UPDATE_NOT_PENDING', updateIds: [id('Oven')] } });
    expect((await store.get(id('Oven')))?.updateManifest?.sha256).toBe('h');
  });

  it('counts deployments on ready updates only, and never below zero', async () => {
    await store.reserve([newUpdate(id('Fridge'))], [], now);
    expect((await store.acquireForDeployment(id('Fridge'))).ok).toBe(false);
    await store.markReady([{ updateId: id('Fridge'), updateManifest: manifest }], now);
    expect((await store.acquireForDeployment(id('Fridge'))).ok).toBe(true);
    expect((await store.get(id('Fridge')))?.activeDeployments).toBe(1);
    expect((await store.releaseFromDeployment(id('Fridge'))).ok).toBe(true);
    expect((await store.releaseFromDeployment(id('Fridge'))).ok).toBe(false);
    expect((await store.get(id('Fridge')))?.activeDeployments).toBe(0);
  });

  it('refuses to delete an update a deployment uses, saying why', async () => {
    await store.reserve([newUpdate(id('Mixer'))], [], now);
    await store.markReady([{ updateId: id('Mixer'), updateManifest: manifest }], now);
    await store.acquireForDeployment(id('Mixer'));
    const refused = await store.beginDelete(id('Mixer'));
    expect(refused).toMatchObject({
      ok: false,
      error: { code: 'UPDATE_IN_USE', reason: '1 active deployment(s) use it' },
    });
    expect((await store.get(id('Mixer')))?.state).toBe('ready');
  });

  it('refuses to delete a child its parent references, until the parent is gone', async () => {
    const parent = id('Washer');
    const child = id('Drum');
    await store.reserve(
      [newUpdate(parent, { children: [child] }), newUpdate(child, { referencedBy: [updateKey(parent)] })],
      [],
      now,
    );
    const refused = await store.beginDelete(child);
    expect(refused).toMatchObject({
      ok: false,
      error: { code: 'UPDATE_IN_USE', reason: `referenced by ${updateKey(parent)}` },
    });

    const begun = await store.beginDelete(parent);
    expect(begun.ok && begun.value.state).toBe('deleting');
    if (begun.ok) await store.finishDelete(begun.value);
    expect(await store.get(parent)).toBeUndefined();
    expect((await store.get(child))?.referencedBy).toEqual([]);
    expect((await store.beginDelete(child)).ok).toBe(true);
  });

  it('answers not found when deleting an unknown update', async () => {
    expect(await store.beginDelete(id('Ghost'))).toEqual({
      ok: false,
      error: { code: 'UPDATE_NOT_FOUND', updateId: id('Ghost') },
    });
  });
});

describe('update store listing', () => {
  let listing: UpdateStore;

  beforeAll(async () => {
    const tableName = await createUpdatesTable(db, 'list');
    listing = makeUpdateStore({ db: documentClient(db), tableName });
    for (let i = 0; i < 5; i++) {
      const t = new Date(now.getTime() + i * 1000);
      await listing.reserve([newUpdate(id('Lamp', `1.${i}`))], [], t);
    }
    for (const v of ['1.0', '1.1']) {
      await listing.markReady([{ updateId: id('Lamp', v), updateManifest: manifest }], now);
    }
  });

  it('pages through every state with a nextToken, each update once', async () => {
    const seen: string[] = [];
    let nextToken: string | undefined;
    let pages = 0;
    do {
      const page = await listing.list({ limit: 2, ...(nextToken ? { nextToken } : {}) });
      if (!page.ok) throw new Error('listing failed');
      expect(page.value.items.length).toBeLessThanOrEqual(2);
      seen.push(...page.value.items.map((r) => `${r.state}:${r.updateId.version}`));
      nextToken = page.value.nextToken;
      pages++;
    } while (nextToken);
    expect(pages).toBeGreaterThanOrEqual(3);
    expect(seen).toEqual(['ready:1.1', 'ready:1.0', 'pending:1.4', 'pending:1.3', 'pending:1.2']);
  });

  it('filters by state', async () => {
    const page = await listing.list({ state: 'ready', limit: 10 });
    expect(page.ok && page.value.items.map((r) => r.updateId.version)).toEqual(['1.1', '1.0']);
    expect(page.ok && page.value.nextToken).toBeUndefined();
  });

  it.each([
    'garbage',
    Buffer.from('{"s":9}').toString('base64url'),
    Buffer.from('{"s":0,"k":{"x":"1"}}').toString('base64url'),
  ])('refuses a nextToken it did not issue (%s)', async (token) => {
    expect(await listing.list({ limit: 2, nextToken: token })).toEqual({
      ok: false,
      error: { code: 'INVALID_NEXT_TOKEN' },
    });
  });
});
