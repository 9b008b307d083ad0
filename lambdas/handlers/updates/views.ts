import type { UpdateRecord } from '../../adapters/update-store.ts';

export interface FileView {
  readonly filename: string;
  readonly sizeInBytes: number;
  readonly hashes: { readonly sha256: string };
  /** Present while the update is pending: where to PUT the file. Never logged. */
  readonly uploadUrl?: string;
}

export interface UpdateView {
  readonly updateId: UpdateRecord['updateId'];
  readonly state: UpdateRecord['state'];
  readonly isDeployable: boolean;
  readonly createdAt: string;
  readonly committedAt?: string;
  readonly files: readonly FileView[];
  readonly children: UpdateRecord['children'];
  readonly referencedBy: readonly string[];
  readonly activeDeployments: number;
  readonly updateManifest?: UpdateRecord['updateManifest'];
  /** Relative paths of what an operator does next with this update. */
  readonly links: { readonly self: string; readonly commit?: string };
  /** When the upload URLs stop working (ISO 8601); present with them. */
  readonly uploadUrlsExpireAt?: string;
}

export function updatePath(id: UpdateRecord['updateId']): string {
  const part = (s: string): string => encodeURIComponent(s);
  return `/updates/${part(id.provider)}/${part(id.name)}/${part(id.version)}`;
}

/** The public view of an update; `uploads` maps a file's object key to its presigned URL. */
export function updateView(
  record: UpdateRecord,
  uploads?: { readonly urls: ReadonlyMap<string, string>; readonly expiresAt: Date },
): UpdateView {
  const self = updatePath(record.updateId);
  return {
    updateId: record.updateId,
    state: record.state,
    isDeployable: record.isDeployable,
    createdAt: record.createdAt,
    ...(record.committedAt ? { committedAt: record.committedAt } : {}),
    files: record.files.map((f) => {
      const uploadUrl = uploads?.urls.get(f.objectKey);
      return {
        filename: f.filename,
        sizeInBytes: f.sizeInBytes,
        hashes: { sha256: f.sha256 },
        ...(uploadUrl ? { uploadUrl } : {}),
      };
    }),
    children: record.children,
    referencedBy: record.referencedBy,
    activeDeployments: record.activeDeployments,
    ...(record.updateManifest ? { updateManifest: record.updateManifest } : {}),
    links: record.state === 'pending' ? { self, commit: `${self}/commit` } : { self },
    ...(uploads ? { uploadUrlsExpireAt: uploads.expiresAt.toISOString() } : {}),
  };
}
