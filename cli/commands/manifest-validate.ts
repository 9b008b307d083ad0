import {
  type Fault,
  importManifestWarnings,
  parseImportManifest,
  parseJsonText,
  parseUpdateManifest,
} from '../../lambdas/domain/manifest/index.ts';
import type { CliIo } from '../io.ts';

export type ManifestKind = 'import' | 'update';
export const manifestKinds: readonly ManifestKind[] = ['import', 'update'];

/** One file's verdict; the `--json` output is an array of exactly these fields (a stable interface). */
export interface FileVerdict {
  readonly file: string;
  readonly valid: boolean;
  readonly errors: readonly Fault[];
}

interface DetailedVerdict extends FileVerdict {
  readonly kind?: ManifestKind;
  readonly warnings: readonly Fault[];
}

/**
 * Tells an update manifest (device side) from an import manifest by shape: a files MAP, a
 * detached-manifest id, or manifestVersion "4"/"5" (no ".0") mean update; anything else import.
 */
export function detectKind(value: unknown): ManifestKind {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'import';
  const v = value as Record<string, unknown>;
  const filesIsMap = typeof v.files === 'object' && v.files !== null && !Array.isArray(v.files);
  if (filesIsMap || 'detachedManifestFileId' in v || v.manifestVersion === '4' || v.manifestVersion === '5')
    return 'update';
  return 'import';
}

async function validateFile(
  file: string,
  kind: ManifestKind | undefined,
  io: CliIo,
): Promise<DetailedVerdict> {
  let bytes: Uint8Array;
  try {
    bytes = await io.readFile(file);
  } catch (e) {
    const reason = (e as NodeJS.ErrnoException).code ?? (e instanceof Error ? e.message : String(e));
    return {
      file,
      valid: false,
      errors: [{ path: '', message: `cannot read the file (${reason})` }],
      warnings: [],
    };
  }
  const json = parseJsonText(bytes);
  if (!json.ok) return { file, valid: false, errors: json.error, warnings: [] };
  const chosen = kind ?? detectKind(json.value);
  if (chosen === 'update') {
    const result = parseUpdateManifest(json.value);
    return { file, kind: chosen, valid: result.ok, errors: result.ok ? [] : result.error, warnings: [] };
  }
  const result = parseImportManifest(json.value);
  return result.ok
    ? { file, kind: chosen, valid: true, errors: [], warnings: importManifestWarnings(result.value) }
    : { file, kind: chosen, valid: false, errors: result.error, warnings: [] };
}

function render(v: DetailedVerdict): string {
  const what = v.kind ? `${v.kind} manifest` : 'manifest';
  const head = v.valid
    ? `valid    ${v.file} (${what})`
    : `INVALID  ${v.file} (${what}, ${v.errors.length} ${v.errors.length === 1 ? 'fault' : 'faults'})`;
  const lines = [
    ...v.errors.map((f) => `  error    ${f.path || '(document)'}: ${f.message}`),
    ...v.warnings.map((f) => `  warning  ${f.path || '(document)'}: ${f.message}`),
  ];
  return [head, ...lines].join('\n');
}

/** Validates every file, prints the verdicts and answers whether all were valid. */
export async function validateManifests(
  files: readonly string[],
  options: { kind?: ManifestKind; json?: boolean },
  io: CliIo,
): Promise<boolean> {
  const verdicts: DetailedVerdict[] = [];
  for (const file of files) verdicts.push(await validateFile(file, options.kind, io));
  if (options.json) {
    const out: FileVerdict[] = verdicts.map(({ file, valid, errors }) => ({
      file,
      valid,
      errors: errors.map(({ path, message }) => ({ path, message })),
    }));
    io.out(`${JSON.stringify(out, null, 2)}\n`);
  } else {
    io.out(`${verdicts.map(render).join('\n')}\n`);
    const bad = verdicts.filter((v) => !v.valid).length;
    io.out(`${verdicts.length - bad} valid, ${bad} invalid\n`);
  }
  return verdicts.every((v) => v.valid);
}
