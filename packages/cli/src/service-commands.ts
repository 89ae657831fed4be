/**
 * The service's commands: `run` (the daemon), `history` (runs, or a path's versions), `status`,
 * and the way `backup` goes through the run lifecycle (records, logs, notices).
 */
import {
  BackupSet,
  badInput,
  DEFAULTS,
  existingSet,
  type BackupProgress,
  type BackupResult,
  type BackupRunOptions,
  type BackupWarning,
  formatBytes,
  formatDuration,
  formatCount,
  formatExcludes,
  readExcludeFile,
} from '@efs-backup/core';
import type {
  Config,
  Job,
  JobSpec,
  RecordStore,
  RunRecord,
  RunStatus,
  SetStatus,
  Staleness,
} from '@efs-backup/service';
import { Command, InvalidArgumentError, Option } from 'commander';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { printPathHistory } from './browse-commands.js';
import { LOG_FORMATS, logFormatFor, logWriter, type LogFormat } from './log-format.js';
import { EXIT, table } from './output.js';

// The service (zod, yaml, pino, SQLite, nodemailer) is loaded by the commands that use it, so the
// other commands start as fast as before.
const service = () => import('@efs-backup/service');
const local = () => import('@efs-backup/service/local');
const runner = () => import('@efs-backup/service/runner');

/**
 * The engine the commands run: a run of its own, or, for a job with `workers` (or `--workers`),
 * this process as one worker of a shared run with the others started beside it.
 */
async function cliEngine(): Promise<(options: BackupRunOptions) => Promise<BackupResult>> {
  const { backup } = await import('@efs-backup/core');
  return async (options) => {
    if (options.workers === undefined) return backup(options);
    const { sharedEngine } = await import('./workers.js');
    return sharedEngine(options.workers)(options);
  };
}

/** The configuration file read when --config is not given (the service's DEFAULT_CONFIG_FILE). */
const DEFAULT_CONFIG_FILE = 'efs-backup.yaml';

/** What `backup` prints and exits with: the record, its first warnings, where the snapshot is. */
export type ServiceBackupResult = RunRecord & {
  warnings: BackupWarning[];
  snapshotPath: string | null;
};

export interface BackupCommandOptions {
  source?: string;
  destination?: string;
  label: string;
  interval: string;
  retain: number;
  prefix: string;
  window?: number;
  concurrency?: number;
  /** --checksum */
  checksum?: boolean;
  /** --no-xattrs gives false */
  xattrs?: boolean;
  /** --max-mibps */
  maxMibps?: number;
  maxOps?: number;
  /** --workers: worker processes that build the snapshot together */
  workers?: number;
  /** --exclude, repeated */
  exclude?: string[];
  /** --exclude-from, repeated */
  excludeFrom?: string[];
  /** --exclude-if-present, repeated */
  excludeIfPresent?: string[];
  json?: boolean;
  job?: string;
  config?: string;
}

/** Options that say what to back up; with --job the configuration says it. */
const JOB_CONFLICTS = [
  'source',
  'destination',
  'label',
  'interval',
  'retain',
  'prefix',
  'window',
  'exclude',
  'excludeFrom',
  'excludeIfPresent',
] as const;

const JOB_SETTINGS = "the job's settings come from the configuration file";

/**
 * Options that another one given replaces are refused, never silently ignored: every command
 * says the same of the same pair.
 */
function refuseGiven(cmd: Command, names: readonly string[], by: string, why: string): void {
  for (const name of names) {
    if (cmd.getOptionValueSource(name) === 'cli')
      throw badInput(
        `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} cannot be given with ${by}: ${why}`,
      );
  }
}

/**
 * Checks `backup`'s options: either --job (from the configuration) or --source and
 * --destination. Throws BAD_INPUT naming the option.
 */
export function checkBackupOptions<T extends BackupCommandOptions>(o: T, cmd: Command): T {
  if (o.job !== undefined) {
    refuseGiven(cmd, JOB_CONFLICTS, '--job', JOB_SETTINGS);
    return o;
  }
  if (o.config !== undefined) throw badInput('--config is used with --job NAME');
  if (o.source === undefined)
    throw badInput("required option '--source <path>' not specified (or --job NAME)");
  if (o.destination === undefined)
    throw badInput("required option '--destination <path>' not specified (or --job NAME)");
  return o;
}

function configFile(file: string | undefined): string {
  return file ?? DEFAULT_CONFIG_FILE;
}

/** A one-off run's status file, so `status` shows it while it goes. */
function oneOffStatus({ writeStatus, removeStatus }: Awaited<ReturnType<typeof runner>>): {
  start: (r: RunRecord) => void;
  progress: (p: BackupProgress) => void;
  end: () => void;
} {
  let current: SetStatus | null = null;
  let last = 0;
  const write = (): void => {
    if (!current) return;
    current.updatedAt = new Date().toISOString();
    try {
      writeStatus(current);
    } catch {
      /* status is a courtesy */
    }
  };
  return {
    start(r) {
      current = {
        key: `backup-${r.BackupId}`,
        job: r.Job,
        destination: r.Destination,
        label: r.Label,
        interval: r.Interval ?? '-',
        schedule: r.Schedule,
        writer: 'backup',
        pid: process.pid,
        host: os.hostname(),
        updatedAt: '',
        nextRun: null,
        running: { BackupId: r.BackupId, StartTime: r.StartTime, progress: null },
        last: null,
      };
      write();
      last = Date.now(); // progress follows every 2 s, not at once (each write is round trips on EFS)
    },
    progress(p) {
      if (!current?.running) return;
      current.running.progress = p;
      if (Date.now() - last < 2000) return;
      last = Date.now();
      write();
    },
    end() {
      if (current) removeStatus(current.destination, current.label, current.key);
    },
  };
}

/**
 * `backup` through the service: a record in the set's SQLite file (or the configuration's), the
 * log in the set's logs, notices for a configuration job. Bad input and a live lock of a
 * command-line backup throw before anything is written (exit 2 or 3).
 */
export async function backupThroughService(
  o: BackupCommandOptions,
  hooks: {
    signal: AbortSignal;
    onProgress: (p: BackupProgress) => void;
    /** A line for the terminal while the run goes (above its progress line). */
    say: (line: string) => void;
  },
): Promise<ServiceBackupResult> {
  const run = await runner();
  const { createServiceLog, runBackup } = run;
  const { localPorts } = await local();
  let job: JobSpec;
  let config: Config | null = null;
  if (o.job !== undefined) {
    const { loadConfig, findJob } = await service();
    config = loadConfig(configFile(o.config));
    job = findJob(config, o.job);
    if (o.concurrency !== undefined) job = { ...job, concurrency: o.concurrency };
    if (o.checksum) job = { ...job, checksum: true };
    if (o.xattrs === false) job = { ...job, xattrs: false };
    if (o.maxMibps !== undefined) job = { ...job, maxMiBps: o.maxMibps };
    if (o.maxOps !== undefined) job = { ...job, maxOps: o.maxOps };
    if (o.workers !== undefined) job = { ...job, workers: o.workers };
  } else {
    // The patterns of --exclude-from files first, then --exclude's: a later `!` re-includes.
    const exclude = [...(o.excludeFrom ?? []).flatMap(readExcludeFile), ...(o.exclude ?? [])];
    job = {
      source: o.source!,
      destination: o.destination!,
      label: o.label,
      interval: o.interval,
      retain: o.retain,
      prefix: o.prefix,
      ...(o.window !== undefined ? { windowMinutes: o.window } : {}),
      ...(o.concurrency !== undefined ? { concurrency: o.concurrency } : {}),
      ...(o.checksum ? { checksum: true } : {}),
      ...(o.xattrs === false ? { xattrs: false } : {}),
      ...(o.maxMibps !== undefined ? { maxMiBps: o.maxMibps } : {}),
      ...(o.maxOps !== undefined ? { maxOps: o.maxOps } : {}),
      ...(o.workers !== undefined ? { workers: o.workers } : {}),
      ...(exclude.length ? { exclude } : {}),
      ...(o.excludeIfPresent ? { excludeIfPresent: o.excludeIfPresent } : {}),
    };
  }
  const status = oneOffStatus(run);
  const log = createServiceLog((line) => {
    const { msg, err } = JSON.parse(line) as { msg?: string; err?: string };
    hooks.say(`warning: ${msg ?? ''}${err ? `: ${err}` : ''}`);
  });
  log.level = 'warn';
  try {
    const outcome = await runBackup(job, localPorts(config), {
      // A configuration job is a scheduled job run now: its refusals are recorded and notified.
      refusals: config ? 'record' : 'throw',
      engine: await cliEngine(),
      signal: hooks.signal,
      log,
      ...(config ? { expireDays: config.records.expireDays } : {}),
      onStart: (r) => status.start(r),
      onProgress: (p) => {
        status.progress(p);
        hooks.onProgress(p);
      },
    });
    return { ...outcome.record, warnings: outcome.warnings, snapshotPath: outcome.snapshotPath };
  } finally {
    status.end();
  }
}

// ---- run ------------------------------------------------------------------------------------

async function runDaemon(o: { config?: string; logFormat?: LogFormat }): Promise<number> {
  const { loadConfig, createServiceLog, Scheduler } = await service();
  const { localPorts } = await local();
  const config = loadConfig(configFile(o.config));
  const write = await logWriter(logFormatFor(o.logFormat, process.stderr), process.stderr);
  const log = createServiceLog(write, {
    pid: process.pid,
    host: os.hostname(),
  });
  const scheduler = new Scheduler({
    config,
    ports: localPorts(config),
    log,
    engine: await cliEngine(),
  });
  log.info(
    { config: config.file, jobs: config.jobs.map((j) => j.name) },
    `efs-backup run: ${config.jobs.length} job(s) from ${config.file}`,
  );
  scheduler.start();
  await new Promise<void>((resolve) => {
    let signals = 0;
    const onSignal = (sig: NodeJS.Signals): void => {
      if (++signals > 1) process.exit(130);
      // The terminal echoed `^C` at the start of a line: the line is cleared for the message.
      if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
      log.info(
        { signal: sig },
        `${sig}: stopping; running backups end Incomplete and are recorded`,
      );
      void scheduler.stop().then(() => {
        process.off('SIGTERM', onSignal);
        process.off('SIGINT', onSignal);
        log.info({}, 'stopped');
        resolve();
      });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  return EXIT.ok;
}

// ---- history --------------------------------------------------------------------------------

interface HistoryOptions {
  destination?: string;
  label: string;
  job?: string;
  config?: string;
  json?: boolean;
  limit?: number;
}

async function listRuns(o: HistoryOptions): Promise<RunRecord[]> {
  const { loadConfig, findJob } = await service();
  const { recordsFileFor, defaultRecordsFile, openExistingRecordStore } = await local();
  const sources: { file: string; job: string | null; label: string }[] = [];
  if (o.job !== undefined || o.destination === undefined) {
    if (o.job === undefined && o.config === undefined && !fs.existsSync(DEFAULT_CONFIG_FILE))
      throw badInput(
        `history needs --destination D [--label L], --job NAME, or a configuration (${DEFAULT_CONFIG_FILE} here, or --config FILE)`,
      );
    const config = loadConfig(configFile(o.config));
    const jobs: Job[] = o.job !== undefined ? [findJob(config, o.job)] : config.jobs;
    for (const j of jobs)
      sources.push({ file: recordsFileFor(config, j), job: j.name, label: j.label });
  } else {
    existingSet(o.destination, o.label);
    const destination = fs.realpathSync(o.destination);
    sources.push({ file: defaultRecordsFile(destination, o.label), job: null, label: o.label });
  }
  const byId = new Map<string, RunRecord>();
  const stores = new Map<string, RecordStore | null>();
  try {
    for (const s of sources) {
      if (!stores.has(s.file)) {
        for (const aside of setAsideFiles(s.file))
          process.stderr.write(
            `note: earlier records of ${s.file} are in ${aside}, set aside because it could not be read\n`,
          );
        const store = await openExistingRecordStore(s.file);
        for (const w of store?.warnings ?? []) process.stderr.write(`warning: ${w}\n`);
        stores.set(s.file, store);
      }
      const store = stores.get(s.file);
      if (!store) continue;
      const rows = await store.list({
        Label: s.label,
        ...(s.job !== null ? { Job: s.job } : {}),
        ...(o.limit !== undefined ? { limit: o.limit } : {}),
      });
      for (const r of rows) byId.set(r.BackupId, await endFromLog(r));
    }
  } finally {
    for (const s of stores.values()) await s?.close();
  }
  const runs = [...byId.values()].sort((a, b) =>
    a.StartTime < b.StartTime ? 1 : a.StartTime > b.StartTime ? -1 : 0,
  );
  return o.limit !== undefined ? runs.slice(0, o.limit) : runs;
}

/**
 * A record still Running whose log says how the run ended (its end could not be written to the
 * records: the destination full): shown as it ended, saying so. The next run records it.
 */
async function endFromLog(r: RunRecord): Promise<RunRecord> {
  if (r.Status !== 'Running' || !r.LogLocation) return r;
  const { FileLogStore } = await service();
  const ended = await new FileLogStore().readEnd(r.LogLocation);
  if (!ended || ended.BackupId !== r.BackupId) return r;
  return {
    ...r,
    ...ended,
    Message: `${ended.Message} (from the run's log: its end could not be written to the records; the next run records it)`,
  };
}

/** The unreadable records files set aside beside `file` (`<file>.corrupt-<stamp>`). */
function setAsideFiles(file: string): string[] {
  const dir = path.dirname(file);
  const prefix = `${path.basename(file)}.corrupt-`;
  try {
    return fs
      .readdirSync(dir)
      .filter((n) => n.startsWith(prefix) && !n.endsWith('-journal'))
      .sort()
      .map((n) => path.join(dir, n));
  } catch {
    return [];
  }
}

const shortTime = (iso: string | null): string =>
  iso ? iso.replace('T', ' ').replace(/\.\d{3}Z$/, 'Z') : '-';

async function printHistory(o: HistoryOptions): Promise<number> {
  const runs = await listRuns(o);
  if (o.json) {
    process.stdout.write(JSON.stringify(runs, null, 2) + '\n');
    return EXIT.ok;
  }
  if (runs.length === 0) {
    process.stdout.write('no runs recorded\n');
    return EXIT.ok;
  }
  // What a snapshot left out, in a column of its own once any run listed left something out.
  const excludes = runs.some((r) => r.Exclude?.length || r.ExcludeIfPresent?.length);
  const rows = runs.map((r) => [
    shortTime(r.StartTime),
    r.Job ?? '-',
    // A restore says so where a backup says its interval.
    r.Kind === 'restore' ? 'restore' : (r.Interval ?? '-'),
    r.Status,
    r.Snapshot ?? '-',
    formatCount(r.NumberOfFiles),
    formatCount(r.NumberOfFilesTransferred),
    formatBytes(r.TotalTransferredFileSize),
    r.StopTime ? formatDuration(Date.parse(r.StopTime) - Date.parse(r.StartTime)) : '-',
    String(r.NumberOfWarnings),
    r.BackupId,
    ...(excludes ? [formatExcludes(r.Exclude, r.ExcludeIfPresent, 40) || '-'] : []),
    r.Status === 'Success' ? '' : r.Message,
  ]);
  process.stdout.write(
    table(
      [
        'STARTED',
        'JOB',
        'INTERVAL',
        'STATUS',
        'SNAPSHOT',
        'ENTRIES',
        'COPIED',
        'COPIED SIZE',
        'TOOK',
        'WARNINGS',
        'BACKUPID',
        ...(excludes ? ['EXCLUDES'] : []),
        'MESSAGE',
      ],
      rows,
    ),
  );
  return EXIT.ok;
}

// ---- status ---------------------------------------------------------------------------------

interface StatusOptions {
  config?: string;
  destination?: string;
  label: string;
  json?: boolean;
  check?: boolean;
  staleAfter?: number;
}

/** One series' newest snapshot against its bound (`status --check`). */
interface FreshnessRow extends Staleness {
  job: string | null;
  set: string;
  interval: string;
}

interface JobStatusRow {
  job: string;
  set: string;
  schedule: string;
  nextRun: string | null;
  daemon: { pid: number; host: string } | null;
  last: SetStatus['last'];
}

interface RunningRow {
  job: string | null;
  set: string;
  BackupId: string;
  StartTime: string;
  progress: BackupProgress | null;
  writer: string;
}

async function printStatus(o: StatusOptions): Promise<number> {
  const {
    loadConfig,
    parseSchedule,
    readStatuses,
    writerGone,
    defaultStaleAfterHours,
    DEFAULT_STALE_AFTER_HOURS,
    staleness,
  } = await service();
  const now = new Date();
  const freshness: FreshnessRow[] = [];
  const sets = new Map<string, { destination: string; label: string }>();
  const jobs: JobStatusRow[] = [];
  let config: Config | null = null;
  if (o.destination !== undefined) {
    existingSet(o.destination, o.label);
    const destination = fs.realpathSync(o.destination);
    sets.set(path.join(destination, o.label), { destination, label: o.label });
    const set = new BackupSet(destination, o.label);
    for (const interval of set.intervals().sort())
      freshness.push({
        job: null,
        set: set.dir,
        interval,
        ...staleness(set, interval, o.staleAfter ?? DEFAULT_STALE_AFTER_HOURS, now),
      });
  } else {
    if (o.config === undefined && !fs.existsSync(DEFAULT_CONFIG_FILE))
      throw badInput(
        `status needs a configuration (${DEFAULT_CONFIG_FILE} here, or --config FILE) or --destination D [--label L]`,
      );
    config = loadConfig(configFile(o.config));
    for (const j of config.jobs)
      sets.set(path.join(j.destination, j.label), { destination: j.destination, label: j.label });
  }
  const statuses = [...sets.values()].flatMap((s) =>
    readStatuses(s.destination, s.label).map((st) => ({ ...st, gone: writerGone(st) })),
  );
  if (config) {
    for (const j of config.jobs) {
      const st = statuses.find(
        (s) => s.writer === 'run' && s.job === j.name && s.label === j.label && !s.gone,
      );
      const daemon = st && st.nextRun !== null ? { pid: st.pid, host: st.host } : null;
      jobs.push({
        job: j.name,
        set: path.join(j.destination, j.label),
        schedule: j.schedule,
        nextRun:
          daemon && st?.nextRun
            ? st.nextRun
            : (parseSchedule(j.schedule, j.timezone).nextRun(now)?.toISOString() ?? null),
        daemon,
        last: statuses.find((s) => s.job === j.name && s.last)?.last ?? null,
      });
      const bound =
        o.staleAfter ??
        j.staleAfterHours ??
        defaultStaleAfterHours(parseSchedule(j.schedule, j.timezone), now) ??
        DEFAULT_STALE_AFTER_HOURS;
      const set = new BackupSet(j.destination, j.label);
      freshness.push({
        job: j.name,
        set: set.dir,
        interval: j.interval,
        ...staleness(set, j.interval, bound, now),
      });
    }
  } else {
    for (const s of statuses.filter((s) => s.writer === 'run' && s.job && !s.gone)) {
      jobs.push({
        job: s.job!,
        set: path.join(s.destination, s.label),
        schedule: s.schedule ?? '-',
        nextRun: s.nextRun,
        daemon: s.nextRun !== null ? { pid: s.pid, host: s.host } : null,
        last: s.last,
      });
    }
  }
  const running: RunningRow[] = statuses
    .filter((s) => s.running && !s.gone)
    .map((s) => ({
      job: s.job,
      set: path.join(s.destination, s.label),
      BackupId: s.running!.BackupId,
      StartTime: s.running!.StartTime,
      progress: s.running!.progress,
      writer: `${s.writer === 'run' ? 'efs-backup run' : 'efs-backup backup'}, pid ${s.pid} on ${s.host}`,
    }));
  const stale = freshness.filter((f) => f.stale);
  const checked = o.check && stale.length > 0 ? EXIT.notSuccess : EXIT.ok;
  if (o.json) {
    process.stdout.write(JSON.stringify({ jobs, running, freshness }, null, 2) + '\n');
    return checked;
  }
  if (o.check) {
    for (const f of freshness) process.stdout.write(freshnessLine(f) + '\n');
    if (freshness.length === 0)
      process.stdout.write(`no backup series in ${[...sets.keys()].join(', ')}\n`);
    return checked;
  }
  if (running.length === 0) process.stdout.write('Running now: nothing\n');
  else {
    process.stdout.write('Running now:\n');
    for (const r of running) {
      const p = r.progress;
      // (`counting` is missing from the status files of older versions.)
      const done =
        p === null
          ? 'starting'
          : p.counting === true
            ? `${formatCount(p.entries)} entries (${formatBytes(p.bytes)}), counting ahead: ${formatCount(p.estimatedEntries ?? 0)} found so far`
            : `${formatCount(p.entries)}${p.estimatedEntries ? ` of about ${formatCount(p.estimatedEntries)}` : ''} entries (${formatBytes(p.bytes)})` +
              (p.estimatedEntries
                ? `, ${Math.min(99, Math.floor((100 * p.entries) / p.estimatedEntries))}%`
                : '');
      process.stdout.write(
        `  ${r.job ? `job ${r.job}` : 'backup'} into ${r.set}: run ${r.BackupId}, started ${shortTime(r.StartTime)}, ${done} (${r.writer})\n`,
      );
    }
  }
  if (jobs.length > 0) {
    process.stdout.write('\n');
    process.stdout.write(
      table(
        ['JOB', 'SCHEDULE', 'NEXT RUN', 'DAEMON', 'LAST RUN', 'SET'],
        jobs.map((j) => [
          j.job,
          j.schedule,
          shortTime(j.nextRun),
          j.daemon ? `pid ${j.daemon.pid} on ${j.daemon.host}` : 'none (start `efs-backup run`)',
          j.last ? `${j.last.Status as RunStatus} ${shortTime(j.last.StopTime)}` : '-',
          j.set,
        ]),
      ),
    );
  }
  return EXIT.ok;
}

/** `stale: job projects (daily in /mnt/b/efs-backup): newest snapshot 20261127T020000Z, 73.2 h old; the bound is 48 h` */
function freshnessLine(f: FreshnessRow): string {
  const what = f.job ? `job ${f.job} (${f.interval} in ${f.set})` : `${f.interval} in ${f.set}`;
  const bound = `the bound is ${Number(f.staleAfterHours.toFixed(1))} h`;
  if (!f.newest) return `stale: ${what}: no complete snapshot yet; ${bound}`;
  return `${f.stale ? 'stale' : 'ok'}: ${what}: newest snapshot ${f.newest.stamp}, ${f.ageHours} h old; ${bound}`;
}

function hours(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !(n > 0) || !Number.isFinite(n))
    throw new InvalidArgumentError(`stale-after must be a number of hours above 0, not "${value}"`);
  return n;
}

function positive(name: string) {
  return (value: string): number => {
    if (!/^\d+$/.test(value.trim()) || Number(value) < 1)
      throw new InvalidArgumentError(`${name} must be a whole number above 0, not "${value}"`);
    return Number(value);
  };
}

/** Registers `run`, `history` and `status`. */
export function addServiceCommands(program: Command, setExit: (code: number) => void): void {
  program
    .command('run')
    .description(
      `run the configuration's jobs on their schedules until stopped (SIGTERM ends running backups as Incomplete, recorded)`,
    )
    .option('--config <file>', 'the configuration file', DEFAULT_CONFIG_FILE)
    .addOption(
      new Option(
        '--log-format <format>',
        'the log on standard error: lines for people, or JSON lines (default: pretty on a terminal, json otherwise)',
      ).choices(LOG_FORMATS),
    )
    .action(async (o: { config?: string; logFormat?: LogFormat }) => setExit(await runDaemon(o)));

  program
    .command('history')
    .description(
      'without a path: the recorded runs, newest first, with status and figures; with a path: every distinct version of that path across the snapshots',
    )
    .argument('[path]', 'a path inside the snapshots')
    .option('--destination <path>', 'the file system that holds the backups')
    .option('--label <name>', 'the backup set folder on the destination', DEFAULTS.label)
    .option('--job <name>', "the runs of a configuration's job")
    .option('--config <file>', `the configuration file (default: ${DEFAULT_CONFIG_FILE})`)
    .option('--limit <n>', 'the newest n runs only', positive('limit'))
    .option('--json', 'print JSON')
    .action(async (p: string | undefined, o: HistoryOptions, cmd: Command) => {
      if (p !== undefined) {
        refuseGiven(
          cmd,
          ['job', 'config', 'limit'],
          'a path',
          "a path's versions are read from the snapshots on --destination",
        );
        if (o.destination === undefined)
          throw badInput("required option '--destination <path>' not specified");
        setExit(await printPathHistory({ ...o, destination: o.destination }, p));
        return;
      }
      if (o.job !== undefined) refuseGiven(cmd, ['destination', 'label'], '--job', JOB_SETTINGS);
      else if (o.config !== undefined)
        refuseGiven(cmd, ['destination', 'label'], '--config', 'the configuration names the sets');
      setExit(await printHistory(o));
    });

  program
    .command('status')
    .description("what runs now, with progress, and when each configuration's job runs next")
    .option('--config <file>', `the configuration file (default: ${DEFAULT_CONFIG_FILE})`)
    .option('--destination <path>', 'one backup set instead: the file system that holds it')
    .option('--label <name>', 'the backup set folder on the destination', DEFAULTS.label)
    .option(
      '--check',
      "exit 1 when a job's newest snapshot is older than its bound (for cron and monitoring)",
    )
    .option(
      '--stale-after <hours>',
      `the bound of --check, for every job (default: each job's staleAfterHours, or twice its schedule's longest gap; 48 h with --destination)`,
      hours,
    )
    .option('--json', 'print JSON')
    .action(async (o: StatusOptions, cmd: Command) => {
      if (o.config !== undefined)
        refuseGiven(cmd, ['destination', 'label'], '--config', 'the configuration names the sets');
      setExit(await printStatus(o));
    });
}
