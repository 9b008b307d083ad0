import { z } from 'zod';
import { updateIdSchema } from '../manifest/index.ts';
import { err, type Fault, ok, type Result } from '../result.ts';
import { compatibilitySetSchema } from './compatibility.ts';
import { faultsFromZod } from './faults.ts';

/**
 * `POST /deployments` {update, target, policy}. Every limit and default of the request is here, in
 * one place; the ADR (docs/adr/0010-deployment-shadow-protocol.md) explains the choices.
 */
export const deploymentLimits = {
  /** Explicit things per request: keeps the request and the deployment record small; use a thing group beyond. */
  maxThings: 1000,
  maxThingGroups: 10,
  /** Same bound as an update's compatibility list (ADU: 1-10 sets). */
  maxCompatibilitySets: 10,
  /** 4,000 shadow updates/s is the largest account quota (IOT-CORE.md); no single deployment can go faster. */
  maxRatePerMinute: 240_000,
  minRampFactor: 1.1,
  maxRampFactor: 5,
  maxAbortCriteria: 3,
  minDeviceTimeoutSeconds: 5,
  /** Seven days, like AWS IoT Jobs' longest in-progress timeout. */
  maxDeviceTimeoutSeconds: 7 * 24 * 3600,
  /** An operator's clock may lag: a start time up to this far in the past means "now". */
  startAtPastToleranceMs: 5 * 60_000,
  /** Catches a mistyped year; nobody schedules a rollout more than a year ahead. */
  startAtMaxFutureMs: 366 * 24 * 3600_000,
  /** Presigned URLs: short enough that a leaked URL is soon useless. */
  presignedLifetimeSeconds: { min: 10, max: 3600 },
  /** STS AssumeRole accepts 900 s at least, and role chaining (a Lambda role assuming the download role) 3600 s at most. */
  stsLifetimeSeconds: { min: 900, max: 3600 },
} as const;

export const deploymentDefaults = {
  ratePerMinute: 1000,
  /** Abort when at least half of the devices that finished failed or timed out, once 10 have finished. */
  abort: [{ failureType: 'ANY_FAILURE', thresholdPercent: 50, minFinishedDevices: 10 }],
  minFinishedDevices: 10,
  /** A day: a device offline for a few hours still completes; a deployment still ends. */
  deviceTimeoutSeconds: 24 * 3600,
  downloadMode: 'presigned',
  credentialLifetimeSeconds: 15 * 60,
  rollback: false,
} as const;

/** AWS IoT thing and thing group names: 1-128 characters of `[a-zA-Z0-9:_-]`. */
export const thingNamePattern = /^[a-zA-Z0-9:_-]{1,128}$/;
const NAME_RULE = 'must be 1-128 characters of a-z A-Z 0-9 : _ -';

export const thingNameSchema = z.string().regex(thingNamePattern, NAME_RULE);
const thingGroupNameSchema = z.string().regex(thingNamePattern, NAME_RULE);

function uniqueStrings<T extends z.ZodType<string>>(item: T, max: number) {
  return z
    .array(item)
    .max(max)
    .superRefine((items, ctx) => {
      const seen = new Set<string>();
      items.forEach((value, index) => {
        if (seen.has(value))
          ctx.addIssue({ code: 'custom', path: [index], message: `duplicate of "${value}"` });
        seen.add(value);
      });
    });
}

const targetSchema = z
  .strictObject({
    thingGroups: uniqueStrings(thingGroupNameSchema, deploymentLimits.maxThingGroups).default([]),
    things: uniqueStrings(thingNameSchema, deploymentLimits.maxThings).default([]),
    /** Devices whose reported compatibility matches any of these sets (each set: all properties). */
    compatibility: z.array(compatibilitySetSchema).max(deploymentLimits.maxCompatibilitySets).default([]),
  })
  .refine((t) => t.thingGroups.length + t.things.length + t.compatibility.length > 0, {
    message: 'name at least one of thingGroups, things or compatibility',
  });

const rampSchema = z.strictObject({
  startRatePerMinute: z.int().min(1),
  factor: z.number().min(deploymentLimits.minRampFactor).max(deploymentLimits.maxRampFactor),
  /** The rate is multiplied by `factor` after every this many successes. */
  increaseAfterSucceeded: z.int().min(1).max(1_000_000),
});

const rolloutSchema = z
  .strictObject({
    ratePerMinute: z
      .int()
      .min(1)
      .max(deploymentLimits.maxRatePerMinute)
      .default(deploymentDefaults.ratePerMinute),
    ramp: rampSchema.optional(),
  })
  .superRefine((rollout, ctx) => {
    if (rollout.ramp && rollout.ramp.startRatePerMinute > rollout.ratePerMinute) {
      ctx.addIssue({
        code: 'custom',
        path: ['ramp', 'startRatePerMinute'],
        message: `must not exceed ratePerMinute (${rollout.ratePerMinute})`,
      });
    }
  });

export const failureTypes = ['FAILED', 'TIMED_OUT', 'ANY_FAILURE'] as const;
export type FailureType = (typeof failureTypes)[number];

const abortCriterionSchema = z.strictObject({
  failureType: z.enum(failureTypes),
  /** Abort when failures / finished devices reaches this percentage. */
  thresholdPercent: z.number().gt(0).max(100),
  /** ...and at least this many devices have finished (a percentage of three devices means little). */
  minFinishedDevices: z.int().min(1).max(10_000_000).default(deploymentDefaults.minFinishedDevices),
});

const abortSchema = z
  .array(abortCriterionSchema)
  .max(deploymentLimits.maxAbortCriteria)
  .superRefine((criteria, ctx) => {
    const seen = new Set<string>();
    criteria.forEach((criterion, index) => {
      if (seen.has(criterion.failureType)) {
        ctx.addIssue({
          code: 'custom',
          path: [index, 'failureType'],
          message: 'one criterion per failure type',
        });
      }
      seen.add(criterion.failureType);
    });
  });

const downloadSchema = z
  .strictObject({
    mode: z.enum(['presigned', 'sts']).default(deploymentDefaults.downloadMode),
    credentialLifetimeSeconds: z.int().default(deploymentDefaults.credentialLifetimeSeconds),
  })
  .superRefine((download, ctx) => {
    const bounds =
      download.mode === 'sts'
        ? deploymentLimits.stsLifetimeSeconds
        : deploymentLimits.presignedLifetimeSeconds;
    const lifetime = download.credentialLifetimeSeconds;
    if (lifetime < bounds.min || lifetime > bounds.max) {
      ctx.addIssue({
        code: 'custom',
        path: ['credentialLifetimeSeconds'],
        message: `must be between ${bounds.min} and ${bounds.max} seconds for ${download.mode} downloads`,
      });
    }
  });

/** Checks the start time against `now`; returns epoch ms. */
function startAtSchema(now: number) {
  return z.iso
    .datetime({
      offset: true,
      message: 'must be an ISO 8601 date-time with a time zone, as in 2030-01-31T12:00:00Z',
    })
    .transform((text) => Date.parse(text))
    .superRefine((startAt, ctx) => {
      if (startAt < now - deploymentLimits.startAtPastToleranceMs) {
        ctx.addIssue({ code: 'custom', message: 'must not be in the past' });
      } else if (startAt > now + deploymentLimits.startAtMaxFutureMs) {
        ctx.addIssue({ code: 'custom', message: 'must be within a year from now' });
      }
    });
}

function policySchema(now: number) {
  return z.strictObject({
    rollout: rolloutSchema.prefault({}),
    abort: abortSchema.default(() => deploymentDefaults.abort.map((criterion) => ({ ...criterion }))),
    deviceTimeoutSeconds: z
      .int()
      .min(deploymentLimits.minDeviceTimeoutSeconds)
      .max(deploymentLimits.maxDeviceTimeoutSeconds)
      .default(deploymentDefaults.deviceTimeoutSeconds),
    /** Absent: start at once. */
    startAt: startAtSchema(now).optional(),
    download: downloadSchema.prefault({}),
    /** Lets devices install an older version than they have; it reaches them inside the signed part. */
    rollback: z.boolean().default(deploymentDefaults.rollback),
  });
}

/** The request schema; it depends on `now` because a start time must not lie in the past. */
export function deploymentRequestSchema(now: number) {
  return z.strictObject({
    update: updateIdSchema,
    target: targetSchema,
    policy: policySchema(now).prefault({}),
  });
}

export type DeploymentRequestInput = z.input<ReturnType<typeof deploymentRequestSchema>>;
export type DeploymentRequest = z.output<ReturnType<typeof deploymentRequestSchema>>;
export type DeploymentPolicy = DeploymentRequest['policy'];
export type DeploymentTarget = DeploymentRequest['target'];
export type RolloutPolicy = DeploymentPolicy['rollout'];
export type AbortCriterion = DeploymentPolicy['abort'][number];

export interface DeploymentRequestInvalid {
  readonly code: 'DEPLOYMENT_REQUEST_INVALID';
  readonly message: string;
  readonly faults: readonly Fault[];
}

/**
 * Validates a parsed JSON body and fills in the defaults. Every fault is reported, each with the
 * JSON pointer of the offending field; `now` is epoch ms.
 */
export function parseDeploymentRequest(
  input: unknown,
  now: number,
): Result<DeploymentRequest, DeploymentRequestInvalid> {
  const parsed = deploymentRequestSchema(now).safeParse(input);
  if (parsed.success) return ok(parsed.data);
  const faults = faultsFromZod(parsed.error);
  return err({
    code: 'DEPLOYMENT_REQUEST_INVALID',
    message: `the deployment request has ${faults.length} fault${faults.length === 1 ? '' : 's'}`,
    faults,
  });
}
