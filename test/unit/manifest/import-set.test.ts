import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  checkImportSet,
  type ExistingUpdate,
  existingUpdateOf,
  type ImportManifest,
  type ImportSet,
  isSameManifest,
  parseImportManifest,
  parseImportRequest,
  referencedUpdateIds,
  updateIdKey,
} from '../../../lambdas/domain/manifest/index.ts';

// The seed's shape: a parent with three reference steps, children with pre/install/post script steps.
const dir = new URL(
  './fixtures/adu-samples/import/adu-agent/contoso-virtual-vacuum/Contoso.Virtual-Vacuum.5.0/',
  import.meta.url,
);
const text = (name: string) => readFileSync(new URL(name, dir), 'utf8');
const parentText = text('Contoso.Virtual-Vacuum.5.0.importmanifest.json');
const childTexts = [
  'contoso.Virtual-Vacuum-virtual-motors.3.0.importmanifest.json',
  'contoso.Virtual-Vacuum-virtual-cameras.3.0.importmanifest.json',
  'contoso.Virtual-Vacuum-virtual-steamers.2.0.importmanifest.json',
].map(text);
const json = (t: string): Record<string, unknown> => JSON.parse(t.replace(/^\uFEFF/, ''));

function manifest(t: string): ImportManifest {
  const r = parseImportManifest(t);
  if (!r.ok) throw new Error(JSON.stringify(r.error));
  return r.value;
}

function parsedSet(body: unknown): ImportSet {
  const r = parseImportRequest(body);
  if (!r.ok) throw new Error(JSON.stringify(r.error));
  return r.value;
}

const none = new Map<string, ExistingUpdate>();
const existingOf = (...ms: ImportManifest[]) =>
  new Map(ms.map((m) => [updateIdKey(m.updateId), existingUpdateOf(m)]));

describe('parseImportRequest', () => {
  it('takes a single manifest (object or JSON text with BOM)', () => {
    const r = parseImportRequest(childTexts[0]);
    expect(r.ok && r.value.form).toBe('single');
  });

  it('takes a parent with its children; manifests may be objects or JSON texts', () => {
    const r = parseImportRequest({ manifests: [json(parentText), ...childTexts] });
    expect(r.ok && [r.value.form, r.value.manifests.length]).toEqual(['set', 4]);
  });

  it('prefixes fault paths with /manifests/<i>', () => {
    const broken = { ...json(childTexts[1] ?? ''), compatibility: [] };
    const r = parseImportRequest({ manifests: [json(parentText), childTexts[0], broken] });
    expect(r.ok ? [] : r.error).toEqual([
      { path: '/manifests/2/compatibility', message: expect.any(String) },
    ]);
  });

  it.each([
    ['an empty list', { manifests: [] }, '/manifests'],
    ['not a list', { manifests: 'x' }, '/manifests'],
    ['12 manifests', { manifests: Array.from({ length: 12 }, () => json(parentText)) }, '/manifests'],
    [
      'the same update twice',
      { manifests: [json(parentText), childTexts[0], childTexts[0]] },
      '/manifests/2/updateId',
    ],
    ['bad JSON text', '{', ''],
  ])('refuses %s', (_case, body, path) => {
    const r = parseImportRequest(body);
    expect(r.ok ? [] : r.error.map((f) => f.path)).toContain(path);
  });
});

describe('checkImportSet', () => {
  it('accepts a parent with all its children in one request', () => {
    const r = checkImportSet(parsedSet({ manifests: [json(parentText), ...childTexts] }), none);
    expect(r.ok && r.value.parent.updateId.name).toBe('Virtual-Vacuum');
    expect(r.ok && r.value.children.map((c) => c.updateId.name)).toEqual([
      'Virtual-Vacuum-virtual-motors',
      'Virtual-Vacuum-virtual-cameras',
      'Virtual-Vacuum-virtual-steamers',
    ]);
  });

  it('finds the parent wherever it is in the list', () => {
    const r = checkImportSet(parsedSet({ manifests: [...childTexts, json(parentText)] }), none);
    expect(r.ok && r.value.parent.updateId.name).toBe('Virtual-Vacuum');
  });

  it('accepts a parent whose children were imported earlier, and lists them', () => {
    const set = parsedSet(parentText);
    expect(referencedUpdateIds(set).map(updateIdKey)).toEqual([
      'contoso/virtual-vacuum-virtual-motors/3.0',
      'contoso/virtual-vacuum-virtual-cameras/3.0',
      'contoso/virtual-vacuum-virtual-steamers/2.0',
    ]);
    const r = checkImportSet(set, existingOf(...childTexts.map(manifest)));
    expect(r.ok && r.value.existingChildren.length).toBe(3);
  });

  it('mixes children in the request and children already imported', () => {
    const set = parsedSet({ manifests: [json(parentText), childTexts[0]] });
    expect(referencedUpdateIds(set)).toHaveLength(2);
    const r = checkImportSet(set, existingOf(manifest(childTexts[1] ?? ''), manifest(childTexts[2] ?? '')));
    expect(r.ok && [r.value.children.length, r.value.existingChildren.length]).toEqual([1, 2]);
  });

  it('refuses a reference to an update neither sent nor imported, naming it', () => {
    const r = checkImportSet(
      parsedSet({ manifests: [json(parentText), childTexts[0], childTexts[1]] }),
      none,
    );
    expect(r.ok ? [] : r.error).toEqual([
      {
        path: '/manifests/0/instructions/steps/2/updateId',
        message: expect.stringContaining(
          'contoso/Virtual-Vacuum-virtual-steamers/2.0, which is neither in this request nor imported',
        ),
      },
    ]);
  });

  it('refuses a missing child in single form without a /manifests prefix', () => {
    const r = checkImportSet(parsedSet(parentText), none);
    expect(r.ok ? [] : r.error.map((f) => f.path)).toEqual([
      '/instructions/steps/0/updateId',
      '/instructions/steps/1/updateId',
      '/instructions/steps/2/updateId',
    ]);
  });

  it('refuses a child in the set that has reference steps', () => {
    const nested = {
      ...json(childTexts[0] ?? ''),
      instructions: {
        steps: [{ type: 'reference', updateId: { provider: 'x', name: 'y', version: '1.0' } }],
      },
    };
    const r = checkImportSet(
      parsedSet({ manifests: [json(parentText), nested, ...childTexts.slice(1)] }),
      existingOf(),
    );
    expect(r.ok ? [] : r.error).toContainEqual({
      path: '/manifests/1/instructions/steps/0',
      message: expect.stringContaining('a child update may not contain reference steps'),
    });
  });

  it('refuses an imported child that has reference steps itself', () => {
    const grandparent = {
      ...json(parentText),
      updateId: { provider: 'Contoso', name: 'Fleet', version: '1.0' },
      instructions: {
        steps: [
          { type: 'reference', updateId: { provider: 'Contoso', name: 'Virtual-Vacuum', version: '5.0' } },
        ],
      },
    };
    const r = checkImportSet(parsedSet(grandparent), existingOf(manifest(parentText)));
    expect(r.ok ? [] : r.error).toEqual([
      { path: '/instructions/steps/0/updateId', message: expect.stringContaining('only one level') },
    ]);
  });

  it('refuses two parents (a manifest nobody references)', () => {
    const stray = {
      ...json(childTexts[0] ?? ''),
      updateId: { provider: 'contoso', name: 'stray', version: '1.0' },
    };
    const r = checkImportSet(parsedSet({ manifests: [json(parentText), ...childTexts, stray] }), none);
    expect(r.ok ? [] : r.error).toEqual([
      {
        path: '/manifests',
        message: expect.stringContaining('/manifests/0 (Contoso/Virtual-Vacuum/5.0), /manifests/4'),
      },
    ]);
  });

  it('refuses a set whose parent is not deployable', () => {
    const r = checkImportSet(
      parsedSet({ manifests: [{ ...json(parentText), isDeployable: false }, ...childTexts] }),
      none,
    );
    expect(r.ok ? [] : r.error.map((f) => f.path)).toEqual(['/manifests/0/isDeployable']);
  });

  it('refuses references that go round in a circle', () => {
    const a = {
      ...json(childTexts[0] ?? ''),
      instructions: {
        steps: [
          {
            type: 'reference',
            updateId: { provider: 'contoso', name: 'Virtual-Vacuum-virtual-cameras', version: '3.0' },
          },
        ],
      },
    };
    const b = {
      ...json(childTexts[1] ?? ''),
      instructions: {
        steps: [
          {
            type: 'reference',
            updateId: { provider: 'contoso', name: 'Virtual-Vacuum-virtual-motors', version: '3.0' },
          },
        ],
      },
    };
    const r = checkImportSet(parsedSet({ manifests: [a, b] }), none);
    expect(r.ok ? [] : r.error[0]?.message).toMatch(/cycle/);
  });
});

describe('update identity and sameness', () => {
  it.each([
    [{ provider: 'Contoso', name: 'Toaster', version: '1.0' }, 'contoso/toaster/1.0'],
    [{ provider: 'contoso', name: 'TOASTER', version: '01.002.0' }, 'contoso/toaster/1.2.0'],
  ])('updateIdKey(%o) = %s', (id, key) => {
    expect(updateIdKey(id)).toBe(key);
  });

  it('treats a manifest with other key order and whitespace as the same', () => {
    const m = manifest(parentText);
    const reordered = JSON.stringify(Object.fromEntries(Object.entries(json(parentText)).reverse()), null, 8);
    expect(isSameManifest(m, manifest(reordered))).toBe(true);
  });

  it('treats any change of content as different', () => {
    const changed = {
      ...json(parentText),
      compatibility: [{ deviceModel: 'virtual-vacuum-v2', deviceManufacturer: 'contoso' }],
    };
    expect(isSameManifest(manifest(parentText), manifest(JSON.stringify(changed)))).toBe(false);
  });
});
