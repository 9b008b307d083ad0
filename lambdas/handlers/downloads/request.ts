import { z } from 'zod';
import { faultsFromZod } from '../../domain/deployment/faults.ts';
import { thingNameSchema } from '../../domain/deployment/index.ts';
import { err, type Fault, ok, type Result } from '../../domain/result.ts';

/**
 * The download-authorization request as the IoT rule delivers it: the device's payload
 * `{ deploymentId, clientToken, attempt?, files? }` plus `thingName` (topic(3)) and `clientId` (clientid())
 * that the rule adds. Fields the device adds beyond these are ignored, as AWS's own request/response
 * APIs do; a malformed field is named by its JSON pointer.
 */
export const downloadRequestLimits = {
  /** AWS IoT's clientToken bound on its request/response topics (shadows, jobs). */
  maxClientTokenBytes: 64,
  maxDeploymentIdLength: 128,
  /** A request may name at most this many files; an update and its children hold fewer. */
  maxFiles: 200,
} as const;

const fileIdSchema = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be a file id from the update manifest');

const clientTokenSchema = z
  .string()
  .min(1)
  .refine((token) => Buffer.byteLength(token, 'utf8') <= downloadRequestLimits.maxClientTokenBytes, {
    message: `must be at most ${downloadRequestLimits.maxClientTokenBytes} bytes`,
  });

export const downloadRequestSchema = z.object({
  thingName: thingNameSchema,
  clientId: z.string().optional(),
  clientToken: clientTokenSchema,
  deploymentId: z
    .string()
    .min(1)
    .max(downloadRequestLimits.maxDeploymentIdLength)
    .regex(/^[A-Za-z0-9_.:-]+$/, 'must be a deployment id'),
  /** The attempt the device runs (agents send it): a request for another attempt is refused. */
  attempt: z.number().int().min(1).max(2_147_483_647).optional(),
  /** Absent: every file of the deployment's update (and its children's, and the detached manifest). */
  files: z
    .array(fileIdSchema)
    .min(1)
    .max(downloadRequestLimits.maxFiles)
    .transform((ids) => [...new Set(ids)])
    .optional(),
});

export type DownloadRequest = z.output<typeof downloadRequestSchema>;

export interface DownloadRequestInvalid {
  readonly code: 'BAD_REQUEST';
  readonly message: string;
  readonly faults: readonly Fault[];
  /** Where to answer, when the event says so even though other fields are wrong. */
  readonly thingName?: string;
  readonly clientToken?: string;
}

/** Never throws: anything a device can publish becomes a request or a BAD_REQUEST with every fault. */
export function parseDownloadRequest(event: unknown): Result<DownloadRequest, DownloadRequestInvalid> {
  const parsed = downloadRequestSchema.safeParse(event);
  if (parsed.success) return ok(parsed.data);
  const fields = typeof event === 'object' && event !== null ? (event as Record<string, unknown>) : {};
  const thingName = thingNameSchema.safeParse(fields.thingName);
  const clientToken = clientTokenSchema.safeParse(fields.clientToken);
  const faults = faultsFromZod(parsed.error);
  return err({
    code: 'BAD_REQUEST',
    message: `the download request has ${faults.length} fault${faults.length === 1 ? '' : 's'}: ${faults
      .map((f) => `${f.path || '/'} ${f.message}`)
      .join('; ')}`,
    faults,
    ...(thingName.success ? { thingName: thingName.data } : {}),
    ...(clientToken.success ? { clientToken: clientToken.data } : {}),
  });
}
