/**
 * What a device report tells the fleet table about the device itself, whatever deployment it is
 * in: its installed update and its compatibility properties. Pure.
 */
import type { DeviceReportFacts, FleetItem } from '../../adapters/fleet-store.ts';
import { type ReportedOta, sameProperties } from '../../domain/deployment/index.ts';

export function fleetFactsOf(ota: ReportedOta, reportedAt: number): DeviceReportFacts {
  return {
    ...(ota.installedUpdateId ? { installedUpdateId: ota.installedUpdateId } : {}),
    ...(ota.compatibility ? { compatibility: ota.compatibility } : {}),
    lastReportAt: reportedAt,
  };
}

/**
 * Whether an execution's end must write the fleet item (ADR 0040, "Fleet facts"). The terminal
 * execution write already holds the installed update and the report's time, and the device view
 * takes the newest; the fleet item is needed only for what targeting reads from it: a device it
 * does not know yet, or compatibility properties that changed. So a device's updates usually
 * cost no fleet write at all.
 */
export function fleetNeedsWrite(known: FleetItem | undefined, ota: ReportedOta): boolean {
  if (!known) return true;
  if (!ota.compatibility) return false;
  return !known.compatibility || !sameProperties(known.compatibility, ota.compatibility);
}
