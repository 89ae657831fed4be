/**
 * The lease store in one SQLite file, for N worker processes on one host: every change is one
 * `BEGIN IMMEDIATE` transaction, so each check and its write are one step for every process
 * (the write lock is taken before the read, and a busy process waits for it). One file may hold
 * many scopes. A native addon: only `@efs-backup/service/local` reaches this module, and only
 * when a store is opened.
 *
 * Unit ids are stored as BLOBs of their bytes (a name that is not UTF-8 is no TEXT), so units
 * sort by bytes, as a directory listing's names do.
 */
import {
  bytesOfName,
  leaseOf,
  LeaseStoreBusy,
  nameFromBytes,
  type LeaseRun,
  type LeaseStore,
  type UnitCounts,
  type UnitDone,
  type UnitLease,
  type UnitState,
  type UnitStatus,
} from '@efs-backup/core';
import Database from 'better-sqlite3';
import fs from 'node:fs';
import path from 'node:path';

/**
 * How long a call waits for the write lock here before it answers busy: the other workers'
 * transactions last milliseconds (a few syncs each), so this is one held longer.
 */
const BUSY_MS = 250;

/** 1: the first schema. */
const SCHEMA_VERSION = 1;

const SCHEMA = `
  CREATE TABLE lease_runs (scope TEXT PRIMARY KEY NOT NULL, run TEXT NOT NULL);
  CREATE TABLE lease_units (
    scope TEXT NOT NULL,
    unit BLOB NOT NULL,
    status TEXT NOT NULL,
    owner TEXT NOT NULL,
    expires INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    done TEXT,
    PRIMARY KEY (scope, unit)
  );
  CREATE INDEX lease_units_by_status ON lease_units (scope, status, expires);
  CREATE TABLE lease_claims (scope TEXT PRIMARY KEY NOT NULL, owner TEXT NOT NULL, expires INTEGER NOT NULL);
`;

interface UnitRow {
  unit: Buffer;
  status: UnitStatus;
  owner: string;
  expires: number;
  attempt: number;
  done: string | null;
}

export class SqliteLeaseStore implements LeaseStore {
  private readonly db: Database.Database;
  private readonly sql: ReturnType<typeof statements>;

  /**
   * Opens (creating when needed) the lease file `file`, whose folder must exist, for `scope`
   * (one backup set's interval, as the caller names it).
   */
  constructor(
    readonly file: string,
    readonly scope: string,
  ) {
    if (!scope.isWellFormed())
      throw new Error(`the lease scope ${JSON.stringify(scope)} is not text`);
    if (!fs.existsSync(path.dirname(file)))
      throw new Error(`the folder of the lease file ${file} does not exist`);
    // Opening a new file makes its schema under the write lock: waited for as long as it takes.
    const db = new Database(file, { timeout: 15_000 });
    try {
      // As the records file (sqlite-record-store.ts): a rollback journal, because WAL needs
      // shared memory, which a network file system (a destination on EFS) does not give.
      db.pragma('journal_mode = TRUNCATE');
      db.pragma('synchronous = FULL');
      const version = db.pragma('user_version', { simple: true }) as number;
      if (version > SCHEMA_VERSION)
        throw new Error(`${file} was written by a newer efs-backup (lease schema ${version})`);
      if (version < SCHEMA_VERSION) {
        // IMMEDIATE: the version is read again under the write lock, so two processes opening
        // a new file at once make the schema once.
        db.transaction(() => {
          if ((db.pragma('user_version', { simple: true }) as number) !== 0) return;
          db.exec(SCHEMA);
          db.pragma(`user_version = ${SCHEMA_VERSION}`);
        }).immediate();
      }
      // From now on a lock held longer is answered at once (LeaseStoreBusy), not waited for
      // here: SQLite's wait blocks the process, its walks and heartbeats with it, and a
      // worker stopped inside a transaction holds the lock until it wakes. The caller waits
      // (patientStore), and a stop ends its wait.
      db.pragma(`busy_timeout = ${BUSY_MS}`);
      this.sql = statements(db);
    } catch (e) {
      db.close();
      throw e;
    }
    this.db = db;
  }

  async begin(run: LeaseRun): Promise<LeaseRun> {
    return this.write((): LeaseRun => {
      const stored = this.storedRun();
      if (stored?.runId !== run.runId) {
        if (stored && stored.partialStamp === run.partialStamp) this.sql.reopen.run(this.scope);
        else this.sql.dropUnits.run(this.scope);
        this.sql.dropClaim.run(this.scope);
        this.sql.putRun.run(this.scope, JSON.stringify(run));
      }
      this.sql.addUnit.run(this.scope, Buffer.alloc(0));
      return stored?.runId === run.runId ? stored : run;
    });
  }

  async run(): Promise<LeaseRun | null> {
    return this.answer(() => this.storedRun());
  }

  async publish(units: readonly string[]): Promise<void> {
    const keys = units.map(bytesOfName);
    this.write(() => {
      if (!this.storedRun()) throw new Error(`no run was begun for ${this.scope} in ${this.file}`);
      for (const k of keys) this.sql.addUnit.run(this.scope, k);
    });
  }

  async acquire(worker: string, now: number, ttlMs: number): Promise<UnitLease | null> {
    return this.write((): UnitLease | null => {
      const row = this.sql.leasable.get(this.scope, now) as
        | { rowid: number; unit: Buffer; attempt: number; status: UnitStatus; owner: string }
        | undefined;
      if (!row) return null;
      this.sql.lease.run(worker, now + ttlMs, row.rowid);
      const from = row.status === 'leased' ? row.owner : null;
      return leaseOf(nameFromBytes(row.unit), row.attempt + 1, from);
    });
  }

  async renew(
    worker: string,
    leases: readonly UnitLease[],
    now: number,
    ttlMs: number,
  ): Promise<string[]> {
    return this.write((): string[] =>
      leases
        .filter(
          (l) =>
            this.sql.renew.run(now + ttlMs, this.scope, bytesOfName(l.unit), worker, l.attempt)
              .changes === 0,
        )
        .map((l) => l.unit),
    );
  }

  async complete(worker: string, lease: UnitLease, done: UnitDone): Promise<boolean> {
    const unit = bytesOfName(lease.unit);
    return this.write(
      (): boolean =>
        this.sql.complete.run(JSON.stringify(done), this.scope, unit, worker, lease.attempt)
          .changes > 0,
    );
  }

  async release(worker: string, lease: UnitLease): Promise<void> {
    const unit = bytesOfName(lease.unit);
    this.write(() => this.sql.release.run(this.scope, unit, worker, lease.attempt));
  }

  async counts(now: number): Promise<UnitCounts> {
    return this.answer(() => this.sql.counts.get({ scope: this.scope, now }) as UnitCounts);
  }

  async units(): Promise<UnitState[]> {
    const rows = this.answer(() => this.sql.units.all(this.scope) as UnitRow[]);
    return rows.map((r) => ({
      unit: nameFromBytes(r.unit),
      status: r.status,
      owner: r.owner,
      expires: r.expires,
      attempt: r.attempt,
      done: r.done === null ? null : (JSON.parse(r.done) as UnitDone),
    }));
  }

  async claimCommit(worker: string, now: number, ttlMs: number): Promise<boolean> {
    return this.write((): boolean => {
      if (!this.storedRun()) throw new Error(`no run was begun for ${this.scope} in ${this.file}`);
      const held = this.sql.claim.get(this.scope) as { owner: string; expires: number } | undefined;
      if (held && held.owner !== worker && held.expires > now) return false;
      this.sql.putClaim.run(this.scope, worker, now + ttlMs);
      return true;
    });
  }

  async clear(): Promise<void> {
    this.write(() => {
      this.sql.dropUnits.run(this.scope);
      this.sql.dropClaim.run(this.scope);
      this.sql.dropRun.run(this.scope);
    });
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }

  /** `fn` as one `BEGIN IMMEDIATE` transaction; a lock held longer than `BUSY_MS` is a busy answer. */
  private write<T>(fn: () => T): T {
    return this.answer(() => this.db.transaction(fn).immediate());
  }

  /** A lock held longer than `BUSY_MS` (a write being committed) is a busy answer; any other error names the file. */
  private answer<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      // SQLITE_BUSY, or an extended code of it (_RECOVERY, _SNAPSHOT, _TIMEOUT): nothing was
      // written (a transaction that fails is rolled back), so the call may be made again.
      if (e instanceof Database.SqliteError && e.code.startsWith('SQLITE_BUSY'))
        throw new LeaseStoreBusy(`the lease store ${this.file}`, 'locked by another process', {
          cause: e,
        });
      // SQLite's own messages ("database or disk is full") name no file.
      if (e instanceof Database.SqliteError)
        throw Object.assign(new Error(`${this.file}: ${e.message}`, { cause: e }), {
          code: e.code,
        });
      throw e;
    }
  }

  private storedRun(): LeaseRun | null {
    const row = this.sql.getRun.get(this.scope) as { run: string } | undefined;
    return row ? (JSON.parse(row.run) as LeaseRun) : null;
  }
}

function statements(db: Database.Database) {
  const leasable = "(status = 'open' OR (status = 'leased' AND expires <= @now))";
  return {
    getRun: db.prepare('SELECT run FROM lease_runs WHERE scope = ?'),
    putRun: db.prepare(
      'INSERT INTO lease_runs (scope, run) VALUES (?, ?) ON CONFLICT (scope) DO UPDATE SET run = excluded.run',
    ),
    dropRun: db.prepare('DELETE FROM lease_runs WHERE scope = ?'),
    addUnit: db.prepare(
      "INSERT OR IGNORE INTO lease_units (scope, unit, status, owner, expires, attempt) VALUES (?, ?, 'open', '', 0, 0)",
    ),
    reopen: db.prepare(
      "UPDATE lease_units SET status = 'open', owner = '', expires = 0, done = NULL WHERE scope = ? AND status IN ('leased', 'done')",
    ),
    dropUnits: db.prepare('DELETE FROM lease_units WHERE scope = ?'),
    // Units in the order they were published.
    leasable: db.prepare(
      `SELECT rowid, unit, attempt, status, owner FROM lease_units WHERE scope = ? AND (status = 'open' OR (status = 'leased' AND expires <= ?)) ORDER BY rowid LIMIT 1`,
    ),
    lease: db.prepare(
      "UPDATE lease_units SET status = 'leased', owner = ?, expires = ?, attempt = attempt + 1 WHERE rowid = ?",
    ),
    renew: db.prepare(
      "UPDATE lease_units SET expires = ? WHERE scope = ? AND unit = ? AND status = 'leased' AND owner = ? AND attempt = ?",
    ),
    // Done again by the same lease (a retried call): still true.
    complete: db.prepare(
      "UPDATE lease_units SET status = 'done', done = ?, expires = 0 WHERE scope = ? AND unit = ? AND status IN ('leased', 'done') AND owner = ? AND attempt = ?",
    ),
    release: db.prepare(
      "UPDATE lease_units SET status = 'open', owner = '', expires = 0 WHERE scope = ? AND unit = ? AND status = 'leased' AND owner = ? AND attempt = ?",
    ),
    counts: db.prepare(
      `SELECT COALESCE(SUM(${leasable}), 0) AS open,
              COALESCE(SUM(status = 'leased' AND expires > @now), 0) AS leased,
              COALESCE(SUM(status = 'done'), 0) AS done
       FROM lease_units WHERE scope = @scope`,
    ),
    units: db.prepare(
      'SELECT unit, status, owner, expires, attempt, done FROM lease_units WHERE scope = ? ORDER BY unit',
    ),
    claim: db.prepare('SELECT owner, expires FROM lease_claims WHERE scope = ?'),
    putClaim: db.prepare(
      'INSERT INTO lease_claims (scope, owner, expires) VALUES (?, ?, ?) ON CONFLICT (scope) DO UPDATE SET owner = excluded.owner, expires = excluded.expires',
    ),
    dropClaim: db.prepare('DELETE FROM lease_claims WHERE scope = ?'),
  };
}
