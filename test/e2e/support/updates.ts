/** Import manifests (ADU v5 shape) for end-to-end tests: script steps, file steps, reference steps. */
import { createHash } from 'node:crypto';
import type { ImportFile, Json, UpdateIdentity } from './cloud.ts';
import { deviceScript } from './device.ts';

export const scriptFile = (filename: string): ImportFile => ({
  filename,
  content: Buffer.from(deviceScript),
});

/** A `microsoft/script:1` step running the test script with `--state <dir>` and more arguments. */
export function scriptStep(script: string, state: string, installedCriteria: string, extra = ''): Json {
  return {
    handler: 'microsoft/script:1',
    files: [script],
    handlerProperties: {
      scriptFileName: script,
      arguments: `--state ${state} ${extra}`.trim(),
      installedCriteria,
    },
  };
}

/** A `shadow-ota/file:1` step installing one file at a destination the device configuration names. */
export function fileStep(filename: string, destination: string, installedCriteria: string): Json {
  return {
    handler: 'shadow-ota/file:1',
    files: [filename],
    handlerProperties: { destination, installedCriteria },
  };
}

export const referenceStep = (updateId: UpdateIdentity): Json => ({ type: 'reference', updateId });

export function importManifest(input: {
  readonly updateId: UpdateIdentity;
  readonly compatibility: readonly Readonly<Record<string, string>>[];
  readonly steps: readonly Json[];
  readonly files: readonly ImportFile[];
  readonly isDeployable?: boolean;
}): Json {
  return {
    updateId: input.updateId,
    isDeployable: input.isDeployable ?? true,
    compatibility: input.compatibility,
    instructions: { steps: input.steps },
    files: input.files.map((f) => ({
      filename: f.filename,
      sizeInBytes: f.content.length,
      hashes: { sha256: createHash('sha256').update(f.content).digest('base64') },
    })),
    createdDateTime: '2026-11-23T08:00:00Z',
    manifestVersion: '5.0',
  };
}
