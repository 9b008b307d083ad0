import { Command, CommanderError, Option } from 'commander';
import { type ManifestKind, manifestKinds, validateManifests } from './commands/manifest-validate.ts';
import { type CliIo, exitCodes } from './io.ts';

/**
 * The `shadow-ota` command tree. Each group registers itself here; the operator commands
 * (updates, deployments) will join as further groups beside `manifest`.
 */
export function buildProgram(io: CliIo, setExitCode: (code: number) => void): Command {
  const program = new Command('shadow-ota')
    .description('Over-the-air updates for IoT fleets through the AWS IoT Device Shadow')
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .showHelpAfterError('(run with --help for usage)');
  registerManifestCommands(program, io, setExitCode);
  return program;
}

function registerManifestCommands(program: Command, io: CliIo, setExitCode: (code: number) => void): void {
  const manifest = program
    .command('manifest')
    .description('Work with import and update manifests')
    .exitOverride();
  manifest
    .command('validate')
    .description(
      'Check import manifests (or device update manifests) and report every fault with its JSON path',
    )
    .argument('<file...>', 'manifest files (JSON)')
    .addOption(
      new Option('--kind <kind>', 'manifest kind; by default told by shape').choices(
        manifestKinds as string[],
      ),
    )
    .option('--json', 'print [{ "file", "valid", "errors": [{ "path", "message" }] }]')
    .exitOverride()
    .action(async (files: string[], options: { kind?: ManifestKind; json?: boolean }) => {
      const valid = await validateManifests(files, options, io);
      setExitCode(valid ? exitCodes.ok : exitCodes.invalid);
    });
}

/** Runs the CLI on `argv` (without node and script) and returns the exit code. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  let code: number = exitCodes.ok;
  const program = buildProgram(io, (c) => {
    code = c;
  });
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return code;
  } catch (e) {
    if (e instanceof CommanderError) {
      // Help and version are successful exits; every other commander error is a usage error.
      const benign = ['commander.helpDisplayed', 'commander.version'];
      return benign.includes(e.code) ? exitCodes.ok : exitCodes.usage;
    }
    throw e;
  }
}
