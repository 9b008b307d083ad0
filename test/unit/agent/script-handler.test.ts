import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { agentErrors } from '../../../agent/codes.ts';
import { makeScriptHandler, scriptArguments } from '../../../agent/handlers/script.ts';
import { context, stepFile } from './support.ts';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'agent-script-'));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

/** Records its argv one per line, then writes the result the test asks for. */
const recorder = (result: string, exit = 0) => `#!/bin/sh
out="$(dirname "$0")/argv.txt"
: > "$out"
for a in "$@"; do printf '%s\\n' "$a" >> "$out"; done
while [ $# -gt 0 ]; do [ "$1" = "--result-file" ] && rf="$2"; shift; done
${result ? `printf '%s' '${result}' > "$rf"` : ''}
exit ${exit}
`;

describe('microsoft/script:1 handler', () => {
  it('passes arguments as argv in ADU order, without a shell, placeholders replaced', async () => {
    const script = await stepFile(dir, 'run.sh', recorder('{"resultCode":600,"extendedResultCode":0}'));
    const handler = makeScriptHandler();
    const result = await handler.install(
      context({
        workFolder: dir,
        files: [script],
        installedCriteria: '1.2',
        handlerProperties: {
          scriptFileName: 'run.sh',
          arguments: '--name --component-name-val $(touch;pwned) --component-prop-val path',
        },
        component: { id: 'm1', name: 'left motor', properties: { path: '/dev/m1' } },
      }),
    );
    expect(result).toEqual({ resultCode: 600, extendedResultCode: 0 });
    const argv = (await readFile(join(dir, 'argv.txt'), 'utf8')).trimEnd().split('\n');
    expect(argv).toEqual([
      '--action-install',
      '--name',
      'left motor',
      '$(touch;pwned)',
      '/dev/m1',
      '--work-folder',
      dir,
      '--result-file',
      join(dir, 'action--action-install_aduc_result.json'),
      '--installed-criteria',
      '1.2',
    ]);
  });

  it('fails with the exit code folded into the ERC when the script exits non-zero', async () => {
    const script = await stepFile(dir, 'run.sh', recorder('', 3));
    const result = await makeScriptHandler().apply(
      context({ workFolder: dir, files: [script], handlerProperties: { scriptFileName: 'run.sh' } }),
    );
    expect(result.resultCode).toBe(0);
    expect(result.extendedResultCode).toBe((agentErrors.SCRIPT_EXIT_CODE | 3) >>> 0);
  });

  it('fails when the script writes no result file, and gives a failure with ERC 0 an actionable code', async () => {
    const none = await stepFile(dir, 'none.sh', recorder(''));
    const noResult = await makeScriptHandler().install(
      context({ workFolder: dir, files: [none], handlerProperties: { scriptFileName: 'none.sh' } }),
    );
    expect(noResult).toMatchObject({ resultCode: 0, extendedResultCode: agentErrors.SCRIPT_RESULT_FILE });
    const zero = await stepFile(
      dir,
      'zero.sh',
      recorder('{"resultCode":0,"extendedResultCode":0,"resultDetails":"boom"}'),
    );
    const zeroResult = await makeScriptHandler().install(
      context({ workFolder: dir, files: [zero], handlerProperties: { scriptFileName: 'zero.sh' } }),
    );
    expect(zeroResult).toMatchObject({
      resultCode: 0,
      extendedResultCode: agentErrors.SCRIPT_RESULT_ERC_ZERO,
      resultDetails: 'boom',
    });
  });

  it("refuses a script that is not one of the step's verified files", async () => {
    const result = await makeScriptHandler().install(
      context({ workFolder: dir, files: [], handlerProperties: { scriptFileName: '/bin/sh' } }),
    );
    expect(result).toMatchObject({ resultCode: 0, extendedResultCode: agentErrors.STEP_FILE_MISSING });
  });

  it('stops a script that runs past its timeout', async () => {
    const slow = await stepFile(dir, 'slow.sh', '#!/bin/sh\nsleep 5\n');
    const result = await makeScriptHandler({ timeoutMs: 200 }).install(
      context({ workFolder: dir, files: [slow], handlerProperties: { scriptFileName: 'slow.sh' } }),
    );
    expect(result).toMatchObject({ resultCode: 0, extendedResultCode: agentErrors.SCRIPT_TIMEOUT });
  });

  it.each([
    ['--a --component-group-val', undefined, ['--a', 'n/a']],
    ['  x   y ', undefined, ['x', 'y']],
    ['--component-prop-val', { id: 'c', name: 'n' }, ['n/a']],
  ])('scriptArguments(%j)', (text, component, expected) => {
    expect(scriptArguments(text, component)).toEqual(expected);
  });
});
