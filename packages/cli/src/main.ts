import type { BackupCommandOptions } from './service-commands.js';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import {
  DEFAULTS,
  EfsBackupError,
  existingSet,
  readHeader,
  type BackupStatus,
  formatBytes,
  formatDuration,
  formatCount,
  formatExcludes,
  shown,
  isWindowMinutes,
  MAX_WORKERS,
  WINDOW_RULE,
} from '@efs-backup/core';
import type { BackupResult } from '@efs-backup/core';
import type { RunRecord, RunStatus } from '@efs-backup/service';
import fs from 'node:fs';
import path from 'node:path';
import { addBrowseCommands } from './browse-commands.js';
import { EXIT, table } from './output.js';
import { progressDisplay } from './progress.js';
import { addRestoreCommands } from './restore-commands.js';
import {
  addServiceCommands,
  backupThroughService,
  checkBackupOptions,
  type ServiceBackupResult,
} from './service-commands.js';

/** Exit codes (DESIGN.md): 0 success, 1 ended but not Success, 2 bad input, 3 failed. */
export { EXIT } from './output.js';

/**
 * A record's exit code, as the same situation gets it without a record: `Skipped` is a set
 * another run holds (the command-line backup's LOCKED), 3 as `Failed`.
 */
export function exitCodeFor(status: BackupStatus | RunStatus): number {
  if (status === 'Success') return EXIT.ok;
  if (status === 'Failed' || status === 'Skipped') return EXIT.failed;
  return EXIT.notSuccess;
}

function integer(name: string) {
  return (value: string): number => {
    if (!/^-?\d+$/.test(value.trim()))
      throw new InvalidArgumentError(`${name} must be a whole number, not "${value}"`);
    return Number(value);
  };
}

function rate(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || !(n > 0))
      throw new InvalidArgumentError(`${name} must be a number above 0, not "${value}"`);
    return n;
  };
}

function minutes(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !isWindowMinutes(n))
    throw new InvalidArgumentError(`window must be ${WINDOW_RULE}, not "${value}"`);
  return n;
}

/** A repeatable option's values, in the order given. */
function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

type BackupCliOptions = BackupCommandOptions;

/** The record of DESIGN.md, as --json prints it. */
function recordOf(r: ServiceBackupResult): RunRecord {
  // eslint-disable-next-line @typescript-eslint/no-unused-vars
  const { warnings, snapshotPath, ...figures } = r;
  return figures;
}

async function runBackup(o: BackupCliOptions): Promise<number> {
  const controller = new AbortController();
  const bar = progressDisplay(process.stderr);
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    signals++;
    if (signals > 1) process.exit(130);
    // The progress line goes first, and is not drawn again over the message.
    const cleared = bar.stop();
    process.stderr.write(
      `${cleared ? '' : '\n'}${sig}: stopping gracefully (the partial snapshot is kept; again to quit at once)\n`,
    );
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const started = Date.now();
  let result: ServiceBackupResult;
  try {
    // Through the service: every run is recorded and logged (and notified, for a job).
    result = await backupThroughService(o, {
      signal: controller.signal,
      onProgress: (p) => bar.update(p),
      say: (line) => bar.say(line),
    });
  } finally {
    bar.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  if (o.json) {
    process.stdout.write(JSON.stringify(recordOf(result), null, 2) + '\n');
  } else {
    const lines = [
      `${result.Status}: ${result.Message}`,
      `  ${formatCount(result.NumberOfFiles)} entries (${formatBytes(result.TotalFileSize)}): ` +
        `${formatCount(result.NumberOfFilesTransferred)} copied (${formatBytes(result.TotalTransferredFileSize)})` +
        (result.NumberOfFilesCopiedForLinkLimit > 0
          ? `, of which ${formatCount(result.NumberOfFilesCopiedForLinkLimit)} unchanged but copied because a hard link to the previous snapshot failed`
          : '') +
        ', ' +
        `${formatCount(result.NumberOfFilesLinked)} unchanged and linked`,
      `  ${result.SnapshotsPruned} old snapshot(s) pruned; ${result.NumberOfWarnings} warning(s); ${formatDuration(Date.now() - started)}`,
    ];
    if (result.snapshotPath) lines.push(`  ${result.snapshotPath}`);
    process.stdout.write(lines.join('\n') + '\n');
  }
  for (const w of result.warnings.slice(0, 20))
    process.stderr.write(`warning: ${shown(w.path) || '.'}: ${w.message}\n`);
  if (result.NumberOfWarnings > 20)
    process.stderr.write(`warning: ... and ${result.NumberOfWarnings - 20} more\n`);
  return exitCodeFor(result.Status);
}

/** `worker`: one worker of a shared run; what it did, and the run's end when it saw it. */
async function runWorkerCommand(o: {
  job?: string;
  config?: string;
  json?: boolean;
}): Promise<number> {
  const { workerCommand, NothingToJoin } = await import('./workers.js');
  let result: BackupResult | null;
  try {
    result = await workerCommand(o);
    if (result === null) return EXIT.ok;
  } catch (e) {
    if (!(e instanceof NothingToJoin)) throw e;
    process.stderr.write(`efs-backup: ${e.message}\n`);
    return EXIT.notSuccess;
  }
  const me = result.share?.workers.find((w) => w.worker === result.share?.worker);
  if (o.json) {
    process.stdout.write(
      JSON.stringify(
        { Status: result.Status, Message: result.Message, share: result.share },
        null,
        2,
      ) + '\n',
    );
  } else {
    process.stdout.write(
      `${result.Status}: ${result.Message}\n` +
        (me
          ? `  this worker (${me.worker}): ${formatCount(me.units)} unit(s), ${formatCount(me.entries)} entries (${formatBytes(me.bytes)}), ${formatDuration(me.ms)}\n`
          : ''),
    );
  }
  for (const w of result.warnings.slice(0, 20))
    process.stderr.write(`warning: ${shown(w.path) || '.'}: ${w.message}\n`);
  return exitCodeFor(result.Status);
}

interface SnapshotRow {
  interval: string;
  stamp: string;
  path: string;
  latest: boolean;
  BackupId: string | null;
  NumberOfFiles: number | null;
  TotalFileSize: number | null;
  /** What the snapshot left out (its manifest's header); [] for none. */
  Exclude: string[];
  ExcludeIfPresent: string[];
}

async function listSnapshots(o: {
  destination: string;
  label: string;
  json?: boolean;
}): Promise<number> {
  const set = existingSet(o.destination, o.label);
  let latest = '';
  try {
    latest = path.basename(fs.readlinkSync(set.latestLink));
  } catch {
    /* no snapshot yet */
  }
  const rows: SnapshotRow[] = [];
  for (const s of set.snapshots()) {
    // The header only (its first line): checking every manifest in full is verify's job, and
    // on EFS reading a large manifest end to end costs seconds per snapshot.
    const header = readHeader(s.manifest);
    rows.push({
      interval: s.interval,
      stamp: s.stamp,
      path: s.path,
      latest: s.stamp === latest,
      BackupId: header?.BackupId ?? null,
      NumberOfFiles: header?.NumberOfFiles ?? null,
      TotalFileSize: header?.TotalFileSize ?? null,
      Exclude: header?.Exclude ?? [],
      ExcludeIfPresent: header?.ExcludeIfPresent ?? [],
    });
  }
  if (o.json) {
    process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
    return EXIT.ok;
  }
  if (rows.length === 0) {
    process.stdout.write(`no snapshots in ${set.dir}\n`);
    return EXIT.ok;
  }
  const counters = new Map<string, number>();
  // A column for what was left out, once a snapshot left something out.
  const excludes = rows.some((r) => r.Exclude.length || r.ExcludeIfPresent.length);
  const out = rows.map((r) => {
    const n = counters.get(r.interval) ?? 0;
    counters.set(r.interval, n + 1);
    return [
      `${r.interval}.${n}`,
      r.stamp,
      r.NumberOfFiles === null ? '?' : formatCount(r.NumberOfFiles),
      r.TotalFileSize === null ? '?' : formatBytes(r.TotalFileSize),
      ...(excludes ? [formatExcludes(r.Exclude, r.ExcludeIfPresent, 40) || '-'] : []),
      r.latest ? 'latest' : '',
    ];
  });
  const heads = ['SNAPSHOT', 'STAMP', 'ENTRIES', 'SIZE', ...(excludes ? ['EXCLUDES'] : []), ''];
  process.stdout.write(table(heads, out));
  return EXIT.ok;
}

export function buildProgram(setExit: (code: number) => void): Command {
  const program = new Command('efs-backup')
    .description('Scheduled, incremental, browsable backups of one file system onto another')
    .version('0.1.0')
    .exitOverride();

  program
    .command('backup')
    .description('make a snapshot of the source on the destination')
    .option('--source <path>', 'the file system (or directory) to back up')
    .option('--destination <path>', 'the file system that holds the backups')
    .option('--job <name>', "run a configuration's job now, with its settings and notices")
    .option('--config <file>', 'the configuration file of --job (default: efs-backup.yaml)')
    .option('--label <name>', 'the backup set folder on the destination', DEFAULTS.label)
    .option(
      '--interval <word>',
      'the series tag: hourly, daily, weekly, monthly or your own word',
      DEFAULTS.interval,
    )
    .option(
      '--retain <n>',
      'complete snapshots of the interval to keep',
      integer('retain'),
      DEFAULTS.retain,
    )
    .option('--prefix <path>', 'the sub-path of the source to back up', DEFAULTS.prefix)
    .option('--window <minutes>', 'stop gracefully before this many minutes have passed', minutes)
    .option(
      '--concurrency <n>',
      'file-system calls in flight (default: from the file-system type)',
      integer('concurrency'),
    )
    .option(
      '--checksum',
      'hash every source file and compare it with the last snapshot, for changes that keep every stat field (slow: reads everything)',
    )
    .option('--no-xattrs', 'do not keep extended attributes and ACLs')
    .option(
      '--max-mibps <n>',
      'read at most this many MiB per second from the source (gentle on production)',
      rate('max-mibps'),
    )
    .option(
      '--max-ops <n>',
      'make at most this many calls per second on the source',
      rate('max-ops'),
    )
    .option(
      '--exclude <pattern>',
      'leave out what this gitignore-style pattern matches (*.tmp, build/, /cache, !keep); repeatable',
      collect,
    )
    .option(
      '--exclude-from <file>',
      'leave out what the patterns of this file match (one a line, gitignore syntax); repeatable',
      collect,
    )
    .option(
      '--exclude-if-present <name>',
      'leave out the content of each directory holding this name (CACHEDIR.TAG); repeatable',
      collect,
    )
    .option(
      '--workers <n>',
      `worker processes that build the snapshot together (1 to ${MAX_WORKERS}), each with the concurrency and limits above as its own`,
      integer('workers'),
    )
    .option('--json', 'print the run record as JSON')
    .action(async (o: BackupCliOptions, cmd: Command) =>
      setExit(await runBackup(checkBackupOptions(o, cmd))),
    );

  program
    .command('worker')
    .description(
      'join a run of a job started with workers on another host that mounts the same destination',
    )
    .option('--job <name>', 'the job whose run to join')
    .option('--config <file>', 'the configuration file of --job (default: efs-backup.yaml)')
    .option('--json', "print this worker's result as JSON")
    .action(async (o: { job?: string; config?: string; json?: boolean }) =>
      setExit(await runWorkerCommand(o)),
    );

  program
    .command('snapshots')
    .description('list the complete snapshots of a backup set, newest first')
    .requiredOption('--destination <path>', 'the file system that holds the backups')
    .option('--label <name>', 'the backup set folder on the destination', DEFAULTS.label)
    .option('--json', 'print the list as JSON')
    .action(async (o: { destination: string; label: string; json?: boolean }) =>
      setExit(await listSnapshots(o)),
    );

  addRestoreCommands(program, setExit);
  addBrowseCommands(program, setExit);
  addServiceCommands(program, setExit);

  return program;
}

/** Runs the command line; exits the process with the code of DESIGN.md. */
export async function main(argv: string[]): Promise<void> {
  // Output piped into `head` and closed early is not an error of ours.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
  let code: number = EXIT.ok;
  const program = buildProgram((c) => (code = c));
  try {
    await program.parseAsync(argv);
  } catch (e) {
    const failure = failureOf(e);
    code = failure.exitCode;
    // With --json every outcome is a JSON object on stdout: a failure without a record too.
    if (failure.exitCode !== EXIT.ok && wantsJson(argv))
      process.stdout.write(JSON.stringify({ error: failure }, null, 2) + '\n');
  }
  process.exitCode = code;
}

/** --json among the arguments (before a `--` that ends the options). */
function wantsJson(argv: string[]): boolean {
  const end = argv.indexOf('--');
  return (end < 0 ? argv : argv.slice(0, end)).includes('--json');
}

/** What --json prints for a command that ended without its result (README, "--json"). */
export interface CliFailure {
  /** `BAD_INPUT` (exit 2), `LOCKED` or `FAILED` (exit 3). */
  code: 'BAD_INPUT' | 'LOCKED' | 'FAILED';
  message: string;
  exitCode: number;
  /** A configuration's problems, one per line of the message. */
  problems?: string[];
}

/** The error's answer: its exit code and message; the message is said on stderr. */
function failureOf(e: unknown): CliFailure {
  if (e instanceof CommanderError) {
    // Commander has printed its message already.
    const exitCode = e.exitCode === 0 ? EXIT.ok : EXIT.badInput;
    return { code: 'BAD_INPUT', message: e.message.replace(/^error: /, ''), exitCode };
  }
  if (e instanceof EfsBackupError) {
    process.stderr.write(`efs-backup: ${e.message}\n`);
    const problems = (e as { problems?: unknown }).problems;
    return {
      code: e.code,
      message: e.message,
      exitCode: e.code === 'BAD_INPUT' ? EXIT.badInput : EXIT.failed,
      ...(Array.isArray(problems) ? { problems: problems as string[] } : {}),
    };
  }
  const message = e instanceof Error ? e.message : String(e);
  process.stderr.write(`efs-backup: ${message}\n`);
  if (process.env.EFS_BACKUP_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
  return { code: 'FAILED', message, exitCode: EXIT.failed };
}
