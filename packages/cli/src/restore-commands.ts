import type { Command } from 'commander';
import { EXIT } from './output.js';
import {
  adopt,
  DEFAULTS,
  restore,
  verify,
  type RestoreChange,
  formatBytes,
  formatCount,
  shown,
} from '@efs-backup/core';

function changeLine(c: RestoreChange): string {
  return `${c.action.padEnd(6)} ${shown(c.path)}${c.reasons.length > 0 ? ` (${c.reasons.join(', ')})` : ''}`;
}

export function addRestoreCommands(program: Command, setExit: (code: number) => void): void {
  program
    .command('restore')
    .description(
      'restore a snapshot, a sub-directory or one file into a target (only what differs is written)',
    )
    .requiredOption('--destination <path>', 'the file system that holds the backups')
    .requiredOption('--snapshot <selector>', 'latest, daily.0, daily.3, a stamp or a BackupId')
    .requiredOption(
      '--target <path>',
      'where to restore to (created when missing; may be the live source)',
    )
    .option('--label <name>', 'the backup set folder on the destination', DEFAULTS.label)
    .option('--subdir <path>', 'a directory or file inside the snapshot')
    .option('--delete', 'remove from the target what the snapshot does not hold')
    .option('--dry-run', 'list what would change and write nothing')
    .option('--json', 'print the result as JSON')
    .action(
      async (o: {
        destination: string;
        snapshot: string;
        target: string;
        label: string;
        subdir?: string;
        delete?: boolean;
        dryRun?: boolean;
        json?: boolean;
      }) => {
        const changes: RestoreChange[] = [];
        const r = await restore({
          destination: o.destination,
          label: o.label,
          snapshot: o.snapshot,
          target: o.target,
          ...(o.subdir !== undefined ? { subdir: o.subdir } : {}),
          delete: o.delete ?? false,
          dryRun: o.dryRun ?? false,
          onChange: (c) => changes.push(c),
        });
        if (o.json) {
          process.stdout.write(JSON.stringify({ ...r, changes }, null, 2) + '\n');
        } else {
          if (o.dryRun) for (const c of changes) process.stdout.write(changeLine(c) + '\n');
          const what = `${r.snapshot.interval}/${r.snapshot.stamp}${o.subdir ? `:${o.subdir}` : ''}`;
          process.stdout.write(
            `${o.dryRun ? 'would restore' : 'restored'} ${what} into ${o.target}: ${r.created} created, ${r.updated} updated, ` +
              `${r.deleted} deleted, ${r.linked} linked, ${r.unchanged} unchanged (${formatBytes(r.bytes)} written)\n`,
          );
          for (const w of r.warnings) process.stderr.write(`warning: ${w}\n`);
        }
        setExit(r.warnings.length > 0 ? EXIT.notSuccess : EXIT.ok);
      },
    );

  program
    .command('verify')
    .description('re-read snapshots and check every entry against its manifest')
    .requiredOption('--destination <path>', 'the file system that holds the backups')
    .option('--label <name>', 'the backup set folder on the destination', DEFAULTS.label)
    .option('--snapshot <selector>', 'the snapshot to check', 'latest')
    .option('--all', 'check every complete snapshot')
    .option('--source <path>', 'also report how this live source differs from the snapshot')
    .option('--json', 'print the result as JSON')
    .action(
      async (o: {
        destination: string;
        label: string;
        snapshot: string;
        all?: boolean;
        source?: string;
        json?: boolean;
      }) => {
        const results = await verify({
          destination: o.destination,
          label: o.label,
          snapshot: o.snapshot,
          all: o.all ?? false,
          ...(o.source !== undefined ? { source: o.source } : {}),
        });
        let bad = false;
        for (const v of results) {
          const name = `${v.snapshot.interval}/${v.snapshot.stamp}`;
          if (v.problems.length > 0 || (v.sourceDifferences?.length ?? 0) > 0) bad = true;
          if (o.json) continue;
          // Deleted by a prune while verify ran: not checked, and not damage.
          if (v.skipped !== undefined) {
            process.stdout.write(`skipped: ${v.skipped}\n`);
            continue;
          }
          if (v.problems.length === 0) {
            process.stdout.write(
              `ok ${name}: ${formatCount(v.entries)} entries, ${formatBytes(v.bytes)} re-read\n`,
            );
          } else {
            process.stdout.write(`DAMAGED ${name}: ${v.problems.length} problem(s)\n`);
            for (const p of v.problems) process.stdout.write(`  ${shown(p)}\n`);
          }
          if (v.sourceDifferences) {
            process.stdout.write(
              v.sourceDifferences.length === 0
                ? `  the source matches ${name}\n`
                : `  the source differs from ${name} in ${v.sourceDifferences.length} entr${v.sourceDifferences.length === 1 ? 'y' : 'ies'}:\n`,
            );
            for (const d of v.sourceDifferences) process.stdout.write(`  ${shown(d)}\n`);
          }
        }
        if (o.json) process.stdout.write(JSON.stringify(results, null, 2) + '\n');
        setExit(bad ? EXIT.notSuccess : EXIT.ok);
      },
    );

  program
    .command('adopt')
    .description(
      'turn a backup set of the original AWS solution (daily.0 ... daily.N) into snapshots, in place, copying no data',
    )
    .requiredOption('--destination <path>', 'the file system that holds the backups')
    .requiredOption('--label <name>', 'the folder of the original backup set (its folder label)')
    .option('--json', 'print the adopted snapshots as JSON')
    .action((o: { destination: string; label: string; json?: boolean }) => {
      const adopted = adopt({ destination: o.destination, label: o.label });
      if (o.json) process.stdout.write(JSON.stringify(adopted, null, 2) + '\n');
      else {
        for (const a of adopted) {
          process.stdout.write(
            `${a.from} -> ${a.interval}/${a.stamp} (${formatCount(a.entries)} entries)\n`,
          );
        }
      }
      setExit(EXIT.ok);
    });
}
