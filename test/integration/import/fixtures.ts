import { createHash } from 'node:crypto';

export interface FixtureFile {
  readonly name: string;
  readonly content: Buffer;
}

export interface UpdateIdFixture {
  readonly provider: string;
  readonly name: string;
  readonly version: string;
}

export function file(name: string, text: string): FixtureFile {
  return { name, content: Buffer.from(text) };
}

export function sha256(content: Buffer): string {
  return createHash('sha256').update(content).digest('base64');
}

/** A v5 import manifest with one script step per file, shaped like the seed's examples. */
export function importManifest(
  updateId: UpdateIdFixture,
  files: readonly FixtureFile[],
  options: { readonly references?: readonly UpdateIdFixture[]; readonly isDeployable?: boolean } = {},
): Record<string, unknown> {
  const inline = files.map((f, i) => ({
    handler: 'microsoft/script:1',
    files: [f.name],
    handlerProperties: {
      scriptFileName: f.name,
      arguments: '--install',
      installedCriteria: `${updateId.name}-${updateId.version}-step-${i}`,
    },
  }));
  const references = (options.references ?? []).map((child) => ({ type: 'reference', updateId: child }));
  return {
    updateId,
    isDeployable: options.isDeployable ?? true,
    compatibility: [{ manufacturer: 'contoso', model: 'toaster' }],
    instructions: { steps: [...inline, ...references] },
    files: files.map((f) => ({
      filename: f.name,
      sizeInBytes: f.content.length,
      hashes: { sha256: sha256(f.content) },
    })),
    createdDateTime: '2026-11-01T10:00:00Z',
    manifestVersion: '5.0',
  };
}

export const uid = (name: string, version = '1.0', provider = 'Contoso'): UpdateIdFixture => ({
  provider,
  name,
  version,
});

export function updatePath(id: UpdateIdFixture): string {
  return `/updates/${id.provider}/${id.name}/${id.version}`;
}
