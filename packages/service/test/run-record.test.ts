/** newRunRecord: the one place the Running record of a new run is made. */
import { describe, expect, it } from 'vitest';
import { newRunRecord, RECORD_FIELDS, runName, summary, type RunRecord } from '../src/index.js';

const start = new Date('2026-11-01T02:00:00.000Z');

describe('newRunRecord', () => {
  it("a backup: Running, its job's fields, empty figures, no restore fields", () => {
    const r = newRunRecord({
      id: 'b-1',
      job: 'nightly',
      label: 'efs-backup',
      interval: 'daily',
      retain: 7,
      source: '/src',
      prefix: '/data',
      destination: '/dst',
      windowMinutes: 90,
      schedule: '0 2 * * *',
      start,
      host: 'host-1',
      expireDays: 90,
    });
    expect(r).toEqual({
      BackupId: 'b-1',
      Kind: 'backup',
      Job: 'nightly',
      Label: 'efs-backup',
      Interval: 'daily',
      Retain: 7,
      Source: '/src',
      Prefix: '/data',
      Exclude: [],
      ExcludeIfPresent: [],
      Destination: '/dst',
      RestoredSnapshot: null,
      Target: null,
      Subdir: null,
      Mirror: null,
      WindowMinutes: 90,
      Schedule: '0 2 * * *',
      Status: 'Running',
      Message: 'the run is going',
      StartTime: '2026-11-01T02:00:00.000Z',
      StopTime: null,
      Snapshot: null,
      NumberOfFiles: 0,
      NumberOfFilesTransferred: 0,
      NumberOfFilesLinked: 0,
      NumberOfFilesCopiedForLinkLimit: 0,
      NumberOfFilesRepaired: 0,
      NumberOfFilesChangedByChecksum: 0,
      TotalFileSize: 0,
      TotalTransferredFileSize: 0,
      NumberOfWarnings: 0,
      CopyStartTime: null,
      CopyStopTime: null,
      PruneStartTime: null,
      PruneStopTime: null,
      SnapshotsPruned: 0,
      NumberOfFilesDeleted: null,
      Host: 'host-1',
      Workers: 1,
      WorkerFigures: null,
      LogLocation: null,
      ExpireItem: Math.floor(start.getTime() / 1000) + 90 * 86_400,
    } satisfies RunRecord);
    // Every field of the schema, and no other.
    expect(Object.keys(r).sort()).toEqual([...RECORD_FIELDS].sort());
  });

  it('a command-line backup: no job, schedule or window; its own message', () => {
    const r = newRunRecord({
      id: 'b-2',
      label: 'l',
      interval: 'hourly',
      retain: 24,
      source: '/s',
      prefix: '/',
      destination: '/d',
      message: 'waiting for the worker',
      start,
      host: 'pending',
      expireDays: 0.5,
    });
    expect(r).toMatchObject({
      Kind: 'backup',
      Job: null,
      Schedule: null,
      WindowMinutes: null,
      Message: 'waiting for the worker',
      Host: 'pending',
      ExpireItem: Math.floor(start.getTime() / 1000) + 43_200,
    });
  });

  it('a restore: its own fields, its target as its destination, no interval or retain', () => {
    const r = newRunRecord({
      kind: 'restore',
      id: 'r-1',
      job: 'restore',
      label: 'efs-backup',
      snapshot: 'daily.0',
      source: '/mnt/efs/fs-backup/efs-backup',
      prefix: '/docs',
      target: '/mnt/efs/fs-source/restored',
      subdir: 'docs',
      mirror: true,
      message: 'restoring daily.0',
      start,
      host: 'h',
      expireDays: 90,
    });
    expect(r).toMatchObject({
      BackupId: 'r-1',
      Kind: 'restore',
      Job: 'restore',
      Interval: null,
      Retain: null,
      Source: '/mnt/efs/fs-backup/efs-backup',
      Destination: '/mnt/efs/fs-source/restored',
      Target: '/mnt/efs/fs-source/restored',
      RestoredSnapshot: 'daily.0',
      Subdir: 'docs',
      Mirror: true,
      NumberOfFilesDeleted: 0,
      Status: 'Running',
      Snapshot: null,
      NumberOfFilesTransferred: 0,
    });
    expect(Object.keys(r).sort()).toEqual([...RECORD_FIELDS].sort());
    // Told as a restore, not as a backup with an interval.
    expect(runName(r)).toBe('restore of daily.0 of efs-backup');
    expect(summary(r)).toContain('Restored      daily.0 (docs) into /mnt/efs/fs-source/restored');
    expect(summary(r)).not.toContain('retain');
  });

  it('a restore of a whole snapshot has no subdir', () => {
    const r = newRunRecord({
      kind: 'restore',
      id: 'r-2',
      label: 'l',
      snapshot: '20261101T020000Z',
      source: '/b/l',
      prefix: '/',
      target: '/t',
      mirror: false,
      start,
      host: 'h',
      expireDays: 1,
    });
    expect(r).toMatchObject({ Subdir: null, Mirror: false, Job: null });
  });

  it("a run of several workers: given at its start; its summary tells each worker's share", () => {
    const r = newRunRecord({
      id: 'b-3',
      label: 'efs-backup',
      interval: 'daily',
      retain: 7,
      source: '/src',
      prefix: '/',
      destination: '/dst',
      start,
      host: 'pending',
      expireDays: 90,
      workers: 3,
    });
    expect(r).toMatchObject({ Workers: 3, WorkerFigures: null });
    expect(summary(r)).not.toContain('Workers');
    const ended: RunRecord = {
      ...r,
      Status: 'Success',
      WorkerFigures: [
        { Worker: 'i-1', Units: 4, Entries: 1200, Bytes: 3 * 2 ** 20, Seconds: 12.34 },
        { Worker: 'i-2', Units: 1, Entries: 1, Bytes: 0, Seconds: 0.5 },
      ],
    };
    expect(summary(ended)).toContain(
      '  Workers       3: i-1 1,200 entries (3.0 MiB), 4 units in 12.3 s; i-2 1 entry (0 B), 1 unit in 0.5 s\n',
    );
    // A worker that finished units another worker had leased and stopped renewing (it died).
    const takenOver: RunRecord = {
      ...ended,
      WorkerFigures: [{ ...ended.WorkerFigures![0]!, TakenOver: 2 }, ended.WorkerFigures![1]!],
    };
    expect(summary(takenOver)).toContain(
      'i-1 1,200 entries (3.0 MiB), 4 units (2 taken over from a worker that stopped renewing its lease) in 12.3 s; i-2 1 entry',
    );
  });
});
