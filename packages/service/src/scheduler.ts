import { setMaxListeners } from 'node:events';
/**
 * The built-in daemon's heart: starts each job on its cron schedule, stops it by its window
 * (the lifecycle does), never runs two runs of one backup set at once (a run due while another
 * goes is recorded as Skipped), and on stop ends the running ones as Incomplete.
 */
import type { BackupProgress } from '@efs-backup/core';
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { systemClock, type Clock } from './clock.js';
import { parseSchedule, type Config, type Job } from './config.js';
import {
  recordSkipped,
  runBackup,
  type Engine,
  type RunOutcome,
  type RunPorts,
} from './lifecycle.js';
import { silentLog, type ServiceLog } from './ports.js';
import type { RunRecord } from './record.js';
import { writeStatus, type SetStatus } from './status-file.js';

export interface SchedulerOptions {
  config: Pick<Config, 'jobs' | 'records'>;
  ports: RunPorts;
  /** @default the system clock */
  clock?: Clock;
  /** @default the engine's backup() */
  engine?: Engine;
  log?: ServiceLog;
  /** Write each job's status file under its set's `.efs-backup/status/`. @default true */
  statusFiles?: boolean;
  /** Status files are rewritten at most this often while a run goes. @default 2000 */
  statusIntervalMs?: number;
  notifyTimeoutMs?: number;
  /** Every run's end, Skipped ones included. */
  onRunEnd?: (outcome: RunOutcome) => void;
}

interface ActiveRun {
  job: Job;
  backupId: string;
  startTime: Date;
  controller: AbortController;
  progress: BackupProgress | null;
}

/** Runs of one backup set never overlap: the set is its destination and label. */
const setKey = (job: Job): string => `${path.resolve(job.destination)}\0${job.label}`;

export class Scheduler {
  private readonly o: SchedulerOptions;
  private readonly clock: Clock;
  private readonly log: ServiceLog;
  private readonly stopper = abortControllerForMany();
  private readonly active = new Map<string, ActiveRun>();
  private readonly inflight = new Set<Promise<void>>();
  private readonly next = new Map<string, Date | null>();
  private readonly last = new Map<string, RunRecord>();
  private readonly lastStatusWrite = new Map<string, number>();
  private loops: Promise<void>[] = [];
  private started = false;

  constructor(o: SchedulerOptions) {
    this.o = o;
    this.clock = o.clock ?? systemClock;
    this.log = o.log ?? silentLog;
  }

  /** Starts every job's schedule. */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.loops = this.o.config.jobs.map((job) => this.loop(job));
  }

  /** When each job runs next (null: never again, or stopped). */
  nextRuns(): { job: string; next: Date | null }[] {
    return this.o.config.jobs.map((j) => ({ job: j.name, next: this.next.get(j.name) ?? null }));
  }

  /** The runs going now. */
  running(): { job: string; BackupId: string; StartTime: Date; progress: BackupProgress | null }[] {
    return [...this.active.values()].map((r) => ({
      job: r.job.name,
      BackupId: r.backupId,
      StartTime: r.startTime,
      progress: r.progress,
    }));
  }

  /** Resolves once no run is going (runs that start meanwhile are waited for too). */
  async idle(): Promise<void> {
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
  }

  /**
   * Stops the schedules, asks every running backup to stop (it ends Incomplete, its record and
   * log written, its partial kept for the next run) and waits for them.
   */
  async stop(): Promise<void> {
    this.stopper.abort();
    for (const r of this.active.values()) r.controller.abort('shutdown');
    await this.idle();
    await Promise.allSettled(this.loops);
    for (const job of this.o.config.jobs) {
      this.next.set(job.name, null);
      this.status(job, true);
    }
  }

  private async loop(job: Job): Promise<void> {
    const cron = parseSchedule(job.schedule, job.timezone);
    let from = this.clock.now();
    while (!this.stopper.signal.aborted) {
      const due = cron.nextRun(from);
      this.next.set(job.name, due);
      this.status(job, true);
      if (!due) return;
      this.log.info(
        { job: job.name, next: due.toISOString() },
        `job ${job.name} runs next at ${due.toISOString()}`,
      );
      if (!(await this.clock.sleepUntil(due, this.stopper.signal))) return;
      this.trigger(job, due);
      // After a pause (a suspended host), runs missed meanwhile are not made up one by one.
      from = new Date(Math.max(due.getTime(), this.clock.now().getTime()));
    }
  }

  private track(p: Promise<void>): void {
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p));
  }

  private trigger(job: Job, due: Date): void {
    const key = setKey(job);
    const other = this.active.get(key);
    if (other) {
      const reason =
        `the run due at ${due.toISOString()} did not start: run ${other.backupId} of job ${other.job.name}, ` +
        `started ${other.startTime.toISOString()}, is still writing the backup set ${job.label} on ${job.destination}`;
      this.log.warn({ job: job.name, running: other.backupId }, reason);
      this.track(
        recordSkipped(job, this.o.ports, reason, this.runOptions())
          .then((outcome) => this.ended(job, outcome))
          .catch((e: unknown) =>
            this.log.error({ job: job.name, err: String(e) }, 'cannot record a skipped run'),
          ),
      );
      return;
    }
    const run: ActiveRun = {
      job,
      backupId: randomUUID(),
      startTime: this.clock.now(),
      controller: new AbortController(),
      progress: null,
    };
    this.active.set(key, run);
    this.log.info({ job: job.name, BackupId: run.backupId }, `job ${job.name} starts`);
    this.status(job, true);
    this.track(
      runBackup(job, this.o.ports, {
        ...this.runOptions(),
        backupId: run.backupId,
        signal: run.controller.signal,
        refusals: 'record',
        ...(this.o.engine ? { engine: this.o.engine } : {}),
        onProgress: (p) => {
          run.progress = p;
          this.status(job, false);
        },
      })
        .then((outcome) => this.ended(job, outcome))
        .catch((e: unknown) => this.log.error({ job: job.name, err: String(e) }, 'the run broke'))
        .finally(() => {
          this.active.delete(key);
          this.status(job, true);
        }),
    );
  }

  private runOptions() {
    return {
      clock: this.clock,
      expireDays: this.o.config.records.expireDays,
      log: this.log,
      ...(this.o.notifyTimeoutMs !== undefined ? { notifyTimeoutMs: this.o.notifyTimeoutMs } : {}),
    };
  }

  private ended(job: Job, outcome: RunOutcome): void {
    const r = outcome.record;
    this.last.set(job.name, r);
    this.log.info(
      { job: job.name, BackupId: r.BackupId, Status: r.Status, LogLocation: r.LogLocation },
      `job ${job.name}: ${r.Status}: ${r.Message}`,
    );
    this.o.onRunEnd?.(outcome);
  }

  /** Rewrites the job's status file (while a run goes, at most every statusIntervalMs). */
  private status(job: Job, force: boolean): void {
    if (this.o.statusFiles === false) return;
    const now = Date.now();
    if (
      !force &&
      now - (this.lastStatusWrite.get(job.name) ?? 0) < (this.o.statusIntervalMs ?? 2000)
    )
      return;
    this.lastStatusWrite.set(job.name, now);
    const run = [...this.active.values()].find((r) => r.job.name === job.name);
    const last = this.last.get(job.name);
    const s: SetStatus = {
      key: job.name,
      job: job.name,
      destination: path.resolve(job.destination),
      label: job.label,
      interval: job.interval,
      schedule: job.schedule,
      writer: 'run',
      pid: process.pid,
      host: os.hostname(),
      updatedAt: new Date(now).toISOString(),
      nextRun: this.stopper.signal.aborted
        ? null
        : (this.next.get(job.name)?.toISOString() ?? null),
      running: run
        ? { BackupId: run.backupId, StartTime: run.startTime.toISOString(), progress: run.progress }
        : null,
      last: last
        ? {
            BackupId: last.BackupId,
            Status: last.Status,
            StopTime: last.StopTime,
            Message: last.Message,
          }
        : null,
    };
    try {
      writeStatus(s);
    } catch {
      /* the destination is not mounted: `status` says what it can */
    }
  }
}

/** One signal every job's sleep listens to: more than ten listeners is expected, not a leak. */
function abortControllerForMany(): AbortController {
  const c = new AbortController();
  setMaxListeners(0, c.signal);
  return c;
}
