/**
 * The AWS adapters of the service's ports: DynamoDB records against dynalite, S3 logs against
 * s3rver (both on 127.0.0.1), SNS notices against the SDK client mock with the exact request
 * SNS takes; and the service's run lifecycle through all three.
 */
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { composeNotice, runBackup, type RunRecord } from '@efs-backup/service';
import { mockClient } from 'aws-sdk-client-mock';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tmpDir } from '../../core/test/fixtures/tmp.js';
import { createTree, dir, file } from '../../core/test/fixtures/tree.js';
import { DynamoDbRecordStore, S3LogStore, SnsNotifier, snsSubject } from '../src/index.js';
import { REGION, startLocalAws, type LocalAws } from './fixtures/local-aws.js';

let aws: LocalAws;
beforeAll(async () => {
  aws = await startLocalAws();
});
afterAll(async () => {
  await aws?.close();
});

function record(over: Partial<RunRecord> = {}): RunRecord {
  return {
    BackupId: 'b-1',
    Kind: 'backup',
    Job: null,
    Label: 'efs-backup',
    Interval: 'daily',
    Retain: 7,
    Source: '/mnt/efs/fs-source',
    Prefix: '/',
    Exclude: ['*.tmp'],
    ExcludeIfPresent: [],
    Destination: '/mnt/efs/fs-backup',
    RestoredSnapshot: null,
    Target: null,
    Subdir: null,
    Mirror: null,
    WindowMinutes: 180,
    Schedule: 'cron(0 2 * * ? *)',
    Status: 'Success',
    Message: 'the backup completed',
    StartTime: '2026-11-26T02:00:00.000Z',
    StopTime: '2026-11-26T02:10:00.000Z',
    Snapshot: '20261126T020000Z',
    NumberOfFiles: 61,
    NumberOfFilesTransferred: 12,
    NumberOfFilesLinked: 49,
    NumberOfFilesCopiedForLinkLimit: 2,
    NumberOfFilesRepaired: 1,
    NumberOfFilesChangedByChecksum: 0,
    TotalFileSize: 320_000,
    TotalTransferredFileSize: 1234,
    NumberOfWarnings: 0,
    CopyStartTime: '2026-11-26T02:00:01.000Z',
    CopyStopTime: '2026-11-26T02:09:00.000Z',
    PruneStartTime: null,
    PruneStopTime: null,
    SnapshotsPruned: 0,
    NumberOfFilesDeleted: null,
    Host: 'ip-10-0-0-1',
    Workers: 1,
    WorkerFigures: null,
    LogLocation: 's3://logs/logs/efs-backup/b-1.log',
    ExpireItem: 1_800_000_000,
    ...over,
  };
}

describe('DynamoDbRecordStore (dynalite)', () => {
  it('writes and reads a record, nulls included', async () => {
    const store = new DynamoDbRecordStore({
      tableName: await aws.newTable(),
      client: aws.dynamodb,
    });
    const r = record({ PruneStartTime: null, Job: null, WindowMinutes: 12.5 });
    await store.put(r);
    expect(await store.get('b-1')).toEqual(r);
    expect(await store.get('missing')).toBeNull();
    expect(store.location).toMatch(/^DynamoDB table records-/);
  });

  it('an item written before NumberOfFilesCopiedForLinkLimit, NumberOfFilesRepaired and NumberOfFilesChangedByChecksum existed reads them as 0', async () => {
    const store = new DynamoDbRecordStore({
      tableName: await aws.newTable(),
      client: aws.dynamodb,
    });
    const old: Partial<RunRecord> = record();
    delete old.NumberOfFilesCopiedForLinkLimit;
    delete old.NumberOfFilesRepaired;
    delete old.NumberOfFilesChangedByChecksum;
    expect(await store.create(old as RunRecord)).toBe(true);
    expect(await store.get('b-1')).toEqual(
      record({
        NumberOfFilesCopiedForLinkLimit: 0,
        NumberOfFilesRepaired: 0,
        NumberOfFilesChangedByChecksum: 0,
      }),
    );
  });

  it('an item written before restores were recorded reads back as a backup', async () => {
    const store = new DynamoDbRecordStore({
      tableName: await aws.newTable(),
      client: aws.dynamodb,
    });
    /* eslint-disable @typescript-eslint/no-unused-vars */
    const { Kind, RestoredSnapshot, Target, Subdir, Mirror, NumberOfFilesDeleted, ...old } =
      record();
    /* eslint-enable @typescript-eslint/no-unused-vars */
    expect(await store.create(old as RunRecord)).toBe(true);
    expect(await store.get('b-1')).toEqual(record());
    expect(await store.getItem('b-1')).toMatchObject({ Kind: 'backup' });
    expect(await store.listItems({ Status: 'Success' })).toEqual([
      expect.objectContaining({ Kind: 'backup' }),
    ]);
  });

  it("a restore's record keeps its own fields", async () => {
    const store = new DynamoDbRecordStore({
      tableName: await aws.newTable(),
      client: aws.dynamodb,
    });
    const r = record({
      BackupId: 'r-1',
      Kind: 'restore',
      Job: 'restore',
      Interval: 'daily',
      Retain: null,
      Source: '/mnt/efs/fs-backup/efs-backup',
      Destination: '/mnt/efs/fs-source/restored',
      RestoredSnapshot: 'daily.0',
      Target: '/mnt/efs/fs-source/restored',
      Subdir: 'docs',
      Mirror: true,
      NumberOfFilesDeleted: 3,
      Exclude: null,
      ExcludeIfPresent: null,
    });
    await store.put(r);
    expect(await store.get('r-1')).toEqual(r);
    expect(await store.listItems({ Kind: 'restore' })).toEqual([expect.objectContaining(r)]);
  });

  it('an item written before excludes were recorded: a backup left nothing out, a restore has none', async () => {
    const store = new DynamoDbRecordStore({
      tableName: await aws.newTable(),
      client: aws.dynamodb,
    });
    /* eslint-disable @typescript-eslint/no-unused-vars */
    const { Exclude, ExcludeIfPresent, ...backup } = record();
    const {
      Exclude: e,
      ExcludeIfPresent: i,
      ...restore
    } = record({
      BackupId: 'r-1',
      Kind: 'restore',
      Retain: null,
      Mirror: false,
    });
    /* eslint-enable @typescript-eslint/no-unused-vars */
    expect(await store.create(backup as RunRecord)).toBe(true);
    expect(await store.create(restore as RunRecord)).toBe(true);
    expect(await store.get('b-1')).toEqual(record({ Exclude: [], ExcludeIfPresent: [] }));
    expect(await store.get('r-1')).toMatchObject({ Exclude: null, ExcludeIfPresent: null });
  });

  it("a run of several workers keeps each one's figures; an item written before reads as one worker's", async () => {
    const store = new DynamoDbRecordStore({
      tableName: await aws.newTable(),
      client: aws.dynamodb,
    });
    const shared = record({
      BackupId: 's-1',
      Workers: 3,
      WorkerFigures: [
        { Worker: 'i-1', Units: 4, Entries: 30, Bytes: 1000, Seconds: 2.5 },
        { Worker: 'i-2', Units: 0, Entries: 0, Bytes: 0, Seconds: 0 },
        { Worker: 'i-3', Units: 7, Entries: 31, Bytes: 234, Seconds: 3 },
      ],
    });
    await store.put(shared);
    expect(await store.get('s-1')).toEqual(shared);
    /* eslint-disable @typescript-eslint/no-unused-vars */
    const { Workers, WorkerFigures, ...old } = record();
    /* eslint-enable @typescript-eslint/no-unused-vars */
    expect(await store.create(old as RunRecord)).toBe(true);
    expect(await store.get('b-1')).toEqual(record({ Workers: 1, WorkerFigures: null }));
  });

  it('a record write keeps the workflow attributes of the item', async () => {
    const store = new DynamoDbRecordStore({
      tableName: await aws.newTable(),
      client: aws.dynamodb,
    });
    expect(
      await store.create({
        ...record({ Status: 'Running' }),
        StopRule: 'rule-1',
        NotifyOnSuccess: true,
      }),
    ).toBe(true);
    // A second create of the same BackupId (a redelivered start) does nothing.
    expect(await store.create({ ...record({ Status: 'Failed' }) })).toBe(false);
    await store.put(record({ Status: 'Incomplete', Message: 'window' }));
    const item = await store.getItem('b-1');
    expect(item).toMatchObject({ Status: 'Incomplete', StopRule: 'rule-1', NotifyOnSuccess: true });
  });

  it('updates attributes only when the condition holds', async () => {
    const store = new DynamoDbRecordStore({
      tableName: await aws.newTable(),
      client: aws.dynamodb,
    });
    await store.create({ ...record({ Status: 'Running' }), WorkerState: 'launching' });
    expect(
      await store.update(
        'b-1',
        { WorkerState: 'running', WorkerInstance: 'i-1' },
        { WorkerState: 'launching' },
      ),
    ).toBe(true);
    expect(
      await store.update(
        'b-1',
        { WorkerState: 'running', WorkerInstance: 'i-2' },
        { WorkerState: 'launching' },
      ),
    ).toBe(false);
    expect(
      await store.update('b-1', { Notified: '2026-11-26T03:00:00.000Z' }, { Notified: null }),
    ).toBe(true);
    expect(
      await store.update('b-1', { Notified: '2026-11-26T04:00:00.000Z' }, { Notified: null }),
    ).toBe(false);
    // An attribute update never creates an item.
    expect(await store.update('nope', { Closed: 'x' })).toBe(false);
    expect(await store.getItem('nope')).toBeNull();
    expect(await store.getItem('b-1')).toMatchObject({
      WorkerInstance: 'i-1',
      Notified: '2026-11-26T03:00:00.000Z',
    });
  });

  it('lists newest first, filtered and limited, across scan pages', async () => {
    const store = new DynamoDbRecordStore({
      tableName: await aws.newTable(),
      client: aws.dynamodb,
    });
    // Records of ~20 KB each: a scan page holds at most 1 MB, so 60 of them need two pages.
    const big = 'x'.repeat(20_000);
    for (let i = 0; i < 60; i++) {
      await store.put(
        record({
          BackupId: `b-${i}`,
          StartTime: new Date(Date.UTC(2026, 10, 1, 0, i)).toISOString(),
          Status: i % 3 === 0 ? 'Failed' : 'Success',
          Label: i % 2 ? 'odd' : 'even',
          Message: big,
        }),
      );
    }
    const all = await store.list();
    expect(all).toHaveLength(60);
    expect(all[0]!.BackupId).toBe('b-59');
    expect(all.at(-1)!.BackupId).toBe('b-0');
    const failedEven = await store.list({ Status: 'Failed', Label: 'even' });
    expect(failedEven.map((r) => r.BackupId)).toEqual([
      'b-54',
      'b-48',
      'b-42',
      'b-36',
      'b-30',
      'b-24',
      'b-18',
      'b-12',
      'b-6',
      'b-0',
    ]);
    expect((await store.list({ Label: 'odd', limit: 2 })).map((r) => r.BackupId)).toEqual([
      'b-59',
      'b-57',
    ]);
  });

  it('purges the expired records that are not running, and returns them', async () => {
    const store = new DynamoDbRecordStore({
      tableName: await aws.newTable(),
      client: aws.dynamodb,
    });
    const now = new Date('2026-11-26T00:00:00Z');
    const past = Math.floor(now.getTime() / 1000) - 10;
    await store.put(record({ BackupId: 'old', ExpireItem: past }));
    await store.put(record({ BackupId: 'old-running', ExpireItem: past, Status: 'Running' }));
    await store.put(record({ BackupId: 'new', ExpireItem: past + 100 }));
    const gone = await store.purgeExpired(now);
    expect(gone.map((r) => r.BackupId)).toEqual(['old']);
    expect((await store.list()).map((r) => r.BackupId).sort()).toEqual(['new', 'old-running']);
  });
});

describe('S3LogStore (s3rver)', () => {
  it('stores the JSON lines then the summary as one object, and removes only its own logs', async () => {
    const bucket = await aws.newBucket();
    const logs = new S3LogStore({ bucket, client: aws.s3 });
    const r = record({ BackupId: 'run-7', Label: 'projects' });
    const log = await logs.open(r);
    expect(log.location).toBe(`s3://${bucket}/logs/projects/run-7.log`);
    log.write('{"msg":"run started"}');
    log.write('{"msg":"progress"}\n');
    await log.store('efs-backup projects/daily succeeded\n');
    log.write('{"msg":"too late"}');
    const got = await aws.s3.send(
      new GetObjectCommand({ Bucket: bucket, Key: 'logs/projects/run-7.log' }),
    );
    expect(got.ContentType).toBe('text/plain; charset=utf-8');
    expect(await got.Body!.transformToString()).toBe(
      '{"msg":"run started"}\n{"msg":"progress"}\n\nefs-backup projects/daily succeeded\n',
    );

    await aws.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'other/keep.log', Body: 'x' }));
    await logs.remove(`s3://${bucket}/other/keep.log`);
    await logs.remove(`s3://another-bucket/logs/projects/run-7.log`);
    await logs.remove(log.location);
    const left = await aws.s3.send(new ListObjectsV2Command({ Bucket: bucket }));
    expect(left.Contents?.map((o) => o.Key)).toEqual(['other/keep.log']);
  });
});

describe('SnsNotifier (SDK client mock)', () => {
  it('publishes the notice with its subject, body and status attribute', async () => {
    const client = new SNSClient({ region: REGION });
    const mock = mockClient(client);
    mock.on(PublishCommand).resolves({ MessageId: 'm-1' });
    const sns = new SnsNotifier({
      topicArn: 'arn:aws:sns:us-east-1:123456789012:efs-backup',
      client,
    });
    const notice = composeNotice(record({ Status: 'Failed', Message: 'cannot mount' }));
    await sns.send(notice);
    expect(mock.commandCalls(PublishCommand).map((c) => c.args[0].input)).toEqual([
      {
        TopicArn: 'arn:aws:sns:us-east-1:123456789012:efs-backup',
        Subject: '[efs-backup] Failed: efs-backup/daily on ip-10-0-0-1',
        Message: notice.body,
        MessageAttributes: { Status: { DataType: 'String', StringValue: 'Failed' } },
      },
    ]);
    expect(sns.channel).toBe('sns');
  });

  it('keeps subjects to what SNS takes: one line of printable ASCII, at most 100 characters', () => {
    expect(snsSubject('a\nb\tc')).toBe('a b c');
    expect(snsSubject('naïve — ok')).toBe('na?ve ? ok');
    const long = snsSubject('x'.repeat(150));
    expect(long).toHaveLength(100);
    expect(long.endsWith('...')).toBe(true);
  });
});

describe('the run lifecycle through DynamoDB, S3 and SNS', () => {
  it('records the run, stores its log and notifies a failure', async () => {
    const base = tmpDir('efs-backup-aws-lifecycle-');
    const src = path.join(base, 'src');
    const dst = path.join(base, 'dst');
    createTree(src, { 'a.txt': file('hello\n'), sub: dir({ 'b.txt': file('bb') }) });
    fs.mkdirSync(dst);
    const table = await aws.newTable();
    const bucket = await aws.newBucket();
    const store = new DynamoDbRecordStore({ tableName: table, client: aws.dynamodb });
    const client = new SNSClient({ region: REGION });
    const mock = mockClient(client);
    mock.on(PublishCommand).resolves({ MessageId: 'm-1' });
    const ports = {
      records: async () => store,
      logs: new S3LogStore({ bucket, client: aws.s3 }),
      notifiers: [new SnsNotifier({ topicArn: 'arn:aws:sns:us-east-1:1:t', client })],
    };

    const ok = await runBackup({ source: src, destination: dst }, ports, { backupId: 'ok-1' });
    expect(ok.record.Status).toBe('Success');
    expect(ok.problems).toEqual([]);
    expect(await store.get('ok-1')).toEqual(ok.record);
    const log = await aws.s3.send(
      new GetObjectCommand({ Bucket: bucket, Key: 'logs/efs-backup/ok-1.log' }),
    );
    expect(await log.Body!.transformToString()).toContain('efs-backup efs-backup/daily succeeded');
    expect(mock.commandCalls(PublishCommand)).toHaveLength(0);

    const failed = await runBackup(
      { source: path.join(base, 'missing'), destination: dst },
      ports,
      { backupId: 'bad-1' },
    );
    expect(failed.record.Status).toBe('Failed');
    expect((await store.get('bad-1'))?.Status).toBe('Failed');
    expect(mock.commandCalls(PublishCommand)).toHaveLength(1);
    expect(mock.commandCalls(PublishCommand)[0]!.args[0].input.Subject).toMatch(
      /^\[efs-backup\] Failed:/,
    );
  });
});
