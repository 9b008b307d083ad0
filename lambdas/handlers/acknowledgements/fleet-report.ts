/**
 * What a device report tells the fleet table about the device itself, whatever deployment it is
 * in: its installed update and its compatibility properties. Pure.
 */
import type { DeviceReportFacts } from '../../adapters/fleet-store.ts';
import type { ReportedOta } from '../../domain/deployment/index.ts';

export function fleetFactsOf(ota: ReportedOta, reportedAt: number): DeviceReportFacts {
  return {
    ...(ota.installedUpdateId ? { installedUpdateId: ota.installedUpdateId } : {}),
    ...(ota.compatibility ? { compatibility: ota.compatibility } : {}),
    lastReportAt: reportedAt,
  };
}
