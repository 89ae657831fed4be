/**
 * Records: every run writes one row of DESIGN.md's schema in a real SQLite file, with the right
 * fields for each way a run ends, a log beside it, and records past ExpireItem purged with
 * their logs.
 */
import Database from 'better-sqlite3';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { leaveSocket } from '../../cli/test/helpers.js';
import { backup } from '@efs-backup/core';
import { ManualClock, RECORD_FIELDS, readRunLog, runBackup, type RunRecord } from '../src/index.js';
import { defaultRecordsFile } from '../src/local.js';
import { createBigTree } from '../../core/test/fixtures/big-tree.js';
import { MemoryLeaseStore } from '../../core/test/fixtures/memory-lease-store.js';
import { memoryNotifier, ports, records, setUp, snapshots } from './fixtures.js';

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const UUID = /^[0-9a-f-]{36}$/;
const DAY = 86_400;

/** The stored row is the record the run returned, field for field. */
async function stored(dst: string, r: RunRecord): Promise<RunRecord> {
  const rows = await records(dst);
  const row = rows.find((x) => x.BackupId === r.BackupId);
  expect(row).toEqual(r);
  expect(Object.keys(row!).sort()).toEqual([...RECORD_FIELDS].sort());
  return row!;
}

function expectLog(r: RunRecord): { lines: Record<string, unknown>[]; summary: string } {
  expect(r.LogLocation).toBe(
    path.join(r.Destination, r.Label, '.efs-backup', 'logs', `${r.BackupId}.log`),
  );
  const log = readRunLog(r.LogLocation!);
  expect(log.lines.length).toBeGreaterThan(0);
  for (const l of log.lines) expect(l.BackupId).toBe(r.BackupId);
  expect(log.lines.at(-1)).toMatchObject({ msg: `run ended: ${r.Status}`, record: r });
  expect(log.summary).toContain(r.Message);
  expect(log.summary).toContain(`Status        ${r.Status}`);
  expect(log.summary).toMatch(/What to do: /);
  return log;
}

const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
});

describe('each way a run ends writes the right fields', () => {
  it('Success: the figures, the snapshot, phase times, the log and ExpireItem (90 days)', async () => {
    const { src, dst } = setUp();
    const before = Math.floor(Date.now() / 1000);
    const { record: r } = await runBackup(
      { source: src, destination: dst, interval: 'daily', retain: 3 },
      ports(),
      { refusals: 'throw' },
    );
    await stored(dst, r);
    expect(r).toMatchObject({
      Job: null,
      Schedule: null,
      Label: 'efs-backup',
      Interval: 'daily',
      Retain: 3,
      Source: src,
      Prefix: '/',
      Destination: dst,
      WindowMinutes: null,
      Status: 'Success',
      NumberOfFiles: 6,
      NumberOfFilesTransferred: 4,
      NumberOfFilesLinked: 0,
      TotalFileSize: 1008,
      TotalTransferredFileSize: 1008,
      NumberOfWarnings: 0,
      SnapshotsPruned: 0,
      Host: os.hostname(),
    });
    expect(r.BackupId).toMatch(UUID);
    expect(r.Message).toBe(`snapshot daily/${r.Snapshot} is complete`);
    expect(snapshots(dst)).toEqual([r.Snapshot]);
    const times = [
      r.StartTime,
      r.CopyStartTime,
      r.CopyStopTime,
      r.PruneStartTime,
      r.PruneStopTime,
      r.StopTime,
    ];
    for (const t of times) expect(t).toMatch(ISO);
    expect([...times].sort()).toEqual(times);
    const start = Math.floor(Date.parse(r.StartTime) / 1000);
    expect(start).toBeGreaterThanOrEqual(before);
    expect(r.ExpireItem).toBe(start + 90 * DAY);
    const log = expectLog(r);
    expect(log.lines[0]).toMatchObject({ msg: 'run started', level: 'info' });
    // The file is where DESIGN.md puts it, readable by its owner only.
    const file = defaultRecordsFile(dst, 'efs-backup');
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
  });

  it('the table has one column per field of the record, keyed by BackupId', () => {
    const { dst } = setUp();
    return runBackup({ source: setUp().src, destination: dst }, ports()).then(() => {
      const db = new Database(defaultRecordsFile(dst, 'efs-backup'), { readonly: true });
      const cols = db.prepare('PRAGMA table_info(runs)').all() as { name: string; pk: number }[];
      db.close();
      expect(cols.map((c) => c.name)).toEqual([...RECORD_FIELDS]);
      expect(cols.filter((c) => c.pk).map((c) => c.name)).toEqual(['BackupId']);
    });
  });

  it('a records file is kept across runs: no schema rewrite, an empty journal, newer schemas refused', async () => {
    const { src, dst } = setUp();
    const first = await runBackup({ source: src, destination: dst }, ports());
    const file = defaultRecordsFile(dst, 'efs-backup');
    const second = await runBackup({ source: src, destination: dst }, ports());
    expect((await records(dst)).map((r) => r.BackupId).sort()).toEqual(
      [first.record.BackupId, second.record.BackupId].sort(),
    );
    // The journal stays between transactions, truncated: nothing for a reader to replay.
    expect(fs.statSync(`${file}-journal`).size).toBe(0);
    const db = new Database(file);
    expect(db.pragma('user_version', { simple: true })).toBe(6);
    db.pragma('user_version = 7');
    db.close();
    const later = await runBackup({ source: src, destination: dst }, ports());
    expect(later.problems.join('\n')).toContain('written by a newer efs-backup (schema 7)');
    const raw = new Database(file, { readonly: true });
    const ids = raw.prepare('SELECT BackupId FROM runs').all() as { BackupId: string }[];
    raw.close();
    expect(ids.map((r) => r.BackupId)).not.toContain(later.record.BackupId);
    expect(ids).toHaveLength(2);
  });

  it('SuccessWithWarnings: the warning is counted, and listed in the log', async () => {
    const { src, dst } = setUp();
    leaveSocket(path.join(src, 'sub', 'app.sock'));
    const { record: r, warnings } = await runBackup({ source: src, destination: dst }, ports());
    await stored(dst, r);
    expect(r).toMatchObject({ Status: 'SuccessWithWarnings', NumberOfWarnings: 1 });
    expect(r.Snapshot).toMatch(/^\d{8}T\d{6}Z$/);
    expect(warnings.map((w) => w.path)).toEqual(['sub/app.sock']);
    const log = expectLog(r);
    expect(log.lines).toContainEqual(
      expect.objectContaining({ level: 'warn', path: 'sub/app.sock', msg: 'entry not backed up' }),
    );
  });

  it('Incomplete (stopped): no snapshot, the partial kept, StopTime and figures so far', async () => {
    const { src, dst } = setUp();
    const stop = new AbortController();
    stop.abort();
    const { record: r } = await runBackup({ source: src, destination: dst }, ports(), {
      signal: stop.signal,
    });
    await stored(dst, r);
    expect(r).toMatchObject({ Status: 'Incomplete', Snapshot: null, PruneStartTime: null });
    expect(r.Message).toMatch(/stopped before the backup completed; the next run continues/);
    expect(r.StopTime).toMatch(ISO);
    expect(snapshots(dst)).toEqual([]);
    expect(fs.readdirSync(path.join(dst, 'efs-backup', 'daily'))).toEqual([
      expect.stringMatching(/^\.\d{8}T\d{6}Z\.partial$/),
    ]);
    expectLog(r);
  });

  it('Failed (could not start: the source is not mounted): recorded, logged, notified', async () => {
    const { base, dst } = setUp();
    const notes = memoryNotifier();
    const { record: r } = await runBackup(
      {
        name: 'projects',
        source: path.join(base, 'not-mounted'),
        destination: dst,
        schedule: '0 2 * * *',
      },
      ports([notes]),
    );
    await stored(dst, r);
    expect(r).toMatchObject({
      Status: 'Failed',
      Job: 'projects',
      Schedule: '0 2 * * *',
      Snapshot: null,
      NumberOfFiles: 0,
      CopyStartTime: null,
    });
    expect(r.Message).toMatch(/source \S*not-mounted does not exist/);
    expect(r.StopTime).toMatch(ISO);
    expectLog(r);
    expect(notes.sent).toEqual([r]);
  });

  it('Failed (the engine broke mid-run): the Running record becomes Failed with the reason', async () => {
    const { src, dst } = setUp();
    const { record: r } = await runBackup({ source: src, destination: dst }, ports(), {
      engine: async () => {
        throw new Error('EIO: i/o error, read');
      },
    });
    await stored(dst, r);
    expect(r).toMatchObject({ Status: 'Failed', Message: 'EIO: i/o error, read' });
    expectLog(r);
  });

  it('the set is locked once, by the run, from before its record is written until the engine ends', async () => {
    const { src, dst } = setUp();
    const lockFile = path.join(dst, 'efs-backup', '.efs-backup', 'lock');
    let heldAtStart: unknown = null;
    let heldInEngine: unknown = null;
    const { record: r } = await runBackup({ source: src, destination: dst }, ports(), {
      onStart: () => (heldAtStart = JSON.parse(fs.readFileSync(lockFile, 'utf8')).owner),
      engine: async (o) => {
        heldInEngine = JSON.parse(fs.readFileSync(lockFile, 'utf8')).owner;
        expect(o.started?.options.destination).toBe(dst);
        throw new Error('stopped here');
      },
    });
    expect(heldAtStart).toBe(r.BackupId);
    expect(heldInEngine).toBe(r.BackupId);
    expect(fs.existsSync(lockFile)).toBe(false); // released although the engine never did
  });

  it('Skipped (another live run holds the set): recorded with the reason; refused without a trace on the command line', async () => {
    const { src, dst } = setUp();
    const sleeper = spawn('sleep', ['60'], { stdio: 'ignore' });
    children.push(sleeper);
    const dataDir = path.join(dst, 'efs-backup', '.efs-backup');
    fs.mkdirSync(dataDir, { recursive: true });
    const now = new Date().toISOString();
    fs.writeFileSync(
      path.join(dataDir, 'lock'),
      JSON.stringify({
        owner: 'other-run',
        host: os.hostname(),
        pid: sleeper.pid,
        startedAt: now,
        heartbeat: now,
      }),
    );
    await expect(
      runBackup({ source: src, destination: dst }, ports(), { refusals: 'throw' }),
    ).rejects.toMatchObject({ code: 'LOCKED' });
    expect(fs.readdirSync(dataDir)).toEqual(['lock']);

    const { record: r } = await runBackup({ source: src, destination: dst }, ports());
    await stored(dst, r);
    expect(r).toMatchObject({ Status: 'Skipped', Snapshot: null, NumberOfFiles: 0 });
    expect(r.Message).toMatch(/another run \(other-run, pid \d+/);
    expectLog(r);
    sleeper.kill('SIGKILL');
  });

  it('Unknown: a Running record left by a killed run is closed by the next run, and notified', async () => {
    const { src, dst } = setUp();
    const first = await runBackup({ source: src, destination: dst }, ports());
    // What a run killed with -9 leaves: its record still Running.
    const killed: RunRecord = {
      ...first.record,
      BackupId: '00000000-0000-4000-8000-000000000001',
      Status: 'Running',
      Message: 'the run is going',
      StopTime: null,
      Snapshot: null,
    };
    const { SqliteRecordStore } = await import('../src/sqlite-record-store.js');
    const store = SqliteRecordStore.open(defaultRecordsFile(dst, 'efs-backup'));
    await store.put(killed);
    await store.close();

    const notes = memoryNotifier();
    const next = await runBackup({ source: src, destination: dst }, ports([notes]));
    expect(next.record.Status).toBe('Success');
    const rows = await records(dst);
    const closed = rows.find((r) => r.BackupId === killed.BackupId)!;
    expect(closed.Status).toBe('Unknown');
    expect(closed.Message).toMatch(/never reported its end/);
    expect(notes.sent.map((r) => r.Status)).toEqual(['Unknown']);
    expect(rows.filter((r) => r.Status === 'Running')).toEqual([]);
  });

  it('bad input on the command line throws and writes nothing', async () => {
    const { base, src, dst } = setUp();
    for (const job of [
      { source: path.join(base, 'nope'), destination: dst },
      { source: src, destination: dst, retain: 0 },
      { source: src, destination: dst, windowMinutes: 0 },
      { source: src, destination: dst, label: 'a/b' },
    ]) {
      await expect(runBackup(job, ports(), { refusals: 'throw' })).rejects.toMatchObject({
        code: 'BAD_INPUT',
      });
    }
    expect(fs.readdirSync(dst)).toEqual([]);
  });
});

/** A shared run's record: its workers' figures, each a worker of the run that finished units. */
function expectShares(record: RunRecord): void {
  const figures = record.WorkerFigures!;
  expect(figures.length).toBeGreaterThan(0);
  for (const w of figures) {
    expect(['w0', 'w1']).toContain(w.Worker);
    expect(w.Units).toBeGreaterThan(0);
  }
  expect(figures.reduce((n, w) => n + w.Entries, 0)).toBeLessThanOrEqual(record.NumberOfFiles);
}

describe('a run shared by several workers (scale-out)', () => {
  it("each worker runs the engine as one of the run's workers; only the one its end names writes the record and notifies", async () => {
    const { dst } = setUp();
    // A tree the run takes a while over: the second worker surely joins it before its commit.
    const src = path.join(path.dirname(dst), 'big');
    createBigTree(src, { top: 14, sub: 3, bigFiles: 2, bigSize: 256 * 1024 });
    const store = new MemoryLeaseStore();
    const notifier = memoryNotifier();
    const ends: { worker: string; committed: boolean }[] = [];
    const worker = (name: string) =>
      runBackup({ source: src, destination: dst, notifyOnSuccess: true }, ports([notifier]), {
        backupId: 'shared-1',
        shared: {
          share: { store, worker: name, workers: 2, leaseMs: 10_000 },
          end: async (record, committed) => {
            ends.push({ worker: name, committed });
            return committed ? record : null;
          },
        },
      });
    const outcomes = await Promise.all([worker('w0'), worker('w1')]);
    // One committed, and wrote the end: its record, its notice.
    expect(ends.filter((e) => e.committed)).toHaveLength(1);
    const [writer] = outcomes.filter((o) => o.reported);
    expect(outcomes.filter((o) => o.reported)).toHaveLength(1);
    expect(notifier.sent).toEqual([writer!.record]);
    expect(writer!.record).toMatchObject({ Status: 'Success', Workers: 2 });
    // Each worker that finished units, with its figures (which one took which units depends on
    // timing: on a fast machine one may take them all).
    expectShares(writer!.record);
    const [row] = await records(dst);
    expect(row).toEqual(writer!.record);
    expect(snapshots(dst)).toEqual([writer!.record.Snapshot]);
    // The other saw the snapshot another worker committed, and wrote nothing; or, its first
    // look at the store after that commit (the event loop is the two workers'), it took no
    // part: Skipped, the run over.
    const other = outcomes.find((o) => !o.reported)!;
    if (other.record.Status === 'Skipped') {
      expect(other.record.Message).toMatch(/the run shared-1 is over: nothing to join/);
    } else {
      expect(other.record).toMatchObject({ Status: 'Success', Snapshot: writer!.record.Snapshot });
    }
    expect(other.notices).toEqual([]);
  });

  it("a job of several workers run by its engine (the command line's --workers): the record says how many, and each one's share", async () => {
    const { dst } = setUp();
    const src = path.join(path.dirname(dst), 'big');
    createBigTree(src, { top: 14, sub: 3, bigFiles: 2, bigSize: 256 * 1024 });
    const store = new MemoryLeaseStore();
    let other: Promise<unknown> | null = null;
    const r = await runBackup({ source: src, destination: dst, workers: 2 }, ports(), {
      backupId: 'shared-2',
      // As the command line's: this process is one worker, and starts the other beside it.
      engine: async (options) => {
        other = backup({
          source: src,
          destination: dst,
          backupId: 'shared-2',
          share: { store, worker: 'w1', workers: 2, commit: false },
        });
        return backup({ ...options, share: { store, worker: 'w0', workers: 2 } });
      },
    });
    await other;
    expect(r.record).toMatchObject({ Status: 'Success', Workers: 2 });
    expectShares(r.record);
    expect(await records(dst)).toEqual([r.record]);
  });
});

describe('expiry', () => {
  it('records past ExpireItem are purged with their logs; the others stay', async () => {
    const { src, dst } = setUp();
    const clock = new ManualClock(new Date('2031-03-01T02:00:00Z'));
    const run = async (expireDays: number): Promise<RunRecord> =>
      (await runBackup({ source: src, destination: dst }, ports(), { clock, expireDays })).record;
    const short = await run(1);
    const long = await run(30);
    expect(short.ExpireItem).toBe(Date.parse('2031-03-02T02:00:00Z') / 1000);
    expect(long.ExpireItem).toBe(Date.parse('2031-03-31T02:00:00Z') / 1000);
    expect(fs.existsSync(short.LogLocation!)).toBe(true);

    // A day and a second later, the next run purges the short-lived record and its log.
    await clock.advanceTo(new Date('2031-03-02T02:00:01Z'));
    const later = await run(30);
    const ids = (await records(dst)).map((r) => r.BackupId);
    expect(ids).toEqual([later.BackupId, long.BackupId]);
    expect(fs.existsSync(short.LogLocation!)).toBe(false);
    expect(fs.existsSync(long.LogLocation!)).toBe(true);

    // And a month later, everything but the newest run's own record.
    await clock.advanceTo(new Date('2031-05-01T00:00:00Z'));
    const last = await run(90);
    expect((await records(dst)).map((r) => r.BackupId)).toEqual([last.BackupId]);
    expect(fs.readdirSync(path.join(dst, 'efs-backup', '.efs-backup', 'logs'))).toEqual([
      `${last.BackupId}.log`,
    ]);
  });
});
