/**
 * Builds the shipped device agent: one ESM file, dist/shadow-ota-agent.mjs, run by plain `node`.
 * A device should not run tsx: its loader thread alone costs about 37 MB, and the agent meets the
 * < 100 MB peak-memory target only as a bundle (docs/adr/0060-benchmarks.md).
 *
 * `npm run build:agent` writes the default file; `tsx agent/build.ts <outfile>` writes elsewhere.
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));

/** Where `agent/bin.js` looks for the bundle. */
export const defaultAgentBundle = join(here, '..', 'dist', 'shadow-ota-agent.mjs');

/**
 * aws-crt loads a native .node binary chosen at run time from its own package directory, which a
 * bundle cannot carry; so it, and the device SDK that wraps it, stay installed packages.
 */
const keptExternal = ['aws-crt', 'aws-iot-device-sdk-v2'];

/**
 * CommonJS dependencies bundled into ESM still call `require` for Node built-ins; ESM has none,
 * so the bundle defines one.
 */
const requireShim =
  "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);";

/** Bundles agent/main.ts into `outfile` (ESM, Node 20). */
export async function buildAgent(outfile: string = defaultAgentBundle): Promise<void> {
  await build({
    entryPoints: [join(here, 'main.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    external: keptExternal,
    banner: { js: requireShim },
    outfile,
    logLevel: 'warning',
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await buildAgent(process.argv[2] ? resolve(process.argv[2]) : defaultAgentBundle);
}
