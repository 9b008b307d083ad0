import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  canonicalJson,
  deriveUpdateManifest,
  embeddedManifestBytes,
  type FullUpdateManifest,
  fileIdFor,
  type ImportManifest,
  INLINE_MANIFEST_MAX_BYTES,
  parseImportManifest,
  parseUpdateManifest,
  SHADOW_DOCUMENT_MAX_BYTES,
  serializeUpdateManifest,
  sha256Base64,
  toShadowManifest,
  updateIdKey,
} from '../../../lambdas/domain/manifest/index.ts';

const vacuum = new URL('./fixtures/adu-samples/import/adu-agent/contoso-virtual-vacuum/', import.meta.url);
function importManifest(path: string): ImportManifest {
  const r = parseImportManifest(readFileSync(new URL(path, vacuum)));
  if (!r.ok) throw new Error(JSON.stringify(r.error));
  return r.value;
}
function derive(m: ImportManifest, children: FullUpdateManifest[] = []): FullUpdateManifest {
  const r = deriveUpdateManifest(m, new Map(children.map((c) => [updateIdKey(c.updateId), c])));
  if (!r.ok) throw new Error(JSON.stringify(r.error));
  return r.value;
}

const twoStepApt = importManifest(
  'Contoso.Virtual-Vacuum.2.2/Contoso.Virtual-Vacuum.2.2.importmanifest.json',
);
const parent = importManifest('Contoso.Virtual-Vacuum.5.0/Contoso.Virtual-Vacuum.5.0.importmanifest.json');
const children = [
  'contoso.Virtual-Vacuum-virtual-motors.3.0',
  'contoso.Virtual-Vacuum-virtual-cameras.3.0',
  'contoso.Virtual-Vacuum-virtual-steamers.2.0',
].map((n) => derive(importManifest(`Contoso.Virtual-Vacuum.5.0/${n}.importmanifest.json`)));

describe('deriveUpdateManifest', () => {
  it('turns files into a map by file id and step file names into file ids', () => {
    const um = derive(twoStepApt);
    const aptId = fileIdFor(twoStepApt.updateId, 'apt-manifest-1.0.json');
    expect(um.manifestVersion).toBe('4');
    expect(um.files[aptId]).toEqual({
      fileName: 'apt-manifest-1.0.json',
      sizeInBytes: 139,
      hashes: { sha256: 't8mIY/zYel4NaiMStuh90Lh0qYFT3V2Byl1uAP9q/qo=' },
    });
    expect(um.instructions.steps[0]).toEqual({
      handler: 'microsoft/apt:1',
      files: [aptId],
      handlerProperties: { installedCriteria: 'apt-update-test-2.2' },
    });
    expect(aptId).toMatch(/^f[0-9a-f]{16}$/);
  });

  it('yields a manifest that passes update-manifest validation', () => {
    for (const um of [derive(twoStepApt), derive(parent, children), ...children]) {
      const r = parseUpdateManifest(serializeUpdateManifest(um));
      expect(r.ok ? [] : r.error).toEqual([]);
    }
  });

  it('makes each reference step point at the child manifest as a detached file with its exact size and hash', () => {
    const um = derive(parent, children);
    const step = um.instructions.steps[1];
    expect(step?.type).toBe('reference');
    const id = step?.type === 'reference' ? step.detachedManifestFileId : '';
    const bytes = serializeUpdateManifest(children[1] as FullUpdateManifest);
    expect(um.files[id]).toEqual({
      fileName: 'contoso.virtual-vacuum-virtual-cameras.3.0.updatemanifest.json',
      sizeInBytes: bytes.byteLength,
      hashes: { sha256: sha256Base64(bytes) },
    });
  });

  it('refuses to derive a parent without its children, naming the step', () => {
    const r = deriveUpdateManifest(
      parent,
      new Map([[updateIdKey(children[0]?.updateId ?? parent.updateId), children[0] as FullUpdateManifest]]),
    );
    expect(r.ok ? [] : r.error.map((f) => f.path)).toEqual([
      '/instructions/steps/1/updateId',
      '/instructions/steps/2/updateId',
    ]);
  });

  it('is deterministic: the same import gives the same bytes', () => {
    expect(canonicalJson(derive(parent, children))).toBe(canonicalJson(derive(parent, children)));
  });

  it('keeps file ids distinct across a parent and its children', () => {
    const ids = [derive(parent, children), ...children].flatMap((m) => Object.keys(m.files));
    expect(new Set(ids).size).toBe(ids.length);
  });
});

describe('shadow delivery', () => {
  it('leaves room in the 8 KB shadow for the signature and the reported state', () => {
    expect(INLINE_MANIFEST_MAX_BYTES).toBeLessThanOrEqual(SHADOW_DOCUMENT_MAX_BYTES / 2);
  });

  it('sends a small manifest inline', () => {
    const um = derive(twoStepApt);
    const shadow = toShadowManifest(um);
    expect(shadow.kind).toBe('inline');
    expect(shadow.text).toBe(canonicalJson(um));
  });

  it('detaches a manifest over the budget (ADU sample 10.0) and sends a valid mini manifest naming it', () => {
    const big = derive(
      importManifest('Contoso.Virtual-Vacuum.10.0/Contoso.Virtual-Vacuum.10.0.importmanifest.json'),
    );
    expect(embeddedManifestBytes(big)).toBeGreaterThan(INLINE_MANIFEST_MAX_BYTES);
    const shadow = toShadowManifest(big);
    expect(shadow.kind).toBe('detached');
    if (shadow.kind !== 'detached') return;
    expect(shadow.detached.file.hashes.sha256).toBe(sha256Base64(serializeUpdateManifest(big)));
    expect(shadow.manifest.files[shadow.manifest.detachedManifestFileId]).toEqual(shadow.detached.file);
    expect(parseUpdateManifest(shadow.text).ok).toBe(true);
    expect(embeddedManifestBytes(shadow.manifest)).toBeLessThan(INLINE_MANIFEST_MAX_BYTES);
  });

  it('measures the escaped string form, so a manifest just over the budget when escaped is detached', () => {
    const um = derive(twoStepApt);
    expect(toShadowManifest(um, embeddedManifestBytes(um)).kind).toBe('inline');
    expect(toShadowManifest(um, embeddedManifestBytes(um) - 1).kind).toBe('detached');
    expect(embeddedManifestBytes(um)).toBeGreaterThan(canonicalJson(um).length);
  });
});

describe('parseUpdateManifest choices (ADR 0001)', () => {
  const base = () =>
    JSON.parse(canonicalJson(derive(twoStepApt))) as Record<string, unknown> & {
      files: Record<string, Record<string, unknown>>;
    };

  it('accepts "filename" as well as "fileName"', () => {
    const m = base();
    for (const f of Object.values(m.files)) {
      f.filename = f.fileName;
      delete f.fileName;
    }
    const r = parseUpdateManifest(m);
    expect(r.ok && Object.values(r.value.files).map((f) => f.fileName)).toEqual(
      Object.values(base().files).map((f) => f.fileName),
    );
  });

  it('refuses a file that gives both spellings', () => {
    const m = base();
    const [id, f] = Object.entries(m.files)[0] ?? [];
    if (f) f.filename = 'other';
    const r = parseUpdateManifest(m);
    expect(r.ok ? [] : r.error.map((e) => e.path)).toEqual([`/files/${id}/filename`]);
  });

  it.each([
    ['manifestVersion "5"', (m: ReturnType<typeof base>) => (m.manifestVersion = '5'), true],
    ['manifestVersion "4.0"', (m: ReturnType<typeof base>) => (m.manifestVersion = '4.0'), false],
    [
      'a step naming an unknown file id',
      (m: ReturnType<typeof base>) =>
        ((m.instructions as { steps: { files: string[] }[] }).steps[0]!.files = ['nope']),
      false,
    ],
    [
      'duplicate installedCriteria',
      (m: ReturnType<typeof base>) => {
        const steps = (m.instructions as { steps: { handlerProperties: { installedCriteria: string } }[] })
          .steps;
        steps[1]!.handlerProperties.installedCriteria = steps[0]!.handlerProperties.installedCriteria;
      },
      false,
    ],
    [
      'a path in a file name',
      (m: ReturnType<typeof base>) => (Object.values(m.files)[0]!.fileName = '../etc/passwd'),
      false,
    ],
  ])('%s → valid=%s', (_case, edit, valid) => {
    const m = base();
    edit(m);
    expect(parseUpdateManifest(m).ok).toBe(valid);
  });
});
