import type { Command } from 'commander';
import {
  DEFAULTS,
  existingSet,
  diffManifests,
  listPath,
  openSnapshot,
  pathHistory,
  type ManifestEntry,
  formatBytes,
  shown,
} from '@efs-backup/core';

const TYPE_CHAR: Record<ManifestEntry['kind'], string> = { f: '-', d: 'd', l: 'l', p: 'p' };

/** `ls -l`-style mode string, setuid/setgid/sticky included. */
export function modeString(e: ManifestEntry): string {
  const m = e.mode;
  const rwx = (bits: number, special: boolean, s: string, S: string): string =>
    (bits & 4 ? 'r' : '-') +
    (bits & 2 ? 'w' : '-') +
    (special ? (bits & 1 ? s : S) : bits & 1 ? 'x' : '-');
  return (
    TYPE_CHAR[e.kind] +
    rwx((m >> 6) & 7, (m & 0o4000) !== 0, 's', 'S') +
    rwx((m >> 3) & 7, (m & 0o2000) !== 0, 's', 'S') +
    rwx(m & 7, (m & 0o1000) !== 0, 't', 'T')
  );
}

const mtimeOf = (e: ManifestEntry): string =>
  new Date(e.mtimeSec * 1000 + Math.floor(e.mtimeNsec / 1e6)).toISOString();

export function addBrowseCommands(program: Command, setExit: (code: number) => void): void {
  program
    .command('ls')
    .description("list a snapshot's directory from its manifest")
    .argument('[path]', 'a path inside the snapshot', '')
    .requiredOption('--destination <path>', 'the file system that holds the backups')
    .option('--snapshot <selector>', 'latest, daily.0, a stamp or a BackupId', 'latest')
    .option('--label <name>', 'the backup set folder on the destination', DEFAULTS.label)
    .option('--json', 'print the entries as JSON')
    .action(
      async (
        p: string,
        o: { destination: string; snapshot: string; label: string; json?: boolean },
      ) => {
        const { index } = await openSnapshot(o.destination, o.label, o.snapshot);
        try {
          const entries = listPath(index, p);
          if (o.json) {
            process.stdout.write(JSON.stringify(entries, null, 2) + '\n');
          } else {
            for (const e of entries) {
              process.stdout.write(
                `${modeString(e)} ${String(e.uid).padStart(6)} ${String(e.gid).padStart(6)} ${String(e.size).padStart(12)} ` +
                  `${mtimeOf(e)} ${shown(e.name)}${e.kind === 'l' ? ` -> ${shown(e.data)}` : ''}\n`,
              );
            }
          }
        } finally {
          index.close();
        }
        setExit(0);
      },
    );

  program
    .command('diff')
    .description('what was added, removed and changed between two snapshots (from their manifests)')
    .argument('<a>', 'the earlier snapshot (selector)')
    .argument('<b>', 'the later snapshot (selector)')
    .requiredOption('--destination <path>', 'the file system that holds the backups')
    .option('--label <name>', 'the backup set folder on the destination', DEFAULTS.label)
    .option('--json', 'print the differences as JSON')
    .action(
      async (a: string, b: string, o: { destination: string; label: string; json?: boolean }) => {
        const dest = o.destination;
        const A = await openSnapshot(dest, o.label, a);
        const B = await openSnapshot(dest, o.label, b);
        try {
          const lines = diffManifests(A.index, B.index);
          if (o.json) {
            process.stdout.write(JSON.stringify(lines, null, 2) + '\n');
          } else {
            for (const l of lines) {
              const size =
                l.change === 'added'
                  ? formatBytes(l.sizeAfter ?? 0)
                  : l.change === 'removed'
                    ? formatBytes(l.sizeBefore ?? 0)
                    : `${formatBytes(l.sizeBefore ?? 0)} -> ${formatBytes(l.sizeAfter ?? 0)}; ${l.what.join(', ')}`;
              const mark = l.change === 'added' ? '+' : l.change === 'removed' ? '-' : '~';
              process.stdout.write(
                `${mark} ${shown(l.path)}${l.kind === 'd' ? '/' : ''} (${size})\n`,
              );
            }
            const count = (c: string): number => lines.filter((l) => l.change === c).length;
            process.stdout.write(
              `${count('added')} added, ${count('removed')} removed, ${count('changed')} changed\n`,
            );
          }
        } finally {
          A.index.close();
          B.index.close();
        }
        setExit(0);
      },
    );
}

/** `history PATH`: every distinct version of a path across the snapshots. */
export async function printPathHistory(
  o: { destination: string; label: string; json?: boolean },
  p: string,
): Promise<number> {
  const set = existingSet(o.destination, o.label);
  const versions = await pathHistory(set, p);
  if (o.json) {
    process.stdout.write(JSON.stringify(versions, null, 2) + '\n');
    return 0;
  }
  if (versions.length === 0) {
    process.stdout.write(`${shown(p)} is in no snapshot of ${set.dir}\n`);
    return 0;
  }
  for (const v of versions) {
    const first = v.snapshots[0]!;
    const last = v.snapshots[v.snapshots.length - 1]!;
    const span =
      v.snapshots.length === 1
        ? first.stamp
        : `${first.stamp} .. ${last.stamp} (${v.snapshots.length} snapshots)`;
    const e = v.entry;
    const desc =
      e.kind === 'f'
        ? `${formatBytes(e.size)}, sha256 ${e.data.slice(0, 12)}`
        : e.kind === 'l'
          ? `-> ${shown(e.data)}`
          : modeString(e);
    process.stdout.write(`${span}  ${modeString(e)}  modified ${mtimeOf(e)}  ${desc}\n`);
  }
  return 0;
}
