import { err, type Fault, ok, pointer, type Result } from '../result.ts';
import { faultsFromIssues, sortFaults } from './faults.ts';
import {
  type ImportManifest,
  type ImportManifestVersion,
  importManifestV4Schema,
  importManifestV5Schema,
  importManifestVersions,
} from './import-schema.ts';
import { parseJsonText } from './json-text.ts';
import { limits } from './limits.ts';
import { updateIdKey } from './update-id.ts';

/** Handlers whose device side fails a step without installedCriteria (ADR 0001). */
export const handlersRequiringInstalledCriteria: readonly string[] = ['microsoft/apt:1'];
/** Handlers that work without installedCriteria but, per ADU's CLI, should have one: a warning. */
const handlersWarnedWithoutInstalledCriteria: readonly string[] = [
  'microsoft/swupdate:1',
  'microsoft/swupdate:2',
];

/** A document with none of these is some other JSON file, not a manifest with faults. */
const manifestKeys = ['updateId', 'manifestVersion', 'instructions', 'compatibility'] as const;

/**
 * Validates an import manifest: JSON text (a leading BOM is fine) or an already parsed value.
 * Returns the typed manifest, or every fault found, each with its JSON pointer.
 */
export function parseImportManifest(input: unknown): Result<ImportManifest, Fault[]> {
  const parsed = typeof input === 'string' || input instanceof Uint8Array ? parseJsonText(input) : ok(input);
  if (!parsed.ok) return parsed;
  const raw = parsed.value;
  if (!isRecord(raw)) return err([{ path: '', message: 'an import manifest must be a JSON object' }]);
  if (!manifestKeys.some((k) => k in raw)) {
    return err([{ path: '', message: `not an import manifest: it has none of ${manifestKeys.join(', ')}` }]);
  }

  const version = importVersionOf(raw);
  const versionFaults = version ? [] : [manifestVersionFault(raw)];
  const schema = (version ?? '5.0') === '5.0' ? importManifestV5Schema : importManifestV4Schema;
  const result = schema.safeParse(version ? raw : { ...raw, manifestVersion: '5.0' });
  const structureFaults = result.success ? [] : faultsFromIssues(result.error.issues);
  const faults = sortFaults([...versionFaults, ...structureFaults, ...crossFieldFaults(raw)]);
  if (faults.length > 0 || !result.success) return err(faults);
  return ok(result.data);
}

function importVersionOf(raw: Record<string, unknown>): ImportManifestVersion | undefined {
  const v = raw.manifestVersion;
  return importManifestVersions.find((known) => known === v);
}

function manifestVersionFault(raw: Record<string, unknown>): Fault {
  const v = raw.manifestVersion;
  const path = '/manifestVersion';
  if (v === undefined) return { path, message: 'manifestVersion is required: use "5.0"' };
  if (typeof v === 'string' && /^[0-3](?:\.0)?$/.test(v)) {
    return {
      path,
      message: `manifestVersion "${v}" is no longer supported: write a "5.0" manifest (updateType and top-level installedCriteria became instructions.steps with handler and handlerProperties.installedCriteria)`,
    };
  }
  return { path, message: `manifestVersion must be "5.0" (or "4.0"), not ${JSON.stringify(v)}` };
}

/**
 * Rules that span fields. They read the raw input tolerantly (skipping whatever is malformed, which
 * the schema reports), so a manifest with a structural fault still gets every other fault reported.
 */
function crossFieldFaults(raw: Record<string, unknown>): Fault[] {
  const files = records(raw.files);
  const steps = records(isRecord(raw.instructions) ? raw.instructions.steps : undefined);
  return [
    ...duplicateFileNameFaults(files),
    ...totalSizeFaults(files),
    ...relatedFilesHandlerFaults(files),
    ...undeclaredStepFileFaults(steps, files),
    ...installedCriteriaFaults(steps),
    ...referenceStepFaults(steps, raw.updateId),
    ...duplicateCompatibilityFaults(raw.compatibility),
  ];
}

interface Indexed {
  readonly index: number;
  readonly value: Record<string, unknown>;
}

function records(value: unknown): Indexed[] {
  if (!Array.isArray(value)) return [];
  return value.flatMap((v, index) => (isRecord(v) ? [{ index, value: v }] : []));
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Every file name written to disk: top-level files and their related files. */
function diskNames(files: readonly Indexed[]): { name: string; path: string }[] {
  return files.flatMap(({ index, value }) => {
    const own =
      typeof value.filename === 'string'
        ? [{ name: value.filename, path: pointer(['files', index, 'filename']) }]
        : [];
    const related = records(value.relatedFiles).flatMap((r) =>
      typeof r.value.filename === 'string'
        ? [{ name: r.value.filename, path: pointer(['files', index, 'relatedFiles', r.index, 'filename']) }]
        : [],
    );
    return [...own, ...related];
  });
}

// Case-insensitive: a device on a case-insensitive file system would overwrite one with the other.
function duplicateFileNameFaults(files: readonly Indexed[]): Fault[] {
  const firstByName = new Map<string, { name: string; path: string }>();
  return diskNames(files).flatMap((entry) => {
    const key = entry.name.toLowerCase();
    const first = firstByName.get(key);
    if (!first) {
      firstByName.set(key, entry);
      return [];
    }
    const how =
      first.name === entry.name ? 'the same name' : `a name that differs only in case ("${first.name}")`;
    return [{ path: entry.path, message: `duplicate file name "${entry.name}": ${first.path} has ${how}` }];
  });
}

function totalSizeFaults(files: readonly Indexed[]): Fault[] {
  const sizes = files.flatMap(({ value }) => [value, ...records(value.relatedFiles).map((r) => r.value)]);
  const total = sizes.reduce((sum, f) => sum + (typeof f.sizeInBytes === 'number' ? f.sizeInBytes : 0), 0);
  if (total <= limits.totalSizeMax) return [];
  return [
    {
      path: '/files',
      message: `the files add up to ${total} bytes; an update may hold at most ${limits.totalSizeMax} bytes (2 GB) in all`,
    },
  ];
}

function relatedFilesHandlerFaults(files: readonly Indexed[]): Fault[] {
  return files.flatMap(({ index, value }) =>
    records(value.relatedFiles).length > 0 && value.downloadHandler === undefined
      ? [
          {
            path: pointer(['files', index, 'downloadHandler']),
            message:
              'a file with relatedFiles needs a downloadHandler (e.g. {"id": "microsoft/delta:1"}) that uses them',
          },
        ]
      : [],
  );
}

function isReferenceStep(step: Record<string, unknown>): boolean {
  return step.type === 'reference';
}

function undeclaredStepFileFaults(steps: readonly Indexed[], files: readonly Indexed[]): Fault[] {
  const declared = new Set(
    files.flatMap(({ value }) => (typeof value.filename === 'string' ? [value.filename] : [])),
  );
  return steps.flatMap(({ index, value }) => {
    if (isReferenceStep(value) || !Array.isArray(value.files)) return [];
    const seen = new Set<string>();
    return value.files.flatMap((name: unknown, j): Fault[] => {
      if (typeof name !== 'string') return [];
      const path = pointer(['instructions', 'steps', index, 'files', j]);
      if (seen.has(name)) return [{ path, message: `file "${name}" is named twice in this step` }];
      seen.add(name);
      return declared.has(name)
        ? []
        : [{ path, message: `file "${name}" is not declared in /files: add it there or correct the name` }];
    });
  });
}

function installedCriteriaFaults(steps: readonly Indexed[]): Fault[] {
  const firstStepByCriteria = new Map<string, number>();
  return steps.flatMap(({ index, value }): Fault[] => {
    if (isReferenceStep(value)) return [];
    const props = isRecord(value.handlerProperties) ? value.handlerProperties : {};
    const criteria = props.installedCriteria;
    const path = pointer(['instructions', 'steps', index, 'handlerProperties', 'installedCriteria']);
    if (typeof criteria === 'string' && criteria !== '') {
      const first = firstStepByCriteria.get(criteria);
      if (first === undefined) {
        firstStepByCriteria.set(criteria, index);
        return [];
      }
      return [
        {
          path,
          message: `installedCriteria "${criteria}" is also used by step ${first}: give each step its own, or the device skips this step as already installed`,
        },
      ];
    }
    if (typeof value.handler === 'string' && handlersRequiringInstalledCriteria.includes(value.handler)) {
      return [
        {
          path,
          message: `handler ${value.handler} needs handlerProperties.installedCriteria (a non-empty string): the device fails the step without it`,
        },
      ];
    }
    return [];
  });
}

function referenceStepFaults(steps: readonly Indexed[], ownId: unknown): Fault[] {
  const ownKey = updateIdKeyOf(ownId);
  const firstStepByChild = new Map<string, number>();
  return steps.flatMap(({ index, value }): Fault[] => {
    if (!isReferenceStep(value)) return [];
    const key = updateIdKeyOf(value.updateId);
    if (key === undefined) return [];
    const path = pointer(['instructions', 'steps', index, 'updateId']);
    if (key === ownKey) return [{ path, message: 'a reference step cannot refer to the update itself' }];
    const first = firstStepByChild.get(key);
    if (first !== undefined)
      return [{ path, message: `step ${first} already refers to this update: refer to it once` }];
    firstStepByChild.set(key, index);
    return [];
  });
}

function updateIdKeyOf(value: unknown): string | undefined {
  if (!isRecord(value)) return undefined;
  const { provider, name, version } = value;
  if (typeof provider !== 'string' || typeof name !== 'string' || typeof version !== 'string')
    return undefined;
  if (!/^\d+(?:\.\d+)*$/.test(version)) return undefined;
  return updateIdKey({ provider, name, version });
}

function duplicateCompatibilityFaults(compatibility: unknown): Fault[] {
  const firstBySet = new Map<string, number>();
  return records(compatibility).flatMap(({ index, value }): Fault[] => {
    const key = JSON.stringify(Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    const first = firstBySet.get(key);
    if (first === undefined) {
      firstBySet.set(key, index);
      return [];
    }
    return [
      {
        path: pointer(['compatibility', index]),
        message: `the same compatibility set as /compatibility/${first}`,
      },
    ];
  });
}

/**
 * Things that are allowed but probably not meant, for people (the CLI prints them; the API may
 * return them). Never a reason to refuse a manifest.
 */
export function importManifestWarnings(manifest: ImportManifest): Fault[] {
  const used = new Set(manifest.instructions.steps.flatMap((s) => (s.type === 'reference' ? [] : s.files)));
  const unusedFiles = manifest.files.flatMap((f, i) =>
    used.has(f.filename)
      ? []
      : [{ path: pointer(['files', i]), message: `file "${f.filename}" is declared but no step uses it` }],
  );
  const stepWarnings = manifest.instructions.steps.flatMap((step, i): Fault[] => {
    if (step.type === 'reference') return [];
    const props = step.handlerProperties ?? {};
    const miscased = Object.keys(props).filter(
      (k) => k !== 'installedCriteria' && k.toLowerCase() === 'installedcriteria',
    );
    const base = ['instructions', 'steps', i, 'handlerProperties'];
    return [
      ...miscased.map((k) => ({
        path: pointer([...base, k]),
        message: `"${k}" is ignored by devices, which read "installedCriteria" with exactly that spelling`,
      })),
      ...(handlersWarnedWithoutInstalledCriteria.includes(step.handler) && !props.installedCriteria
        ? [
            {
              path: pointer([...base, 'installedCriteria']),
              message: `handler ${step.handler} usually needs installedCriteria to tell whether the update is installed`,
            },
          ]
        : []),
    ];
  });
  return sortFaults([...unusedFiles, ...stepWarnings]);
}
