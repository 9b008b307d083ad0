import cliProgress from 'cli-progress';
import type { DeploymentView } from './operator.ts';

/** States shown beside the bar, in the order a device moves through them. */
const shownStates = [
  'queued',
  'notified',
  'downloading',
  'installing',
  'applying',
  'succeeded',
  'skipped',
  'failed',
  'timed_out',
  'canceled',
  'incompatible',
] as const;

const terminalStates = ['succeeded', 'skipped', 'failed', 'timed_out', 'canceled', 'incompatible'] as const;

export function finishedCount(view: DeploymentView): number {
  return terminalStates.reduce((sum, s) => sum + (view.counts[s] ?? 0), 0);
}

export function countsLine(view: DeploymentView): string {
  return shownStates
    .filter((s) => (view.counts[s] ?? 0) > 0)
    .map((s) => `${s} ${view.counts[s]}`)
    .join(' · ');
}

export interface ProgressView {
  update(view: DeploymentView): void;
  stop(): void;
}

/**
 * A live bar on a terminal; on anything else (CI logs, pipes) one line whenever the counts
 * change, so the log reads as a history instead of a smear of carriage returns.
 */
export function startProgress(total: number, stream: NodeJS.WriteStream = process.stdout): ProgressView {
  if (stream.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        format: ' {bar} {percentage}% | {value}/{total} finished | {status} | {counts}',
        hideCursor: true,
        stream,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(Math.max(total, 1), 0, { status: 'scheduled', counts: '' });
    return {
      update: (view) => {
        bar.setTotal(Math.max(view.devices, 1));
        bar.update(finishedCount(view), { status: view.status, counts: countsLine(view) });
      },
      stop: () => bar.stop(),
    };
  }
  let last = '';
  return {
    update: (view) => {
      const line = `${finishedCount(view)}/${view.devices} finished | ${view.status} | ${countsLine(view)}`;
      if (line !== last) stream.write(`${line}\n`);
      last = line;
    },
    stop: () => {},
  };
}
