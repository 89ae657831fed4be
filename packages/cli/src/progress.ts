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
  // Without an estimate (a first backup has no previous manifest) only the counts show.
  const make = (estimated: boolean): InstanceType<typeof cliProgress.SingleBar> =>
    new cliProgress.SingleBar(
      {
        stream,
        format: estimated
          ? ' {bar} {percentage}% | {entries} entries | {bytes} | {eta_formatted} left'
          : ' {entries} entries | {bytes} | {duration_formatted}',
        hideCursor: true,
        clearOnComplete: true,
        etaBuffer: 20,
      },
      cliProgress.Presets.shades_classic,
    );
  let bar: InstanceType<typeof cliProgress.SingleBar> | null = null;
  return {
    update(p) {
      const total = p.estimatedEntries ?? 0;
      const payload = { entries: formatCount(p.entries), bytes: formatBytes(p.bytes) };
      const value = total > 0 ? Math.min(p.entries, total) : 0;
      if (!bar) {
        bar = make(total > 0);
        bar.start(Math.max(total, 1), value, payload);
      } else {
        bar.setTotal(Math.max(total, 1));
        bar.update(value, payload);
      }
    },
    stop() {
      bar?.stop();
    },
  };
}
