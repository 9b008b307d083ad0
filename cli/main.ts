import { readFile } from 'node:fs/promises';
import { runCli } from './program.ts';

const code = await runCli(process.argv.slice(2), {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  readFile: (path) => readFile(path),
});
process.exitCode = code;
