import { mkdir, readFile } from 'node:fs/promises';
import type { UpdateId } from '../lambdas/domain/manifest/index.ts';
import { err, ok, type Result } from '../lambdas/domain/result.ts';
import type { TrustedKey } from '../lambdas/domain/signing/index.ts';
import { type AuthorizationPort, GrantSource } from './authorization.ts';
import type { ReportRejected, ShadowDelta, ShadowPort } from './channels.ts';
import { type AgentError, agentError, failureOf } from './codes.ts';
import { type DesiredOtaHint, deploymentHintOf, desiredFromDelta, readDesiredOta } from './desired.ts';
import { downloadFile, type ExpectedFile, type RetryPolicy } from './downloader.ts';
import type { Component, HandlerRegistry } from './handlers/types.ts';
import type { Journal, JournalEntry, SignedManifest, TerminalOutcome } from './journal.ts';
import type { Logger } from './log.ts';
import { pathInside, safeName } from './paths.ts';
import { buildReportedOta, terminalReport } from './report.ts';
import { type Refusal, type VerifiedUpdate, type VerifyOptions, verifyDesired } from './verify.ts';
import { runWorkflow, STOP, type WorkflowDeps } from './workflow.ts';

export interface AgentDeps {
  readonly thingName: string;
  readonly journal: Journal;
  readonly shadow: ShadowPort;
  readonly authorization: AuthorizationPort;
  readonly handlers: HandlerRegistry;
  readonly components: readonly Component[];
  /** The device's compatibility properties (reported, and matched against manifests). */
  readonly compatibility: Readonly<Record<string, string>>;
  readonly trustedKeys: readonly TrustedKey[];
  readonly workDir: string;
  /** S3 endpoint for STS-mode downloads (the local S3); default AWS. */
  readonly s3Endpoint?: string;
  /** Epoch ms. */
  readonly now: () => number;
  readonly log: Logger;
  /** Asks the system to reboot (the agent resumes from its journal after). */
  readonly requestReboot: () => Promise<Result<void, AgentError>>;
  readonly download?: {
    readonly retry?: RetryPolicy;
    readonly idleTimeoutMs?: number;
    readonly reserveBytes?: number;
    readonly freeBytes?: (dir: string) => Promise<number>;
  };
  /**
   * Send download progress at most this often, and each state (downloading, installing, applying)
   * as it is entered; 0 sends neither (the default: reports cost money).
   */
  readonly progressIntervalMs?: number;
}

interface Running {
  readonly deploymentId: string;
  readonly attempt: number;
  readonly controller: AbortController;
  /** Set when a newer deployment replaced this one: its end is not reported. */
  superseded: boolean;
  done: Promise<void>;
}

/**
 * The deployment whose desired document the agent acts on, and the shadow version it expects once
 * its own reports so far are applied: its terminal report clears `desired.ota` at that version, so
 * a newer document written meanwhile (a supersede, a cancel) makes the clear fail (409) instead of
 * erasing it.
 */
interface DesiredLock {
  readonly deploymentId: string;
  readonly attempt: number;
  readonly version: number;
}

/** A refused report is retried by reading the shadow again, after this long (doubling, capped). */
const RESYNC_DELAY_MS = { first: 1000, max: 60_000 } as const;

/** A signature verified once may outlive its expiry while its deployment resumes after a reboot. */
const RESUME_CLOCK_TOLERANCE_SECONDS = 366 * 24 * 3600;

/**
 * The device agent's core: reads the `ota` shadow (on every connect, and each delta merged into
 * what it read), decides what the desired document asks of it, runs verified deployments one at a
 * time, and reports into `reported.ota` sparingly: the terminal state (the download authorization
 * records `downloading`), and states and progress only when configured to.
 * Decisions are serialized; a running deployment can be canceled (between steps) or superseded.
 */
export class Agent {
  readonly #deps: AgentDeps;
  #version = -1;
  #running: Running | undefined;
  #queue: Promise<void> = Promise.resolve();
  #lastProgressAt = 0;
  #lock: DesiredLock | undefined;
  #resyncDelayMs: number = RESYNC_DELAY_MS.first;
  #resyncTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(deps: AgentDeps) {
    this.#deps = deps;
    deps.shadow.onDelta((delta) => this.onDelta(delta));
    deps.shadow.onRejected((rejected) => this.#onReportRejected(rejected));
  }

  /** Reads the shadow and acts on it: call on every (re)connect so an offline device catches up. */
  sync(): Promise<void> {
    return this.#enqueue(() => this.#readAndAct());
  }

  /**
   * A delta holds only the desired keys that differ from reported. The service repeats the ids
   * under `job`, which the agent never reports, so a new deployment's delta is the whole document
   * and is acted on as it is. Anything else (a cancel, a repeat of a finished deployment, an
   * unknown shape) is a cue to read the whole shadow. Older or repeated deltas are skipped.
   */
  onDelta(delta: ShadowDelta): void {
    void this.#enqueue(async () => {
      if (delta.version <= this.#version) return;
      const desired = desiredFromDelta(delta.state.ota);
      const finished = desired && this.#deps.journal.isFor(desired.deploymentId, desired.attempt);
      if (!desired || finished) return this.#readAndAct();
      this.#version = delta.version;
      await this.#act(desired, undefined, delta.version);
    });
  }

  async #readAndAct(): Promise<void> {
    const snapshot = await this.#deps.shadow.get();
    if (!snapshot.ok) {
      this.#deps.log.warn('cannot read the ota shadow', {
        code: snapshot.error.code,
        message: snapshot.error.message,
      });
      return;
    }
    this.#version = snapshot.value?.version ?? 0;
    await this.#act(snapshot.value?.desired?.ota, snapshot.value?.reported?.ota ?? null, this.#version);
  }

  /** Resolves once the queue is drained and no deployment is running. */
  async idle(): Promise<void> {
    await this.#queue;
    await this.#running?.done;
    await this.#queue;
  }

  /** Stops the running deployment without reporting (the process is going away; the journal resumes it). */
  async stop(): Promise<void> {
    clearTimeout(this.#resyncTimer);
    this.#resyncTimer = undefined;
    const running = this.#running;
    if (running) {
      running.superseded = true;
      running.controller.abort(STOP);
      await running.done;
    }
    await this.#queue;
  }

  #enqueue(task: () => Promise<void>): Promise<void> {
    const next = this.#queue.then(task).catch((e: unknown) => {
      this.#deps.log.error('agent task failed', { error: e instanceof Error ? e.message : String(e) });
    });
    this.#queue = next;
    return next;
  }

  /**
   * `reportedOta`: what the shadow says was reported (null when nothing); `seenAt`: the shadow
   * version in which `desiredOta` was seen.
   */
  async #act(desiredOta: unknown, reportedOta: unknown, seenAt: number): Promise<void> {
    const { journal, log } = this.#deps;
    const read = readDesiredOta(desiredOta);
    if (!read.ok) return this.#refuseUnreadable(desiredOta, read.error);
    const desired = read.value;
    this.#lock = desired
      ? { deploymentId: desired.deploymentId, attempt: desired.attempt, version: seenAt }
      : undefined;
    if (!desired) {
      if (reportedOta === null) await this.#report(buildReportedOta(this.#idleReport()));
      return;
    }
    const running = this.#running;
    if (running) {
      const same = running.deploymentId === desired.deploymentId && running.attempt === desired.attempt;
      if (same && desired.action === 'cancel') {
        log.info('cancel requested', { deploymentId: desired.deploymentId });
        running.controller.abort();
      }
      // The same deployment again is a duplicate delta: ignored.
      if (same) return;
      log.info('superseded by a newer deployment', { deploymentId: running.deploymentId });
      running.superseded = true;
      running.controller.abort(STOP);
      await running.done;
    }
    const entry = journal.isFor(desired.deploymentId, desired.attempt) ? journal.current : undefined;
    if (entry?.phase === 'terminal' && entry.terminal) {
      // Finished already: say so again only if the report was lost (never a result of another deployment).
      if (!entry.reportedTerminal || !reportShows(reportedOta, entry)) {
        await this.#reportTerminal(entry, entry.terminal);
      }
      return;
    }
    if (desired.action === 'cancel') return this.#cancelNotStarted(desired, entry);
    await this.#start(desired, entry !== undefined);
  }

  async #refuseUnreadable(desiredOta: unknown, error: AgentError): Promise<void> {
    const ids = deploymentHintOf(desiredOta);
    this.#deps.log.warn('desired.ota is unusable', { message: error.message, ...ids });
    if (!ids.deploymentId || this.#deps.journal.isFor(ids.deploymentId, ids.attempt ?? 1)) return;
    await this.#report(
      buildReportedOta({
        state: 'failed',
        deploymentId: ids.deploymentId,
        attempt: ids.attempt ?? 1,
        lastResult: failureOf(error),
        ...this.#installed(),
        compatibility: this.#deps.compatibility,
      }),
    );
  }

  async #cancelNotStarted(desired: DesiredOtaHint, entry: JournalEntry | undefined): Promise<void> {
    const { journal } = this.#deps;
    if (!entry) await journal.begin(desired.deploymentId, desired.attempt, desired.updateId);
    const outcome: TerminalOutcome = {
      state: 'canceled',
      lastResult: failureOf(agentError('CANCELED', 'canceled before it started')),
    };
    await journal.finish(outcome);
    const current = journal.current;
    if (current) await this.#reportTerminal(current, outcome);
  }

  /**
   * The signed manifest comes with the download authorization (ADR 0010), then everything is
   * checked before anything runs (verify.ts). A refused or unanswered authorization fails the
   * deployment with its code, as it would have failed the first download.
   */
  async #verifySigned(
    desired: DesiredOtaHint,
    grants: GrantSource,
    resuming: boolean,
    fetchDetached: VerifyOptions['fetchDetached'],
  ): Promise<Result<{ readonly update: VerifiedUpdate; readonly signed: SignedManifest }, Refusal>> {
    const deps = this.#deps;
    const signed = await this.#signedManifest(desired, grants, resuming);
    if (!signed.ok) return err({ state: 'failed', error: signed.error });
    const verified = await verifyDesired(
      { ...desired, ...signed.value },
      {
        trustedKeys: deps.trustedKeys,
        compatibility: deps.compatibility,
        now: new Date(deps.now()),
        ...(resuming
          ? { clockToleranceSeconds: RESUME_CLOCK_TOLERANCE_SECONDS }
          : { isDowngrade: (id: UpdateId) => deps.journal.isDowngrade(id) }),
        fetchDetached,
      },
    );
    return verified.ok ? ok({ update: verified.value, signed: signed.value }) : verified;
  }

  /**
   * The signed manifest of a deployment this device resumes (after a crash or the reboot a step
   * asked for) is the one it verified before, kept in its journal: finishing the update needs no
   * answer from the service, which may be slow to reach after a boot or may no longer authorize a
   * deployment that ran past its deadline. Otherwise it comes with the download grant.
   */
  async #signedManifest(
    desired: DesiredOtaHint,
    grants: GrantSource,
    resuming: boolean,
  ): Promise<Result<SignedManifest, AgentError>> {
    const { journal } = this.#deps;
    const kept = journal.isFor(desired.deploymentId, desired.attempt) ? journal.current?.signed : undefined;
    if (resuming && kept) return ok(kept);
    return grants.signedManifest();
  }

  async #keepSigned(desired: DesiredOtaHint, signed: SignedManifest): Promise<void> {
    const { journal } = this.#deps;
    if (!journal.isFor(desired.deploymentId, desired.attempt))
      await journal.begin(desired.deploymentId, desired.attempt, desired.updateId);
    await journal.setSigned(signed);
  }

  async #start(desired: DesiredOtaHint, resuming: boolean): Promise<void> {
    const deps = this.#deps;
    const log = deps.log.child({ deploymentId: desired.deploymentId, attempt: desired.attempt });
    const controller = new AbortController();
    const grants = new GrantSource({
      deploymentId: desired.deploymentId,
      attempt: desired.attempt,
      port: deps.authorization,
      now: deps.now,
      ...(deps.s3Endpoint ? { s3Endpoint: deps.s3Endpoint } : {}),
    });
    const fetchFile = this.#fileFetcher(grants);
    const verified = await this.#verifySigned(desired, grants, resuming, async (fileId, expected) => {
      const folder = pathInside(deps.workDir, safeName(desired.deploymentId), 'manifest');
      if (!folder.ok) return folder;
      await mkdir(folder.value, { recursive: true, mode: 0o700 });
      const path = `${folder.value}/${safeName(fileId)}.json`;
      const fetched = await fetchFile(fileId, expected, path, controller.signal);
      return fetched.ok ? ok(new Uint8Array(await readFile(path))) : fetched;
    });
    if (!verified.ok) {
      log.warn('update refused', { code: verified.error.error.code, message: verified.error.error.message });
      if (!resuming) await deps.journal.begin(desired.deploymentId, desired.attempt, desired.updateId);
      const outcome: TerminalOutcome = {
        state: verified.error.state,
        lastResult: failureOf(verified.error.error),
      };
      await deps.journal.finish(outcome);
      const entry = deps.journal.current;
      if (entry) await this.#reportTerminal(entry, outcome);
      return;
    }
    // Kept once verified: a resume after a crash or reboot verifies against it without the service.
    if (!resuming) await this.#keepSigned(desired, verified.value.signed);
    const { update } = verified.value;
    log.info(resuming ? 'resuming update' : 'starting update', { updateId: update.updateId });
    const running: Running = {
      deploymentId: update.deploymentId,
      attempt: update.attempt,
      controller,
      superseded: false,
      done: Promise.resolve(),
    };
    const workflowDeps: WorkflowDeps = {
      journal: deps.journal,
      handlers: deps.handlers,
      components: deps.components,
      workDir: deps.workDir,
      fetchFile,
      log,
      requestReboot: deps.requestReboot,
      // The download authorization already told the service the device is downloading (ADR 0040):
      // each report is a metered shadow operation, message and rule run, so states are reported
      // only when the device is configured to report progress.
      onState: async (state, step) => {
        if ((deps.progressIntervalMs ?? 0) <= 0) return;
        await this.#report(
          buildReportedOta({
            state,
            deploymentId: update.deploymentId,
            attempt: update.attempt,
            updateId: update.updateId,
            progress: { step },
            ...this.#installed(),
            compatibility: deps.compatibility,
          }),
        );
      },
    };
    this.#running = running;
    running.done = (async () => {
      try {
        const end = await runWorkflow(workflowDeps, update, controller.signal);
        if (running.superseded || end.kind === 'interrupted') return;
        if (end.kind === 'reboot_pending') {
          await this.#report(
            buildReportedOta({
              state: 'applying',
              deploymentId: update.deploymentId,
              attempt: update.attempt,
              updateId: update.updateId,
              ...this.#installed(),
              compatibility: deps.compatibility,
            }),
          );
          return;
        }
        const entry = deps.journal.current;
        if (entry) await this.#reportTerminal(entry, end.outcome);
        log.info('update ended', { state: end.outcome.state, resultCode: end.outcome.lastResult.resultCode });
      } catch (e) {
        log.error('update crashed', { error: e instanceof Error ? e.message : String(e) });
      } finally {
        if (this.#running === running) this.#running = undefined;
      }
    })();
  }

  #fileFetcher(grants: GrantSource) {
    const deps = this.#deps;
    return async (
      fileId: string,
      expected: ExpectedFile,
      destination: string,
      signal: AbortSignal,
    ): Promise<Result<void, AgentError>> => {
      const result = await downloadFile({
        fileId,
        expected,
        destination,
        source: grants,
        signal,
        ...(deps.download?.retry ? { retry: deps.download.retry } : {}),
        ...(deps.download?.idleTimeoutMs ? { idleTimeoutMs: deps.download.idleTimeoutMs } : {}),
        ...(deps.download?.reserveBytes !== undefined ? { reserveBytes: deps.download.reserveBytes } : {}),
        ...(deps.download?.freeBytes ? { freeBytes: deps.download.freeBytes } : {}),
        onProgress: (bytes, total) => this.#progress(bytes, total),
      });
      if (!result.ok) return result;
      deps.log.debug('file verified', {
        fileId,
        bytes: result.value.bytes,
        resumedFrom: result.value.resumedFrom,
      });
      return ok(undefined);
    };
  }

  #progress(bytes: number, totalBytes: number): void {
    const interval = this.#deps.progressIntervalMs ?? 0;
    const running = this.#running;
    const entry = this.#deps.journal.current;
    if (interval <= 0 || !running || !entry) return;
    const now = this.#deps.now();
    if (now - this.#lastProgressAt < interval) return;
    this.#lastProgressAt = now;
    void this.#report(
      buildReportedOta({
        state: 'downloading',
        deploymentId: entry.deploymentId,
        attempt: entry.attempt,
        updateId: entry.updateId,
        progress: { bytes, totalBytes },
        ...this.#installed(),
        compatibility: this.#deps.compatibility,
      }),
    );
  }

  #installed(): { installedUpdateId?: UpdateId } {
    const id = this.#deps.journal.installed.installedUpdateId;
    return id ? { installedUpdateId: id } : {};
  }

  #idleReport() {
    return { state: 'idle' as const, ...this.#installed(), compatibility: this.#deps.compatibility };
  }

  async #reportTerminal(entry: JournalEntry, outcome: TerminalOutcome): Promise<void> {
    const lock = this.#lock;
    const ownsDesired = lock?.deploymentId === entry.deploymentId && lock.attempt === entry.attempt;
    const reported = await this.#report(
      terminalReport(
        entry,
        outcome,
        this.#deps.journal.installed.installedUpdateId,
        this.#deps.compatibility,
      ),
      // Closes the delta itself: no trim (a shadow operation and a message) is left to the service.
      ownsDesired ? lock.version : undefined,
    );
    // Sent is not yet applied: a refusal comes back on update/rejected, and the resync then sends
    // it again (the shadow does not show it); a report never sent is sent on the next connect.
    if (reported && this.#deps.journal.isFor(entry.deploymentId, entry.attempt))
      await this.#deps.journal.markReported();
  }

  async #report(ota: Record<string, unknown>, clearDesiredAt?: number): Promise<boolean> {
    const result = await this.#deps.shadow.report(ota, clearDesiredAt);
    if (!result.ok) {
      this.#deps.log.warn('report not sent', { state: ota.state, message: result.error.message });
      return false;
    }
    // Every update the shadow applies moves its version on by one, ours included.
    if (this.#lock) this.#lock = { ...this.#lock, version: this.#lock.version + 1 };
    return true;
  }

  /**
   * The shadow refused a report: what it holds is no longer what the agent thinks (409: someone
   * wrote meanwhile), or it was busy (429, 5xx). Reading the shadow again puts both right: the
   * journal re-sends a terminal report the shadow does not show, at the version just read.
   */
  #onReportRejected(rejected: ReportRejected): void {
    this.#deps.log.warn('report refused by the shadow', { code: rejected.code, message: rejected.message });
    this.#lock = undefined;
    if (this.#resyncTimer) return;
    const delay = this.#resyncDelayMs;
    this.#resyncDelayMs = Math.min(RESYNC_DELAY_MS.max, delay * 2);
    this.#resyncTimer = setTimeout(() => {
      this.#resyncTimer = undefined;
      void this.sync();
    }, delay);
    this.#resyncTimer.unref?.();
  }
}

/** True when a reported.ota read from the shadow shows this journaled terminal outcome. */
function reportShows(reportedOta: unknown, entry: JournalEntry): boolean {
  if (typeof reportedOta !== 'object' || reportedOta === null) return false;
  const r = reportedOta as Record<string, unknown>;
  return (
    r.deploymentId === entry.deploymentId && r.attempt === entry.attempt && r.state === entry.terminal?.state
  );
}
