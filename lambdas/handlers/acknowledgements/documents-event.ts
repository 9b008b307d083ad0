/**
 * The acknowledgement rule's event: `SELECT *, topic(3) AS thingName FROM
 * '$aws/things/+/shadow/name/ota/update/documents'`, i.e. the shadow service's documents message
 * (`previous`, `current`, `timestamp`, `clientToken`) plus the thing name. Pure.
 */
import { z } from 'zod';
import { faultsFromZod } from '../../domain/deployment/faults.ts';
import { err, type Fault, ok, type Result } from '../../domain/result.ts';

const sectionSchema = z.record(z.string(), z.unknown());

const documentSchema = z.object({
  state: z.object({ desired: sectionSchema.nullish(), reported: sectionSchema.nullish() }).nullish(),
  version: z.int().min(0),
});

const eventSchema = z.object({
  thingName: z.string().min(1).max(128),
  /** Seconds since the epoch, set by the shadow service. */
  timestamp: z.number().min(0),
  previous: documentSchema.nullish(),
  current: documentSchema,
});

/** What the acknowledgement needs from one documents message. */
export interface ShadowDocuments {
  readonly thingName: string;
  /** The shadow's version after the update that produced this message. */
  readonly version: number;
  /** When the shadow service applied the update, epoch ms. */
  readonly timestampMs: number;
  /** `current.state.reported.ota`, whatever it is (undefined when absent). */
  readonly reportedOta: unknown;
  /** `previous.state.reported.ota`. */
  readonly previousReportedOta: unknown;
  /** `current.state.desired.ota`: whose document the shadow holds now (trim and cancel check it). */
  readonly desiredOta: unknown;
}

export interface DocumentsEventInvalid {
  readonly code: 'EVENT_INVALID';
  readonly message: string;
  readonly faults: readonly Fault[];
}

/** Never throws: a malformed event is a value, so one bad message cannot make the Lambda retry forever. */
export function parseDocumentsEvent(input: unknown): Result<ShadowDocuments, DocumentsEventInvalid> {
  const parsed = eventSchema.safeParse(input);
  if (!parsed.success) {
    return err({
      code: 'EVENT_INVALID',
      message: 'not a shadow documents event',
      faults: faultsFromZod(parsed.error),
    });
  }
  const { thingName, timestamp, previous, current } = parsed.data;
  return ok({
    thingName,
    version: current.version,
    timestampMs: Math.round(timestamp * 1000),
    reportedOta: current.state?.reported?.ota,
    previousReportedOta: previous?.state?.reported?.ota,
    desiredOta: current.state?.desired?.ota,
  });
}

/** Structural equality of JSON values, key order ignored (the shadow service may reorder keys). */
export function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const aKeys = Object.keys(a);
  const bKeys = Object.keys(b);
  if (aKeys.length !== bKeys.length) return false;
  const bRecord = b as Record<string, unknown>;
  const aRecord = a as Record<string, unknown>;
  return aKeys.every((key) => Object.hasOwn(bRecord, key) && sameJson(aRecord[key], bRecord[key]));
}

/**
 * True when this update changed what the device reports. Our own writes to desired (the fan-out,
 * a cancel, a trim) also produce documents messages; they carry the device's report unchanged and
 * need no read or write at all. A report whose earlier message was lost is still applied: the
 * reconciliation sweep re-reads the shadow.
 */
export function reportChanged(documents: ShadowDocuments): boolean {
  return !sameJson(documents.reportedOta, documents.previousReportedOta);
}
