/**
 * The embedded defaults: records in SQLite, logs in files, notices by e-mail, webhook and
 * console; the SQLite lease store of N workers on one host. Only this module reaches the SQLite
 * stores (a native addon), and only when a store is opened.
 */
import { ensureDir } from '@efs-backup/core';
import path from 'node:path';
import fs from 'node:fs';
import type { Config, Notifications } from './config.js';
import { ConsoleNotifier } from './console-notifier.js';
import { EmailNotifier } from './email-notifier.js';
import { FileLogStore } from './file-log-store.js';
import type { ResolvedJob, RunPorts } from './lifecycle.js';
import type { Notifier, RecordStore } from './ports.js';
import { setDataDir } from './set-data.js';
import type { SqliteLeaseStore } from './sqlite-lease-store.js';
import { WebhookNotifier } from './webhook-notifier.js';

export type { SqliteLeaseStore } from './sqlite-lease-store.js';

export const RECORDS_FILE = 'records.sqlite';

/** `<destination>/<label>/.efs-backup/records.sqlite`. */
export function defaultRecordsFile(destination: string, label: string): string {
  return path.join(destination, label, '.efs-backup', RECORDS_FILE);
}

/** Opens (creating when needed) a SQLite records file. */
export async function openRecordStore(
  file: string,
  o: { reserve?: boolean } = {},
): Promise<RecordStore> {
  const { SqliteRecordStore } = await import('./sqlite-record-store.js');
  const store = SqliteRecordStore.open(file);
  // Room kept for a run's end, should the destination fill up (SqliteRecordStore.put).
  if (o.reserve) store.keepReserve();
  return store;
}

/** Opens a records file for reading; null when it does not exist (nothing is created). */
export async function openExistingRecordStore(file: string): Promise<RecordStore | null> {
  if (!fs.existsSync(file)) return null;
  return openRecordStore(file);
}

/**
 * Opens (creating when needed) a SQLite lease file for one scope: the lease store of N worker
 * processes on this host. Loaded on first use, like the records store (a native addon).
 */
export async function openSqliteLeaseStore(file: string, scope: string): Promise<SqliteLeaseStore> {
  const { SqliteLeaseStore } = await import('./sqlite-lease-store.js');
  return new SqliteLeaseStore(file, scope);
}

/** The records file of a job: the configuration's, or the one in the job's backup set. */
export function recordsFileFor(config: Pick<Config, 'records'> | null, job: ResolvedJob): string {
  return config?.records.path ?? defaultRecordsFile(job.destination, job.label);
}

export function notifiersFor(n: Notifications | undefined): Notifier[] {
  const out: Notifier[] = [];
  if (n?.email) out.push(new EmailNotifier(n.email));
  if (n?.webhook)
    out.push(
      new WebhookNotifier({
        url: n.webhook.url,
        ...(n.webhook.headers ? { headers: n.webhook.headers } : {}),
      }),
    );
  if (n?.console) out.push(new ConsoleNotifier());
  return out;
}

/** The local adapters for the runs of a configuration, or of a command-line backup (null). */
export function localPorts(config: Config | null): RunPorts {
  return {
    records: async (job) => {
      const file = recordsFileFor(config, job);
      if (!config?.records.path) setDataDir(job.destination, job.label);
      else ensureDir(path.dirname(file));
      return openRecordStore(file, { reserve: true });
    },
    logs: new FileLogStore(),
    notifiers: notifiersFor(config?.notifications),
  };
}
