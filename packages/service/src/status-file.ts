/**
 * What runs now and what runs next, in small files under each set's `.efs-backup/status/`,
 * written by the daemon (one per job) and by a command-line backup while it goes; read by
 * `efs-backup status` from any process.
 */
import { ensureDir, type BackupProgress } from '@efs-backup/core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { RunStatus } from './record.js';
import { setDataDir } from './set-data.js';

export interface RunningNow {
  BackupId: string;
  StartTime: string;
  progress: BackupProgress | null;
}

export interface SetStatus {
  /** The file's name without `.json`: the job's name, or `backup-<BackupId>`. */
  key: string;
  job: string | null;
  destination: string;
  label: string;
  interval: string;
  schedule: string | null;
  /** Who writes this file: a daemon (`run`) or a one-off backup (`backup`). */
  writer: 'run' | 'backup';
  pid: number;
  host: string;
  updatedAt: string;
  /** When the job runs next; null when no daemon schedules it. */
  nextRun: string | null;
  running: RunningNow | null;
  last: { BackupId: string; Status: RunStatus; StopTime: string | null; Message: string } | null;
}

export function statusDir(destination: string, label: string): string {
  return path.join(destination, label, '.efs-backup', 'status');
}

/** Writes one status file, whole (a reader never sees half of it). */
export function writeStatus(s: SetStatus): void {
  const dir = path.join(setDataDir(s.destination, s.label), 'status');
  ensureDir(dir);
  const file = path.join(dir, `${s.key}.json`);
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(s, null, 2) + '\n', { mode: 0o600 });
  fs.renameSync(tmp, file);
}

export function removeStatus(destination: string, label: string, key: string): void {
  fs.rmSync(path.join(statusDir(destination, label), `${key}.json`), { force: true });
}

/** The writer of a status file is gone: a process of this host that no longer runs. */
export function writerGone(s: SetStatus): boolean {
  if (s.host !== os.hostname()) return false;
  try {
    process.kill(s.pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/** Every status file of a set; unreadable ones are left out. */
export function readStatuses(destination: string, label: string): SetStatus[] {
  const dir = statusDir(destination, label);
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const out: SetStatus[] = [];
  for (const n of names.filter((n) => n.endsWith('.json')).sort()) {
    try {
      out.push(JSON.parse(fs.readFileSync(path.join(dir, n), 'utf8')) as SetStatus);
    } catch {
      /* being replaced, or not ours */
    }
  }
  return out;
}
