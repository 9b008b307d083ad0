import { describe, expect, it } from 'vitest';
import { importManifestWarnings, parseImportManifest } from '../../../lambdas/domain/manifest/index.ts';

type Json = Record<string, unknown>;
const hash = 'mcB5SexMU4JOOzqmlJqKbue9qMskWY3EI/iVjJxCtAs=';
const file = (filename: string, sizeInBytes = 100): Json => ({
  filename,
  sizeInBytes,
  hashes: { sha256: hash },
});

function base(): Json {
  return {
    updateId: { provider: 'Contoso', name: 'Toaster', version: '1.0' },
    isDeployable: true,
    compatibility: [{ manufacturer: 'Contoso', model: 'Toaster' }],
    instructions: {
      steps: [
        {
          handler: 'microsoft/apt:1',
          files: ['apt.json'],
          handlerProperties: { installedCriteria: 'apt-1.0' },
        },
        {
          type: 'inline',
          handler: 'microsoft/script:1',
          files: ['install.sh'],
          handlerProperties: { installedCriteria: 'script-1.0' },
        },
      ],
    },
    files: [file('apt.json'), file('install.sh')],
    createdDateTime: '2024-01-15T10:30:00Z',
    manifestVersion: '5.0',
  };
}

/** Applies an edit to a fresh copy of the base manifest. */
function edited(edit: (m: Json & { instructions: { steps: Json[] }; files: Json[] }) => void): Json {
  const m = structuredClone(base()) as Json & { instructions: { steps: Json[] }; files: Json[] };
  edit(m);
  return m;
}

const step = (m: { instructions: { steps: Json[] } }, i: number): Json => m.instructions.steps[i] as Json;
const refStep = (version: string): Json => ({
  type: 'reference',
  updateId: { provider: 'Contoso', name: 'Child', version },
});

describe('import manifest: accepted', () => {
  it.each<[string, Json | string]>([
    ['the base manifest', base()],
    ['v4.0', edited((m) => (m.manifestVersion = '4.0'))],
    ['a leading UTF-8 BOM in JSON text', `\uFEFF${JSON.stringify(base())}`],
    ['a custom handler', edited((m) => (step(m, 1).handler = 'acme/flash-firmware:12'))],
    [
      'a 4-part version with the largest part',
      edited((m) => ((m.updateId as Json).version = '1.2.3.2147483647')),
    ],
    ['leading zeros in a version part', edited((m) => ((m.updateId as Json).version = '2024.01.05'))],
    ['no isDeployable (defaults to true)', edited((m) => delete m.isDeployable)],
    [
      'only reference steps and files: null',
      edited((m) => {
        m.instructions.steps = [refStep('1.0')];
        (m as Json).files = null;
      }),
    ],
    [
      'only reference steps and no files',
      edited((m) => {
        m.instructions.steps = [refStep('1.0')];
        delete (m as Json).files;
      }),
    ],
    ['a script step without installedCriteria', edited((m) => delete step(m, 1).handlerProperties)],
    ['v5 file extras such as mimeType', edited((m) => ((m.files[0] as Json).mimeType = 'application/json'))],
    [
      'a file of exactly 2 GB',
      edited((m) => {
        m.files = [file('apt.json', 2_147_483_648)];
        step(m, 1).files = ['apt.json'];
      }),
    ],
    [
      '10 compatibility sets of 5 properties',
      edited(
        (m) =>
          (m.compatibility = Array.from({ length: 10 }, (_, i) => ({
            a: `${i}`,
            b: 'x',
            c: 'x',
            d: 'x',
            ['n'.repeat(32)]: 'v'.repeat(64),
          }))),
      ),
    ],
    [
      'a second hash algorithm',
      edited(
        (m) =>
          ((m.files[0] as Json).hashes = {
            sha256: hash,
            sha384: 'cuyLnmRVmw3TYZKXl4VcOhIcn7C7mzTmEZQCGLXTKxge8ojxdskURelxoO+xMibz',
          }),
      ),
    ],
    [
      'a file name with dots inside',
      edited((m) => {
        (m.files[0] as Json).filename = 'fw..v2.bin';
        step(m, 0).files = ['fw..v2.bin'];
      }),
    ],
  ])('%s', (_case, input) => {
    const result = parseImportManifest(input);
    expect(result.ok ? [] : result.error).toEqual([]);
  });

  it('files: 2.1 GB total is refused although each file is under 2 GB', () => {
    const result = parseImportManifest(
      edited((m) => (m.files = [file('apt.json', 1_500_000_000), file('install.sh', 700_000_000)])),
    );
    expect(result.ok ? [] : result.error).toEqual([
      { path: '/files', message: expect.stringContaining('2147483648 bytes') },
    ]);
  });
});

describe('import manifest: refused, with the JSON path of the fault', () => {
  it.each<[string, Json | string, string, RegExp]>([
    ['not JSON', '{"updateId": ', '', /not valid JSON/],
    ['not an object', '[1]', '', /must be a JSON object/],
    ['some other JSON file', '{"name":"apt-update","packages":[]}', '', /not an import manifest/],
    [
      'manifestVersion 3.0',
      edited((m) => (m.manifestVersion = '3.0')),
      '/manifestVersion',
      /no longer supported/,
    ],
    [
      'manifestVersion as a number',
      edited((m) => (m.manifestVersion = 5)),
      '/manifestVersion',
      /must be "5.0"/,
    ],
    ['missing manifestVersion', edited((m) => delete m.manifestVersion), '/manifestVersion', /required/],
    ['unknown top-level property', edited((m) => (m.etag = 'x')), '/etag', /unknown property/],
    [
      'provider with a space',
      edited((m) => ((m.updateId as Json).provider = 'Con toso')),
      '/updateId/provider',
      /letters, digits/,
    ],
    [
      'provider of 65 characters',
      edited((m) => ((m.updateId as Json).provider = 'p'.repeat(65))),
      '/updateId/provider',
      /at most 64/,
    ],
    ['empty name', edited((m) => ((m.updateId as Json).name = '')), '/updateId/name', /must not be empty/],
    [
      'extra updateId property',
      edited((m) => ((m.updateId as Json).manufacturer = 'x')),
      '/updateId/manufacturer',
      /unknown property/,
    ],
    ['a 1-part version', edited((m) => ((m.updateId as Json).version = '1')), '/updateId/version', /2 to 4/],
    [
      'a 5-part version',
      edited((m) => ((m.updateId as Json).version = '1.2.3.4.5')),
      '/updateId/version',
      /at most 4/,
    ],
    [
      'a version part above 2147483647',
      edited((m) => ((m.updateId as Json).version = '1.2147483648')),
      '/updateId/version',
      /at most 2147483647/,
    ],
    [
      'a version with letters',
      edited((m) => ((m.updateId as Json).version = '1.0-beta')),
      '/updateId/version',
      /2 to 4/,
    ],
    ['no compatibility set', edited((m) => (m.compatibility = [])), '/compatibility', /at least one/],
    [
      '11 compatibility sets',
      edited((m) => (m.compatibility = Array.from({ length: 11 }, (_, i) => ({ model: `${i}` })))),
      '/compatibility',
      /at most 10/,
    ],
    [
      'an empty compatibility set',
      edited((m) => (m.compatibility = [{}])),
      '/compatibility/0',
      /1 to 5 properties/,
    ],
    [
      '6 compatibility properties',
      edited((m) => (m.compatibility = [{ a: '1', b: '1', c: '1', d: '1', e: '1', f: '1' }])),
      '/compatibility/0',
      /1 to 5 properties/,
    ],
    [
      'a 33-character property name',
      edited((m) => (m.compatibility = [{ ['n'.repeat(33)]: 'x' }])),
      `/compatibility/0/${'n'.repeat(33)}`,
      /1 to 32/,
    ],
    [
      'a 65-character property value',
      edited((m) => (m.compatibility = [{ model: 'v'.repeat(65) }])),
      '/compatibility/0/model',
      /at most 64/,
    ],
    [
      'an empty property value',
      edited((m) => (m.compatibility = [{ model: '' }])),
      '/compatibility/0/model',
      /must not be empty/,
    ],
    [
      'a number as property value',
      edited((m) => (m.compatibility = [{ model: 5 }])),
      '/compatibility/0/model',
      /must be a string/,
    ],
    [
      'a repeated compatibility set',
      edited(
        (m) =>
          (m.compatibility = [
            { a: '1', b: '2' },
            { b: '2', a: '1' },
          ]),
      ),
      '/compatibility/1',
      /same compatibility set/,
    ],
    ['no steps', edited((m) => (m.instructions.steps = [])), '/instructions/steps', /at least one/],
    [
      '11 steps',
      edited((m) => (m.instructions.steps = Array.from({ length: 11 }, (_, i) => refStep(`1.${i}`)))),
      '/instructions/steps',
      /at most 10/,
    ],
    [
      'a handler without version',
      edited((m) => (step(m, 1).handler = 'microsoft/script')),
      '/instructions/steps/1/handler',
      /provider\/name:version/,
    ],
    [
      'a handler of 33 characters',
      edited((m) => (step(m, 1).handler = `a/${'b'.repeat(29)}:1`)),
      '/instructions/steps/1/handler',
      /at most 32/,
    ],
    [
      'an unknown step type',
      edited((m) => (step(m, 1).type = 'script')),
      '/instructions/steps/1/type',
      /"inline".*"reference"/,
    ],
    [
      'an inline step without files',
      edited((m) => delete step(m, 1).files),
      '/instructions/steps/1/files',
      /must name its files/,
    ],
    [
      'an inline step with an empty file list',
      edited((m) => (step(m, 1).files = [])),
      '/instructions/steps/1/files',
      /at least one file/,
    ],
    [
      'an unknown step property',
      edited((m) => (step(m, 1).installedCriteria = 'x')),
      '/instructions/steps/1/installedCriteria',
      /unknown property/,
    ],
    [
      'a step description of 65 characters',
      edited((m) => (step(m, 1).description = 'd'.repeat(65))),
      '/instructions/steps/1/description',
      /at most 64/,
    ],
    [
      'a reference step without updateId',
      edited((m) => m.instructions.steps.push({ type: 'reference' })),
      '/instructions/steps/2/updateId',
      /required/,
    ],
    [
      'a reference step with files',
      edited((m) => m.instructions.steps.push({ ...refStep('1.0'), files: ['x'] })),
      '/instructions/steps/2/files',
      /unknown property/,
    ],
    [
      'a reference to the update itself',
      edited((m) =>
        m.instructions.steps.push({
          type: 'reference',
          updateId: { provider: 'contoso', name: 'toaster', version: '1.00' },
        }),
      ),
      '/instructions/steps/2/updateId',
      /itself/,
    ],
    [
      'the same child referenced twice',
      edited((m) => m.instructions.steps.push(refStep('1.0'), refStep('1.0'))),
      '/instructions/steps/3/updateId',
      /already refers/,
    ],
    [
      'a step naming an undeclared file',
      edited((m) => (step(m, 1).files = ['missing.sh'])),
      '/instructions/steps/1/files/0',
      /not declared in \/files/,
    ],
    [
      'a step naming a file twice',
      edited((m) => (step(m, 1).files = ['install.sh', 'install.sh'])),
      '/instructions/steps/1/files/1',
      /named twice/,
    ],
    [
      'two steps with the same installedCriteria',
      edited((m) => ((step(m, 1).handlerProperties as Json).installedCriteria = 'apt-1.0')),
      '/instructions/steps/1/handlerProperties/installedCriteria',
      /also used by step 0/,
    ],
    [
      'an apt step without installedCriteria',
      edited((m) => delete step(m, 0).handlerProperties),
      '/instructions/steps/0/handlerProperties/installedCriteria',
      /microsoft\/apt:1 needs/,
    ],
    [
      'an apt step with an empty installedCriteria',
      edited((m) => (step(m, 0).handlerProperties = { installedCriteria: '' })),
      '/instructions/steps/0/handlerProperties/installedCriteria',
      /needs/,
    ],
    [
      'installedCriteria that is not a string',
      edited((m) => (step(m, 1).handlerProperties = { installedCriteria: 1 })),
      '/instructions/steps/1/handlerProperties/installedCriteria',
      /must be a string/,
    ],
    [
      '11 files',
      edited((m) => (m.files = Array.from({ length: 11 }, (_, i) => file(`f${i}`)))),
      '/files',
      /at most 10/,
    ],
    ['files as an object', edited((m) => ((m as Json).files = { a: 1 })), '/files', /must be an array/],
    [
      'a duplicate file name',
      edited((m) => m.files.push(file('apt.json'))),
      '/files/2/filename',
      /duplicate file name/,
    ],
    [
      'file names differing only in case',
      edited((m) => m.files.push(file('APT.json'))),
      '/files/2/filename',
      /differs only in case/,
    ],
    [
      'a file name with a slash',
      edited((m) => ((m.files[0] as Json).filename = 'bin/apt.json')),
      '/files/0/filename',
      /plain file name/,
    ],
    [
      'a file name with a backslash',
      edited((m) => ((m.files[0] as Json).filename = '..\\apt.json')),
      '/files/0/filename',
      /plain file name/,
    ],
    [
      'the file name ..',
      edited((m) => ((m.files[0] as Json).filename = '..')),
      '/files/0/filename',
      /not a file name/,
    ],
    [
      'the file name .',
      edited((m) => ((m.files[0] as Json).filename = '.')),
      '/files/0/filename',
      /not a file name/,
    ],
    [
      'a NUL in a file name',
      edited((m) => ((m.files[0] as Json).filename = 'a\u0000b')),
      '/files/0/filename',
      /control characters/,
    ],
    [
      'a 256-character file name',
      edited((m) => ((m.files[0] as Json).filename = 'f'.repeat(256))),
      '/files/0/filename',
      /at most 255/,
    ],
    ['size 0', edited((m) => ((m.files[0] as Json).sizeInBytes = 0)), '/files/0/sizeInBytes', /at least 1/],
    [
      'size above 2 GB',
      edited((m) => ((m.files[0] as Json).sizeInBytes = 2_147_483_649)),
      '/files/0/sizeInBytes',
      /at most 2147483648/,
    ],
    [
      'a fractional size',
      edited((m) => ((m.files[0] as Json).sizeInBytes = 1.5)),
      '/files/0/sizeInBytes',
      /whole number/,
    ],
    [
      'a size as a string',
      edited((m) => ((m.files[0] as Json).sizeInBytes = '100')),
      '/files/0/sizeInBytes',
      /must be a number/,
    ],
    [
      'no sha256',
      edited((m) => ((m.files[0] as Json).hashes = { md5: 'abc=' })),
      '/files/0/hashes/sha256',
      /required/,
    ],
    [
      'a hex sha256',
      edited((m) => ((m.files[0] as Json).hashes = { sha256: 'ab'.repeat(32) })),
      '/files/0/hashes/sha256',
      /base64 encoding of a 32-byte/,
    ],
    [
      'a sha256 of 31 bytes',
      edited((m) => ((m.files[0] as Json).hashes = { sha256: Buffer.alloc(31).toString('base64') })),
      '/files/0/hashes/sha256',
      /32-byte/,
    ],
    [
      'three hash algorithms',
      edited((m) => ((m.files[0] as Json).hashes = { sha256: hash, sha1: 'AAAA', md5: 'AAAA' })),
      '/files/0/hashes',
      /at most 2/,
    ],
    [
      'a v4.0 file with mimeType',
      edited((m) => {
        m.manifestVersion = '4.0';
        (m.files[0] as Json).mimeType = 'x';
      }),
      '/files/0/mimeType',
      /unknown property/,
    ],
    [
      'relatedFiles without downloadHandler',
      edited((m) => ((m.files[0] as Json).relatedFiles = [file('delta.dat')])),
      '/files/0/downloadHandler',
      /needs a downloadHandler/,
    ],
    [
      'a related file sharing a top-level name',
      edited((m) =>
        Object.assign(m.files[0] as Json, {
          relatedFiles: [file('install.sh')],
          downloadHandler: { id: 'microsoft/delta:1' },
        }),
      ),
      '/files/1/filename',
      /duplicate file name/,
    ],
    [
      'a bad downloadHandler id',
      edited((m) =>
        Object.assign(m.files[0] as Json, {
          relatedFiles: [file('d.dat')],
          downloadHandler: { id: 'delta' },
        }),
      ),
      '/files/0/downloadHandler/id',
      /provider\/name:version/,
    ],
    [
      'createdDateTime not ISO 8601',
      edited((m) => (m.createdDateTime = '15/01/2024')),
      '/createdDateTime',
      /ISO 8601/,
    ],
    ['missing createdDateTime', edited((m) => delete m.createdDateTime), '/createdDateTime', /required/],
    ['isDeployable as a string', edited((m) => (m.isDeployable = 'yes')), '/isDeployable', /true or false/],
    ['an empty description', edited((m) => (m.description = '')), '/description', /must not be empty/],
    [
      'a description of 513 characters',
      edited((m) => (m.description = 'd'.repeat(513))),
      '/description',
      /at most 512/,
    ],
  ])('%s', (_case, input, path, message) => {
    const result = parseImportManifest(input);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.error).toContainEqual({ path, message: expect.stringMatching(message) });
  });

  it('reports every fault at once, each with its own path', () => {
    const result = parseImportManifest(
      edited((m) => {
        (m.updateId as Json).version = '1';
        step(m, 1).handler = 'bad';
        step(m, 1).files = ['missing.sh'];
        m.files.push(file('apt.json'));
        m.compatibility = [];
      }),
    );
    expect(result.ok ? [] : [...new Set(result.error.map((f) => f.path))]).toEqual([
      '/compatibility',
      '/files/2/filename',
      '/instructions/steps/1/files/0',
      '/instructions/steps/1/handler',
      '/updateId/version',
    ]);
  });

  it('still checks cross-field rules when the structure has faults', () => {
    const result = parseImportManifest(
      edited((m) => {
        delete m.createdDateTime;
        (step(m, 1).handlerProperties as Json).installedCriteria = 'apt-1.0';
      }),
    );
    expect(result.ok ? [] : result.error.map((f) => f.path)).toEqual([
      '/createdDateTime',
      '/instructions/steps/1/handlerProperties/installedCriteria',
    ]);
  });

  it('never throws, whatever the input', () => {
    for (const input of [
      null,
      undefined,
      42,
      'x',
      [],
      {},
      { instructions: 5 },
      { instructions: { steps: [null, 5, 'x'] }, files: [null] },
      new Uint8Array([0xff, 0xfe]),
    ]) {
      expect(parseImportManifest(input).ok).toBe(false);
    }
  });

  it('names JSON-pointer paths with ~ and / escaped', () => {
    const result = parseImportManifest(edited((m) => (m.compatibility = [{ 'a/b~c': 'v'.repeat(65) }])));
    expect(result.ok ? [] : result.error.map((f) => f.path)).toEqual(['/compatibility/0/a~1b~0c']);
  });
});

describe('import manifest: typed result and warnings', () => {
  it('defaults isDeployable to true and files to an empty list', () => {
    const result = parseImportManifest(
      edited((m) => {
        delete m.isDeployable;
        m.instructions.steps = [refStep('1.0')];
        (m as Json).files = null;
      }),
    );
    expect(result.ok && { isDeployable: result.value.isDeployable, files: result.value.files }).toEqual({
      isDeployable: true,
      files: [],
    });
  });

  it('warns about a miscased InstalledCriteria, swupdate without criteria and unused files', () => {
    const result = parseImportManifest(
      edited((m) => {
        step(m, 1).handler = 'microsoft/swupdate:1';
        step(m, 1).handlerProperties = { InstalledCriteria: '1.0' };
        m.files.push(file('unused.bin'));
      }),
    );
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(importManifestWarnings(result.value).map((w) => w.path)).toEqual([
      '/files/2',
      '/instructions/steps/1/handlerProperties/InstalledCriteria',
      '/instructions/steps/1/handlerProperties/installedCriteria',
    ]);
  });
});
