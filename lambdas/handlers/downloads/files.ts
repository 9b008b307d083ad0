import { updatePrefix } from '../../adapters/artifact-store.ts';
import type { UpdateIdentity, UpdateRecord, UpdateStore } from '../../adapters/update-store.ts';
import { fileIdFor, updateManifestFileName } from '../../domain/manifest/index.ts';

/** One object a device may download, by the file id its update manifest names it with. */
export interface DownloadableFile {
  readonly fileId: string;
  readonly objectKey: string;
}

export interface DownloadableSet {
  readonly files: ReadonlyMap<string, DownloadableFile>;
  /** The object-key prefixes of the update and its children (the session policy's fallback scope). */
  readonly prefixes: readonly string[];
}

function filesOf(update: UpdateRecord): DownloadableFile[] {
  return update.files.map((f) => ({
    fileId: fileIdFor(update.updateId, f.filename),
    objectKey: f.objectKey,
  }));
}

/** The update's own manifest as a file of `owner` (the parent for a child, the update itself when detached). */
function manifestFileOf(owner: UpdateIdentity, update: UpdateRecord): DownloadableFile[] {
  if (!update.updateManifest) return [];
  return [
    {
      fileId: fileIdFor(owner, updateManifestFileName(update.updateId)),
      objectKey: update.updateManifest.objectKey,
    },
  ];
}

/**
 * Every object a device of this deployment may need, keyed by file id as the update manifest names
 * them (ADU's scheme): the update's files, its full manifest (for the detached form), and for each
 * child update (reference step) the child's manifest as a file of the parent plus the child's files.
 */
export function downloadableFiles(update: UpdateRecord, children: readonly UpdateRecord[]): DownloadableSet {
  const all = [
    ...filesOf(update),
    ...manifestFileOf(update.updateId, update),
    ...children.flatMap((child) => [...manifestFileOf(update.updateId, child), ...filesOf(child)]),
  ];
  return {
    files: new Map(all.map((f) => [f.fileId, f])),
    prefixes: [update, ...children].map((u) => updatePrefix(u.updateId)),
  };
}

/** What a deployment of `updateId` may download; undefined when the update is not ready. */
export async function readyUpdateFiles(
  updates: Pick<UpdateStore, 'get' | 'getMany'>,
  updateId: UpdateIdentity,
): Promise<DownloadableSet | undefined> {
  const update = await updates.get(updateId);
  if (update?.state !== 'ready') return undefined;
  const children = [...(await updates.getMany(update.children)).values()];
  return downloadableFiles(update, children);
}
