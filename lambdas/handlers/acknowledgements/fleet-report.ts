/**
 * What a device report tells the fleet table about the device itself, whatever deployment it is
 * in: its installed update and its compatibility properties. Pure.
 */
import type { DeviceReportFacts } from '../../adapters/fleet-store.ts';
import { type ReportedOta, sameUpdateId } from '../../domain/deployment/index.ts';
import type { UpdateId } from '../../domain/manifest/index.ts';
import { sameJson } from './documents-event.ts';

function installedOf(value: unknown): UpdateId | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const { provider, name, version } = value as Record<string, unknown>;
  return typeof provider === 'string' && typeof name === 'string' && typeof version === 'string'
    ? { provider, name, version }
    : undefined;
}

function previousOf(previous: unknown): { installed?: UpdateId; compatibility?: unknown } {
  if (typeof previous !== 'object' || previous === null) return {};
  const record = previous as Record<string, unknown>;
  const installed = installedOf(record.installedUpdateId);
  return { ...(installed ? { installed } : {}), compatibility: record.compatibility };
}

/**
 * The fleet facts of a report, and whether they differ from the previous report's: a device
 * repeats its compatibility in every report, and a write per progress report would cost more
 * than the whole rest of the acknowledgement.
 */
export function fleetReportOf(
  ota: ReportedOta,
  shadow: { readonly timestampMs: number; readonly previousReportedOta?: unknown },
): { readonly report: DeviceReportFacts; readonly changed: boolean } {
  const report: DeviceReportFacts = {
    ...(ota.installedUpdateId ? { installedUpdateId: ota.installedUpdateId } : {}),
    ...(ota.compatibility ? { compatibility: ota.compatibility } : {}),
    lastReportAt: shadow.timestampMs,
  };
  if (!ota.installedUpdateId && !ota.compatibility) return { report, changed: false };
  const before = previousOf(shadow.previousReportedOta);
  const installedChanged =
    ota.installedUpdateId !== undefined &&
    (before.installed === undefined || !sameUpdateId(before.installed, ota.installedUpdateId));
  const compatibilityChanged =
    ota.compatibility !== undefined && !sameJson(before.compatibility, ota.compatibility);
  return { report, changed: installedChanged || compatibilityChanged };
}
