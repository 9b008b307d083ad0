import { createHash } from 'node:crypto';

/** One file of the sample update, with the facts its import manifest declares. */
export interface SampleFile {
  readonly filename: string;
  readonly content: Buffer;
}

export interface SampleUpdate {
  /** `{ manifests: [parent, child] }`, the body of `POST /updates`. */
  readonly request: { readonly manifests: readonly Record<string, unknown>[] };
  readonly parentId: { readonly provider: string; readonly name: string; readonly version: string };
  /** Every file, by file name, for the presigned PUT URLs the import answers with. */
  readonly files: ReadonlyMap<string, SampleFile>;
  /** Properties a device (and its camera component) must have to be compatible. */
  readonly deviceCompatibility: Readonly<Record<string, string>>;
  readonly componentCompatibility: Readonly<Record<string, string>>;
}

const script = (name: string, action: string): SampleFile => ({
  filename: name,
  content: Buffer.from(
    [
      '#!/bin/sh',
      `# shadow-ota demo: ${action}. Follows microsoft/script:1 conventions (--action-*, --result-file).`,
      'result_file=""',
      'while [ $# -gt 0 ]; do case "$1" in --result-file) result_file="$2"; shift;; esac; shift; done',
      '[ -n "$result_file" ] && printf \'{"resultCode":700,"extendedResultCode":0,"resultDetails":""}\' > "$result_file"',
      'exit 0',
      '',
    ].join('\n'),
  ),
});

function fileEntry(file: SampleFile): Record<string, unknown> {
  return {
    filename: file.filename,
    sizeInBytes: file.content.length,
    hashes: { sha256: createHash('sha256').update(file.content).digest('base64') },
  };
}

/** What a demo device reports, and what the sample update requires of it. */
export const sampleDeviceCompatibility: Readonly<Record<string, string>> = {
  manufacturer: 'contoso',
  model: 'demo-gateway',
};

/**
 * The update the main job rolls out, shaped like the seed examples: a parent with an inline step
 * for the host and a reference step to a camera child with pre-install, install and post-install
 * script steps, each with its own installedCriteria.
 */
export function sampleUpdate(version: string, createdAt: Date): SampleUpdate {
  const deviceCompatibility = sampleDeviceCompatibility;
  const componentCompatibility = { group: 'cameras' };
  const hostScript = script('gateway-config.sh', 'apply the gateway configuration');
  const cameraScript = script('camera-installscript.sh', 'camera firmware steps');
  const firmware: SampleFile = {
    filename: 'camera-firmware.json',
    content: Buffer.from(`${JSON.stringify({ firmware: 'camera', version }, null, 2)}\n`),
  };
  const child = {
    updateId: { provider: 'Contoso', name: 'Demo-Camera', version },
    isDeployable: false,
    compatibility: [componentCompatibility],
    instructions: {
      steps: ['pre-install', 'install', 'post-install'].map((phase, index) => ({
        description: `Camera update: ${phase}`,
        handler: 'microsoft/script:1',
        files: index === 1 ? [cameraScript.filename, firmware.filename] : [cameraScript.filename],
        handlerProperties: {
          scriptFileName: cameraScript.filename,
          arguments: `--${phase}`,
          installedCriteria: `demo-camera-${version}-step-${index}`,
        },
      })),
    },
    files: [fileEntry(cameraScript), fileEntry(firmware)],
    manifestVersion: '5.0',
    createdDateTime: createdAt.toISOString().replace(/\.\d{3}Z$/, 'Z'),
  };
  const parent = {
    updateId: { provider: 'Contoso', name: 'Demo-Gateway', version },
    isDeployable: true,
    compatibility: [deviceCompatibility],
    instructions: {
      steps: [
        {
          description: 'Gateway configuration',
          handler: 'microsoft/script:1',
          files: [hostScript.filename],
          handlerProperties: {
            scriptFileName: hostScript.filename,
            arguments: '--apply',
            installedCriteria: `demo-gateway-${version}`,
          },
        },
        { type: 'reference', description: 'Camera firmware', updateId: child.updateId },
      ],
    },
    files: [fileEntry(hostScript)],
    manifestVersion: '5.0',
    createdDateTime: child.createdDateTime,
  };
  return {
    request: { manifests: [parent, child] },
    parentId: parent.updateId,
    files: new Map([hostScript, cameraScript, firmware].map((f) => [f.filename, f])),
    deviceCompatibility,
    componentCompatibility,
  };
}
