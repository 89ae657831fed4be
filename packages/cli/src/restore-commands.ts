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

interface VerifyCliOptions {
  destination: string;
  label: string;
  snapshot?: string;
  all?: boolean;
  source?: string;
  checksum?: boolean;
  repair?: boolean;
  json?: boolean;
}

const entries = (n: number): string => `${n} entr${n === 1 ? 'y' : 'ies'}`;

/** `verify`: each snapshot's problems, its damage recorded, and with --repair what healed. */
async function runVerify(o: VerifyCliOptions): Promise<number> {
  const results = await verify({
    destination: o.destination,
    label: o.label,
    ...(o.snapshot !== undefined ? { snapshot: o.snapshot } : {}),
    all: o.all ?? false,
    ...(o.source !== undefined ? { source: o.source } : {}),
    checksum: o.checksum ?? false,
    repair: o.repair ?? false,
  });
  let bad = false;
  const out = (line: string): void => void process.stdout.write(line + '\n');
  for (const v of results) {
    const name = `${v.snapshot.interval}/${v.snapshot.stamp}`;
    const standing = o.repair ? (v.remaining ?? v.problems) : v.problems;
    if (standing.length > 0 || (v.sourceDifferences?.length ?? 0) > 0) bad = true;
    if (o.json) continue;
    // Deleted by a prune while verify ran: not checked, and not damage.
    if (v.skipped !== undefined) {
      out(`skipped: ${v.skipped}`);
      continue;
    }
    if (v.problems.length === 0) {
      out(`ok ${name}: ${formatCount(v.entries)} entries, ${formatBytes(v.bytes)} re-read`);
    } else {
      out(`DAMAGED ${name}: ${v.problems.length} problem(s)`);
      for (const p of v.problems) out(`  ${shown(p)}`);
    }
    for (const n of v.notes) out(`  note: ${n}`);
    for (const r of v.repaired ?? []) out(`  repaired: ${shown(r)}`);
    for (const r of v.notRepaired ?? []) out(`  not repaired: ${shown(r)}`);
    if (v.damage.length > 0 && v.damageFile) {
      const them = v.damage.length === 1 ? 'it' : 'them';
      out(
        `  ${entries(v.damage.length)} recorded as damaged in ${v.damageFile}: the next backup copies ` +
          `${them} anew from the source instead of linking to ${them}` +
          (o.repair ? '' : `; verify --repair --source <dir> heals ${them} in this snapshot`),
      );
    }
    if (o.repair && standing.length > 0) out(`  ${name} still has ${standing.length} problem(s)`);
    if (v.sourceDifferences) {
      out(
        v.sourceDifferences.length === 0
          ? `  the source matches ${name}`
          : `  the source differs from ${name} in ${entries(v.sourceDifferences.length)}:`,
      );
      for (const d of v.sourceDifferences) out(`  ${shown(d)}`);
    }
  }
  if (o.json) process.stdout.write(JSON.stringify(results, null, 2) + '\n');
  return bad ? EXIT.notSuccess : EXIT.ok;
}

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
    .option('--snapshot <selector>', 'the snapshot to check (default: latest)')
    .option('--all', 'check every complete snapshot')
    .option(
      '--source <path>',
      'also report how this live source differs from the snapshot (with --repair: where damaged content is copied from)',
    )
    .option(
      '--checksum',
      "with --source: compare the source's file contents with the manifest's digests too (reads the whole source)",
    )
    .option(
      '--repair',
      'put damaged entries back in place: content from --source where it still holds what the manifest says, mode, owner and times from the manifest',
    )
    .option('--json', 'print the result as JSON')
    .action(async (o: VerifyCliOptions) => setExit(await runVerify(o)));

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
