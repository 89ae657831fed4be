/**
 * The life of one run, written once against the ports (DESIGN.md, "A run's life"):
 * start → record Running → run the engine → record the figures → store the log → notify.
 * The local service and the AWS worker both run it, with their own adapters; so nothing here
 * may load a native addon (the SQLite store lives in its own module).
 */
import {
  backup,
  EfsBackupError,
  resolveBackupOptions,
  RunOver,
  RUN_OPTIONS,
  startBackup,
  type BackupOptions,
  type BackupProgress,
  type BackupResult,
  type BackupRunOptions,
  type BackupWarning,
  type ShareOptions,
  type StartedBackup,
  type WorkerFigures,
  shown,
  windowDeadline,
} from '@efs-backup/core';
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { pino, stdTimeFunctions, type Logger } from 'pino';
import { systemClock, type Clock } from './clock.js';
import { composeNotice, shouldNotify, summary } from './notice.js';
import { NoticeError } from './notice-error.js';
import {
  silentLog,
  type LogStore,
  type Notifier,
  type RecordStore,
  type RunLog,
  type ServiceLog,
} from './ports.js';
import {
  DEFAULT_EXPIRE_DAYS,
  expireItem,
  figuresOf,
  newRunRecord,
  type RunRecord,
  type RunStatus,
  type WorkerFigure,
} from './record.js';

/**
 * What to back up: a configuration job, or the options of a command-line backup. The engine's
 * options, with a window that may be a fraction of a minute (the service stops those itself),
 * and what only the service uses.
 */
export interface JobSpec extends BackupOptions {
  /** The configuration job's name; absent for a command-line backup. */
  name?: string | null;
  schedule?: string | null;
  /** Minutes the run may take; fractions allowed. @default no limit */
  windowMinutes?: number;
  /** @default false */
  notifyOnSuccess?: boolean;
}

/** The adapters one run uses. */
export interface RunPorts {
  /** Opened only once the run's options are known to be good, so bad input writes nothing. */
  records: (job: ResolvedJob) => Promise<RecordStore>;
  logs: LogStore;
  notifiers: Notifier[];
}

/** A job whose paths are resolved as the engine resolves them. */
export interface ResolvedJob {
  source: string;
  prefix: string;
  destination: string;
  label: string;
  interval: string;
  retain: number;
}

/** Why a run was asked to stop; passed as the AbortSignal's reason. */
export type StopReason = 'window' | 'shutdown' | 'signal';

export type Engine = (options: BackupRunOptions) => Promise<BackupResult>;

export interface RunOptions {
  /** @default a random UUID */
  backupId?: string;
  /** Stops the run gracefully (its partial is kept): `signal.reason` says why (StopReason). */
  signal?: AbortSignal;
  /**
   * 'throw': bad input and a backup set locked by another run throw before anything is written
   * (the command line exits 2 or 3). 'record': they are recorded (Failed, Skipped) and notified,
   * as a scheduled run must be.
   * @default 'record'
   */
  refusals?: 'throw' | 'record';
  /** @default the system clock */
  clock?: Clock;
  /** @default the engine's backup() */
  engine?: Engine;
  /** @default 90 */
  expireDays?: number;
  /** Where the service says what goes wrong around the run (a channel down, a store unwritable). */
  log?: ServiceLog;
  /** A channel that does not answer within this is given up (and logged). @default 30000 */
  notifyTimeoutMs?: number;
  /** The Running record, once written. */
  onStart?: (record: RunRecord) => void;
  /**
   * This run is one worker's part of a run shared by several (scale-out): the engine is given
   * its share, and exactly one worker writes the run's end. @default a run of its own
   */
  shared?: SharedRun;
  onProgress?: (p: BackupProgress) => void;
  onWarning?: (w: BackupWarning) => void;
}

/** One worker's part of a run shared by several workers (scale-out). */
export interface SharedRun {
  /** The engine's share: the lease store, this worker's id, how many workers. */
  share: ShareOptions;
  /**
   * The run's lock is taken, or joined, and nothing is written yet: throws RunOver when this
   * worker comes after the run has ended (it then takes no part, and writes nothing).
   * @default every worker takes part
   */
  joined?(started: StartedBackup): Promise<void>;
  /**
   * Once this worker's part has ended, whether it writes the run's end (the record, the
   * notices): exactly one of the run's workers must. Given the end as this worker saw it and
   * whether it committed the snapshot; returns the record to write (that one, or completed),
   * or null for none. The worker's own log is stored either way.
   */
  end(record: RunRecord, committed: boolean): Promise<RunRecord | null>;
}

export interface NoticeOutcome {
  channel: string;
  /** Null when the channel took the notice. */
  error: string | null;
}

export interface RunOutcome {
  record: RunRecord;
  /**
   * A shared run's worker: whether it wrote the run's end (its record and notices); without
   * one, always.
   */
  reported: boolean;
  /** The first warnings (at most 1000); the record counts them all. */
  warnings: BackupWarning[];
  snapshotPath: string | null;
  /** One per channel, when the run notified. */
  notices: NoticeOutcome[];
  /** What went wrong with the record or log stores (the run itself is not failed for it). */
  problems: string[];
}

const MAX_WARNINGS_LOGGED = 100_000;
const PROGRESS_LOG_MS = 60_000;

/** The engine's options of a job. */
export function engineOptions(job: JobSpec): BackupOptions {
  const o: BackupOptions = { source: job.source, destination: job.destination };
  // The engine's options a job may set (the rest of a JobSpec is the service's own).
  for (const k of RUN_OPTIONS) if (job[k] !== undefined) Object.assign(o, { [k]: job[k] });
  return o;
}

function baseRecord(
  job: JobSpec,
  r: ResolvedJob,
  backupId: string,
  start: Date,
  expireDays: number,
  workers = 1,
): RunRecord {
  return newRunRecord({
    id: backupId,
    job: job.name ?? null,
    label: r.label,
    interval: r.interval,
    retain: r.retain,
    source: r.source,
    prefix: r.prefix,
    destination: r.destination,
    // As given: resolving checks them and changes nothing.
    exclude: job.exclude ?? [],
    excludeIfPresent: job.excludeIfPresent ?? [],
    windowMinutes: job.windowMinutes ?? null,
    schedule: job.schedule ?? null,
    start,
    host: os.hostname(),
    expireDays,
    workers,
  });
}

/** The job as given, when its options cannot be resolved (for the record of a refusal). */
function unresolved(job: JobSpec): ResolvedJob {
  return {
    source: path.resolve(job.source),
    prefix: job.prefix ?? '/',
    destination: path.resolve(job.destination),
    label: job.label ?? 'efs-backup',
    interval: job.interval ?? 'daily',
    retain: job.retain ?? 7,
  };
}

const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e));

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${what} did not answer within ${ms / 1000} s`)),
        ms,
      );
    }),
  ]).finally(() => clearTimeout(timer));
}

/** One run in progress: the stores it has opened and what went wrong with them. */
class RunContext {
  records: RecordStore | null = null;
  runLog: RunLog | null = null;
  logger: Logger | null = null;
  readonly problems: string[] = [];

  constructor(
    readonly ports: RunPorts,
    readonly o: RunOptions,
    readonly log: ServiceLog,
    readonly clock: Clock,
  ) {}

  problem(what: string, e: unknown, fields: object = {}): void {
    const text = `${what}: ${errorText(e)}`;
    this.problems.push(text);
    this.log.error({ ...fields, err: errorText(e) }, what);
  }

  async open(job: ResolvedJob, record: RunRecord): Promise<void> {
    try {
      this.records = await this.ports.records(job);
    } catch (e) {
      this.problem('cannot open the run records', e, { BackupId: record.BackupId });
    }
    const warnings = this.records?.warnings ?? [];
    for (const w of warnings) this.log.warn({ BackupId: record.BackupId }, w);
    try {
      this.runLog = await this.ports.logs.open(record);
      record.LogLocation = this.runLog.location;
      const runLog = this.runLog;
      this.logger = pino(
        {
          base: { BackupId: record.BackupId },
          timestamp: stdTimeFunctions.isoTime,
          formatters: { level: (label) => ({ level: label }) },
        },
        { write: (line: string) => runLog.write(line) },
      );
      for (const w of warnings) this.logger.warn({}, w);
    } catch (e) {
      this.problem('cannot write the run log', e, { BackupId: record.BackupId });
    }
  }

  async put(record: RunRecord): Promise<void> {
    if (!this.records) return;
    try {
      await this.records.put(record);
    } catch (e) {
      this.problem(
        record.Status === 'Running'
          ? `cannot write the record to ${this.records.location}`
          : `cannot write the end of run ${record.BackupId} (${record.Status}) to ${this.records.location}; the records show it Running until the next run of this backup set closes it`,
        e,
        { BackupId: record.BackupId },
      );
    }
  }

  /**
   * Record the figures → store the log → notify → purge what expired. A shared run's worker
   * that does not write the run's end (`report` false) only stores its own log.
   */
  async finish(
    record: RunRecord,
    notifyOnSuccess: boolean,
    report = true,
  ): Promise<NoticeOutcome[]> {
    if (report) await this.put(record);
    this.logger?.info({ record }, `run ended: ${record.Status}`);
    if (this.runLog) {
      try {
        await this.runLog.store(summary(record));
      } catch (e) {
        this.problem(`cannot store the run log ${this.runLog.location}`, e, {
          BackupId: record.BackupId,
        });
      }
    }
    if (!report) return [];
    const notices = shouldNotify(record.Status, notifyOnSuccess) ? await this.notify(record) : [];
    await this.purge();
    return notices;
  }

  /** A shared run's worker: the end it writes, if any (the decision's failure is a problem, and none). */
  async decideEnd(record: RunRecord, committed: boolean): Promise<RunRecord | null> {
    if (!this.o.shared) return record;
    try {
      return await this.o.shared.end(record, committed);
    } catch (e) {
      this.problem(`cannot settle which worker writes the end of run ${record.BackupId}`, e, {
        BackupId: record.BackupId,
      });
      return null;
    }
  }

  async notify(record: RunRecord): Promise<NoticeOutcome[]> {
    const notice = composeNotice(record);
    const ms = this.o.notifyTimeoutMs ?? 30_000;
    const settled = await Promise.allSettled(
      this.ports.notifiers.map((n) =>
        withTimeout(
          n.send(notice),
          ms,
          `the ${n.channel} channel${n.target ? ` (${n.target})` : ''}`,
        ),
      ),
    );
    return settled.map((s, i) => {
      const n = this.ports.notifiers[i]!;
      const channel = n.channel;
      if (s.status === 'fulfilled') return { channel, error: null };
      const error = errorText(s.reason);
      // A channel that fails is said, never the run's failure: where it was going, and why.
      const where =
        s.reason instanceof NoticeError
          ? { target: s.reason.target, code: s.reason.code }
          : n.target
            ? { target: n.target }
            : {};
      this.log.warn(
        { BackupId: record.BackupId, channel, ...where, err: error },
        `the ${channel} notice was not sent: ${error}`,
      );
      return { channel, error };
    });
  }

  /** Records past their ExpireItem go, and their logs with them. */
  async purge(): Promise<void> {
    if (!this.records) return;
    try {
      for (const old of await this.records.purgeExpired(this.clock.now())) {
        if (old.LogLocation) await this.ports.logs.remove(old.LogLocation).catch(() => {});
      }
    } catch (e) {
      this.problem('cannot purge expired records', e);
    }
  }

  async close(): Promise<void> {
    await this.records?.close().catch(() => {});
  }
}

/**
 * Runs one backup through its whole life. Never throws for a run that started: the outcome's
 * record says how it ended. With `refusals: 'throw'`, bad input and a live lock throw the
 * engine's EfsBackupError before anything is written.
 */
export async function runBackup(
  job: JobSpec,
  ports: RunPorts,
  o: RunOptions = {},
): Promise<RunOutcome> {
  const clock = o.clock ?? systemClock;
  const log = o.log ?? silentLog;
  const backupId = o.backupId ?? randomUUID();
  const expireDays = o.expireDays ?? DEFAULT_EXPIRE_DAYS;
  const start = clock.now();
  const ctx = new RunContext(ports, o, log, clock);

  // Options resolved and the set's lock taken once, here; the engine runs under this lock.
  // A shared run's workers: this one's share, or the job's own (its engine starts the others).
  const workers = o.shared?.share.workers ?? job.workers ?? 1;
  let started: StartedBackup;
  try {
    // A shared run's workers hold one lock, under the run's id: the first takes it, the others join.
    started = startBackup({
      ...engineOptions(job),
      backupId,
      ...(o.shared ? { share: o.shared.share } : {}),
    });
  } catch (e) {
    if (!(e instanceof EfsBackupError) || (o.refusals ?? 'record') === 'throw') throw e;
    // Could not start: recorded and notified wherever the stores can still be reached.
    let record = baseRecord(job, unresolved(job), backupId, start, expireDays, workers);
    record.Status = e.code === 'LOCKED' ? 'Skipped' : 'Failed';
    record.Message = e.message;
    record.StopTime = clock.now().toISOString();
    try {
      await ctx.open(unresolved(job), record);
      const end = await ctx.decideEnd(record, false);
      const notices = await ctx.finish(end ?? record, job.notifyOnSuccess ?? false, !!end);
      record = end ?? record;
      return {
        record,
        reported: !!end,
        warnings: [],
        snapshotPath: null,
        notices,
        problems: ctx.problems,
      };
    } finally {
      await ctx.close();
    }
  }

  const resolved = started.options;
  const rj: ResolvedJob = {
    source: resolved.source,
    prefix: resolved.prefix,
    destination: resolved.destination,
    label: resolved.label,
    interval: resolved.interval,
    retain: resolved.retain,
  };
  if (o.shared?.joined) {
    try {
      await o.shared.joined(started);
    } catch (e) {
      started.lock.release();
      if (!(e instanceof RunOver)) throw e;
      log.info({ BackupId: backupId }, e.message);
      const record = baseRecord(job, rj, backupId, start, expireDays, workers);
      record.Status = 'Skipped';
      record.Message = e.message;
      record.StopTime = clock.now().toISOString();
      return {
        record,
        reported: false,
        warnings: [],
        snapshotPath: null,
        notices: [],
        problems: [],
      };
    }
  }

  const record = baseRecord(job, rj, backupId, start, expireDays, workers);
  try {
    await ctx.open(rj, record);
    await markOrphans(ctx, rj, backupId);
    // A worker that joined a shared run leaves its Running record to the one that began it: a
    // late joiner's would be put back over the run's end.
    if (!(o.shared && started.lock.joined)) await ctx.put(record);
    o.onStart?.(record);
    ctx.logger?.info({ job: { ...job, ...rj } }, 'run started');

    const { committed, ...outcome } = await runEngine(ctx, job, record, clock, started);
    const end = await ctx.decideEnd(outcome.record, committed);
    const notices = await ctx.finish(end ?? outcome.record, job.notifyOnSuccess ?? false, !!end);
    return {
      ...outcome,
      record: end ?? outcome.record,
      reported: !!end,
      notices,
      problems: ctx.problems,
    };
  } finally {
    started.lock.release(); // the engine released it already, unless it never ran
    await ctx.close();
  }
}

async function runEngine(
  ctx: RunContext,
  job: JobSpec,
  running: RunRecord,
  clock: Clock,
  started: StartedBackup,
): Promise<Omit<RunOutcome, 'notices' | 'problems' | 'reported'> & { committed: boolean }> {
  const o = ctx.o;
  const stopper = new AbortController();
  let reason: StopReason | null = null;
  const stop = (why: StopReason): void => {
    if (reason) return;
    reason = why;
    ctx.logger?.info({ reason: why }, 'stopping the run');
    stopper.abort(why);
  };
  const onAbort = (): void => {
    const why = o.signal?.reason;
    stop(why === 'window' || why === 'shutdown' ? why : 'signal');
  };
  o.signal?.addEventListener('abort', onAbort, { once: true });
  if (o.signal?.aborted) onAbort();
  const windowTimer = new AbortController();
  if (job.windowMinutes !== undefined) {
    // The engine's own rule, on the service's clock (which tests can move).
    const at = new Date(windowDeadline(new Date(running.StartTime), job.windowMinutes)!);
    void clock.sleepUntil(at, windowTimer.signal).then((reached) => reached && stop('window'));
  }

  let warningsLogged = 0;
  let lastProgressLog = Date.now();
  const engine = o.engine ?? backup;
  let result: BackupResult | null = null;
  let thrown: unknown = null;
  try {
    result = await engine({
      ...engineOptions(job),
      backupId: running.BackupId,
      started,
      ...(o.shared ? { share: o.shared.share } : {}),
      signal: stopper.signal,
      now: () => clock.now(),
      onProgress: (p) => {
        if (Date.now() - lastProgressLog >= PROGRESS_LOG_MS) {
          lastProgressLog = Date.now();
          ctx.logger?.info({ progress: p }, 'progress');
        }
        o.onProgress?.(p);
      },
      onWarning: (w) => {
        if (warningsLogged < MAX_WARNINGS_LOGGED) {
          ctx.logger?.warn({ path: shown(w.path), warning: w.message }, 'entry not backed up');
        } else if (warningsLogged === MAX_WARNINGS_LOGGED) {
          ctx.logger?.warn(
            {},
            `more than ${MAX_WARNINGS_LOGGED} warnings: the rest are counted only`,
          );
        }
        warningsLogged++;
        o.onWarning?.(w);
      },
    });
  } catch (e) {
    thrown = e;
  } finally {
    windowTimer.abort();
    o.signal?.removeEventListener('abort', onAbort);
  }

  if (!result) {
    // The engine refused after all (a run took the lock in between), or broke; or, one worker
    // of a shared run, it came after the run had ended: it took no part (Skipped).
    const record: RunRecord = {
      ...running,
      Status: thrown instanceof RunOver ? 'Skipped' : 'Failed',
      Message: errorText(thrown),
      StopTime: clock.now().toISOString(),
    };
    return { record, warnings: [], snapshotPath: null, committed: false };
  }
  const status: RunStatus = result.Status;
  let message = result.Message;
  if (status === 'Incomplete' && reason === 'window') {
    message =
      'the backup window ended before the backup completed; the next run continues from where this one stopped';
  } else if (status === 'Incomplete' && reason === 'shutdown') {
    message =
      'the efs-backup service was stopped before the backup completed; the next run continues from where this one stopped';
  }
  const record: RunRecord = {
    ...running,
    ...figuresOf(result),
    Status: status,
    Message: message,
    WindowMinutes: job.windowMinutes ?? null,
    // From the engine's StartTime, which the record keeps (a little after the Running record's).
    ExpireItem: expireItem(new Date(result.StartTime), o.expireDays ?? DEFAULT_EXPIRE_DAYS),
    ...(result.share ? { WorkerFigures: result.share.workers.map(workerFigure) } : {}),
  };
  return {
    record,
    warnings: result.warnings,
    snapshotPath: result.snapshotPath,
    committed: result.share?.committed ?? result.Snapshot !== null,
  };
}

/** The engine's figures of one worker of a shared run, as the record keeps them. */
function workerFigure(w: WorkerFigures): WorkerFigure {
  return {
    Worker: w.worker,
    Units: w.units,
    ...(w.takenOver > 0 ? { TakenOver: w.takenOver } : {}),
    Entries: w.entries,
    Bytes: w.bytes,
    Seconds: Math.round(w.ms) / 1000,
  };
}

/**
 * Records left `Running` by a run of this set that never reported (killed, host down) become
 * `Unknown` and are notified. Only called with the set's lock free, so no live run owns them.
 */
async function markOrphans(ctx: RunContext, rj: ResolvedJob, backupId: string): Promise<void> {
  if (!ctx.records) return;
  let orphans: RunRecord[];
  try {
    orphans = await ctx.records.list({
      Destination: rj.destination,
      Label: rj.label,
      Status: 'Running',
    });
  } catch (e) {
    ctx.problem('cannot read the run records', e);
    return;
  }
  for (const r of orphans) {
    if (r.BackupId === backupId) continue;
    // Its log may say how it ended: a run whose record could not be written at its end (the
    // destination full) still logs its end when the log can be written.
    let ended: RunRecord | null = null;
    if (r.LogLocation && ctx.ports.logs.readEnd) {
      ended = await ctx.ports.logs.readEnd(r.LogLocation).catch(() => null);
      if (ended && ended.BackupId !== r.BackupId) ended = null;
    }
    if (ended) {
      const record: RunRecord = {
        ...r,
        ...ended,
        Message: `${ended.Message} (recorded from the run's log by the next run: the run could not write its record at its end)`,
      };
      await ctx.put(record);
      ctx.logger?.warn(
        { orphan: r.BackupId, status: record.Status },
        `an earlier run could not write its end: ${record.Status}, from its log`,
      );
      // Notified as it would have been, had its end been written (a success, only when asked).
      if (shouldNotify(record.Status, false)) await ctx.notify(record);
      continue;
    }
    const record: RunRecord = {
      ...r,
      Status: 'Unknown',
      Message:
        'the run never reported its end: its process stopped (killed, or the host went down) or its end could not be written (the destination full or failing?) before it wrote its figures, and its log does not say how it ended; the next run continues from its partial snapshot',
    };
    await ctx.put(record);
    ctx.logger?.warn({ orphan: r.BackupId }, 'an earlier run never reported its end: Unknown');
    await ctx.notify(record);
  }
}

/**
 * A run that was due while another run of its backup set was going: recorded as `Skipped`
 * with the reason, its summary stored as its log, and notified.
 */
export async function recordSkipped(
  job: JobSpec,
  ports: RunPorts,
  reason: string,
  o: Pick<RunOptions, 'backupId' | 'clock' | 'expireDays' | 'log' | 'notifyTimeoutMs'> = {},
): Promise<RunOutcome> {
  const clock = o.clock ?? systemClock;
  const ctx = new RunContext(ports, o, o.log ?? silentLog, clock);
  const now = clock.now();
  const rj = resolvedOrGiven(job);
  const record = baseRecord(
    job,
    rj,
    o.backupId ?? randomUUID(),
    now,
    o.expireDays ?? DEFAULT_EXPIRE_DAYS,
  );
  record.Status = 'Skipped';
  record.Message = reason;
  record.StopTime = now.toISOString();
  try {
    await ctx.open(rj, record);
    const notices = await ctx.finish(record, job.notifyOnSuccess ?? false);
    return {
      record,
      reported: true,
      warnings: [],
      snapshotPath: null,
      notices,
      problems: ctx.problems,
    };
  } finally {
    await ctx.close();
  }
}

function resolvedOrGiven(job: JobSpec): ResolvedJob {
  try {
    const r = resolveBackupOptions(engineOptions(job));
    return {
      source: r.source,
      prefix: r.prefix,
      destination: r.destination,
      label: r.label,
      interval: r.interval,
      retain: r.retain,
    };
  } catch {
    return unresolved(job);
  }
}
