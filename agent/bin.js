#!/usr/bin/env node
// The published entry point stays plain JavaScript; tsx compiles the TypeScript agent on the fly.
import { register } from 'tsx/esm/api';

register();
await import('./main.ts');
