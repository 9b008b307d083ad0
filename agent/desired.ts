import { z } from 'zod';
import { err, ok, type Result } from '../lambdas/domain/result.ts';
import { type AgentError, agentError } from './codes.ts';

/**
 * `desired.ota` as the agent reads it (ADR 0010). Everything here is a hint except what the
 * signature covers: the ids tell the agent which attempt to report under, the manifest text and
 * signature are checked before anything is believed.
 */
const updateIdHint = z.object({ provider: z.string(), name: z.string(), version: z.string() });

const desiredShape = z.object({
  deploymentId: z.string().min(1).max(128),
  attempt: z.number().int().min(1),
  action: z.enum(['apply', 'cancel']),
  updateId: updateIdHint,
  manifest: z.string().min(2),
  signature: z.string().min(10),
});

export type DesiredOtaHint = z.infer<typeof desiredShape>;

/** Reads `desired.ota`; `undefined` input (no deployment) is not an error: there is nothing to do. */
export function readDesiredOta(value: unknown): Result<DesiredOtaHint | undefined, AgentError> {
  if (value === undefined || value === null) return ok(undefined);
  const parsed = desiredShape.safeParse(value);
  if (parsed.success) return ok(parsed.data);
  const issue = parsed.error.issues[0];
  const where = issue ? `/${issue.path.join('/')}: ${issue.message}` : '';
  return err(agentError('DESIRED_INVALID', `desired.ota is not usable at ${where}`, false));
}

/** Ids to report under even when the rest of desired.ota is unusable, so the service can match the failure. */
export function deploymentHintOf(value: unknown): { deploymentId?: string; attempt?: number } {
  if (typeof value !== 'object' || value === null) return {};
  const v = value as Record<string, unknown>;
  return {
    ...(typeof v.deploymentId === 'string' && v.deploymentId !== '' ? { deploymentId: v.deploymentId } : {}),
    ...(typeof v.attempt === 'number' && Number.isInteger(v.attempt) && v.attempt >= 1
      ? { attempt: v.attempt }
      : {}),
  };
}

const jobShape = z.object({
  deploymentId: z.string().min(1).max(128),
  attempt: z.number().int().min(1),
  updateId: updateIdHint,
});

/**
 * `desired.ota` rebuilt from a delta when the delta carries a whole apply document: `job`
 * (never echoed in reported, so always present) stands in for the ids the delta leaves out when
 * they equal what the device reported. `undefined` when the delta is anything less.
 */
export function desiredFromDelta(value: unknown): DesiredOtaHint | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const delta = value as Record<string, unknown>;
  const job = jobShape.safeParse(delta.job);
  if (!job.success || delta.action !== 'apply') return undefined;
  const whole = desiredShape.safeParse({ ...delta, ...job.data });
  return whole.success ? whole.data : undefined;
}
