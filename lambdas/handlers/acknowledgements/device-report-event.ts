/**
 * The acknowledgement rule's event: `SELECT *, topic(3) AS thingName, timestamp() AS receivedAt
 * FROM '$aws/things/+/shadow/name/ota/update'`, i.e. the update request a device published on its
 * own `ota` shadow, plus the thing name and when the rule received it. The service's own shadow
 * writes go through the data-plane API, which publishes nothing on that topic: the rule (and the
 * Lambda) run for device reports only. Pure.
 */
import { z } from 'zod';
import { faultsFromZod } from '../../domain/deployment/faults.ts';
import { err, type Fault, ok, type Result } from '../../domain/result.ts';

const sectionSchema = z.record(z.string(), z.unknown());

const eventSchema = z.object({
  thingName: z.string().min(1).max(128),
  /** Epoch ms, the rule's `timestamp()`. */
  receivedAt: z.number().int().min(0),
  state: z.object({ desired: sectionSchema.nullish(), reported: sectionSchema.nullish() }).nullish(),
});

/** What the acknowledgement needs from one device update request. */
export interface DeviceReportEvent {
  readonly thingName: string;
  /** When the rule received it, epoch ms. */
  readonly receivedAt: number;
  /** `state.reported.ota`, whatever it is (undefined when absent). */
  readonly reportedOta: unknown;
  /**
   * The device cleared `desired.ota` in the same request (its terminal report, version-locked so it
   * never clears a newer deployment's document): nothing is left for the service to trim.
   */
  readonly clearsDesired: boolean;
}

export interface ReportEventInvalid {
  readonly code: 'EVENT_INVALID';
  readonly message: string;
  readonly faults: readonly Fault[];
}

/** Never throws: a malformed event is a value, so one bad message cannot make the Lambda retry forever. */
export function parseDeviceReportEvent(input: unknown): Result<DeviceReportEvent, ReportEventInvalid> {
  const parsed = eventSchema.safeParse(input);
  if (!parsed.success) {
    return err({
      code: 'EVENT_INVALID',
      message: 'not a device update request on the ota shadow',
      faults: faultsFromZod(parsed.error),
    });
  }
  const { thingName, receivedAt, state } = parsed.data;
  return ok({
    thingName,
    receivedAt,
    reportedOta: state?.reported?.ota,
    clearsDesired: state?.desired != null && 'ota' in state.desired && state.desired.ota === null,
  });
}
