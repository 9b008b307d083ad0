import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { thingNamePattern } from '../lambdas/domain/deployment/request.ts';
import { issueLocalDeviceCertificate } from './commands/local-device-certificate.ts';
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
  registerLocalCommands(program, io, setExitCode);
  return program;
}

function thingName(value: string): string {
  if (!thingNamePattern.test(value)) {
    throw new InvalidArgumentError('an AWS IoT thing name is 1-128 of [a-zA-Z0-9:_-]');
  }
  return value;
}

function registerLocalCommands(program: Command, io: CliIo, setExitCode: (code: number) => void): void {
  const local = program.command('local').description('Work with the local cloud (npm start)').exitOverride();
  local
    .command('device-certificate')
    .description("Issue a device certificate for the local cloud's mutual TLS listener, signed by its CA")
    .argument(
      '<thing>',
      'thing name (the certificate CN; the device connects with it as client id)',
      thingName,
    )
    .option('--data-dir <dir>', "the local cloud's data directory", '.data')
    .option('--out <dir>', 'where <thing>.crt and <thing>.key go', '.')
    .exitOverride()
    .action(async (thing: string, options: { dataDir: string; out: string }) => {
      const issued = await issueLocalDeviceCertificate(thing, options, io);
      setExitCode(issued ? exitCodes.ok : exitCodes.invalid);
    });
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
