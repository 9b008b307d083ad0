#!/usr/bin/env node
// The published entry point stays plain JavaScript. It runs the esbuild bundle (`npm run build:agent`)
// when there is one: a device should not run tsx, whose loader alone costs about 37 MB of the
// 100 MB memory budget (docs/adr/0060-benchmarks.md). Without a bundle (a checkout, development),
// tsx compiles the TypeScript agent on the fly.
import { existsSync } from 'node:fs';

const bundle = new URL('../dist/shadow-ota-agent.mjs', import.meta.url);

if (existsSync(bundle)) {
  await import(bundle.href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('./main.ts');
}
