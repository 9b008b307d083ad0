import { isAbsolute, relative, resolve, sep } from 'node:path';
import { err, ok, type Result } from '../lambdas/domain/result.ts';
import { type AgentError, agentError } from './codes.ts';

/**
 * Joins `segments` under `root` and refuses any result outside it (`..`, absolute segments, NUL).
 * Every path the agent writes to or executes from is made here: file names come from a manifest,
 * which is signed but still must not steer the agent out of its work directory.
 */
export function pathInside(root: string, ...segments: readonly string[]): Result<string, AgentError> {
  if (segments.some((s) => s.includes('\0') || s === '')) {
    return err(agentError('PATH_REFUSED', 'a path segment is empty or holds a NUL byte', false));
  }
  const base = resolve(root);
  const target = resolve(base, ...segments);
  const rel = relative(base, target);
  if (rel === '' || rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)) {
    return err(agentError('PATH_REFUSED', `"${segments.join('/')}" leads outside ${base}`, false));
  }
  return ok(target);
}

/** A file or folder name made safe from an id we do not control (deployment ids). */
export function safeName(id: string): string {
  const cleaned = id.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '_');
  return cleaned.slice(0, 100) || '_';
}
