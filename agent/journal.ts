import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import type { DeviceReportedState } from '../lambdas/domain/deployment/index.ts';
import { compareVersions, type UpdateId } from '../lambdas/domain/manifest/index.ts';
import type { StepResult } from './codes.ts';
import { readJsonFile, writeFileAtomic } from './fs-atomic.ts';

/**
 * The agent's memory across crashes and reboots, in its state directory:
 * - `journal.json`: the deployment at work, each unit of work's state (a step, or a child step on
 *   one component), and the terminal result with whether it was reported. Written before and after
 *   every step, atomically, so a restart never re-runs a completed step, resumes the one in flight
 *   by asking its handler first, and never reports a result that belongs to another deployment.
 * - `installed.json`: the update installed last and the version installed per provider/name (the
 *   downgrade check).
 */

const updateIdShape = z.object({ provider: z.string(), name: z.string(), version: z.string() });
const stepResultShape = z.object({
  resultCode: z.number(),
  extendedResultCode: z.number(),
  resultDetails: z.string().optional(),
});

export const unitStates = ['started', 'done', 'skipped', 'reboot_pending'] as const;
export type UnitState = (typeof unitStates)[number];

const unitShape = z.object({ state: z.enum(unitStates), result: stepResultShape.optional() });

const terminalShape = z.object({
  state: z.enum(['succeeded', 'failed', 'canceled', 'skipped', 'incompatible']),
  lastResult: z.object({
    resultCode: z.number(),
    extendedResultCode: z.number(),
    resultDetails: z.string().optional(),
    stepResults: z.record(z.string(), stepResultShape).optional(),
  }),
  installedUpdateId: updateIdShape.optional(),
});

const journalShape = z.object({
  deploymentId: z.string(),
  attempt: z.number(),
  updateId: updateIdShape,
  phase: z.enum(['working', 'awaiting_reboot', 'terminal']),
  units: z.record(z.string(), unitShape),
  terminal: terminalShape.optional(),
  reportedTerminal: z.boolean(),
  /** The signed manifest verified at the start, so a resumed attempt needs no new grant for it. */
  signed: z.object({ manifest: z.string(), signature: z.string() }).optional(),
});

export type SignedManifest = NonNullable<z.infer<typeof journalShape>['signed']>;

export type TerminalState = Extract<
  DeviceReportedState,
  'succeeded' | 'failed' | 'canceled' | 'skipped' | 'incompatible'
>;
export type TerminalOutcome = z.infer<typeof terminalShape>;
export type JournalEntry = z.infer<typeof journalShape>;
export type UnitRecord = z.infer<typeof unitShape>;

const installedShape = z.object({
  installedUpdateId: updateIdShape.optional(),
  versions: z.record(z.string(), z.string()),
});
export type InstalledState = z.infer<typeof installedShape>;

/** Provider and name, case-insensitively: the series a version belongs to (ADR 0001's identity). */
export const seriesKey = (id: UpdateId): string => `${id.provider.toLowerCase()}/${id.name.toLowerCase()}`;

export class Journal {
  readonly #dir: string;
  #entry: JournalEntry | undefined;
  #installed: InstalledState;

  private constructor(dir: string, entry: JournalEntry | undefined, installed: InstalledState) {
    this.#dir = dir;
    this.#entry = entry;
    this.#installed = installed;
  }

  /** Opens (or starts) the journal in `stateDir`. A file that does not parse counts as absent. */
  static async open(stateDir: string): Promise<Journal> {
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    const entry = journalShape.safeParse(await readJsonFile(join(stateDir, 'journal.json')));
    const installed = installedShape.safeParse(await readJsonFile(join(stateDir, 'installed.json')));
    return new Journal(
      stateDir,
      entry.success ? entry.data : undefined,
      installed.success ? installed.data : { versions: {} },
    );
  }

  get current(): JournalEntry | undefined {
    return this.#entry;
  }

  get installed(): InstalledState {
    return this.#installed;
  }

  /** True when the journal is about this deployment attempt. */
  isFor(deploymentId: string, attempt: number): boolean {
    return this.#entry?.deploymentId === deploymentId && this.#entry.attempt === attempt;
  }

  /** Starts a new deployment attempt, forgetting the previous one (its result was its own). */
  async begin(deploymentId: string, attempt: number, updateId: UpdateId): Promise<JournalEntry> {
    const entry: JournalEntry = {
      deploymentId,
      attempt,
      updateId,
      phase: 'working',
      units: {},
      reportedTerminal: false,
    };
    await this.#save(entry);
    return entry;
  }

  unit(key: string): UnitRecord | undefined {
    return this.#entry?.units[key];
  }

  async setUnit(key: string, unit: UnitRecord): Promise<void> {
    const entry = this.#require();
    await this.#save({ ...entry, units: { ...entry.units, [key]: unit } });
  }

  async setSigned(signed: SignedManifest): Promise<void> {
    await this.#save({ ...this.#require(), signed });
  }

  async setPhase(phase: JournalEntry['phase']): Promise<void> {
    await this.#save({ ...this.#require(), phase });
  }

  /** Records the end of the attempt (not yet reported). */
  async finish(terminal: TerminalOutcome): Promise<void> {
    await this.#save({ ...this.#require(), phase: 'terminal', terminal, reportedTerminal: false });
  }

  async markReported(): Promise<void> {
    await this.#save({ ...this.#require(), reportedTerminal: true });
  }

  /** Records an installed update: the device's installed update id, and its version for its series. */
  async recordInstalled(updateId: UpdateId): Promise<void> {
    const key = seriesKey(updateId);
    const installed: InstalledState = {
      installedUpdateId: updateId,
      versions: { ...this.#installed.versions, [key]: updateId.version },
    };
    await writeFileAtomic(join(this.#dir, 'installed.json'), JSON.stringify(installed));
    this.#installed = installed;
  }

  /** The version installed for this update's series, if any. */
  installedVersionOf(updateId: UpdateId): string | undefined {
    return this.#installed.versions[seriesKey(updateId)];
  }

  /** True when `updateId` is older than what is installed for its series. */
  isDowngrade(updateId: UpdateId): boolean {
    const installed = this.installedVersionOf(updateId);
    return installed !== undefined && compareVersions(updateId.version, installed) < 0;
  }

  #require(): JournalEntry {
    if (!this.#entry) throw new Error('the journal has no deployment: call begin() first');
    return this.#entry;
  }

  async #save(entry: JournalEntry): Promise<void> {
    await writeFileAtomic(join(this.#dir, 'journal.json'), JSON.stringify(entry));
    this.#entry = entry;
  }
}

export type { StepResult };
