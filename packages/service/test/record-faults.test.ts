/**
 * The records file under faults: a file of an older schema is migrated with its rows kept; an
 * unreadable file is set aside (never deleted) and a fresh one started, with a warning naming
 * both files.
 */
import Database from 'better-sqlite3';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  newRunRecord,
  readRunLog,
  RECORD_FIELDS,
  runBackup,
  summary,
  type RunPorts,
  type RunRecord,
} from '../src/index.js';
import { defaultRecordsFile } from '../src/local.js';
import { SqliteRecordStore } from '../src/sqlite-record-store.js';
import { ports, records, setUp } from './fixtures.js';

/** The `runs` table as efs-backup wrote it at schema version 1 (before NumberOfFilesCopiedForLinkLimit). */
const SCHEMA_V1 = `CREATE TABLE IF NOT EXISTS runs (BackupId TEXT PRIMARY KEY NOT NULL, Job TEXT, Label TEXT NOT NULL, Interval TEXT NOT NULL, Retain INTEGER NOT NULL, Source TEXT NOT NULL, Prefix TEXT NOT NULL, Destination TEXT NOT NULL, WindowMinutes REAL, Schedule TEXT, Status TEXT NOT NULL, Message TEXT NOT NULL, StartTime TEXT NOT NULL, StopTime TEXT, Snapshot TEXT, NumberOfFiles INTEGER NOT NULL, NumberOfFilesTransferred INTEGER NOT NULL, NumberOfFilesLinked INTEGER NOT NULL, TotalFileSize INTEGER NOT NULL, TotalTransferredFileSize INTEGER NOT NULL, NumberOfWarnings INTEGER NOT NULL, CopyStartTime TEXT, CopyStopTime TEXT, PruneStartTime TEXT, PruneStopTime TEXT, SnapshotsPruned INTEGER NOT NULL, Host TEXT NOT NULL, LogLocation TEXT, ExpireItem INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS runs_by_set ON runs (Destination, Label, StartTime);
CREATE INDEX IF NOT EXISTS runs_by_expiry ON runs (ExpireItem);`;

/** The fields version 3 added (restores). */
type V3Field =
  'Kind' | 'RestoredSnapshot' | 'Target' | 'Subdir' | 'Mirror' | 'NumberOfFilesDeleted';

/** What a version-3 file reads a backup's row of an older file as. */
const ADDED_IN_V3: Pick<RunRecord, V3Field> = {
  Kind: 'backup',
  RestoredSnapshot: null,
  Target: null,
  Subdir: null,
  Mirror: null,
  NumberOfFilesDeleted: null,
};

/** What a version-5 file reads a backup's row of an older file as: it left nothing out. */
const ADDED_IN_V5: Pick<RunRecord, 'Exclude' | 'ExcludeIfPresent'> = {
  Exclude: [],
  ExcludeIfPresent: [],
};

/** What a version-6 file reads a row of an older file as: a run of one worker. */
const ADDED_IN_V6: Pick<RunRecord, 'Workers' | 'WorkerFigures'> = {
  Workers: 1,
  WorkerFigures: null,
};

/** The `runs` table at schema version 2: version 1's, with NumberOfFilesCopiedForLinkLimit. */
const SCHEMA_V2 = SCHEMA_V1.replace(
  'NumberOfFilesLinked INTEGER NOT NULL,',
  'NumberOfFilesLinked INTEGER NOT NULL, NumberOfFilesCopiedForLinkLimit INTEGER NOT NULL DEFAULT 0,',
);

function oldRow(
  dst: string,
  id: string,
  start: string,
): Omit<
  RunRecord,
  | 'NumberOfFilesCopiedForLinkLimit'
  | 'NumberOfFilesRepaired'
  | 'NumberOfFilesChangedByChecksum'
  | V3Field
  | 'Exclude'
  | 'ExcludeIfPresent'
  | 'Workers'
  | 'WorkerFigures'
> {
  return {
    BackupId: id,
    Job: null,
    Label: 'efs-backup',
    Interval: 'daily',
    Retain: 7,
    Source: '/src',
    Prefix: '/',
    Destination: dst,
    WindowMinutes: null,
    Schedule: null,
    Status: 'Success',
    Message: 'snapshot daily/20261101T020000Z is complete',
    StartTime: start,
    StopTime: start,
    Snapshot: '20261101T020000Z',
    NumberOfFiles: 10,
    NumberOfFilesTransferred: 3,
    NumberOfFilesLinked: 7,
    TotalFileSize: 100,
    TotalTransferredFileSize: 30,
    NumberOfWarnings: 0,
    CopyStartTime: start,
    CopyStopTime: start,
    PruneStartTime: start,
    PruneStopTime: start,
    SnapshotsPruned: 0,
    Host: 'old-host',
    LogLocation: null,
    ExpireItem: 4_000_000_000,
  };
}

/** A records file as an older version left it: schema 1 or 2, two runs. */
function olderFile(
  dst: string,
  version: 1 | 2,
): { file: string; rows: ReturnType<typeof oldRow>[] } {
  const file = defaultRecordsFile(dst, 'efs-backup');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const db = new Database(file);
  db.exec(version === 1 ? SCHEMA_V1 : SCHEMA_V2);
  db.pragma(`user_version = ${version}`);
  const rows = [
    oldRow(dst, '00000000-0000-4000-8000-00000000000a', '2026-11-01T02:00:00.000Z'),
    oldRow(dst, '00000000-0000-4000-8000-00000000000b', '2026-11-02T02:00:00.000Z'),
  ];
  const cols = Object.keys(rows[0]!);
  const insert = db.prepare(
    `INSERT INTO runs (${cols.join(', ')}) VALUES (${cols.map((c) => `@${c}`).join(', ')})`,
  );
  for (const r of rows) insert.run(r);
  db.close();
  return { file, rows };
}

describe('schema migration', () => {
  it.each([1, 2] as const)(
    'a version-%i records file is migrated to version 6 (restores: Kind, the restore fields, Interval and Retain nullable; the repaired and checksum counts; the excludes; the workers), keeps its rows, and takes new runs',
    async (version) => {
      const { src, dst } = setUp();
      const { file, rows } = olderFile(dst, version);
      const run = await runBackup({ source: src, destination: dst }, ports());
      expect(run.problems).toEqual([]);
      expect(run.record.Status).toBe('Success');

      const db = new Database(file, { readonly: true });
      expect(db.pragma('user_version', { simple: true })).toBe(6);
      const cols = db.prepare('PRAGMA table_info(runs)').all() as {
        name: string;
        notnull: number;
      }[];
      const indexes = (db.prepare('PRAGMA index_list(runs)').all() as { name: string }[]).map(
        (i) => i.name,
      );
      db.close();
      // As a new file's: the record's fields in its order, the indexes kept.
      expect(cols.map((c) => c.name)).toEqual([...RECORD_FIELDS]);
      expect(cols.filter((c) => c.name === 'Interval' || c.name === 'Retain')).toEqual([
        expect.objectContaining({ notnull: 0 }),
        expect.objectContaining({ notnull: 0 }),
      ]);
      expect(indexes).toEqual(expect.arrayContaining(['runs_by_set', 'runs_by_expiry']));

      const all = await records(dst);
      expect(all.map((r) => r.BackupId)).toEqual([
        run.record.BackupId,
        rows[1]!.BackupId,
        rows[0]!.BackupId,
      ]);
      // The old rows as they were: backups, the new count at 0, no restore fields, no excludes.
      for (const old of rows)
        expect(all.find((r) => r.BackupId === old.BackupId)).toEqual({
          ...old,
          NumberOfFilesCopiedForLinkLimit: 0,
          NumberOfFilesRepaired: 0,
          NumberOfFilesChangedByChecksum: 0,
          ...ADDED_IN_V3,
          ...ADDED_IN_V5,
          ...ADDED_IN_V6,
        });
      expect(all[0]).toEqual(run.record);
      // Opened again: nothing more to migrate.
      const again = await runBackup({ source: src, destination: dst }, ports());
      expect(again.problems).toEqual([]);
      expect(await records(dst)).toHaveLength(4);
    },
  );

  it("a restore's record round-trips through the records file (its mirror a boolean)", async () => {
    const { dst } = setUp();
    const file = defaultRecordsFile(dst, 'efs-backup');
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const store = SqliteRecordStore.open(file);
    const restore: RunRecord = {
      ...newRunRecord({
        kind: 'restore',
        id: 'r',
        label: 'efs-backup',
        snapshot: 'daily.0',
        source: `${dst}/efs-backup`,
        prefix: '/docs',
        target: '/restored',
        subdir: 'docs',
        mirror: true,
        start: new Date('2026-11-03T02:00:00.000Z'),
        host: 'h',
        expireDays: 90,
      }),
      Status: 'Success',
      Interval: 'daily',
      Snapshot: '20261102T020000Z',
      NumberOfFilesDeleted: 2,
    };
    const backup = {
      ...oldRow(dst, 'b', '2026-11-01T02:00:00.000Z'),
      NumberOfFilesCopiedForLinkLimit: 0,
      NumberOfFilesRepaired: 0,
      NumberOfFilesChangedByChecksum: 0,
      ...ADDED_IN_V3,
      ...ADDED_IN_V5,
      ...ADDED_IN_V6,
    };
    await store.put(restore);
    await store.put(backup);
    expect(await store.get('r')).toEqual(restore);
    expect(await store.list()).toEqual([restore, backup]);
    await store.put({ ...restore, Mirror: false });
    expect((await store.get('r'))!.Mirror).toBe(false);
    await store.close();
  });

  it("a run of several workers round-trips through the records file, each worker's figures kept", async () => {
    const { dst } = setUp();
    const file = defaultRecordsFile(dst, 'efs-backup');
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const store = SqliteRecordStore.open(file);
    const shared: RunRecord = {
      ...oldRow(dst, 's', '2026-11-04T02:00:00.000Z'),
      NumberOfFilesCopiedForLinkLimit: 0,
      NumberOfFilesRepaired: 0,
      NumberOfFilesChangedByChecksum: 0,
      ...ADDED_IN_V3,
      ...ADDED_IN_V5,
      Workers: 2,
      WorkerFigures: [
        { Worker: 'host-a:1', Units: 3, Entries: 6, Bytes: 60, Seconds: 1.25 },
        { Worker: 'host-b:2', Units: 2, Entries: 4, Bytes: 40, Seconds: 1 },
      ],
    };
    await store.put(shared);
    expect(await store.get('s')).toEqual(shared);
    await store.close();
  });

  it('the summary (log and notices) tells unchanged files copied because a link failed', () => {
    const { dst } = setUp();
    const r: RunRecord = {
      ...oldRow(dst, 'b', '2026-11-01T02:00:00.000Z'),
      ...ADDED_IN_V3,
      ...ADDED_IN_V6,
      NumberOfFilesTransferred: 180,
      NumberOfFilesCopiedForLinkLimit: 177,
    };
    expect(summary(r)).toMatch(
      /180 copied \(30 B\), of which 177 unchanged but copied because a hard link to the previous snapshot failed/,
    );
    expect(summary({ ...r, NumberOfFilesCopiedForLinkLimit: 0 })).not.toMatch(/hard link/);
  });
});

const GARBAGE: Record<string, (file: string) => void> = {
  'random bytes': (file) =>
    fs.writeFileSync(
      file,
      Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919 + 13) % 251)),
    ),
  'a text file': (file) =>
    fs.writeFileSync(file, 'these are not the records you are looking for\n'.repeat(50)),
  'a database with a damaged page': (file) => {
    const db = new Database(file);
    db.exec('CREATE TABLE runs (BackupId TEXT PRIMARY KEY, Message TEXT)');
    const ins = db.prepare('INSERT INTO runs VALUES (?, ?)');
    for (let i = 0; i < 200; i++) ins.run(`id-${i}`, 'x'.repeat(200));
    db.pragma('user_version = 2');
    db.close();
    // Page 3 onwards overwritten: the header is fine, the b-tree is not.
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, Buffer.alloc(4096 * 3, 0x5a), 0, 4096 * 3, 4096 * 2);
    fs.closeSync(fd);
  },
};

describe('an unreadable records file', () => {
  it.each(Object.keys(GARBAGE))(
    '%s: set aside with a timestamp, never deleted; a fresh file takes the run; the warning names both files',
    async (kind) => {
      const { src, dst } = setUp();
      const file = defaultRecordsFile(dst, 'efs-backup');
      fs.mkdirSync(path.dirname(file), { recursive: true });
      GARBAGE[kind]!(file);
      const bad = fs.readFileSync(file);
      const warned: { obj: object; msg?: string }[] = [];
      const log = {
        info: () => {},
        warn: (obj: object, msg?: string) => warned.push({ obj, msg }),
        error: (obj: object, msg?: string) => warned.push({ obj, msg }),
      };
      const run = await runBackup({ source: src, destination: dst }, ports(), { log });
      expect(run.problems).toEqual([]);
      expect(run.record.Status).toBe('Success');

      const aside = fs
        .readdirSync(path.dirname(file))
        .filter((n) => /^records\.sqlite\.corrupt-\d{8}T\d{6}Z$/.test(n));
      expect(aside).toHaveLength(1);
      const asideFile = path.join(path.dirname(file), aside[0]!);
      expect(fs.readFileSync(asideFile).equals(bad)).toBe(true);
      // The fresh file holds this run only.
      expect((await records(dst)).map((r) => r.BackupId)).toEqual([run.record.BackupId]);
      // Said in the service's log and in the run's log, naming both files.
      const said = warned.map((w) => w.msg ?? '').join('\n');
      expect(said).toContain(file);
      expect(said).toContain(asideFile);
      const runLog = readRunLog(run.record.LogLocation!);
      const note = runLog.lines.find((l) => String(l.msg).includes(asideFile));
      expect(note).toMatchObject({ level: 'warn' });
      expect(String(note!.msg)).toContain(file);
    },
  );

  it('a records file that is busy or of a newer schema is not set aside', async () => {
    const { src, dst } = setUp();
    await runBackup({ source: src, destination: dst }, ports());
    const file = defaultRecordsFile(dst, 'efs-backup');
    const db = new Database(file);
    db.pragma('user_version = 99');
    db.close();
    const run = await runBackup({ source: src, destination: dst }, ports());
    expect(run.problems.join('\n')).toContain('written by a newer efs-backup (schema 99)');
    expect(fs.readdirSync(path.dirname(file)).filter((n) => n.includes('corrupt'))).toEqual([]);
  });
});

describe('a run whose end cannot be written to the records', () => {
  /** The local records, but the run's end (any non-Running record) fails as a full disk does. */
  function fullAtTheEnd(): RunPorts {
    const local = ports();
    return {
      ...local,
      records: async (job) => {
        const store = await local.records(job);
        const put = store.put.bind(store);
        store.put = async (r) => {
          if (r.Status !== 'Running')
            throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
          return put(r);
        };
        return store;
      },
    };
  }

  it('says which status it could not write where; the next run closes it from its log with what really happened', async () => {
    const { src, dst } = setUp();
    const file = defaultRecordsFile(dst, 'efs-backup');
    const failed = await runBackup({ source: src, destination: dst }, fullAtTheEnd(), {
      engine: async () => {
        throw new Error('cannot write the backup: ENOSPC: no space left on device, write');
      },
    });
    expect(failed.record.Status).toBe('Failed');
    expect(failed.problems.join('\n')).toContain(
      `cannot write the end of run ${failed.record.BackupId} (Failed) to ${file}`,
    );
    expect((await records(dst))[0]).toMatchObject({
      BackupId: failed.record.BackupId,
      Status: 'Running',
    });

    const next = await runBackup({ source: src, destination: dst }, ports());
    expect(next.record.Status).toBe('Success');
    const closed = (await records(dst)).find((r) => r.BackupId === failed.record.BackupId)!;
    expect(closed.Status).toBe('Failed');
    expect(closed.Message).toMatch(
      /^cannot write the backup: ENOSPC.*recorded from the run's log by the next run/,
    );
    expect(closed.StopTime).toBe(failed.record.StopTime);
  });

  it('with no end in its log either: Unknown, saying it could not be written as well as killed', async () => {
    const { src, dst } = setUp();
    const failed = await runBackup({ source: src, destination: dst }, fullAtTheEnd());
    fs.writeFileSync(failed.record.LogLocation!, ''); // the log lost too
    await runBackup({ source: src, destination: dst }, ports());
    const closed = (await records(dst)).find((r) => r.BackupId === failed.record.BackupId)!;
    expect(closed.Status).toBe('Unknown');
    expect(closed.Message).toMatch(/never reported its end/);
    expect(closed.Message).toMatch(/could not be written/);
  });
});
