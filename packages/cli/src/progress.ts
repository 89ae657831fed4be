import { formatBytes, formatCount } from '@efs-backup/core';
import type { BackupProgress } from '@efs-backup/core';

/** A progress bar on a terminal; nothing when standard error is not one. */
export async function progressBar(stream: NodeJS.WriteStream): Promise<{
  update: (p: BackupProgress) => void;
  stop: () => void;
}> {
  if (!stream.isTTY) return { update: () => {}, stop: () => {} };
  // Loaded only for a terminal: it is a third of the command's start-up time.
  const { default: cliProgress } = await import('cli-progress');
  const bar = new cliProgress.SingleBar(
    {
      stream,
      format: ' {bar} {percentage}% | {entries} entries | {bytes} | {eta_formatted} left',
      hideCursor: true,
      clearOnComplete: true,
      etaBuffer: 20,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(p) {
      const total = p.estimatedEntries ?? 0;
      const payload = { entries: formatCount(p.entries), bytes: formatBytes(p.bytes) };
      // Without an estimate (a first backup) the bar shows counts only.
      const value = total > 0 ? Math.min(p.entries, total) : 0;
      if (!started) {
        bar.start(Math.max(total, 1), value, payload);
        started = true;
      } else {
        bar.setTotal(Math.max(total, 1));
        bar.update(value, payload);
      }
    },
    stop() {
      if (started) bar.stop();
    },
  };
}
