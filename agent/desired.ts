import { z } from 'zod';
import { err, ok, type Result } from '../lambdas/domain/result.ts';
import { type AgentError, agentError } from './codes.ts';

/**
 * `desired.ota` as the agent reads it (ADR 0010): which deployment and attempt to run, and whether
 * to apply or cancel it. All of it is a hint: the signed manifest comes with the download
 * authorization (agent/authorization.ts) and is checked before anything is believed. Keys the
 * service does not send (an older service's `manifest`, `signature`) are ignored.
 */
const updateIdHint = z.object({ provider: z.string(), name: z.string(), version: z.string() });

const desiredShape = z.object({
  deploymentId: z.string().min(1).max(128),
  attempt: z.number().int().min(1),
  action: z.enum(['apply', 'cancel']),
  updateId: updateIdHint,
});

export type DesiredOtaHint = z.infer<typeof desiredShape>;

/** A deployment with the signed manifest its download authorization carried: what `verifyDesired` checks. */
export type SignedDeployment = DesiredOtaHint & {
  /** The manifest's exact canonical text: the full manifest, or the mini manifest of a detached one. */
  readonly manifest: string;
  /** The compact JWS that binds it (ADR 0010). */
  readonly signature: string;
};

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
