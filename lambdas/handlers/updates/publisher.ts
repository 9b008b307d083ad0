import type { ArtifactStore } from '../../adapters/artifact-store.ts';
import type { StoredUpdateManifest } from '../../adapters/update-store.ts';
import { serializeUpdateManifest } from '../../domain/manifest/update-manifest.ts';
import type { FullUpdateManifest } from '../../domain/manifest/update-schema.ts';
import { type Signer, signUpdateManifest } from '../../domain/signing/index.ts';
import type { ManifestPublisher } from './commit-update.ts';

export interface PublisherDeps {
  readonly artifacts: ArtifactStore;
  readonly signer: Signer;
  /** How long the commit-time signature stays valid; a deployment may sign again with its own claims. */
  readonly signatureTtlSeconds: number;
}

/**
 * Writes the update manifest's canonical bytes (the exact bytes the signature's `manifestSha256`
 * binds, and that a parent's manifest names by hash for a child) and signs it.
 */
export function makeManifestPublisher(deps: PublisherDeps): ManifestPublisher {
  return {
    async publish(
      manifest: FullUpdateManifest,
      children: readonly FullUpdateManifest[],
      now: Date,
    ): Promise<StoredUpdateManifest> {
      const written = await deps.artifacts.putUpdateManifest(
        manifest.updateId,
        serializeUpdateManifest(manifest),
      );
      const signature = await signUpdateManifest({
        manifest,
        children,
        signer: deps.signer,
        now,
        ttlSeconds: deps.signatureTtlSeconds,
      });
      return { ...written, signature, keyId: deps.signer.keyId };
    },
  };
}
