/**
 * The EC2 worker of a restore: mounts the backup file system (read-only) and the file system
 * to restore into, restores one snapshot (or a sub-directory of it) under a prefix of that
 * file system, records the run in DynamoDB (the record's schema, as a restore: `Kind: restore`), stores its
 * log in S3, notifies through SNS and scales its group to 0.
 */
import { restore, type RestoreResult } from '@efs-backup/core';
import { newRunRecord, type RunStatus, type ServiceLog } from '@efs-backup/service';
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { errorText } from './json-log.js';
import { mount } from './mount.js';
import type { RunItem } from './run-item.js';
import { scaleGroupToZero, type WorkerClients } from './worker-clients.js';
import type { WorkerConfig } from './worker-config.js';
import { workerPorts } from './worker.js';

export interface RestoreWorkerOptions {
  clients: WorkerClients;
  instanceId: string;
  log: ServiceLog;
  /** @default a random UUID */
  restoreId?: string;
}

/** Changes written to the log one by one, at most this many (the record counts them all). */
const MAX_CHANGES_LOGGED = 100_000;

export function restoreSummary(r: RunItem, what: string): string {
  const lines = [
    `efs-backup restore ${r.Status === 'Failed' ? 'failed' : r.Status === 'Running' ? 'is running' : 'done'}: ${r.Message}`,
    r.Status === 'Failed'
      ? 'What to do: check the snapshot selector and that both file systems mount (the log says which step failed), then delete and create the restore stack again.'
      : 'What to do: check the restored files; move them where they belong, then delete the restore stack.',
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
      message: `restoring ${what}`,
      start,
      host: os.hostname(),
      expireDays: config.expireDays,
    }),
    CopyStartTime: start.toISOString(),
    NotifyOnSuccess: settings.notifyOnSuccess,
  };
  const runLog = await ports.logs.open(record);
  record.LogLocation = runLog.location;
  const line = (level: string, msg: string, fields: object = {}): void =>
    runLog.write(
      JSON.stringify({
        level,
        time: new Date().toISOString(),
        BackupId: restoreId,
        msg,
        ...fields,
      }),
    );
  await ports.store.create(record);
  line('info', 'restore started', { restore: settings, instanceId: o.instanceId });

  let result: RestoreResult | null = null;
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
    result = await restore({
      destination: backupDir,
      label,
      snapshot: settings.snapshot,
      target,
      ...(settings.subdir ? { subdir: settings.subdir } : {}),
      delete: settings.delete,
      onChange: (c) => {
        if (logged++ < MAX_CHANGES_LOGGED)
          line('info', c.action, { path: c.path, reasons: c.reasons });
      },
    });
  } catch (e) {
    record.Status = 'Failed';
    record.Message = errorText(e);
    line('error', record.Message);
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
    await runLog.store(text);
  } catch (e) {
    log.error({ err: errorText(e) }, 'cannot store the restore log');
  }
  await ports.store.put(record);
  if (record.Status !== 'Success' || settings.notifyOnSuccess) {
    try {
      await ports.notifier.publish(
        `[efs-backup] Restore ${record.Status}: ${settings.snapshot} of ${label} into ${config.sourceFileSystemId}`,
        text,
        record.Status,
      );
      await ports.store.update(restoreId, { Notified: new Date().toISOString() });
    } catch (e) {
      log.error({ err: errorText(e) }, 'the sns notice was not sent');
    }
  }
  log.info({ RestoreId: restoreId, Status: record.Status }, record.Message);
  // The restore is done: the instance goes.
  await scaleGroupToZero(o.clients.autoScaling, config.autoScalingGroupName, log);
  return { restoreId, status: record.Status };
}
