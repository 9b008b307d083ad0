import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseImportManifest, parseUpdateManifest } from '../../../lambdas/domain/manifest/index.ts';

/**
 * Every real ADU file in fixtures/adu-samples (a copy of ../shared/adu-samples, sources and licences in its README), with the verdict we expect and why. A file added
 * there without a row here fails the first test, so nothing is silently skipped.
 */
const samples = fileURLToPath(new URL('./fixtures/adu-samples', import.meta.url));

type Row = readonly [file: string, valid: boolean, reason: string, firstFaultPath?: string];

const payload = 'a payload file (apt manifest or firmware JSON) next to the manifests, not a manifest';
const vacuum = 'import/adu-agent/contoso-virtual-vacuum';

const importRows: readonly Row[] = [
  [
    `${vacuum}/Contoso.Virtual-Vacuum.1.0/Contoso.Virtual-Vacuum.1.0.importmanifest.json`,
    true,
    'v4.0 with BOM, one apt step with installedCriteria',
  ],
  [`${vacuum}/Contoso.Virtual-Vacuum.1.0/bad-apt-manifest-1.0.json`, false, payload, ''],
  [
    `${vacuum}/Contoso.Virtual-Vacuum.1.1/Contoso.Virtual-Vacuum.1.1.importmanifest.json`,
    true,
    'v4.0 with BOM, one apt step',
  ],
  [`${vacuum}/Contoso.Virtual-Vacuum.1.1/apt-manifest-1.0.json`, false, payload, ''],
  [`${vacuum}/Contoso.Virtual-Vacuum.1.1/bad-apt-manifest-1.0.json`, false, payload, ''],
  [
    `${vacuum}/Contoso.Virtual-Vacuum.10.0/Contoso.Virtual-Vacuum.10.0.importmanifest.json`,
    true,
    'huge handlerProperties are allowed (it is the detached-manifest test)',
  ],
  [`${vacuum}/Contoso.Virtual-Vacuum.10.0/apt-manifest-1.0.json`, false, payload, ''],
  [
    `${vacuum}/Contoso.Virtual-Vacuum.2.0/Contoso.Virtual-Vacuum.2.0.importmanifest.json`,
    true,
    'two apt steps with distinct installedCriteria (the seed two-step apt update)',
  ],
  [`${vacuum}/Contoso.Virtual-Vacuum.2.0/apt-manifest-tree-1.0.json`, false, payload, ''],
  [`${vacuum}/Contoso.Virtual-Vacuum.2.0/bad-apt-manifest-1.0.json`, false, payload, ''],
  [
    `${vacuum}/Contoso.Virtual-Vacuum.2.1/Contoso.Virtual-Vacuum.2.1.importmanifest.json`,
    true,
    'two apt steps; the bad apt manifest only fails on the device',
  ],
  [`${vacuum}/Contoso.Virtual-Vacuum.2.1/apt-manifest-1.0.json`, false, payload, ''],
  [`${vacuum}/Contoso.Virtual-Vacuum.2.1/bad-apt-manifest-1.0.json`, false, payload, ''],
  [
    `${vacuum}/Contoso.Virtual-Vacuum.2.2/Contoso.Virtual-Vacuum.2.2.importmanifest.json`,
    true,
    'two apt steps',
  ],
  [`${vacuum}/Contoso.Virtual-Vacuum.2.2/apt-manifest-1.0.json`, false, payload, ''],
  [`${vacuum}/Contoso.Virtual-Vacuum.2.2/apt-manifest-tree-1.0.json`, false, payload, ''],
  [
    `${vacuum}/Contoso.Virtual-Vacuum.3.0/Contoso.Virtual-Vacuum.3.0.importmanifest.json`,
    true,
    'parent with one reference step and no files',
  ],
  [`${vacuum}/Contoso.Virtual-Vacuum.3.0/camera-firmware-1.1.json`, false, payload, ''],
  [
    `${vacuum}/Contoso.Virtual-Vacuum.3.0/contoso.Virtual-Vacuum-virtual-camera.1.1.importmanifest.json`,
    true,
    'child with three script steps (the missing script only fails on the device)',
  ],
  [
    `${vacuum}/Contoso.Virtual-Vacuum.3.1/Contoso.Virtual-Vacuum.3.1.importmanifest.json`,
    true,
    'parent with one reference step',
  ],
  [`${vacuum}/Contoso.Virtual-Vacuum.3.1/camera-firmware-1.1.json`, false, payload, ''],
  [
    `${vacuum}/Contoso.Virtual-Vacuum.3.1/contoso.Virtual-Vacuum-virtual-camera.1.2.importmanifest.json`,
    true,
    'child with three script steps',
  ],
  [
    `${vacuum}/Contoso.Virtual-Vacuum.3.2/Contoso.Virtual-Vacuum.3.2.importmanifest.json`,
    true,
    'parent with one reference step',
  ],
  [`${vacuum}/Contoso.Virtual-Vacuum.3.2/camera-firmware-1.1.json`, false, payload, ''],
  [
    `${vacuum}/Contoso.Virtual-Vacuum.3.2/contoso.Virtual-Vacuum-virtual-camera.1.3.importmanifest.json`,
    true,
    'child with three script steps',
  ],
  [
    `${vacuum}/Contoso.Virtual-Vacuum.3.3/Contoso.Virtual-Vacuum.3.3.importmanifest.json`,
    true,
    'parent with one reference step',
  ],
  [`${vacuum}/Contoso.Virtual-Vacuum.3.3/camera-firmware-1.1.json`, false, payload, ''],
  [
    `${vacuum}/Contoso.Virtual-Vacuum.3.3/contoso.Virtual-Vacuum-virtual-camera.1.4.importmanifest.json`,
    true,
    'child with three script steps',
  ],
  [
    `${vacuum}/Contoso.Virtual-Vacuum.4.0/Contoso.Virtual-Vacuum.4.0.importmanifest.json`,
    true,
    'parent with one reference step',
  ],
  [
    `${vacuum}/Contoso.Virtual-Vacuum.4.0/contoso.Virtual-Vacuum-virtual-steamers.1.0.importmanifest.json`,
    true,
    'child with three script steps',
  ],
  [`${vacuum}/Contoso.Virtual-Vacuum.4.0/steamer-firmware-1.0.json`, false, payload, ''],
  [
    `${vacuum}/Contoso.Virtual-Vacuum.5.0/Contoso.Virtual-Vacuum.5.0.importmanifest.json`,
    true,
    'parent with three reference steps',
  ],
  [`${vacuum}/Contoso.Virtual-Vacuum.5.0/camera-firmware-2.1.json`, false, payload, ''],
  [
    `${vacuum}/Contoso.Virtual-Vacuum.5.0/contoso.Virtual-Vacuum-virtual-cameras.3.0.importmanifest.json`,
    true,
    'child: pre-install, install, post-install script steps',
  ],
  [
    `${vacuum}/Contoso.Virtual-Vacuum.5.0/contoso.Virtual-Vacuum-virtual-motors.3.0.importmanifest.json`,
    true,
    'child with three script steps',
  ],
  [
    `${vacuum}/Contoso.Virtual-Vacuum.5.0/contoso.Virtual-Vacuum-virtual-steamers.2.0.importmanifest.json`,
    true,
    'child with three script steps',
  ],
  [`${vacuum}/Contoso.Virtual-Vacuum.5.0/motor-firmware-1.2.json`, false, payload, ''],
  [`${vacuum}/Contoso.Virtual-Vacuum.5.0/steamer-firmware-2.0.json`, false, payload, ''],
  ['import/adu-agent/legacy-v2.0/libcurl4-doc-7.58-apt-manifest.json', false, payload, ''],
  ['import/adu-agent/legacy-v2.0/libcurl4-doc-apt-manifest.json', false, payload, ''],
  ['import/adu-agent/legacy-v2.0/libcurl4-doc-remove-apt-manifest.json', false, payload, ''],
  [
    'import/adu-agent/legacy-v2.0/sample-package-update-1.0.1-importManifest.json',
    false,
    'manifestVersion 2.0 (updateType, top-level installedCriteria) is no longer accepted',
    '/installedCriteria',
  ],
  [
    'import/adu-agent/legacy-v2.0/sample-package-update-1.0.2-importManifest.json',
    false,
    'manifestVersion 2.0',
    '/installedCriteria',
  ],
  [
    'import/adu-agent/legacy-v2.0/sample-package-update-2-2.0.1-importManifest.json',
    false,
    'manifestVersion 2.0',
    '/installedCriteria',
  ],
  [
    'import/azure-iot-cli/delta/delta-related-files-manifest.json',
    true,
    'v5.0 with relatedFiles and a downloadHandler',
  ],
  ['import/azure-iot-cli/libcurl4-doc-apt-manifest.json', false, payload, ''],
  [
    'import/azure-iot-cli/simple_apt_manifest_v5.json',
    true,
    'v5.0, two compatibility sets, no isDeployable (defaults to true)',
  ],
  [
    'import/azure-iot-cli/surface15/leaf1.importmanifest.json',
    true,
    'v4.0 + BOM, swupdate without installedCriteria: the live service took it (a warning only)',
  ],
  ['import/azure-iot-cli/surface15/leaf2.importmanifest.json', true, 'same as leaf1'],
  [
    'import/azure-iot-cli/surface15/parent.importmanifest.json',
    true,
    'inline script steps around two reference steps, no BOM',
  ],
  [
    'import/docs/import-concepts-toaster.importmanifest.json',
    true,
    'v5.0 swupdate with installedCriteria, isDeployable false (a child imported ahead)',
  ],
  [
    'import/docs/msoe-child-update-service-object.json',
    false,
    'what the service RETURNS (etag, importedDateTime, referencedBy), and it declares no files',
    '/etag',
  ],
  [
    'import/docs/schema-5.0-embedded-example.importmanifest.json',
    true,
    'the v5.0 schema example: inline + reference step, relatedFiles',
  ],
  [
    'import/schemastore/invalid-v4.0/invalidstep-importmanifest.json',
    false,
    'a reference step without updateId',
    '/instructions/steps/0/updateId',
  ],
  [
    'import/schemastore/invalid-v4.0/nosteps-importmanifest.json',
    false,
    'steps is empty',
    '/instructions/steps',
  ],
  [
    'import/schemastore/invalid-v4.0/toomanycompatinfo-importmanifest.json',
    false,
    'a compatibility set with 7 properties (at most 5)',
    '/compatibility/0',
  ],
  ['import/schemastore/valid-v4.0/inlinesteps-importmanifest.json', true, 'one inline swupdate step'],
  ['import/schemastore/valid-v4.0/mixedsteps-importmanifest.json', true, 'inline step + reference step'],
  [
    'import/schemastore/valid-v4.0/referencesteps-importmanifest.json',
    true,
    'only reference steps, no files',
  ],
  [
    'import/schemastore/valid-v5.0/relatedFiles-importManifest.json',
    true,
    'mimeType is allowed in v5 files; "InstalledCriteria" (wrong case) is a warning, not a fault',
  ],
];

const updateRows: readonly Row[] = [
  [
    'update/adu-agent/extracted/script_handler_ut.filecopy_workflow.updatemanifest.json',
    true,
    'full v4 manifest, fileName as the agent reads it',
  ],
  [
    'update/adu-agent/extracted/script_handler_ut.filecopy_workflow_apiver_2_1.updatemanifest.json',
    true,
    'full v4 manifest',
  ],
  [
    'update/adu-agent/extracted/swupdate_handler_v2_ut.filecopy_workflow_2.updatemanifest.json',
    true,
    'full v4 manifest',
  ],
  [
    'update/adu-agent/extracted/workflow_get_update_file_ut.manifest_missing_related_file_file_url.updatemanifest.json',
    true,
    'manifestVersion "5" (agent test data) with relatedFiles as a map',
  ],
  [
    'update/adu-agent/extracted/workflow_utils_ut.action_child_update_0.updatemanifest.json',
    true,
    'a child manifest',
  ],
  [
    'update/adu-agent/extracted/workflow_utils_ut.action_no_update_action_data.updatemanifest.json',
    true,
    'parent with a reference step to a detached child manifest',
  ],
  [
    'update/adu-agent/extracted/workflow_utils_ut.action_parent_update.updatemanifest.json',
    true,
    'same, manifestVersion "5"',
  ],
  [
    'update/adu-agent/extracted/workflow_utils_ut.manifest_1_0.updatemanifest.json',
    false,
    'version "1.0": below 4 (agent ERC 0x8030000A)',
    '/manifestVersion',
  ],
  [
    'update/adu-agent/extracted/workflow_utils_ut.manifest_2.updatemanifest.json',
    false,
    'version "2"',
    '/manifestVersion',
  ],
  [
    'update/adu-agent/extracted/workflow_utils_ut.manifest_2_0.updatemanifest.json',
    false,
    'version "2.0"',
    '/manifestVersion',
  ],
  [
    'update/adu-agent/extracted/workflow_utils_ut.manifest_3.updatemanifest.json',
    false,
    'version "3"',
    '/manifestVersion',
  ],
  [
    'update/adu-agent/extracted/workflow_utils_ut.manifest_empty.updatemanifest.json',
    false,
    'version ""',
    '/manifestVersion',
  ],
  [
    'update/adu-agent/extracted/workflow_utils_ut.manifest_missing_version.updatemanifest.json',
    false,
    'no manifestVersion',
    '/manifestVersion',
  ],
  [
    'update/adu-agent/extracted/workflow_utils_ut.manifest_old_1_0.updatemanifest.json',
    false,
    'version "1.0" and an updateId with manufacturer',
    '/manifestVersion',
  ],
  [
    'update/adu-agent/extracted/workflow_utils_ut.manifest_x.updatemanifest.json',
    false,
    'version "x"',
    '/manifestVersion',
  ],
  ['update/adu-agent/testUpdateManifest.json', true, 'custom handler microsoft/foo:1, manifestVersion "5"'],
  [
    'update/adu-agent/twin-envelope/adu_core_export_helpers-updateManifest.json',
    false,
    'a twin envelope (fileUrls, updateManifest string), not a manifest',
    '',
  ],
  ['update/adu-agent/twin-envelope/desired_template.json', false, 'a twin envelope template', ''],
  [
    'update/adu-agent/updateManifest_downloadhandlerid_relatedfile.json',
    false,
    'a template: placeholder hashes are not SHA-256',
    '/files/TARGET_UPDATE_FILE_ID/hashes/sha256',
  ],
  [
    'update/docs/schema-update-manifest-4-embedded-example.updatemanifest.json',
    true,
    'schema example, "filename" spelling accepted',
  ],
  ['update/docs/update-manifest-full-example.updatemanifest.json', true, 'full manifest'],
  ['update/docs/update-manifest-mini-example.updatemanifest.json', true, 'mini (detached) manifest'],
  [
    'update/schemastore/invalid-v4/invalidreferencestep-full-updatemanifest.json',
    false,
    'device reference steps carry detachedManifestFileId, not updateId',
    '/instructions/steps/1/detachedManifestFileId',
  ],
  [
    'update/schemastore/invalid-v4/toomanyfiles-mini-updatemanifest.json',
    false,
    'a mini manifest with two files',
    '/files',
  ],
  [
    'update/schemastore/valid-v4/full-updatemanifest.json',
    true,
    'full manifest, a second hash algorithm (sha384)',
  ],
  ['update/schemastore/valid-v4/mini-updatemanifest.json', true, 'mini manifest'],
  [
    'update/schemastore/valid-v5schema/full-updatemanifest.json',
    false,
    'relatedFiles as an ARRAY: the agent reads a map (ADR 0001)',
    '/files/fileId0/relatedFiles',
  ],
  ['update/schemastore/valid-v5schema/mini-updatemanifest.json', true, 'mini manifest'],
];

const asCase = ([file, valid, reason, firstFaultPath]: Row) => ({ file, valid, reason, firstFaultPath });

function filesUnder(dir: string): string[] {
  return readdirSync(join(samples, dir), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith('.json'))
    .map((e) => relative(samples, join(e.parentPath, e.name)))
    .sort();
}

describe('ADU sample files', () => {
  it('every sample file has a row', () => {
    expect([...importRows, ...updateRows].map(([f]) => f).sort()).toEqual([
      ...filesUnder('import'),
      ...filesUnder('update'),
    ]);
  });

  it.each(importRows.map(asCase))(
    'import $file → valid=$valid ($reason)',
    ({ file, valid, firstFaultPath }) => {
      const result = parseImportManifest(readFileSync(join(samples, file)));
      expect(result.ok).toBe(valid);
      if (!result.ok && firstFaultPath !== undefined) expect(result.error[0]?.path).toBe(firstFaultPath);
    },
  );

  it.each(updateRows.map(asCase))(
    'update $file → valid=$valid ($reason)',
    ({ file, valid, firstFaultPath }) => {
      const result = parseUpdateManifest(readFileSync(join(samples, file)));
      expect(result.ok).toBe(valid);
      if (!result.ok && firstFaultPath !== undefined) expect(result.error[0]?.path).toBe(firstFaultPath);
    },
  );
});
