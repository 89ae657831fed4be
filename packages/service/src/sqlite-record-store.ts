/**
 * The local RecordStore: one SQLite file. A native addon, so only the local wiring imports this
 * module; the run lifecycle never does (the AWS worker's bundle has no native addon).
 */
import Database from 'better-sqlite3';
import fs from 'node:fs';
import path from 'node:path';
import type { RecordQuery, RecordStore } from './ports.js';
import { RECORD_FIELDS, type RunRecord, type WorkerFigure } from './record.js';

const COLUMN_TYPES: Record<(typeof RECORD_FIELDS)[number], string> = {
  BackupId: 'TEXT PRIMARY KEY NOT NULL',
  Kind: "TEXT NOT NULL DEFAULT 'backup'",
  Job: 'TEXT',
  Label: 'TEXT NOT NULL',
  Interval: 'TEXT',
  Retain: 'INTEGER',
  Source: 'TEXT NOT NULL',
  Prefix: 'TEXT NOT NULL',
  /** A JSON list of strings (names as the engine keeps them, escaped); null for a restore. */
  Exclude: 'TEXT',
  ExcludeIfPresent: 'TEXT',
  Destination: 'TEXT NOT NULL',
  RestoredSnapshot: 'TEXT',
  Target: 'TEXT',
  Subdir: 'TEXT',
  /** 0 or 1 (SQLite has no boolean); null for a backup. */
  Mirror: 'INTEGER',
  WindowMinutes: 'REAL',
  Schedule: 'TEXT',
  Status: 'TEXT NOT NULL',
  Message: 'TEXT NOT NULL',
  StartTime: 'TEXT NOT NULL',
  StopTime: 'TEXT',
  Snapshot: 'TEXT',
  NumberOfFiles: 'INTEGER NOT NULL',
  NumberOfFilesTransferred: 'INTEGER NOT NULL',
  NumberOfFilesLinked: 'INTEGER NOT NULL',
  NumberOfFilesCopiedForLinkLimit: 'INTEGER NOT NULL DEFAULT 0',
  NumberOfFilesRepaired: 'INTEGER NOT NULL DEFAULT 0',
  NumberOfFilesChangedByChecksum: 'INTEGER NOT NULL DEFAULT 0',
  TotalFileSize: 'INTEGER NOT NULL',
  TotalTransferredFileSize: 'INTEGER NOT NULL',
  NumberOfWarnings: 'INTEGER NOT NULL',
  CopyStartTime: 'TEXT',
  CopyStopTime: 'TEXT',
  PruneStartTime: 'TEXT',
  PruneStopTime: 'TEXT',
  SnapshotsPruned: 'INTEGER NOT NULL',
  NumberOfFilesDeleted: 'INTEGER',
  Host: 'TEXT NOT NULL',
  Workers: 'INTEGER NOT NULL DEFAULT 1',
  /** A JSON list of each worker's figures; null for a run of one worker. */
  WorkerFigures: 'TEXT',
  LogLocation: 'TEXT',
  ExpireItem: 'INTEGER NOT NULL',
};

/**
 * 1: the first schema. 2: NumberOfFilesCopiedForLinkLimit. 3: restores (Kind, the restore
 * fields; Interval and Retain nullable). 4: NumberOfFilesRepaired and
 * NumberOfFilesChangedByChecksum. 5: Exclude and ExcludeIfPresent (a backup recorded before
 * reads as having left nothing out). 6: Workers and WorkerFigures (a run recorded before had
 * one worker). A file of an older version is migrated on open, each step in one transaction
 * with its version bump.
 */
const SCHEMA_VERSION = 6;

/**
 * The reserve's size. The end of a run is one row updated in place and the purge of expired
 * rows: a few pages in the journal and the file (measured on a full tmpfs: see
 * record-faults-cli.test.ts), and the run's log, buffered up to 64 KiB, after it.
 */
export const RESERVE_BYTES = 256 * 1024;

const CREATE_TABLE = (
  name: string,
  fields: readonly (typeof RECORD_FIELDS)[number][] = RECORD_FIELDS,
): string =>
  `CREATE TABLE IF NOT EXISTS ${name} (${fields.map((f) => `${f} ${COLUMN_TYPES[f]}`).join(', ')})`;
const CREATE_INDEXES = `CREATE INDEX IF NOT EXISTS runs_by_set ON runs (Destination, Label, StartTime);
   CREATE INDEX IF NOT EXISTS runs_by_expiry ON runs (ExpireItem);`;

/** The columns version 6 added. */
const ADDED_IN_6 = new Set<string>(['Workers', 'WorkerFigures']);
/** The columns version 5 added. */
const ADDED_IN_5 = new Set<string>(['Exclude', 'ExcludeIfPresent']);
/** The columns version 4 added. */
const ADDED_IN_4 = new Set<string>(['NumberOfFilesRepaired', 'NumberOfFilesChangedByChecksum']);
/** The columns version 3 added; the others were there at version 2. */
const ADDED_IN_3 = new Set<string>([
  'Kind',
  'RestoredSnapshot',
  'Target',
  'Subdir',
  'Mirror',
  'NumberOfFilesDeleted',
]);
const V5_COLUMNS = RECORD_FIELDS.filter((f) => !ADDED_IN_6.has(f));
const V4_COLUMNS = V5_COLUMNS.filter((f) => !ADDED_IN_5.has(f));
const V3_COLUMNS = V4_COLUMNS.filter((f) => !ADDED_IN_4.has(f));
const V2_COLUMNS = V3_COLUMNS.filter((f) => !ADDED_IN_3.has(f)).join(', ');

const MIGRATIONS: Record<number, string> = {
  2: 'ALTER TABLE runs ADD COLUMN NumberOfFilesCopiedForLinkLimit INTEGER NOT NULL DEFAULT 0',
  // SQLite cannot drop a NOT NULL (Interval, Retain) in place: the table is made anew, in the
  // record's column order, and the rows copied (each a backup's, as Kind's default says).
  3: `${CREATE_TABLE('runs_v3', V3_COLUMNS)};
      INSERT INTO runs_v3 (${V2_COLUMNS}) SELECT ${V2_COLUMNS} FROM runs;
      DROP TABLE runs;
      ALTER TABLE runs_v3 RENAME TO runs;
      ${CREATE_INDEXES}`,
  // The same way, so the new columns stand in the record's order.
  4: `${CREATE_TABLE('runs_v4', V4_COLUMNS)};
      INSERT INTO runs_v4 (${V3_COLUMNS.join(', ')}) SELECT ${V3_COLUMNS.join(', ')} FROM runs;
      DROP TABLE runs;
      ALTER TABLE runs_v4 RENAME TO runs;
      ${CREATE_INDEXES}`,
  // The same way; a backup of before left nothing out (there was no way to).
  5: `${CREATE_TABLE('runs_v5', V5_COLUMNS)};
      INSERT INTO runs_v5 (${V4_COLUMNS.join(', ')}, Exclude, ExcludeIfPresent)
        SELECT ${V4_COLUMNS.join(', ')},
          CASE Kind WHEN 'restore' THEN NULL ELSE '[]' END,
          CASE Kind WHEN 'restore' THEN NULL ELSE '[]' END
        FROM runs;
      DROP TABLE runs;
      ALTER TABLE runs_v5 RENAME TO runs;
      ${CREATE_INDEXES}`,
  // The same way; a run of before had one worker.
  6: `${CREATE_TABLE('runs_v6')};
      INSERT INTO runs_v6 (${V5_COLUMNS.join(', ')}) SELECT ${V5_COLUMNS.join(', ')} FROM runs;
      DROP TABLE runs;
      ALTER TABLE runs_v6 RENAME TO runs;
      ${CREATE_INDEXES}`,
};

/** A record as a row: SQLite has no boolean and no list (JSON, whose escapes keep any name). */
const rowOf = (r: RunRecord): Record<string, unknown> => ({
  ...r,
  Mirror: r.Mirror === null ? null : r.Mirror ? 1 : 0,
  Exclude: r.Exclude === null ? null : JSON.stringify(r.Exclude),
  ExcludeIfPresent: r.ExcludeIfPresent === null ? null : JSON.stringify(r.ExcludeIfPresent),
  WorkerFigures: r.WorkerFigures === null ? null : JSON.stringify(r.WorkerFigures),
});

const listOf = (v: string | null): string[] | null =>
  v === null ? null : (JSON.parse(v) as string[]);

/** A row as a record. */
const fromRow = (row: unknown): RunRecord => {
  const r = row as Omit<RunRecord, 'Mirror' | 'Exclude' | 'ExcludeIfPresent' | 'WorkerFigures'> & {
    Mirror: number | null;
    Exclude: string | null;
    ExcludeIfPresent: string | null;
    WorkerFigures: string | null;
  };
  return {
    ...r,
    Mirror: r.Mirror === null ? null : r.Mirror !== 0,
    Exclude: listOf(r.Exclude),
    ExcludeIfPresent: listOf(r.ExcludeIfPresent),
    WorkerFigures:
      r.WorkerFigures === null ? null : (JSON.parse(r.WorkerFigures) as WorkerFigure[]),
  };
};

/** SQLite's answers for a file that is not (or no longer) a sound database. */
const unreadable = (code: string | undefined): boolean =>
  code === 'SQLITE_NOTADB' || (code?.startsWith('SQLITE_CORRUPT') ?? false);

class Unreadable extends Error {}

/** `20261201T101500Z`. */
const stamp = (d: Date): string =>
  d
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}Z$/, 'Z');

export class SqliteRecordStore implements RecordStore {
  readonly location: string;
  /** What opening the file had to do that a person should know (a file set aside). */
  readonly warnings: string[] = [];
  private readonly db: Database.Database;
  private readonly insert: Database.Statement;

  private constructor(file: string, db: Database.Database) {
    this.location = file;
    this.db = db;
    // An upsert, not INSERT OR REPLACE: the run's end updates its row in place (same rowid, same
    // page) instead of deleting it and appending a new one, so it needs fewer new pages.
    this.insert = db.prepare(
      `INSERT INTO runs (${RECORD_FIELDS.join(', ')}) VALUES (${RECORD_FIELDS.map((f) => `@${f}`).join(', ')}) ` +
        `ON CONFLICT (BackupId) DO UPDATE SET ${RECORD_FIELDS.filter((f) => f !== 'BackupId')
          .map((f) => `${f} = excluded.${f}`)
          .join(', ')}`,
    );
  }

  /**
   * Opens (creating when needed) the records file; its folder must exist. A file SQLite cannot
   * read (not a database, corrupt, failing its quick check) is renamed aside, never deleted,
   * and a fresh one started; `warnings` names both files.
   */
  static open(file: string): SqliteRecordStore {
    if (!fs.existsSync(path.dirname(file)))
      throw new Error(`the folder of the records file ${file} does not exist`);
    const before = statOf(file);
    try {
      return SqliteRecordStore.openAs(file);
    } catch (e) {
      if (!(e instanceof Unreadable)) throw e;
      const now = statOf(file);
      // Another process set it aside (and maybe started a fresh one) meanwhile: open what is there.
      if (!before || !now || now.ino !== before.ino || now.dev !== before.dev)
        return SqliteRecordStore.openAs(file);
      const aside = setAside(file);
      const store = SqliteRecordStore.openAs(file);
      store.warnings.push(
        `the records file ${file} could not be read (${e.message}); it was set aside as ${aside} and a new records file was started`,
      );
      return store;
    }
  }

  private static openAs(file: string): SqliteRecordStore {
    const db = new Database(file, { timeout: 15_000 });
    try {
      // Rollback journal, not WAL: WAL needs shared memory, which a network file system
      // (the destination, on EFS) does not give. TRUNCATE keeps the journal file between
      // transactions, empty: no create and delete of it per write (round trips and a directory
      // update on EFS), and a reader that finds it empty knows at once it is not a hot journal
      // (PERSIST leaves a zeroed header that every read transaction opens and reads).
      // On a 1 ms mount, open + 2 records + purge: 190 ms with PERSIST, 100 ms now.
      let version: number;
      try {
        db.pragma('journal_mode = TRUNCATE');
        db.pragma('synchronous = FULL');
        version = db.pragma('user_version', { simple: true }) as number;
        if (version > 0) {
          const check = db.pragma('quick_check(1)', { simple: true }) as string;
          if (check !== 'ok') throw new Unreadable(`quick_check: ${check}`);
        }
      } catch (e) {
        if (e instanceof Unreadable) throw e;
        const code = (e as { code?: string }).code;
        if (unreadable(code)) throw new Unreadable((e as Error).message);
        throw e;
      }
      if (version > SCHEMA_VERSION)
        throw new Error(`${file} was written by a newer efs-backup (schema ${version})`);
      if (version < SCHEMA_VERSION) {
        // IMMEDIATE: the version is read again under the write lock, so two processes opening
        // an old file at once migrate it once.
        db.transaction(() => {
          const now = db.pragma('user_version', { simple: true }) as number;
          if (now === 0) {
            // A new file: the schema and its version in one transaction.
            db.exec(`${CREATE_TABLE('runs')}; ${CREATE_INDEXES}`);
          } else {
            for (let v = now + 1; v <= SCHEMA_VERSION; v++) db.exec(MIGRATIONS[v]!);
          }
          if (now < SCHEMA_VERSION) db.pragma(`user_version = ${SCHEMA_VERSION}`);
        }).immediate();
        try {
          fs.chmodSync(file, 0o600);
        } catch {
          /* a file of another owner keeps its mode */
        }
      }
      return new SqliteRecordStore(file, db);
    } catch (e) {
      db.close();
      throw e;
    }
  }

  /** `<file>-reserve`: room kept on the records' file system for a run's last writes. */
  get reserveFile(): string {
    return `${this.location}-reserve`;
  }

  /**
   * Makes sure the reserve is there: RESERVE_BYTES of real blocks beside the records file. A run
   * whose destination fills up gives them back (putting its end) so its end can still be
   * written. Best effort: a file system too full for it already is said by the run's own writes.
   */
  keepReserve(): void {
    const file = this.reserveFile;
    try {
      if (fs.statSync(file).size >= RESERVE_BYTES) return;
    } catch {
      /* made below */
    }
    try {
      const fd = fs.openSync(file, 'w', 0o600);
      try {
        // Written, not just sized: a sparse file would hold no blocks to give back.
        fs.writeSync(fd, Buffer.alloc(RESERVE_BYTES));
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    } catch {
      fs.rmSync(file, { force: true });
    }
  }

  /** Gives the reserve's blocks back; true when there was one. */
  releaseReserve(): boolean {
    try {
      fs.unlinkSync(this.reserveFile);
      return true;
    } catch {
      return false;
    }
  }

  async put(record: RunRecord): Promise<void> {
    try {
      this.insert.run(rowOf(record));
    } catch (e) {
      // The file system is full (or the write failed): give back the reserve and try once more.
      const code = (e as { code?: string }).code ?? '';
      if (!/^SQLITE_(FULL|IOERR)/.test(code) || !this.releaseReserve()) throw e;
      this.insert.run(rowOf(record));
    }
  }

  async get(backupId: string): Promise<RunRecord | null> {
    const row = this.db.prepare('SELECT * FROM runs WHERE BackupId = ?').get(backupId);
    return row === undefined ? null : fromRow(row);
  }

  async list(q: RecordQuery = {}): Promise<RunRecord[]> {
    const where: string[] = [];
    const args: Record<string, unknown> = {};
    for (const key of ['Destination', 'Label', 'Status'] as const) {
      if (q[key] !== undefined) {
        where.push(`${key} = @${key}`);
        args[key] = q[key];
      }
    }
    if (q.Job !== undefined) {
      where.push('Job = @Job');
      args.Job = q.Job;
    }
    const sql =
      `SELECT * FROM runs ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ` +
      `ORDER BY StartTime DESC, rowid DESC${q.limit !== undefined ? ' LIMIT @limit' : ''}`;
    if (q.limit !== undefined) args.limit = q.limit;
    return this.db.prepare(sql).all(args).map(fromRow);
  }

  async purgeExpired(now: Date): Promise<RunRecord[]> {
    const cutoff = Math.floor(now.getTime() / 1000);
    const purge = this.db.transaction(() => {
      const rows = this.db
        .prepare('SELECT * FROM runs WHERE ExpireItem < ? AND Status != ?')
        .all(cutoff, 'Running')
        .map(fromRow);
      this.db
        .prepare('DELETE FROM runs WHERE ExpireItem < ? AND Status != ?')
        .run(cutoff, 'Running');
      return rows;
    });
    return purge();
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}

function statOf(file: string): fs.Stats | null {
  try {
    return fs.statSync(file);
  } catch {
    return null;
  }
}

/**
 * Renames an unreadable records file (and its journal, which belongs to it: left behind it
 * would be replayed into the fresh file) to `<file>.corrupt-<UTC stamp>`; returns the new name.
 */
function setAside(file: string): string {
  const base = `${file}.corrupt-${stamp(new Date())}`;
  let aside = base;
  for (let n = 2; fs.existsSync(aside); n++) aside = `${base}-${n}`;
  fs.renameSync(file, aside);
  try {
    fs.renameSync(`${file}-journal`, `${aside}-journal`);
  } catch {
    /* no journal */
  }
  return aside;
}
