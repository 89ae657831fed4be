/**
 * The three lease stores, one contract (fixtures/lease-contract.ts): files in a real folder,
 * SQLite in a real file, DynamoDB on dynalite (127.0.0.1). And what only a store holding many
 * scopes has to show: its scopes are apart.
 */
import { CreateTableCommand } from '@aws-sdk/client-dynamodb';
import { LeaseStoreBusy, type LeaseStore } from '@efs-backup/core';
import Database from 'better-sqlite3';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { FileLeaseStore } from '../../core/src/file-lease-store.js';
import { tmpDir } from '../../core/test/fixtures/tmp.js';
import { openSqliteLeaseStore } from '../../service/src/local.js';
import { DynamoDbLeaseStore, LEASE_TABLE_KEYS } from '../src/index.js';
import { leaseStoreContract, RUN_A } from './fixtures/lease-contract.js';
import { startLocalAws, type LocalAws } from './fixtures/local-aws.js';

let aws: LocalAws;
let table: string;
beforeAll(async () => {
  aws = await startLocalAws();
  table = `leases-${process.pid}`;
  await aws.dynamodb.send(
    new CreateTableCommand({
      TableName: table,
      AttributeDefinitions: [LEASE_TABLE_KEYS.partitionKey, LEASE_TABLE_KEYS.sortKey].map((k) => ({
        AttributeName: k.name,
        AttributeType: k.type,
      })),
      KeySchema: [
        { AttributeName: LEASE_TABLE_KEYS.partitionKey.name, KeyType: 'HASH' },
        { AttributeName: LEASE_TABLE_KEYS.sortKey.name, KeyType: 'RANGE' },
      ],
      BillingMode: 'PAY_PER_REQUEST',
    }),
  );
});
afterAll(async () => {
  await aws?.close();
});

let scopes = 0;
const newScope = (): string => `efs-backup/daily-${++scopes}`;

leaseStoreContract('FileLeaseStore', async () => {
  const dir = path.join(tmpDir('efs-backup-leases-'), 'leases', 'daily');
  return { open: async () => new FileLeaseStore(dir), racer: { kind: 'file', dir } };
});

leaseStoreContract('SqliteLeaseStore', async () => {
  const file = path.join(tmpDir('efs-backup-leases-'), 'leases.sqlite');
  const scope = newScope();
  return {
    open: () => openSqliteLeaseStore(file, scope),
    racer: { kind: 'sqlite', file, scope },
  };
});

leaseStoreContract('DynamoDbLeaseStore', async () => {
  const scope = newScope();
  return {
    open: async () => new DynamoDbLeaseStore({ tableName: table, client: aws.dynamodb, scope }),
  };
});

// Every read of many items is paged (LastEvaluatedKey), filtered pages coming back empty too.
leaseStoreContract('DynamoDbLeaseStore, 3 items a page', async () => {
  const scope = newScope();
  return {
    open: async () =>
      new DynamoDbLeaseStore({ tableName: table, client: aws.dynamodb, scope, pageSize: 3 }),
  };
});

describe.each([
  [
    'SqliteLeaseStore',
    () => {
      const file = path.join(tmpDir('efs-backup-leases-'), 'leases.sqlite');
      return (scope: string) => openSqliteLeaseStore(file, scope);
    },
  ],
  [
    'DynamoDbLeaseStore',
    () => async (scope: string) =>
      new DynamoDbLeaseStore({ tableName: table, client: aws.dynamodb, scope }),
  ],
] as const)('%s: scopes sharing one store', (_, where) => {
  it("keep apart: one scope's run, units, claim and clear() leave another's as they are", async () => {
    const open = where();
    const [daily, weekly] = [newScope(), newScope()];
    const a: LeaseStore = await open(daily);
    const b: LeaseStore = await open(weekly);
    try {
      await a.begin(RUN_A);
      await a.publish(['x']);
      expect(await b.run()).toBeNull();
      expect(await b.units()).toEqual([]);
      const other = { ...RUN_A, runId: 'weekly-run' };
      expect(await b.begin(other)).toEqual(other);
      expect(await a.run()).toEqual(RUN_A);
      expect(await a.claimCommit('w1', 1000, 100)).toBe(true);
      expect(await b.claimCommit('w2', 1000, 100)).toBe(true);
      expect(await b.acquire('w2', 1000, 100)).toEqual({ unit: '', attempt: 1 });
      expect((await a.units()).map((u) => [u.unit, u.status])).toEqual([
        ['', 'open'],
        ['x', 'open'],
      ]);
      await b.clear();
      expect(await b.run()).toBeNull();
      expect(await a.run()).toEqual(RUN_A);
      expect(await a.counts(1000)).toEqual({ open: 2, leased: 0, done: 0 });
      expect(await a.claimCommit('w3', 1050, 100)).toBe(false);
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe('SqliteLeaseStore: its write lock held by another process (one stopped inside a transaction)', () => {
  it('every change answers busy (LeaseStoreBusy) within a second, not after blocking the process 15 s, and writes nothing; reads answer; all answer again once the lock goes', async () => {
    const file = path.join(tmpDir('efs-backup-leases-'), 'leases.sqlite');
    const store = await openSqliteLeaseStore(file, newScope());
    await store.begin(RUN_A);
    await store.publish(['a', 'b']);
    const held = (await store.acquire('w1', 1000, 100_000))!;
    const other = new Database(file);
    other.exec('BEGIN IMMEDIATE');
    const done = { journalStart: 0, entries: 1, files: 1, bytes: 0, ms: 1 };
    try {
      const changes: Array<[string, () => Promise<unknown>]> = [
        ['begin', () => store.begin(RUN_A)],
        ['publish', () => store.publish(['c'])],
        ['acquire', () => store.acquire('w2', 2000, 100_000)],
        ['renew', () => store.renew('w1', [held], 2000, 100_000)],
        ['complete', () => store.complete('w1', held, done)],
        ['release', () => store.release('w1', held)],
        ['claimCommit', () => store.claimCommit('w1', 2000, 100_000)],
        ['clear', () => store.clear()],
      ];
      for (const [name, call] of changes) {
        const t = performance.now();
        const e = await call().then(
          () => null,
          (x: unknown) => x,
        );
        expect(e, name).toBeInstanceOf(LeaseStoreBusy);
        expect((e as Error).message).toBe(`the lease store ${file} is locked by another process`);
        expect(performance.now() - t, name).toBeLessThan(1000);
      }
      // Readers are not kept out by a writer that has not begun to commit.
      expect(await store.counts(2000)).toEqual({ open: 2, leased: 1, done: 0 });
      expect((await store.run())?.runId).toBe(RUN_A.runId);
    } finally {
      other.exec('ROLLBACK');
      other.close();
    }
    // Nothing was written meanwhile; every call answers now.
    expect((await store.units()).map((u) => [u.unit, u.status])).toEqual([
      ['', 'leased'],
      ['a', 'open'],
      ['b', 'open'],
    ]);
    expect(await store.complete('w1', held, done)).toBe(true);
    await store.close();
  });
});

describe('FileLeaseStore: what a committed run leaves, and who removes it', () => {
  it("clear() leaves the units' folder (nothing reads it); the next run's begin removes it while that run works, and close() waits for that", async () => {
    const dir = path.join(tmpDir('efs-backup-leases-'), 'leases', 'daily');
    const store = new FileLeaseStore(dir);
    await store.begin(RUN_A);
    await store.publish(['a', 'b', 'c']);
    for (let i = 0; i < 4; i++) {
      const lease = (await store.acquire('w1', 1000, 60_000))!;
      expect(
        await store.complete('w1', lease, {
          journalStart: 0,
          entries: 1,
          files: 1,
          bytes: 0,
          ms: 1,
        }),
      ).toBe(true);
    }
    const unitsFolders = (): string[] => fs.readdirSync(dir).filter((n) => /^u\d+$/.test(n));
    const before = unitsFolders();
    expect(before).toHaveLength(1);
    await store.clear();
    // The tombstone says there is no run: the folder left behind is nobody's.
    expect(await store.run()).toBeNull();
    expect(await store.units()).toEqual([]);
    expect(unitsFolders()).toEqual(before);
    expect(fs.readdirSync(dir)).not.toContain('workers');
    // The next run (another partial) starts its own folder; the old one goes in the background.
    const next = new FileLeaseStore(dir);
    await next.begin({
      ...RUN_A,
      runId: 'run-next',
      partialStamp: '20261202T020000Z',
      stamp: '20261202T020000Z',
    });
    expect((await next.units()).map((u) => [u.unit, u.status])).toEqual([['', 'open']]);
    await next.close();
    const after = unitsFolders();
    expect(after).toHaveLength(1);
    expect(after).not.toEqual(before);
    expect(fs.readdirSync(dir).filter((n) => n.startsWith('run.'))).toHaveLength(1);
    await store.close();
  });
});

// The stores of hosts with clocks of their own measure this host's against the one the others
// are judged by: the file server's (a file's time), DynamoDB's (its answers' Date header, to
// the second). This host's clock is moved, not the server's: Date.now() 30 s off the real one.
describe.each([
  [
    'FileLeaseStore',
    "the file server's",
    // A file's time is the kernel's coarse clock, a tick (a few ms) behind the one Date reads.
    50,
    () => new FileLeaseStore(path.join(tmpDir('efs-backup-leases-'), 'leases', 'daily')),
  ],
  [
    'DynamoDbLeaseStore',
    "DynamoDB's",
    0,
    () => new DynamoDbLeaseStore({ tableName: table, client: aws.dynamodb, scope: newScope() }),
  ],
] as const)("%s: this host's clock against the store's", (_, against, tick, open) => {
  afterEach(() => {
    vi.restoreAllMocks();
  });
  const offBy = (ms: number): void => {
    const now = Date.now.bind(Date);
    vi.spyOn(Date, 'now').mockImplementation(() => now() + ms);
  };

  it('a clock that is right: no skew, whether a run was begun or not', async () => {
    const store = open();
    try {
      const right = async (): Promise<void> => {
        const skew = await store.clockSkew();
        expect(skew.against).toBe(against);
        expect(Math.abs(skew.ms)).toBeLessThanOrEqual(tick);
      };
      await right();
      await store.begin(RUN_A);
      await right();
    } finally {
      await store.close();
    }
  });

  it.each([30_000, -30_000])(
    'a clock %i ms off: measured within a second, with its sign',
    async (off) => {
      const store = open();
      try {
        offBy(off);
        const { ms, against: of } = await store.clockSkew();
        expect(of).toBe(against);
        expect(Math.sign(ms)).toBe(Math.sign(off));
        expect(Math.abs(ms - off)).toBeLessThanOrEqual(1000);
      } finally {
        await store.close();
      }
    },
  );
});
