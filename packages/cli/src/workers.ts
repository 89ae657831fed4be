/**
 * Scale-out on the command line: `backup --workers N` (or a job's `workers:`) runs N worker
 * processes on this host that build one snapshot together, and `worker --job NAME` joins a
 * run from another host that mounts the same destination.
 *
 * The lease store is the set's, on the destination: SQLite (`.efs-backup/leases.sqlite`) when
 * the destination is a local disk, which only this host reaches; lease files
 * (`.efs-backup/leases/<interval>/`) when it is a network file system, where SQLite's locking
 * cannot be trusted and other hosts may join. Every worker of a run finds it by the same rule.
 */
import {
  backup,
  badInput,
  BackupSet,
  DATA_DIR,
  FileLeaseStore,
  isRemote,
  patientStore,
  resolveBackupOptions,
  RUN_OPTIONS,
  RunOver,
  type BackupOptions,
  type BackupResult,
  type BackupRunOptions,
  type LeaseStore,
} from '@efs-backup/core';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { WorkerOption, WorkerSpec } from './worker-spec.js';

/** The lease store of a set's interval, by where the destination is. */
export async function leaseStoreFor(o: {
  destination: string;
  label: string;
  interval: string;
}): Promise<LeaseStore> {
  const where = leaseStorePath(o);
  if (where.kind === 'files') return new FileLeaseStore(where.path);
  const { openSqliteLeaseStore } = await import('@efs-backup/service/local');
  return openSqliteLeaseStore(where.path, o.interval);
}

function leaseStorePath(o: { destination: string; label: string; interval: string }): {
  kind: 'files' | 'sqlite';
  path: string;
} {
  const data = path.join(new BackupSet(o.destination, o.label).dir, DATA_DIR);
  // EFS_BACKUP_LEASES=files: lease files on a local disk too (a local disk other hosts reach
  // through an export of their own); =sqlite: SQLite on a network file system (one host only).
  const forced = process.env.EFS_BACKUP_LEASES;
  const files = forced === 'files' ? true : forced === 'sqlite' ? false : isRemote(o.destination);
  return files
    ? { kind: 'files', path: path.join(data, 'leases', o.interval) }
    : { kind: 'sqlite', path: path.join(data, 'leases.sqlite') };
}

/** This process's id in a run: unique across the hosts of one run. */
export function workerId(): string {
  return `${os.hostname()}:${process.pid}`;
}

/** What a worker's operator should know (a lease store waited for), on standard error. */
function notice(message: string): void {
  process.stderr.write(`efs-backup: worker ${workerId()}: ${message}\n`);
}

export const WORKER_SPEC_ENV = 'EFS_BACKUP_WORKER_SPEC';

/** How long a lease lives (a worker that dies holds its units this long). Tests shorten it. */
function leaseMs(): number | undefined {
  const v = Number(process.env.EFS_BACKUP_LEASE_MS);
  return Number.isInteger(v) && v > 0 ? v : undefined;
}

/**
 * The engine of a run of `workers` processes: this process is one worker (and commits), the
 * others are started beside it and may not commit. A stop (the signal) is passed on to them.
 */
export function sharedEngine(
  workers: number,
): (options: BackupRunOptions) => Promise<BackupResult> {
  return async (options) => {
    const resolved = options.started?.options ?? resolveBackupOptions(options);
    const store = await leaseStoreFor(resolved);
    const lease = leaseMs();
    const spec: WorkerSpec = {
      backupId: options.backupId!,
      workers,
      ...(lease ? { leaseMs: lease } : {}),
      options: childOptions(options),
    };
    const children: ChildProcess[] = [];
    const exited: Array<Promise<void>> = [];
    for (let i = 1; i < workers; i++) {
      // With the command's own Node flags (a heap limit, a profiler).
      const child = spawn(process.execPath, [...process.execArgv, process.argv[1]!, 'worker'], {
        env: { ...process.env, [WORKER_SPEC_ENV]: JSON.stringify(spec) },
        stdio: ['ignore', 'ignore', 'inherit'],
      });
      children.push(child);
      exited.push(new Promise((r) => child.once('exit', () => r())));
    }
    const stop = (): void => {
      for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
    };
    options.signal?.addEventListener('abort', stop);
    let failed = true;
    try {
      const result = await backup({
        ...options,
        share: {
          store,
          worker: workerId(),
          workers,
          notice,
          ...(lease ? { leaseMs: lease } : {}),
        },
      });
      failed = result.Status === 'Failed';
      return result;
    } finally {
      // This worker failed (or threw): the run commits nothing on this host, so the started
      // workers stop (what they wrote is kept for the next run) rather than work on, or wait
      // for a run that was never begun, while this command waits for them.
      if (failed) stop();
      options.signal?.removeEventListener('abort', stop);
      await Promise.all(exited);
      // Every worker of this host is done: a lock the run still holds goes (a stopped run).
      options.started?.lock.releaseShared();
      await store.close();
    }
  };
}

/** The spec's schema carries every option of a run but `workers`, and no other (held by the compiler). */
type SpecOption = Exclude<(typeof RUN_OPTIONS)[number], 'workers'> | 'source' | 'destination';
type Mismatched = Exclude<SpecOption, WorkerOption> | Exclude<WorkerOption, SpecOption>;
const specMatches: [Mismatched] extends [never] ? true : Mismatched = true;
void specMatches;

/** The options a started worker is given: the run's, as the job set them. */
function childOptions(o: BackupOptions): WorkerSpec['options'] {
  const out: WorkerSpec['options'] = { source: o.source, destination: o.destination };
  for (const k of RUN_OPTIONS) {
    const v = o[k];
    if (v !== undefined && k !== 'workers') Object.assign(out, { [k]: v });
  }
  return out;
}

/** A started worker's spec, from its environment; null when this process was not started so. */
export async function workerSpecFromEnv(): Promise<WorkerSpec | null> {
  const raw = process.env[WORKER_SPEC_ENV];
  if (raw === undefined) return null;
  const { WorkerSpec } = await import('./worker-spec.js');
  return WorkerSpec.parse(JSON.parse(raw));
}

/**
 * One worker of a run: a started one (its spec) may not commit; one joining from another host
 * (`worker --job`) may, and the commit claim decides.
 */
export async function runWorker(
  spec: { backupId: string; workers: number; leaseMs?: number; options: BackupOptions },
  commit: boolean,
  signal: AbortSignal,
  store?: LeaseStore,
  /** Only join (a started worker): the run over, RunOver. */
  join = false,
): Promise<BackupResult> {
  const s = store ?? (await leaseStoreFor(resolveBackupOptions(spec.options)));
  try {
    return await backup({
      ...spec.options,
      backupId: spec.backupId,
      signal,
      share: {
        store: s,
        worker: workerId(),
        workers: spec.workers,
        commit,
        join,
        notice,
        ...(spec.leaseMs ? { leaseMs: spec.leaseMs } : {}),
      },
    });
  } finally {
    await s.close();
  }
}

/**
 * `efs-backup worker`: started by a run's first worker (its spec in the environment), or
 * joining a job's run from another host (`--job`). Throws bad input; a job with no run going on
 * has nothing to join (NOTHING_TO_JOIN).
 */
export async function workerCommand(o: {
  job?: string;
  config?: string;
}): Promise<BackupResult | null> {
  const controller = new AbortController();
  const onSignal = (): void => controller.abort();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const spec = await workerSpecFromEnv();
    if (spec) {
      try {
        return await runWorker(spec, false, controller.signal, undefined, true);
      } catch (e) {
        // Started after a quick run had already ended: nothing to say.
        if (e instanceof RunOver) return null;
        throw e;
      }
    }
    if (o.job === undefined) throw badInput('worker needs --job NAME: the job whose run to join');
    const { loadConfig, findJob, engineOptions } = await import('@efs-backup/service');
    const job = findJob(loadConfig(o.config ?? 'efs-backup.yaml'), o.job);
    const options = engineOptions(job);
    const resolved = resolveBackupOptions(options);
    const none = (): NothingToJoin =>
      new NothingToJoin(
        `no run of job ${o.job} is going on in ${new BackupSet(resolved.destination, resolved.label).dir}: nothing to join`,
      );
    // No lease store yet: no run ever shared this set's work (and nothing is made to find out).
    if (!fs.existsSync(leaseStorePath(resolved).path)) throw none();
    const store = await leaseStoreFor(resolved);
    const run = await patientStore(store, {
      stopping: () => controller.signal.aborted,
      notice,
    }).run();
    if (!run) {
      await store.close();
      throw none();
    }
    try {
      return await runWorker(
        { backupId: run.runId, workers: run.workers, options },
        true,
        controller.signal,
        store,
        true,
      );
    } catch (e) {
      if (e instanceof RunOver) throw new NothingToJoin(e.message);
      throw e;
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

export class NothingToJoin extends Error {}
