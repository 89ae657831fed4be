/**
 * The EC2 worker of a restore: mounts the backup file system (read-only) and the file system
 * to restore into, restores one snapshot (or a sub-directory of it) under a prefix of that
 * file system, records the run in DynamoDB (the record's schema, as a restore: `Kind: restore`),
 * stores its log in S3, notifies through SNS and scales its group to 0. Whatever happens (the
 * record cannot be written, a mount fails, the restore throws, its window ends) it says so in a
 * notice and its group goes to 0: a restore instance never outlives its restore.
 */
import { restore, type RestoreResult } from '@efs-backup/core';
import { newRunRecord, type RunLog, type RunStatus, type ServiceLog } from '@efs-backup/service';
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { STOP_MARGIN_MINUTES } from './events.js';
import { errorText } from './json-log.js';
import { mount } from './mount.js';
import type { RunItem } from './run-item.js';
import { scaleGroupToZero, type WorkerClients } from './worker-clients.js';
import type { WorkerConfig } from './worker-config.js';
import { workerPorts } from './worker.js';

export interface RestoreWorkerOptions {
  clients: WorkerClients;
  instanceId: string;
  /** Recorded with the restore. @default none recorded */
  instanceType?: string | null;
  log: ServiceLog;
  /** @default a random UUID */
  restoreId?: string;
}

/** Changes written to the log one by one, at most this many (the record counts them all). */
const MAX_CHANGES_LOGGED = 100_000;

type RestoreSettings = NonNullable<WorkerConfig['restore']>;

/**
 * Minutes after its start at which a restore is stopped: the window less the stop margin, as a
 * backup's (the template keeps windows of 30 minutes and more); half of a shorter one.
 */
export function restoreStopAfterMinutes(windowMinutes: number): number {
  return windowMinutes > 2 * STOP_MARGIN_MINUTES
    ? windowMinutes - STOP_MARGIN_MINUTES
    : windowMinutes / 2;
}

export function restoreSummary(r: RunItem, what: string): string {
  const state =
    r.Status === 'Failed'
      ? 'failed'
      : r.Status === 'Running'
        ? 'is running'
        : r.Status === 'Incomplete'
          ? 'stopped before it completed'
          : 'done';
  const todo =
    r.Status === 'Failed'
      ? 'What to do: check the snapshot selector and that both file systems mount (the log says which step failed), then delete and create the restore stack again.'
      : r.Status === 'Incomplete'
        ? 'What to do: create the restore stack again (with a longer RestoreWindow if need be) to finish: what is restored already is not written again.'
        : 'What to do: check the restored files; move them where they belong, then delete the restore stack.';
  const lines = [
    `efs-backup restore ${state}: ${r.Message}`,
    todo,
    '',
    `  Status        ${r.Status}`,
    `  Snapshot      ${what}`,
    `  From          ${r.Source}`,
    `  Into          ${r.Destination}`,
    `  Entries       ${r.NumberOfFiles.toLocaleString('en')}: ${r.NumberOfFilesTransferred.toLocaleString('en')} written (${r.TotalTransferredFileSize.toLocaleString('en')} bytes), ${r.NumberOfFilesLinked.toLocaleString('en')} hard links`,
    `  Warnings      ${r.NumberOfWarnings}`,
    `  Started       ${r.StartTime}`,
    `  Stopped       ${r.StopTime ?? '-'}`,
    `  Host          ${r.Host}`,
    `  RestoreId     ${r.BackupId}`,
  ];
  if (r.LogLocation) lines.push(`  Log           ${r.LogLocation}`);
  return lines.join('\n') + '\n';
}

export async function runRestoreWorker(
  config: WorkerConfig,
  o: RestoreWorkerOptions,
): Promise<{ restoreId: string; status: RunStatus }> {
  const settings = config.restore;
  if (!settings) throw new Error('the worker configuration has no "restore" section');
  try {
    return await restoreOnce(config, settings, o);
  } finally {
    // The restore is over, however it ended: the instance goes.
    await scaleGroupToZero(o.clients.autoScaling, config.autoScalingGroupName, o.log);
  }
}

/** What the restore came to: its result, the error that ended it, or its window's end. */
type Outcome =
  | { kind: 'done'; result: RestoreResult }
  | { kind: 'failed'; message: string }
  | { kind: 'window' };

async function restoreOnce(
  config: WorkerConfig,
  settings: RestoreSettings,
  o: RestoreWorkerOptions,
): Promise<{ restoreId: string; status: RunStatus }> {
  const ports = workerPorts(config, o.clients);
  const log = o.log;
  const start = new Date();
  const restoreId = o.restoreId ?? randomUUID();
  const label = settings.label;
  const backupDir = path.posix.join(config.mountRoot, config.backupFileSystemId);
  const target = path.posix.join(
    config.mountRoot,
    config.sourceFileSystemId,
    settings.targetPrefix,
  );
  const what = `${settings.snapshot} of ${label}${settings.subdir ? `, ${settings.subdir}` : ''}${settings.delete ? ' (mirror: what the snapshot lacks is deleted)' : ''}`;
  const stopAt = new Date(
    start.getTime() + restoreStopAfterMinutes(settings.windowMinutes) * 60_000,
  );
  const record: RunItem = {
    ...newRunRecord({
      kind: 'restore',
      id: restoreId,
      job: 'restore',
      label,
      snapshot: settings.snapshot,
      source: path.posix.join(backupDir, label),
      prefix: settings.subdir ? `/${settings.subdir.replace(/^\/+/, '')}` : '/',
      target,
      subdir: settings.subdir || null,
      mirror: settings.delete,
      windowMinutes: settings.windowMinutes,
      message: `restoring ${what}`,
      start,
      host: os.hostname(),
      expireDays: config.expireDays,
    }),
    CopyStartTime: start.toISOString(),
    NotifyOnSuccess: settings.notifyOnSuccess,
    StopAt: stopAt.toISOString(),
    WorkerInstance: o.instanceId,
    ...(o.instanceType ? { InstanceType: o.instanceType } : {}),
  };
  let runLog: RunLog | null = null;
  try {
    runLog = await ports.logs.open(record);
    record.LogLocation = runLog.location;
  } catch (e) {
    log.error({ err: errorText(e) }, 'cannot open the restore log: the restore goes without one');
  }
  const line = (level: string, msg: string, fields: object = {}): void =>
    runLog?.write(
      JSON.stringify({
        level,
        time: new Date().toISOString(),
        BackupId: restoreId,
        msg,
        ...fields,
      }),
    );

  let recorded = false;
  try {
    await ports.store.create(record);
    recorded = true;
  } catch (e) {
    record.Status = 'Failed';
    record.Message = `cannot record the restore in ${ports.store.location}: ${errorText(e)}; nothing was restored`;
    line('error', record.Message);
  }

  let result: RestoreResult | null = null;
  if (recorded) {
    line('info', 'restore started', {
      restore: settings,
      instanceId: o.instanceId,
      stopAt: stopAt.toISOString(),
    });
    const outcome = await restoreWithin(config, settings, { backupDir, target, stopAt }, line);
    if (outcome.kind === 'done') result = outcome.result;
    else if (outcome.kind === 'failed') {
      record.Status = 'Failed';
      record.Message = outcome.message;
      line('error', record.Message);
    } else {
      record.Status = 'Incomplete';
      record.Message = `the restore window (${settings.windowMinutes} minutes) ended before the restore completed: what it wrote is in place, each file whole; create the restore stack again to finish`;
      line('warn', record.Message);
    }
  }
  const stop = new Date();
  record.StopTime = stop.toISOString();
  record.CopyStopTime = stop.toISOString();
  if (result) {
    for (const w of result.warnings) line('warn', w);
    record.Status = result.warnings.length ? 'SuccessWithWarnings' : 'Success';
    record.Snapshot = result.snapshot.stamp;
    record.Interval = result.snapshot.interval;
    record.NumberOfFiles = result.created + result.updated + result.linked + result.unchanged;
    record.NumberOfFilesTransferred = result.created + result.updated;
    record.NumberOfFilesLinked = result.linked;
    record.TotalTransferredFileSize = result.bytes;
    record.NumberOfFilesDeleted = result.deleted;
    record.NumberOfWarnings = result.warnings.length;
    record.Message = `restored ${result.snapshot.interval}/${result.snapshot.stamp} of ${label}${settings.subdir ? ` (${settings.subdir})` : ''} into ${target}: ${result.created} created, ${result.updated} updated, ${result.deleted} deleted, ${result.unchanged} unchanged`;
  }
  const text = restoreSummary(record, what);
  try {
    await runLog?.store(text);
  } catch (e) {
    log.error({ err: errorText(e) }, 'cannot store the restore log');
  }
  if (recorded) {
    try {
      await ports.store.put(record);
    } catch (e) {
      log.error({ err: errorText(e) }, 'cannot write the restore record');
    }
  }
  if (record.Status !== 'Success' || settings.notifyOnSuccess) {
    try {
      await ports.notifier.publish(
        `[efs-backup] Restore ${record.Status}: ${settings.snapshot} of ${label} into ${config.sourceFileSystemId}`,
        text,
        record.Status,
      );
      if (recorded)
        await ports.store.update(restoreId, {
          Notified: new Date().toISOString(),
          WorkerState: 'done',
        });
    } catch (e) {
      log.error({ err: errorText(e) }, 'the sns notice was not sent');
    }
  }
  log.info({ RestoreId: restoreId, Status: record.Status }, record.Message);
  return { restoreId, status: record.Status };
}

/** Mounts both file systems and restores, unless the window's stop time comes first. */
async function restoreWithin(
  config: WorkerConfig,
  settings: RestoreSettings,
  where: { backupDir: string; target: string; stopAt: Date },
  line: (level: string, msg: string, fields?: object) => void,
): Promise<Outcome> {
  const work = (async (): Promise<Outcome> => {
    try {
      await mount(config, {
        fileSystemId: config.backupFileSystemId,
        role: 'backup',
        readOnly: true,
      });
      await mount(config, {
        fileSystemId: config.sourceFileSystemId,
        role: 'target',
        readOnly: false,
      });
      let logged = 0;
      const result = await restore({
        destination: where.backupDir,
        label: settings.label,
        snapshot: settings.snapshot,
        target: where.target,
        ...(settings.subdir ? { subdir: settings.subdir } : {}),
        delete: settings.delete,
        onChange: (c) => {
          if (logged++ < MAX_CHANGES_LOGGED)
            line('info', c.action, { path: c.path, reasons: c.reasons });
        },
      });
      return { kind: 'done', result };
    } catch (e) {
      return { kind: 'failed', message: errorText(e) };
    }
  })();
  let timer: NodeJS.Timeout | undefined;
  // Each file is written under a temporary name and renamed into place, so a restore left
  // running when the instance goes leaves no half-written file under its real name.
  const window = new Promise<Outcome>((resolve) => {
    timer = setTimeout(
      () => resolve({ kind: 'window' }),
      Math.max(0, where.stopAt.getTime() - Date.now()),
    );
  });
  try {
    return await Promise.race([work, window]);
  } finally {
    clearTimeout(timer);
  }
}
