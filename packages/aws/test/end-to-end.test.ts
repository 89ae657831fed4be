/**
 * The AWS workflow end to end on one machine (fixtures/simulation.ts): EventBridge, Auto
 * Scaling, SSM, EFS and CloudWatch played by a harness, the orchestrator fed the events' JSON,
 * the real worker agent (the bundle the stack ships) started as a child process per instance,
 * against local directories standing for the file systems, with DynamoDB (dynalite) and S3
 * (s3rver) on 127.0.0.1. Every way a run can fail ends with its record closed, a notice sent
 * and the group at 0.
 */
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { WORKER_BUNDLE_FILE } from '@efs-backup/aws/bundles';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoDBDocumentClient, ScanCommand } from '@aws-sdk/lib-dynamodb';
import { verify } from '@efs-backup/core';
import {
  createTree,
  diffTrees,
  dir,
  file,
  hardlink,
  rsyncDifferences,
  symlink,
} from '../../core/test/fixtures/tree.js';
import { DynamoDbRecordStore, type RunItem, type WorkerConfigInput } from '../src/index.js';
import { REGION, startLocalAws, type LocalAws } from './fixtures/local-aws.js';
import { burstCreditsQuery } from './fixtures/requests.js';
import { Simulation, TOPIC_ARN, workerEnv, type SimulationOptions } from './fixtures/simulation.js';

let aws: LocalAws;
let base: string;
const sims: Simulation[] = [];

beforeAll(async () => {
  aws = await startLocalAws();
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'efs-backup-aws-e2e-'));
});

afterAll(async () => {
  for (const s of sims) await s.close();
  await aws?.close();
  if (base) fs.rmSync(base, { recursive: true, force: true });
});

async function simulation(
  name: string,
  o: { source: string; backup?: string } & Omit<
    SimulationOptions,
    'aws' | 'base' | 'sourceFileSystemId' | 'backupFileSystemId'
  >,
): Promise<Simulation> {
  const { source, backup, ...rest } = o;
  const s = new Simulation({
    aws,
    base: path.join(base, name),
    sourceFileSystemId: source,
    backupFileSystemId: backup ?? 'fs-backup',
    notifyOnSuccess: false,
    ...rest,
  });
  sims.push(s);
  fs.mkdirSync(path.join(s.filesystems, o.backup ?? 'fs-backup'), { recursive: true });
  return s.setUp();
}

async function item(s: Simulation, backupId: string): Promise<RunItem | null> {
  return new DynamoDbRecordStore({ tableName: s.table, client: aws.dynamodb }).getItem(backupId);
}

async function s3Text(bucket: string, location: string): Promise<string> {
  const key = location.slice(`s3://${bucket}/`.length);
  const r = await aws.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return r.Body!.transformToString();
}

/** Waits until the (asynchronous) condition holds, or fails after `ms`. */
async function poll(what: string, condition: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Every item of a simulation's lease table. */
async function leaseItems(s: Simulation): Promise<Record<string, unknown>[]> {
  const r = await DynamoDBDocumentClient.from(aws.dynamodb).send(
    new ScanCommand({ TableName: s.leaseTable, ConsistentRead: true }),
  );
  return (r.Items ?? []) as Record<string, unknown>[];
}

/** The units leased now (the lease store's items: Key, Status, Owner, Expires, Attempt). */
async function leased(s: Simulation): Promise<Record<string, unknown>[]> {
  return (await leaseItems(s)).filter(
    (i) => i.Status === 'leased' && Number(i.Expires) > Date.now(),
  );
}

const published = (s: Simulation) =>
  s.calls.filter((c) => c.service === 'sns' && c.action === 'Publish').map((c) => c.params);

/** Complete snapshots of a set's interval. */
function snapshots(backupDir: string, interval = 'daily'): string[] {
  const d = path.join(backupDir, 'efs-backup', interval);
  return fs.existsSync(d)
    ? fs
        .readdirSync(d)
        .filter((n) => /^\d{8}T\d{6}Z$/.test(n))
        .sort()
    : [];
}

function partials(backupDir: string, interval = 'daily'): string[] {
  const d = path.join(backupDir, 'efs-backup', interval);
  return fs.existsSync(d) ? fs.readdirSync(d).filter((n) => n.endsWith('.partial')) : [];
}

/**
 * The AWS calls of one run that ends by itself, complete or stopped by its window: the worker
 * reports and scales the group to zero; the orchestrator only starts it and tidies up.
 */
const ONE_RUN = [
  'orchestrator autoscaling.SetDesiredCapacity',
  'orchestrator events.PutRule',
  'orchestrator events.PutTargets',
  'worker sns.Publish',
  'worker autoscaling.SetDesiredCapacity',
  'orchestrator ssm.SendCommand',
  'worker autoscaling.CompleteLifecycleAction',
  'orchestrator events.RemoveTargets',
  'orchestrator events.DeleteRule',
];

/** The restore template's worker, run for `s` with its configuration (`over` changes it). */
async function runRestore(
  s: Simulation,
  over: { table?: string; restore?: Partial<NonNullable<WorkerConfigInput['restore']>> },
): Promise<number | null> {
  const config: WorkerConfigInput = {
    region: REGION,
    table: over.table ?? s.table,
    bucket: s.bucket,
    topicArn: TOPIC_ARN,
    autoScalingGroupName: s.group,
    sourceFileSystemId: s.o.sourceFileSystemId,
    backupFileSystemId: s.o.backupFileSystemId,
    mountRoot: path.join(s.o.base, 'mnt'),
    runDir: s.runDir,
    mount: {
      command: [
        process.execPath,
        new URL('./fixtures/fake-mount.mjs', import.meta.url).pathname,
        '{fileSystemId}',
        '{path}',
        s.filesystems,
      ],
      attempts: 1,
    },
    instanceId: 'i-restore',
    instanceType: 'c7gn.large',
    endpoints: {
      dynamodb: aws.dynamodbEndpoint,
      s3: aws.s3Endpoint,
      sns: s.endpoint,
      autoScaling: s.endpoint,
    },
    restore: { snapshot: 'latest', targetPrefix: '/restored', ...over.restore },
  };
  const file_ = path.join(s.o.base, `restore-${Math.random().toString(36).slice(2)}.json`);
  fs.writeFileSync(file_, JSON.stringify(config));
  s.desired = 1;
  return new Promise<number | null>((resolve) => {
    const child = spawn(process.execPath, [WORKER_BUNDLE_FILE, 'restore', '--config', file_], {
      env: workerEnv(),
      stdio: 'ignore',
    });
    child.on('exit', resolve);
  });
}

describe('the AWS workflow, simulated', () => {
  it('a complete run: started, backed up, finished early, the instance let go, the run closed', async () => {
    const s = await simulation('complete', {
      source: 'fs-source',
      notifyOnSuccess: true,
      fileSystems: {
        'fs-source': { size: 5_368_709_120, throughputMode: 'bursting' },
        'fs-backup': { size: 7_000_000_000, inIA: 6_000_000_000, throughputMode: 'elastic' },
      },
      burstCredits: [2_160_000_000_000, 2_150_000_000_000],
    });
    const src = path.join(s.filesystems, 'fs-source');
    createTree(src, {
      'a.txt': file('hello\n'),
      docs: dir({ 'b.md': file('# b\n'), deep: dir({ 'c.bin': file(Buffer.alloc(70_000, 3)) }) }),
      'link-to-a': symlink('a.txt'),
      'a-again': hardlink('a.txt'),
    });

    const backupId = s.start({ windowMinutes: '180' });
    await s.idle();
    expect(s.errors).toEqual([]);

    const record = await item(s, backupId);
    expect(record).toMatchObject({
      BackupId: backupId,
      Status: 'Success',
      Label: 'efs-backup',
      Interval: 'daily',
      WindowMinutes: 180,
      NumberOfFiles: 7,
      WorkerState: 'done',
      WorkerInstance: s.instances[0]!.id,
      LaunchedInstance: s.instances[0]!.id,
      // What the original recorded, and more: the file systems, the credits, the instance.
      InstanceType: 'c7gn.large',
      SourceFileSystemSize: 5_368_709_120,
      SourceThroughputMode: 'bursting',
      DestinationFileSystemSize: 7_000_000_000,
      DestinationFileSystemSizeInIA: 6_000_000_000,
      DestinationFileSystemSizeInArchive: 0,
      SourceBurstCreditBalanceAtStart: 2_160_000_000_000,
      SourceBurstCreditBalanceAtEnd: 2_150_000_000_000,
    });
    // The worker's reads, as EFS and CloudWatch received them.
    const figures = s.calls.filter(
      (c) => c.service === 'elasticfilesystem' || c.service === 'monitoring',
    );
    expect(figures.map((c) => [c.from, c.service, c.action, c.params])).toEqual([
      ['worker', 'elasticfilesystem', 'DescribeFileSystems', { FileSystemId: 'fs-source' }],
      ['worker', 'elasticfilesystem', 'DescribeFileSystems', { FileSystemId: 'fs-backup' }],
      ...[1, 2].map(() => [
        'worker',
        'monitoring',
        'GetMetricData',
        burstCreditsQuery('fs-source', expect.any(Number), expect.any(Number)),
      ]),
    ]);
    const [q] = figures.slice(2).map((c) => c.params as { StartTime: number; EndTime: number });
    expect(q!.EndTime - q!.StartTime).toBeCloseTo(15 * 60, 3);
    // The stop command's output, kept in the log bucket as the original kept it.
    expect(record?.StopCommandOutput).toMatch(
      new RegExp(`^s3://${s.bucket}/ssm-logs/[0-9a-f-]{36}/${s.instances[0]!.id}/$`),
    );
    await s.until('the stop command output', () => s.ssmOutputs.size === 1);
    const [outputKey, output] = [...s.ssmOutputs][0]!;
    expect(`s3://${s.bucket}/${outputKey}`.startsWith(record!.StopCommandOutput!)).toBe(true);
    expect(output).toBe('efs-backup worker asked to stop (shutdown)\n');
    expect(await s3Text(s.bucket, `s3://${s.bucket}/${outputKey}`)).toBe(output);
    expect(record?.Notified).toBeTruthy();
    expect(record?.Closed).toBeTruthy();
    const backupDir = path.join(s.filesystems, 'fs-backup');
    const [stamp] = snapshots(backupDir);
    expect(record?.Snapshot).toBe(stamp);
    expect(diffTrees(src, path.join(backupDir, 'efs-backup', 'daily', stamp!))).toEqual([]);

    // The log in S3 ends with the human summary.
    expect(record?.LogLocation).toBe(`s3://${s.bucket}/logs/efs-backup/${backupId}.log`);
    const log = await s3Text(s.bucket, record!.LogLocation!);
    expect(log).toContain('"msg":"run started"');
    expect(log).toContain('efs-backup efs-backup/daily succeeded');

    // Success was asked for: the worker notified it, and the orchestrator did not again.
    expect(published(s)).toEqual([
      expect.objectContaining({
        TopicArn: TOPIC_ARN,
        Subject: expect.stringMatching(/^\[efs-backup\] Success: efs-backup\/daily on /),
        'MessageAttributes.entry.1.Value.StringValue': 'Success',
      }),
    ]);
    // The one-time stop rule is gone with the run.
    expect(s.rules.size).toBe(0);
    expect(s.sequence()).toEqual(ONE_RUN);
    // In the order they ended: the launch event arrives while the start is still at work.
    expect(
      s.results.map((r) => `${r.event}:${'action' in r ? r.action : r.reason}`).sort(),
    ).toEqual(['launched:paired', 'start:started', 'terminated:closed', 'terminating:stop-sent']);
    expect(s.instances[0]!.process.exitCode).toBe(0);
    // The worker's own requests, as Auto Scaling's query API received them.
    const instanceId = s.instances[0]!.id;
    expect(
      s.calls
        .filter((c) => c.from === 'worker' && c.service === 'autoscaling')
        .map((c) => [c.action, c.params]),
    ).toEqual([
      [
        'SetDesiredCapacity',
        { AutoScalingGroupName: s.group, DesiredCapacity: '0', HonorCooldown: 'false' },
      ],
      [
        'CompleteLifecycleAction',
        {
          AutoScalingGroupName: s.group,
          LifecycleHookName: 'efs-backup-WorkerTerminating',
          InstanceId: instanceId,
          LifecycleActionResult: 'CONTINUE',
        },
      ],
    ]);

    // The restore template's worker: the snapshot back into the source file system, recorded
    // and notified, and its group scaled to 0.
    s.calls.length = 0;
    const code = await runRestore(s, {
      restore: { snapshot: 'daily.0', subdir: 'docs', targetPrefix: '/restored', delete: false },
    });
    expect(code).toBe(0);
    expect(diffTrees(path.join(src, 'docs'), path.join(src, 'restored'))).toEqual([]);
    const store = new DynamoDbRecordStore({ tableName: s.table, client: aws.dynamodb });
    const restored = (await store.listItems({ Kind: 'restore' }))[0];
    expect(restored).toMatchObject({
      Kind: 'restore',
      Status: 'Success',
      Snapshot: stamp,
      Destination: path.join(s.o.base, 'mnt', 'fs-source', 'restored'),
      NumberOfFilesTransferred: 4,
      // Recorded as a restore: what was asked, not a backup's interval and retain.
      RestoredSnapshot: 'daily.0',
      Target: path.join(s.o.base, 'mnt', 'fs-source', 'restored'),
      Subdir: 'docs',
      Mirror: false,
      NumberOfFilesDeleted: 0,
      Interval: 'daily',
      Retain: null,
    });
    expect(await s3Text(s.bucket, restored!.LogLocation!)).toContain('efs-backup restore done');
    expect(published(s)).toEqual([
      expect.objectContaining({
        Subject: '[efs-backup] Restore Success: daily.0 of efs-backup into fs-source',
      }),
    ]);
    expect(s.sequence()).toEqual(['worker sns.Publish', 'worker autoscaling.SetDesiredCapacity']);
    expect(s.desired).toBe(0);
  });

  it('a run stopped at the window is Incomplete and the next run continues it', async () => {
    const s = await simulation('window', { source: 'fs-big', concurrency: 2 });
    const src = path.join(s.filesystems, 'fs-big');
    const files = bigTree(src, 20, 60, 8 * 1024);

    const first = s.start({ windowMinutes: '30' });
    const backupDir = path.join(s.filesystems, 'fs-backup');
    // Frozen (SIGSTOP) once its partial holds a tenth of the tree: counted on disk, so the run
    // is surely in progress on a slow machine as on a fast one.
    await s.until('the first run to copy a tenth of the tree', () => {
      const p = partials(backupDir)[0];
      return !!p && countEntries(path.join(backupDir, 'efs-backup', 'daily', p)) >= files / 10;
    });
    const worker = s.live()!;
    worker.process.kill('SIGSTOP');
    expect(snapshots(backupDir)).toEqual([]);

    // The stop rule fires 15 minutes before the window ends; the group goes to 0; the
    // orchestrator sends the stop through SSM; the worker, thawed, stops gracefully.
    s.fireStopRule();
    await s.until('the stop command to run', () => s.commandsRun.length === 1);
    worker.process.kill('SIGCONT');
    await s.idle();
    expect(s.errors).toEqual([]);

    const incomplete = await item(s, first);
    expect(incomplete).toMatchObject({
      Status: 'Incomplete',
      Message:
        'the backup window ended before the backup completed; the next run continues from where this one stopped',
      Snapshot: null,
    });
    expect(incomplete!.NumberOfFilesTransferred).toBeGreaterThan(0);
    expect(partials(backupDir)).toHaveLength(1);
    expect(published(s)).toEqual([
      expect.objectContaining({ Subject: expect.stringMatching(/^\[efs-backup\] Incomplete: /) }),
    ]);
    expect(s.sequence()).toEqual([
      'orchestrator autoscaling.SetDesiredCapacity',
      'orchestrator events.PutRule',
      'orchestrator events.PutTargets',
      'orchestrator autoscaling.SetDesiredCapacity',
      'orchestrator ssm.SendCommand',
      'worker sns.Publish',
      'worker autoscaling.CompleteLifecycleAction',
      'orchestrator events.RemoveTargets',
      'orchestrator events.DeleteRule',
    ]);
    expect(s.commandsRun[0]![1]).toContain('echo window >');

    // The next day's run resumes the partial and commits the snapshot.
    const second = s.start({ windowMinutes: '30' });
    await s.idle();
    const done = await item(s, second);
    expect(done).toMatchObject({ Status: 'Success', NumberOfFiles: files + 20 });
    // What the first run copied was not copied again.
    expect(done!.NumberOfFilesTransferred).toBeLessThan(files);
    expect(partials(backupDir)).toEqual([]);
    expect(diffTrees(src, path.join(backupDir, 'efs-backup', 'daily', done!.Snapshot!))).toEqual(
      [],
    );
    expect(s.instances).toHaveLength(2);
  });

  it('a worker stops by itself at its stop time when no stop comes, and lets its group go', async () => {
    const s = await simulation('own-window', { source: 'fs-source2' });
    createTree(path.join(s.filesystems, 'fs-source2'), { 'a.txt': file('a') });
    const store = new DynamoDbRecordStore({ tableName: s.table, client: aws.dynamodb });
    // The instance boots past the run's stop time, and the stop rule's event is lost.
    s.onLaunch = async () => {
      const [run] = await store.listItems({ Status: 'Running' });
      await store.update(run!.BackupId, { StopAt: new Date(Date.now() - 1000).toISOString() });
    };
    const backupId = s.start();
    await s.idle();
    expect(s.errors).toEqual([]);
    expect(await item(s, backupId)).toMatchObject({
      Status: 'Incomplete',
      Message:
        'the backup window ended before the backup completed; the next run continues from where this one stopped',
      Closed: expect.any(String),
    });
    expect(s.sequence()).toEqual(ONE_RUN);
    expect(s.desired).toBe(0);
  });

  it('a mount failure is recorded Failed and notified once', async () => {
    const s = await simulation('mount-failure', { source: 'fs-missing' });
    const backupId = s.start();
    await s.idle();
    expect(s.errors).toEqual([]);
    const record = await item(s, backupId);
    expect(record).toMatchObject({ Status: 'Failed', WorkerState: 'done' });
    expect(record!.Message).toMatch(
      /^cannot mount the source file system fs-missing at .*\/mnt\/fs-missing: Failed to resolve "fs-missing\.efs\.us-east-1\.amazonaws\.com"/,
    );
    expect(await s3Text(s.bucket, record!.LogLocation!)).toContain(
      'efs-backup efs-backup/daily failed: cannot mount',
    );
    const notices = published(s);
    expect(notices).toHaveLength(1);
    expect(notices[0]).toMatchObject({
      Subject: expect.stringMatching(/^\[efs-backup\] Failed: efs-backup\/daily on /),
      Message: expect.stringContaining('cannot mount the source file system fs-missing'),
    });
    expect(s.rules.size).toBe(0);
    expect(s.instances[0]!.process.exitCode).toBe(0);
  });

  it('a source low on burst credits: the worker slows the run to the floor and back once they recover', async () => {
    const TiB = 2 ** 40;
    const s = await simulation('low-credits', {
      source: 'fs-source',
      fileSystems: {
        'fs-source': { size: 5_368_709_120, throughputMode: 'bursting' },
        'fs-backup': { size: 1_000_000, throughputMode: 'elastic' },
      },
      // Under the 1 TiB floor at the start and at the first check, then recovered.
      burstCredits: [0.25 * TiB, 0.3 * TiB, ...Array<number>(10_000).fill(1.5 * TiB)],
      worker: { maxMiBps: '50', lowCreditMaxMiBps: 1, creditCheckSeconds: 1 },
    });
    const src = path.join(s.filesystems, 'fs-source');
    // 3 MiB: at 1 MiB/s until the second check (2 s in) at least, where 50 MiB/s would take 0.1 s.
    createTree(src, { 'big.bin': file(Buffer.alloc(3 * 2 ** 20, 7)), 'a.txt': file('a\n') });
    const backupId = s.start();
    await s.idle();
    expect(s.errors).toEqual([]);
    const record = await item(s, backupId);
    expect(record).toMatchObject({
      Status: 'Success',
      SourceBurstCreditBalanceAtStart: 0.25 * TiB,
      SourceBurstCreditBalanceAtEnd: 1.5 * TiB,
    });
    // A lower bound the floor sets (never a flaky upper one): the engine's reads were held to it.
    expect(Date.parse(record!.StopTime!) - Date.parse(record!.StartTime)).toBeGreaterThan(1900);
    const changes = s.instances[0]!.output.flatMap((l) => {
      if (!l.startsWith('{')) return []; // node's warnings on standard error
      const o = JSON.parse(l) as { msg?: string; maxMiBps?: number | null };
      return o.msg?.startsWith("the source's burst credits are") ? [[o.msg, o.maxMiBps]] : [];
    });
    expect(changes).toEqual([
      ["the source's burst credits are under the floor: reads slowed to 1 MiB/s", 1],
      ["the source's burst credits are back over the floor: the configured limits again", 50],
    ]);
    const [stamp] = snapshots(path.join(s.filesystems, 'fs-backup'));
    expect(
      diffTrees(src, path.join(s.filesystems, 'fs-backup', 'efs-backup', 'daily', stamp!)),
    ).toEqual([]);
  });
});

describe('every way a run fails ends closed, told, and at 0', () => {
  const CAPACITY =
    'We currently do not have sufficient c7gn.large capacity in the Availability Zone you requested (us-east-1b). Our system will be working on provisioning additional capacity. You can currently get c7gn.large capacity by not specifying an Availability Zone in your request or choosing us-east-1a, us-east-1c. Launching EC2 instance failed.';

  it('a launch that keeps failing: Failed with the cause after three tries, notified, the group at 0', async () => {
    const s = await simulation('launch-fails', { source: 'fs-source3', launchFailureLimit: 3 });
    // Tries far enough apart that each failure is told before the next.
    s.launchPlan = { failures: 1000, message: CAPACITY, retryMs: 300 };
    const backupId = s.start();
    await s.idle();
    expect(s.errors).toEqual([]);
    const record = await item(s, backupId);
    expect(record).toMatchObject({
      Status: 'Failed',
      Message: `the Auto Scaling group ${s.group} could not launch the worker (3 tries): ${CAPACITY}`,
      WorkerState: 'done',
      LaunchFailures: 3,
      Closed: expect.any(String),
      Notified: expect.any(String),
    });
    expect(published(s)).toEqual([
      expect.objectContaining({
        Subject: '[efs-backup] Failed: efs-backup/daily on pending',
        Message: expect.stringContaining(CAPACITY),
      }),
    ]);
    expect(s.instances).toHaveLength(0);
    expect(s.desired).toBe(0);
    expect(s.rules.size).toBe(0);
    expect(s.sequence().filter((c) => c.startsWith('orchestrator'))).toEqual([
      'orchestrator autoscaling.SetDesiredCapacity',
      'orchestrator events.PutRule',
      'orchestrator events.PutTargets',
      'orchestrator sns.Publish',
      'orchestrator events.RemoveTargets',
      'orchestrator events.DeleteRule',
      'orchestrator autoscaling.SetDesiredCapacity',
    ]);
  });

  it("launches failing unheard (the events lost): the stop closes the run Failed with Auto Scaling's cause", async () => {
    const s = await simulation('launch-unheard', { source: 'fs-source4' });
    const reason =
      'Value (sg-0123456789abcdef0) for parameter groupId is invalid. The security group does not exist. Launching EC2 instance failed.';
    s.launchPlan = { failures: 1_000_000, message: reason, deliver: false, retryMs: 50 };
    const backupId = s.start();
    await s.until('two failed launches', () => s.activities.length >= 2 && s.rules.size === 1);
    s.fireStopRule();
    await s.idle();
    expect(s.errors).toEqual([]);
    expect(await item(s, backupId)).toMatchObject({
      Status: 'Failed',
      Message: `no worker took the run before its stop time: the Auto Scaling group ${s.group} could not launch the worker: ${reason}`,
      Closed: expect.any(String),
      Notified: expect.any(String),
    });
    expect(published(s)).toHaveLength(1);
    expect(s.calls.find((c) => c.action === 'DescribeScalingActivities')?.params).toEqual({
      AutoScalingGroupName: s.group,
      MaxRecords: '20',
    });
    expect(s.desired).toBe(0);
    expect(s.rules.size).toBe(0);
  });

  it('an instance whose user data fails: its trap tells why and lets the group go; the run is closed Failed once it is gone', async () => {
    const s = await simulation('bootstrap-fails', { source: 'fs-source5', heartbeatMs: 300 });
    const why =
      'the instance could not set the worker up: line 14 (dnf install -y amazon-efs-utils) exited 1';
    s.bootstrapFails = why;
    const backupId = s.start();
    await s.idle();
    expect(s.errors).toEqual([]);
    const instance = s.instances[0]!;
    const record = await item(s, backupId);
    expect(record).toMatchObject({
      Status: 'Failed',
      Host: instance.id,
      LaunchedInstance: instance.id,
      Closed: expect.any(String),
    });
    expect(record!.Message).toMatch(
      new RegExp(
        `^no worker took the run: its instance ${instance.id} ended before the worker started`,
      ),
    );
    // The instance's own notice says why; the run's says what became of it.
    expect(published(s)).toEqual([
      expect.objectContaining({
        Subject: `[efs-backup] Failed: the backup worker on ${instance.id} did not start`,
        Message: why,
      }),
      expect.objectContaining({
        Subject: '[efs-backup] Failed: efs-backup/daily on ' + instance.id,
      }),
    ]);
    const by = (who: string) => s.sequence().filter((c) => c.startsWith(who));
    expect(by('worker')).toEqual(['worker sns.Publish', 'worker autoscaling.SetDesiredCapacity']);
    expect(by('orchestrator')).toEqual([
      'orchestrator autoscaling.SetDesiredCapacity',
      'orchestrator events.PutRule',
      'orchestrator events.PutTargets',
      // The stop goes out, but no worker completes the lifecycle action: its heartbeat runs out.
      'orchestrator ssm.SendCommand',
      'orchestrator sns.Publish',
      'orchestrator events.RemoveTargets',
      'orchestrator events.DeleteRule',
    ]);
    expect(s.desired).toBe(0);
  });

  it("the race: a run that starts while the previous run's instance terminates runs, and is not closed with it", async () => {
    const s = await simulation('race', { source: 'fs-source6' });
    const src = path.join(s.filesystems, 'fs-source6');
    createTree(src, { 'a.txt': file('a'), d: dir({ 'b.txt': file('b') }) });
    let second: string | null = null;
    s.onTerminated = async () => {
      if (second) return;
      // The next run starts before EventBridge tells of the first one's instance.
      second = s.start();
      const store = new DynamoDbRecordStore({ tableName: s.table, client: aws.dynamodb });
      while (!(await store.getItem(second))?.StopRule) await new Promise((r) => setTimeout(r, 5));
    };
    const first = s.start();
    await s.idle();
    expect(s.errors).toEqual([]);
    expect(second).not.toBeNull();
    expect(await item(s, first)).toMatchObject({ Status: 'Success', Closed: expect.any(String) });
    expect(await item(s, second!)).toMatchObject({
      Status: 'Success',
      WorkerInstance: s.instances[1]!.id,
      Closed: expect.any(String),
    });
    expect(s.instances).toHaveLength(2);
    expect(s.rules.size).toBe(0);
    expect(s.desired).toBe(0);
  });
});

describe("a run of several workers (the template's Workers)", () => {
  it("3 workers build one snapshot; one instance dies mid-run (its worker killed): its leases expire, the others finish its units, one correct snapshot, one record closed once with 3 workers' figures, one notice", async () => {
    const s = await simulation('three-workers', {
      source: 'fs-wide',
      workers: 3,
      // Short leases: the dead worker's units go back to the others within seconds.
      leaseSeconds: 2,
      notifyOnSuccess: true,
      concurrency: 2,
      // Slow enough that the run is surely going when the instance dies, on any machine.
      worker: { maxMiBps: '3' },
    });
    const src = path.join(s.filesystems, 'fs-wide');
    const files = bigTree(src, 24, 30, 16 * 1024);
    createTree(src, {
      'a.txt': file('a\n'),
      'link-to-a': symlink('a.txt'),
      // Names of one inode in different units.
      d000: dir({ 'same.txt': file('one inode, two directories\n') }),
      d023: dir({ 'same-again.txt': hardlink('d000/same.txt') }),
    });
    const backupId = s.start({ windowMinutes: '180' });
    const store = new DynamoDbRecordStore({ tableName: s.table, client: aws.dynamodb });
    const backupDir = path.join(s.filesystems, 'fs-backup');

    // All three joined, the partial a tenth written, and a unit leased: that worker dies.
    // Frozen first (SIGSTOP); its leases are read once what it sent before it froze (a unit's
    // completion, say) has reached the table, so they are surely still its own when it is killed.
    let held: Record<string, unknown>[] = [];
    let victim = '';
    await poll('three workers at work, one of them holding a lease', async () => {
      const run = await store.getItem(backupId);
      const p = partials(backupDir)[0];
      if (run?.WorkerInstances?.size !== 3 || !p) return false;
      if (countEntries(path.join(backupDir, 'efs-backup', 'daily', p)) < files / 10) return false;
      const lease = (await leased(s)).find((l) => run.WorkerInstances!.has(String(l.Owner)));
      if (!lease) return false;
      victim = String(lease.Owner);
      const worker = s.instances.find((i) => i.id === victim)!;
      worker.process.kill('SIGSTOP');
      // Its leases as the table holds them once two reads 300 ms apart agree: a call it sent
      // before it froze is answered by then, however slow the table is on a busy machine.
      // (Expired or not: one it no longer renews is still its own until another takes it.)
      const victims = async () =>
        (await leaseItems(s)).filter((l) => l.Status === 'leased' && l.Owner === victim);
      const keyOf = (ls: Record<string, unknown>[]): string =>
        JSON.stringify(ls.map((l) => [l.Key, l.Attempt]).sort());
      held = await victims();
      for (let round = 0; round < 20; round++) {
        await new Promise((r) => setTimeout(r, 300));
        const now = await victims();
        const same = keyOf(now) === keyOf(held);
        held = now;
        if (same) break;
      }
      if (held.length === 0) worker.process.kill('SIGCONT');
      return held.length > 0;
    });
    const dead = s.instances.find((i) => i.id === victim)!;
    // Its termination hook waits half a second for a lifecycle action nobody completes.
    s.crash(dead, 500);
    // Its leases expire and another worker takes its units over (their next attempt).
    await poll("the dead worker's unit taken over", async () =>
      (await leaseItems(s)).some((i) =>
        held.some(
          (h) => i.Key === h.Key && i.Owner !== victim && Number(i.Attempt) > Number(h.Attempt),
        ),
      ),
    );
    await s.idle(120_000);
    expect(s.errors).toEqual([]);
    expect(s.instances).toHaveLength(3);
    expect(dead.process.signalCode).toBe('SIGKILL');

    // One snapshot, the source's exactly (rsync's judge, content compared), sound by verify.
    const [stamp, ...more] = snapshots(backupDir);
    expect(more).toEqual([]);
    expect(partials(backupDir)).toEqual([]);
    const snap = path.join(backupDir, 'efs-backup', 'daily', stamp!);
    expect(rsyncDifferences(src, snap)).toEqual([]);
    expect(diffTrees(src, snap)).toEqual([]);
    const [checked] = await verify({ destination: backupDir, snapshot: stamp! });
    expect(checked!.problems).toEqual([]);
    expect(checked!.entries).toBe(files + 24 + 4);

    // One record, closed once, with each worker's figures and the run's totals.
    const record = await item(s, backupId);
    const ids = s.instances.map((i) => i.id).sort();
    expect(record).toMatchObject({
      Status: 'Success',
      Snapshot: stamp,
      Workers: 3,
      NumberOfFiles: files + 24 + 4,
      WorkerInstances: new Set(ids),
      WorkersGone: new Set(ids),
      Closed: expect.any(String),
      Notified: expect.any(String),
    });
    expect(record!.WorkerFigures!.map((w) => w.Worker)).toEqual(ids);
    const figures = record!.WorkerFigures!;
    expect(figures.reduce((n, w) => n + w.Units, 0)).toBeGreaterThan(1);
    // The dead worker's unit was finished by another, which says it took it over.
    expect(figures.find((w) => w.Worker === victim)?.TakenOver).toBeUndefined();
    expect(figures.reduce((n, w) => n + (w.TakenOver ?? 0), 0)).toBeGreaterThanOrEqual(1);
    // Each unit was done by one worker: the entries of the units add up to the snapshot's.
    expect(figures.reduce((n, w) => n + w.Entries, 0)).toBeLessThanOrEqual(files + 24 + 4);
    expect(record!.Reporter).toBeDefined();
    expect(record!.Reporter).not.toBe(victim);
    const closes = s.results.flatMap((r) =>
      r.event === 'terminated' ? r.runs.filter((x) => x.backupId === backupId) : [],
    );
    expect(closes).toEqual([{ backupId, status: 'Success', notified: false }]);
    // One notice: the committer's.
    expect(published(s)).toEqual([
      expect.objectContaining({
        Subject: expect.stringMatching(/^\[efs-backup\] Success: efs-backup\/daily on /),
        Message: expect.stringMatching(
          / {2}Workers {7}3: i-.*taken over from a worker that stopped renewing its lease/,
        ),
      }),
    ]);
    // Every instance was told to stop through its own Run Command; the living let themselves go.
    const told = s.calls
      .filter((c) => c.service === 'ssm' && c.action === 'SendCommand')
      .map((c) => (c.params.InstanceIds as string[])[0])
      .sort();
    expect(told).toEqual(ids);
    const completed = s.calls
      .filter((c) => c.action === 'CompleteLifecycleAction')
      .map((c) => c.params.InstanceId)
      .sort();
    expect(completed).toEqual(ids.filter((id) => id !== victim));
    // The run and its units are gone from the lease table once it committed.
    expect((await leaseItems(s)).filter((i) => i.Key !== 'claim')).toEqual([]);
    // Each worker's own log; the record's is the committer's.
    expect(record!.LogLocation).toBe(
      `s3://${s.bucket}/logs/efs-backup/${backupId}.${record!.Reporter}.log`,
    );
    expect(await s3Text(s.bucket, record!.LogLocation!)).toContain(
      'efs-backup efs-backup/daily succeeded',
    );
    expect(s.desired).toBe(0);
    expect(s.rules.size).toBe(0);
  });

  it('3 workers stopped at the window: Incomplete, closed once with the ends they kept, one notice; the next run of 3 continues the partial', async () => {
    const s = await simulation('three-window', {
      source: 'fs-wide2',
      workers: 3,
      leaseSeconds: 5,
      concurrency: 2,
      worker: { maxMiBps: '2' },
    });
    const src = path.join(s.filesystems, 'fs-wide2');
    const files = bigTree(src, 12, 40, 16 * 1024);
    const store = new DynamoDbRecordStore({ tableName: s.table, client: aws.dynamodb });
    const backupDir = path.join(s.filesystems, 'fs-backup');
    const first = s.start({ windowMinutes: '30' });
    await poll('three workers at work', async () => {
      const run = await store.getItem(first);
      const p = partials(backupDir)[0];
      return (
        run?.WorkerInstances?.size === 3 &&
        !!p &&
        countEntries(path.join(backupDir, 'efs-backup', 'daily', p)) >= files / 10
      );
    });
    s.fireStopRule();
    await s.idle();
    expect(s.errors).toEqual([]);
    const stopped = await item(s, first);
    expect(stopped).toMatchObject({
      Status: 'Incomplete',
      Message:
        'the backup window ended before the backup completed; the next run continues from where this one stopped',
      Snapshot: null,
      Workers: 3,
      Closed: expect.any(String),
      Notified: expect.any(String),
    });
    // Each worker kept its end; none wrote the record; the orchestrator closed the run with one.
    expect(Object.keys(stopped!.WorkerEnds ?? {}).sort()).toEqual(
      s.instances.map((i) => i.id).sort(),
    );
    expect(stopped!.Reporter).toBeUndefined();
    expect(published(s)).toEqual([
      expect.objectContaining({ Subject: expect.stringMatching(/^\[efs-backup\] Incomplete: /) }),
    ]);
    expect(partials(backupDir)).toHaveLength(1);
    expect(snapshots(backupDir)).toEqual([]);

    // The next run's three workers continue the partial and commit it.
    const second = s.start({ windowMinutes: '30' });
    await s.idle();
    expect(s.errors).toEqual([]);
    const done = await item(s, second);
    expect(done).toMatchObject({ Status: 'Success', NumberOfFiles: files + 12, Workers: 3 });
    expect(partials(backupDir)).toEqual([]);
    const snap = path.join(backupDir, 'efs-backup', 'daily', done!.Snapshot!);
    expect(rsyncDifferences(src, snap)).toEqual([]);
    expect(s.instances).toHaveLength(6);
    expect(published(s)).toHaveLength(1);
  });

  it('a worker that comes after the run has committed (its mount slow) takes no part: one snapshot, one record, one notice', async () => {
    const gate = path.join(base, 'late-mount-gate');
    const s = await simulation('late-worker', {
      source: 'fs-late',
      workers: 3,
      notifyOnSuccess: true,
      // The third instance's mount waits for the gate: its worker joined the run, and starts
      // its part only once the two others have committed it.
      workerFor: (n) =>
        n === 3
          ? {
              mount: {
                command: [
                  'sh',
                  '-c',
                  `while [ ! -e ${gate} ]; do sleep 0.05; done; exec "$0" "$@"`,
                  process.execPath,
                  new URL('./fixtures/fake-mount.mjs', import.meta.url).pathname,
                  '{fileSystemId}',
                  '{path}',
                  path.join(base, 'late-worker', 'filesystems'),
                ],
                attempts: 1,
                retryDelaySeconds: 0,
              },
            }
          : {},
    });
    const src = path.join(s.filesystems, 'fs-late');
    const files = bigTree(src, 6, 10, 4096);
    const backupId = s.start({ windowMinutes: '180' });
    const store = new DynamoDbRecordStore({ tableName: s.table, client: aws.dynamodb });
    await poll('the two first workers to commit the run', async () => {
      const run = await store.getItem(backupId);
      return run?.WorkerInstances?.size === 3 && run.Status === 'Success';
    });
    fs.writeFileSync(gate, '');
    await s.idle();
    expect(s.errors).toEqual([]);
    const backupDir = path.join(s.filesystems, 'fs-backup');
    expect(snapshots(backupDir)).toHaveLength(1);
    expect(partials(backupDir)).toEqual([]);
    const record = await item(s, backupId);
    expect(record).toMatchObject({
      Status: 'Success',
      NumberOfFiles: files + 6,
      Closed: expect.any(String),
      WorkersGone: new Set(s.instances.map((i) => i.id)),
    });
    expect(record!.Begun).not.toBe(s.instances[2]!.id);
    expect(published(s)).toHaveLength(1);
    const late = s.instances[2]!.output.filter((l) => l.includes('is over: nothing to join'));
    expect(late).not.toEqual([]);
  });
});

describe('the restore worker: whatever happens, a notice and the group at 0', () => {
  /** A simulation whose backup file system holds one snapshot of a small tree. */
  async function withSnapshot(name: string, source: string): Promise<Simulation> {
    const s = await simulation(name, { source });
    createTree(path.join(s.filesystems, source), {
      'a.txt': file('a'),
      d: dir({ 'b.txt': file('b'), 'c.bin': file(Buffer.alloc(50_000, 7)) }),
    });
    s.start();
    await s.idle();
    s.calls.length = 0;
    return s;
  }

  const restores = async (s: Simulation) =>
    new DynamoDbRecordStore({ tableName: s.table, client: aws.dynamodb }).listItems({
      Kind: 'restore',
    });

  it('its window ends: Incomplete, notified, the group at 0', async () => {
    const s = await withSnapshot('restore-window', 'fs-r1');
    // A window that ends before the file systems are even mounted.
    expect(await runRestore(s, { restore: { windowMinutes: 0.0001 } })).toBe(0);
    const [r] = await restores(s);
    expect(r).toMatchObject({
      Kind: 'restore',
      Status: 'Incomplete',
      Message:
        'the restore window (0.0001 minutes) ended before the restore completed: what it wrote is in place, each file whole; create the restore stack again to finish',
      WorkerInstance: 'i-restore',
      InstanceType: 'c7gn.large',
      StopAt: expect.any(String),
      Notified: expect.any(String),
    });
    expect(published(s)).toEqual([
      expect.objectContaining({
        Subject: '[efs-backup] Restore Incomplete: latest of efs-backup into fs-r1',
        Message: expect.stringContaining('efs-backup restore stopped before it completed'),
      }),
    ]);
    expect(s.sequence()).toEqual(['worker sns.Publish', 'worker autoscaling.SetDesiredCapacity']);
    expect(s.desired).toBe(0);
  });

  it('its record cannot be written: nothing restored, the notice says why, the group at 0', async () => {
    const s = await withSnapshot('restore-no-table', 'fs-r2');
    expect(await runRestore(s, { table: 'no-such-table' })).toBe(0);
    expect(fs.existsSync(path.join(s.filesystems, 'fs-r2', 'restored'))).toBe(false);
    expect(published(s)).toEqual([
      expect.objectContaining({
        Subject: '[efs-backup] Restore Failed: latest of efs-backup into fs-r2',
        Message: expect.stringContaining(
          'cannot record the restore in DynamoDB table no-such-table',
        ),
      }),
    ]);
    expect(s.desired).toBe(0);
  });

  it('the restore fails (no such snapshot): Failed, notified, the group at 0', async () => {
    const s = await withSnapshot('restore-no-snapshot', 'fs-r3');
    expect(await runRestore(s, { restore: { snapshot: 'daily.5' } })).toBe(0);
    const [r] = await restores(s);
    expect(r).toMatchObject({ Status: 'Failed', Notified: expect.any(String) });
    expect(r!.Message).toMatch(/daily\.5/);
    expect(published(s)).toEqual([
      expect.objectContaining({
        Subject: '[efs-backup] Restore Failed: daily.5 of efs-backup into fs-r3',
      }),
    ]);
    expect(s.desired).toBe(0);
  });
});

/** `top` directories of `perDir` files of `size` bytes (distinct contents); returns the file count. */
function bigTree(root: string, top: number, perDir: number, size: number): number {
  const pool = Buffer.alloc(size * 2);
  for (let i = 0; i < pool.length; i++) pool[i] = (i * 7919 + (i >> 8)) & 0xff;
  for (let d = 0; d < top; d++) {
    const dirPath = path.join(root, `d${String(d).padStart(3, '0')}`);
    fs.mkdirSync(dirPath, { recursive: true });
    for (let f = 0; f < perDir; f++) {
      const off = (d * perDir + f) % size;
      fs.writeFileSync(path.join(dirPath, `f${f}.dat`), pool.subarray(off, off + size));
    }
  }
  return top * perDir;
}

function countEntries(dirPath: string): number {
  try {
    return fs.readdirSync(dirPath, { recursive: true }).length;
  } catch {
    return 0;
  }
}
