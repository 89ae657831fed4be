/**
 * The orchestrator on every event path, fed the JSON EventBridge delivers (fixtures in
 * fixtures/events) and the request CloudFormation sends a custom resource: records in DynamoDB
 * (dynalite on 127.0.0.1); Auto Scaling, SSM, EventBridge and SNS through the SDK client mock,
 * asserting the exact requests; CloudFormation's response URL, an HTTP server on 127.0.0.1.
 */
import {
  AutoScalingClient,
  DescribeScalingActivitiesCommand,
  SetDesiredCapacityCommand,
} from '@aws-sdk/client-auto-scaling';
import {
  DeleteRuleCommand,
  EventBridgeClient,
  ListRulesCommand,
  PutRuleCommand,
  PutTargetsCommand,
  RemoveTargetsCommand,
  ResourceNotFoundException,
} from '@aws-sdk/client-eventbridge';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { SendCommandCommand, SSMClient } from '@aws-sdk/client-ssm';
import { newRunRecord } from '@efs-backup/service';
import { mockClient } from 'aws-sdk-client-mock';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  claimRun,
  handler,
  Orchestrator,
  OrchestratorSettingsSchema,
  stopCommands,
  WorkerConfigSchema,
  type OrchestratorEnvironment,
  type RunItem,
} from '../src/index.js';
import { REGION, startLocalAws, type LocalAws } from './fixtures/local-aws.js';

const load = (name: string): Record<string, unknown> =>
  JSON.parse(
    fs.readFileSync(new URL(`./fixtures/events/${name}.json`, import.meta.url), 'utf8'),
  ) as Record<string, unknown>;

const START = load('scheduled-start');
const STOP = load('scheduled-stop');
const TERMINATING = load('lifecycle-terminating');
const TERMINATED = load('terminate-successful');
const LAUNCHED = load('launch-successful');
const LAUNCH_FAILED = load('launch-unsuccessful');
const BACKUP_ID = '5a2c9f1e-8d3b-4e7a-9c61-0f2b7d4e8a13';
const INSTANCE = 'i-0a1b2c3d4e5f60718';
const GROUP = 'efs-backup-WorkerGroup-1QX2Y3Z4';
const FUNCTION_ARN = 'arn:aws:lambda:us-east-1:123456789012:function:efs-backup-Orchestrator';
const TOPIC = 'arn:aws:sns:us-east-1:123456789012:efs-backup-Notices';
const RULE = `efs-backup-stop-${BACKUP_ID}`;

/** The same event a moment later, or with other fields. */
function variant(
  e: Record<string, unknown>,
  over: Record<string, unknown>,
): Record<string, unknown> {
  return { ...e, ...over, detail: { ...(e.detail as object), ...((over.detail as object) ?? {}) } };
}

let aws: LocalAws;
beforeAll(async () => {
  aws = await startLocalAws();
});
afterAll(async () => {
  await aws?.close();
});

const autoScaling = new AutoScalingClient({ region: REGION });
const ssm = new SSMClient({ region: REGION });
const events = new EventBridgeClient({ region: REGION });
const sns = new SNSClient({ region: REGION });
const asMock = mockClient(autoScaling);
const ssmMock = mockClient(ssm);
const ebMock = mockClient(events);
const snsMock = mockClient(sns);

let orchestrator: Orchestrator;
let metrics: string[];
let logged: { level: string; msg?: string; obj: object }[];

async function newOrchestrator(over: Partial<OrchestratorEnvironment> = {}): Promise<Orchestrator> {
  const env: OrchestratorEnvironment = {
    TABLE_NAME: await aws.newTable(),
    TOPIC_ARN: TOPIC,
    AUTO_SCALING_GROUP_NAME: GROUP,
    SOURCE_FILE_SYSTEM_ID: 'fs-0123456789abcdef0',
    BACKUP_FILE_SYSTEM_ID: 'fs-0fedcba9876543210',
    ...over,
  };
  metrics = [];
  logged = [];
  const log = (level: string) => (obj: object, msg?: string) => logged.push({ level, msg, obj });
  return new Orchestrator(
    OrchestratorSettingsSchema.parse(env),
    { dynamodb: aws.dynamodb, autoScaling, ssm, events, sns },
    {
      log: { info: log('info'), warn: log('warn'), error: log('error') },
      metrics: (l) => metrics.push(l),
    },
  );
}

beforeEach(async () => {
  for (const m of [asMock, ssmMock, ebMock, snsMock]) m.reset();
  asMock.onAnyCommand().resolves({});
  ebMock
    .on(PutRuleCommand)
    .resolves({ RuleArn: `arn:aws:events:us-east-1:123456789012:rule/${RULE}` });
  ebMock.on(PutTargetsCommand).resolves({ FailedEntryCount: 0, FailedEntries: [] });
  ebMock.on(RemoveTargetsCommand).resolves({ FailedEntryCount: 0, FailedEntries: [] });
  ebMock.on(DeleteRuleCommand).resolves({});
  ebMock.on(ListRulesCommand).resolves({ Rules: [] });
  ssmMock.on(SendCommandCommand).resolves({ Command: { CommandId: 'cmd-1' } });
  snsMock.on(PublishCommand).resolves({ MessageId: 'msg-1' });
  orchestrator = await newOrchestrator();
});

const inputs = <T>(
  m: { commandCalls: (c: never) => { args: [{ input: T }] }[] },
  c: unknown,
): T[] => m.commandCalls(c as never).map((call) => call.args[0].input);

describe("start (the schedule's Scheduled Event)", () => {
  it('records the run Running, scales the group to 1 and creates the one-time stop rule', async () => {
    const r = await orchestrator.handle(START, FUNCTION_ARN);
    expect(r).toEqual({
      event: 'start',
      action: 'started',
      backupId: BACKUP_ID,
      stopRule: RULE,
      stopAt: '2026-11-26T04:45:00.000Z',
    });
    expect(await orchestrator.store.getItem(BACKUP_ID)).toEqual({
      BackupId: BACKUP_ID,
      Kind: 'backup',
      Job: null,
      Label: 'efs-backup',
      Interval: 'daily',
      Retain: 7,
      Source: '/mnt/efs/fs-0123456789abcdef0',
      Prefix: '/',
      Exclude: [],
      ExcludeIfPresent: [],
      Destination: '/mnt/efs/fs-0fedcba9876543210',
      RestoredSnapshot: null,
      Target: null,
      Subdir: null,
      Mirror: null,
      WindowMinutes: 180,
      Schedule: 'cron(0 2 * * ? *)',
      Status: 'Running',
      Message: `waiting for the worker: the Auto Scaling group ${GROUP} is launching an instance`,
      StartTime: '2026-11-26T02:00:00.000Z',
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
      Host: 'pending',
      Workers: 1,
      WorkerFigures: null,
      LogLocation: null,
      // 90 days after the start.
      ExpireItem: Date.parse('2026-11-26T02:00:00Z') / 1000 + 90 * 86_400,
      NotifyOnSuccess: false,
      ScheduledTime: '2026-11-26T02:00:00.000Z',
      StopAt: '2026-11-26T04:45:00.000Z',
      StopRule: RULE,
      WorkerState: 'launching',
      // One worker may take it.
      Seats: 1,
    });
    expect(inputs(asMock, SetDesiredCapacityCommand)).toEqual([
      { AutoScalingGroupName: GROUP, DesiredCapacity: 1, HonorCooldown: false },
    ]);
    expect(inputs(ebMock, PutRuleCommand)).toEqual([
      {
        Name: RULE,
        ScheduleExpression: 'cron(45 4 26 11 ? 2026)',
        State: 'ENABLED',
        Description: `efs-backup: stops the run ${BACKUP_ID} (efs-backup/daily) 15 minutes before its window ends`,
      },
    ]);
    const targets = inputs(ebMock, PutTargetsCommand);
    expect(targets).toEqual([
      {
        Rule: RULE,
        Targets: [
          {
            Id: 'orchestrator',
            Arn: FUNCTION_ARN,
            InputTransformer: {
              InputPathsMap: {
                id: '$.id',
                account: '$.account',
                time: '$.time',
                region: '$.region',
                resources: '$.resources',
              },
              InputTemplate:
                '{"version":"0","id":<id>,"detail-type":"Scheduled Event","source":"aws.events",' +
                '"account":<account>,"time":<time>,"region":<region>,"resources":<resources>,' +
                `"detail":{"action":"stop","backupId":"${BACKUP_ID}"}}`,
            },
          },
        ],
      },
    ]);
    // What EventBridge delivers from that template is the stop fixture's shape.
    const template = targets[0]!.Targets![0]!.InputTransformer!.InputTemplate!;
    const delivered = template
      .replace('<id>', JSON.stringify(STOP.id))
      .replace('<account>', JSON.stringify(STOP.account))
      .replace('<time>', JSON.stringify(STOP.time))
      .replace('<region>', JSON.stringify(STOP.region))
      .replace('<resources>', JSON.stringify(STOP.resources));
    expect(JSON.parse(delivered)).toEqual(STOP);
    expect(snsMock.calls()).toHaveLength(0);
  });

  it('a redelivered start keeps the record and repeats only idempotent calls', async () => {
    await orchestrator.handle(START, FUNCTION_ARN);
    await orchestrator.store.update(BACKUP_ID, { Message: 'the worker wrote this' });
    const again = await orchestrator.handle(START, FUNCTION_ARN);
    expect(again).toMatchObject({ action: 'started', backupId: BACKUP_ID });
    expect(await orchestrator.store.list()).toHaveLength(1);
    expect((await orchestrator.store.getItem(BACKUP_ID))?.Message).toBe('the worker wrote this');
    expect(inputs(asMock, SetDesiredCapacityCommand)).toHaveLength(2);
    expect(inputs(ebMock, PutRuleCommand).map((i) => i.Name)).toEqual([RULE, RULE]);
  });

  it('a start redelivered after its run ended does nothing', async () => {
    await orchestrator.handle(START, FUNCTION_ARN);
    await orchestrator.store.update(BACKUP_ID, { Status: 'Success' });
    asMock.resetHistory();
    ebMock.resetHistory();
    expect(await orchestrator.handle(START, FUNCTION_ARN)).toEqual({
      event: 'start',
      action: 'duplicate',
      backupId: BACKUP_ID,
    });
    expect(asMock.calls()).toHaveLength(0);
    expect(ebMock.calls()).toHaveLength(0);
  });

  it('a start while an earlier run is inside its window is recorded Skipped and notified', async () => {
    await orchestrator.handle(START, FUNCTION_ARN);
    asMock.resetHistory();
    ebMock.resetHistory();
    const next = variant(START, { id: 'second-run', time: '2026-11-26T03:00:00Z' });
    expect(await orchestrator.handle(next, FUNCTION_ARN)).toEqual({
      event: 'start',
      action: 'skipped',
      backupId: 'second-run',
    });
    const skipped = await orchestrator.store.getItem('second-run');
    expect(skipped).toMatchObject({
      Status: 'Skipped',
      Message: `the run ${BACKUP_ID}, started at 2026-11-26T02:00:00.000Z, is still going (it stops by 2026-11-26T04:45:00.000Z)`,
      StopTime: '2026-11-26T03:00:00.000Z',
    });
    expect(skipped?.Notified).toBeTruthy();
    expect(skipped?.Closed).toBeTruthy();
    expect(asMock.calls()).toHaveLength(0);
    expect(ebMock.calls()).toHaveLength(0);
    expect(inputs(snsMock, PublishCommand)).toEqual([
      expect.objectContaining({
        TopicArn: TOPIC,
        Subject: '[efs-backup] Skipped: efs-backup/daily on pending',
        MessageAttributes: { Status: { DataType: 'String', StringValue: 'Skipped' } },
      }),
    ]);
    // Once the first run's window has passed, a start runs.
    const later = variant(START, { id: 'third-run', time: '2026-11-26T05:00:00Z' });
    expect(await orchestrator.handle(later, FUNCTION_ARN)).toMatchObject({ action: 'started' });
  });

  it('takes the job parameters from the event, as numbers or as text', async () => {
    const e = variant(START, {
      detail: {
        label: 'projects',
        interval: 'weekly',
        retain: 4,
        prefix: '/data',
        windowMinutes: 45,
      },
    });
    await orchestrator.handle(e, FUNCTION_ARN);
    expect(await orchestrator.store.getItem(BACKUP_ID)).toMatchObject({
      Label: 'projects',
      Interval: 'weekly',
      Retain: 4,
      Prefix: '/data',
      WindowMinutes: 45,
      StopAt: '2026-11-26T02:30:00.000Z',
    });
    expect(inputs(ebMock, PutRuleCommand)[0]!.ScheduleExpression).toBe('cron(30 2 26 11 ? 2026)');
  });
});

describe("stop (the one-time rule's Scheduled Event)", () => {
  it('scales the group to 0', async () => {
    await orchestrator.handle(START, FUNCTION_ARN);
    await claimRun(orchestrator.store, INSTANCE);
    asMock.resetHistory();
    expect(await orchestrator.handle(STOP, FUNCTION_ARN)).toEqual({
      event: 'stop',
      action: 'stopped',
      backupId: BACKUP_ID,
    });
    expect(inputs(asMock, SetDesiredCapacityCommand)).toEqual([
      { AutoScalingGroupName: GROUP, DesiredCapacity: 0, HonorCooldown: false },
    ]);
    // Redelivered: the same harmless call.
    await orchestrator.handle(STOP, FUNCTION_ARN);
    expect(inputs(asMock, SetDesiredCapacityCommand)).toHaveLength(2);
  });

  it("is ignored within 10 minutes of its run's start, as in the original", async () => {
    await orchestrator.handle(START, FUNCTION_ARN);
    await claimRun(orchestrator.store, INSTANCE);
    asMock.resetHistory();
    const early = variant(STOP, { time: '2026-11-26T02:09:59Z' });
    expect(await orchestrator.handle(early, FUNCTION_ARN)).toMatchObject({
      event: 'stop',
      action: 'ignored',
      reason: "the stop came 599 s after the run's start (less than 10 minutes)",
    });
    expect(asMock.calls()).toHaveLength(0);
    const justInTime = variant(STOP, { time: '2026-11-26T02:10:00Z' });
    expect(await orchestrator.handle(justInTime, FUNCTION_ARN)).toMatchObject({
      action: 'stopped',
    });
  });

  it('of a run that has ended leaves the group alone and removes the stale rule', async () => {
    await orchestrator.handle(START, FUNCTION_ARN);
    await orchestrator.store.update(BACKUP_ID, { Status: 'Success' });
    asMock.resetHistory();
    ebMock.resetHistory();
    expect(await orchestrator.handle(STOP, FUNCTION_ARN)).toMatchObject({
      action: 'ignored',
      reason: 'the run has ended (Success)',
    });
    expect(asMock.calls()).toHaveLength(0);
    expect(inputs(ebMock, RemoveTargetsCommand)).toEqual([{ Rule: RULE, Ids: ['orchestrator'] }]);
    expect(inputs(ebMock, DeleteRuleCommand)).toEqual([{ Name: RULE }]);
  });

  it('of an unknown run still scales the group to 0', async () => {
    expect(await orchestrator.handle(STOP, FUNCTION_ARN)).toMatchObject({ action: 'stopped' });
    expect(inputs(asMock, SetDesiredCapacityCommand)).toHaveLength(1);
  });

  it("of a run no worker took: closed Failed with the Auto Scaling group's cause, notified, its rule gone", async () => {
    await orchestrator.handle(START, FUNCTION_ARN);
    const reason = 'The image id [ami-0123] does not exist. Launching EC2 instance failed.';
    // DescribeScalingActivities, newest first: the launch that failed, an older success.
    asMock.on(DescribeScalingActivitiesCommand).resolves({
      Activities: [
        {
          ActivityId: 'a-2',
          AutoScalingGroupName: GROUP,
          Description: `Launching a new EC2 instance.  Status Reason: ${reason}`,
          Cause:
            'At 2026-11-26T02:00:12Z an instance was started in response to a difference between desired and actual capacity, increasing the capacity from 0 to 1.',
          StartTime: new Date('2026-11-26T02:00:13Z'),
          EndTime: new Date('2026-11-26T02:00:14Z'),
          StatusCode: 'Failed',
          StatusMessage: reason,
          Progress: 100,
        },
        {
          ActivityId: 'a-1',
          AutoScalingGroupName: GROUP,
          Description: 'Launching a new EC2 instance: i-0aaaaaaaaaaaaaaaa',
          Cause: 'yesterday',
          StartTime: new Date('2026-11-25T02:00:13Z'),
          StatusCode: 'Successful',
          Progress: 100,
        },
      ],
    });
    for (const m of [asMock, ebMock, snsMock]) m.resetHistory();
    expect(await orchestrator.handle(STOP, FUNCTION_ARN)).toMatchObject({
      event: 'stop',
      action: 'closed',
      backupId: BACKUP_ID,
    });
    expect(inputs(asMock, SetDesiredCapacityCommand)).toEqual([
      { AutoScalingGroupName: GROUP, DesiredCapacity: 0, HonorCooldown: false },
    ]);
    expect(inputs(asMock, DescribeScalingActivitiesCommand)).toEqual([
      { AutoScalingGroupName: GROUP, MaxRecords: 20 },
    ]);
    const item = await orchestrator.store.getItem(BACKUP_ID);
    expect(item).toMatchObject({
      Status: 'Failed',
      Message: `no worker took the run before its stop time: the Auto Scaling group ${GROUP} could not launch the worker: ${reason}`,
      StopTime: '2026-11-26T04:45:00.000Z',
      WorkerState: 'done',
      Closed: '2026-11-26T04:45:00.000Z',
    });
    expect(item?.Notified).toBeTruthy();
    expect(inputs(snsMock, PublishCommand)).toEqual([
      expect.objectContaining({
        Subject: '[efs-backup] Failed: efs-backup/daily on pending',
        Message: expect.stringContaining(reason),
        MessageAttributes: { Status: { DataType: 'String', StringValue: 'Failed' } },
      }),
    ]);
    expect(inputs(ebMock, RemoveTargetsCommand)).toEqual([{ Rule: RULE, Ids: ['orchestrator'] }]);
    expect(inputs(ebMock, DeleteRuleCommand)).toEqual([{ Name: RULE }]);
    expect(metrics).toHaveLength(1);
    expect(JSON.parse(metrics[0]!)).toMatchObject({ Status: 'Failed', RunsFailed: 1 });
  });

  it('of a run no worker took, with no failed launch: says what the group did last', async () => {
    await orchestrator.handle(START, FUNCTION_ARN);
    asMock.on(DescribeScalingActivitiesCommand).resolves({
      Activities: [
        {
          ActivityId: 'a-3',
          AutoScalingGroupName: GROUP,
          Description: 'Terminating EC2 instance: i-0bbbbbbbbbbbbbbbb',
          Cause:
            'a user request explicitly set group desired capacity changing the desired capacity from 1 to 0',
          StartTime: new Date('2026-11-26T02:20:00Z'),
          StatusCode: 'Successful',
          Progress: 100,
        },
      ],
    });
    await orchestrator.handle(STOP, FUNCTION_ARN);
    expect((await orchestrator.store.getItem(BACKUP_ID))?.Message).toBe(
      `no worker took the run before its stop time: the Auto Scaling group ${GROUP}'s last activity: Terminating EC2 instance: i-0bbbbbbbbbbbbbbbb (Successful); a worker that launched but never started leaves its reason in the instance's console output`,
    );
  });

  it('of a run a worker claimed meanwhile leaves it to its worker', async () => {
    await orchestrator.handle(START, FUNCTION_ARN);
    // The worker claims the run while the stop reads the group's activities.
    asMock.on(DescribeScalingActivitiesCommand).callsFake(async () => {
      await claimRun(orchestrator.store, INSTANCE);
      return { Activities: [] };
    });
    expect(await orchestrator.handle(STOP, FUNCTION_ARN)).toMatchObject({ action: 'stopped' });
    expect(await orchestrator.store.getItem(BACKUP_ID)).toMatchObject({
      Status: 'Running',
      WorkerState: 'running',
      WorkerInstance: INSTANCE,
    });
    expect(snsMock.calls()).toHaveLength(0);
  });
});

describe('termination lifecycle action', () => {
  it('tells the worker through SSM Run Command to stop for its window', async () => {
    await orchestrator.handle(START, FUNCTION_ARN);
    expect((await claimRun(orchestrator.store, INSTANCE))?.BackupId).toBe(BACKUP_ID);
    expect(await orchestrator.handle(TERMINATING, FUNCTION_ARN)).toEqual({
      event: 'terminating',
      action: 'stop-sent',
      instanceId: INSTANCE,
      reason: 'window',
      commandId: 'cmd-1',
    });
    expect(inputs(ssmMock, SendCommandCommand)).toEqual([
      {
        DocumentName: 'AWS-RunShellScript',
        InstanceIds: [INSTANCE],
        Comment: 'efs-backup: stop the backup worker gracefully',
        Parameters: {
          commands: [
            'mkdir -p /run/efs-backup',
            'echo window > /run/efs-backup/stop.new && mv -f /run/efs-backup/stop.new /run/efs-backup/stop',
            'if [ -s /run/efs-backup/worker.pid ]; then kill -TERM "$(cat /run/efs-backup/worker.pid)" 2>/dev/null || true; fi',
            'echo "efs-backup worker asked to stop (window)"',
          ],
          executionTimeout: ['60'],
        },
        TimeoutSeconds: 600,
      },
    ]);
  });

  it('says shutdown when the instance goes before the stop time (a scale-in, a replacement)', async () => {
    await orchestrator.handle(START, FUNCTION_ARN);
    await claimRun(orchestrator.store, INSTANCE);
    const early = variant(TERMINATING, { time: '2026-11-26T03:00:00Z' });
    expect(await orchestrator.handle(early, FUNCTION_ARN)).toMatchObject({ reason: 'shutdown' });
    expect(inputs(ssmMock, SendCommandCommand)[0]!.Parameters!.commands).toEqual(
      stopCommands('/run/efs-backup', 'shutdown'),
    );
  });

  it("keeps the command's output in the log bucket under ssm-logs/, and says where on the run", async () => {
    const o = await newOrchestrator({ LOG_BUCKET: 'efs-backup-logs-1a2b' });
    await o.handle(START, FUNCTION_ARN);
    await claimRun(o.store, INSTANCE);
    await o.handle(TERMINATING, FUNCTION_ARN);
    expect(inputs(ssmMock, SendCommandCommand)[0]).toMatchObject({
      DocumentName: 'AWS-RunShellScript',
      InstanceIds: [INSTANCE],
      OutputS3BucketName: 'efs-backup-logs-1a2b',
      OutputS3KeyPrefix: 'ssm-logs',
    });
    expect(await o.store.getItem(BACKUP_ID)).toMatchObject({
      StopCommandId: 'cmd-1',
      StopCommandOutput: `s3://efs-backup-logs-1a2b/ssm-logs/cmd-1/${INSTANCE}/`,
    });
  });

  it("ignores another group's instances", async () => {
    const other = variant(TERMINATING, { detail: { AutoScalingGroupName: 'someone-else' } });
    expect(await orchestrator.handle(other, FUNCTION_ARN)).toEqual({
      event: 'ignored',
      reason: 'another Auto Scaling group: someone-else',
    });
    expect(ssmMock.calls()).toHaveLength(0);
  });
});

describe('instance terminated', () => {
  async function runEndedAs(over: Partial<RunItem>): Promise<void> {
    await orchestrator.handle(START, FUNCTION_ARN);
    await claimRun(orchestrator.store, INSTANCE);
    await orchestrator.store.update(BACKUP_ID, { ...over });
    for (const m of [asMock, ebMock, snsMock]) m.resetHistory();
  }

  it('a success the worker notified: the stop rule removed, metrics logged, no second notice', async () => {
    await runEndedAs({
      Status: 'Success',
      StopTime: '2026-11-26T03:00:00.000Z',
      NumberOfFiles: 100,
      NumberOfFilesTransferred: 10,
      TotalTransferredFileSize: 2048,
      Notified: '2026-11-26T03:00:01.000Z',
      NotifyOnSuccess: true,
    });
    expect(await orchestrator.handle(TERMINATED, FUNCTION_ARN)).toEqual({
      event: 'terminated',
      action: 'closed',
      instanceId: INSTANCE,
      runs: [{ backupId: BACKUP_ID, status: 'Success', notified: false }],
    });
    expect(snsMock.calls()).toHaveLength(0);
    expect(inputs(ebMock, RemoveTargetsCommand)).toEqual([{ Rule: RULE, Ids: ['orchestrator'] }]);
    expect(inputs(ebMock, DeleteRuleCommand)).toEqual([{ Name: RULE }]);
    expect((await orchestrator.store.getItem(BACKUP_ID))?.Closed).toBe('2026-11-26T04:52:31.000Z');
    expect(metrics).toHaveLength(1);
    const emf = JSON.parse(metrics[0]!) as Record<string, unknown>;
    expect(emf).toMatchObject({
      _aws: {
        Timestamp: Date.parse('2026-11-26T04:52:31Z'),
        CloudWatchMetrics: [
          expect.objectContaining({
            Namespace: 'EfsBackup',
            Dimensions: [['FileSystemId', 'Label']],
          }),
        ],
      },
      FileSystemId: 'fs-0123456789abcdef0',
      Label: 'efs-backup',
      NumberOfFiles: 100,
      NumberOfFilesTransferred: 10,
      TotalTransferredFileSize: 2048,
      DurationSeconds: 3600,
      RunsSucceeded: 1,
      RunsFailed: 0,
    });
    // The worker recorded no figures of the file systems: no such metric.
    expect(JSON.stringify(emf)).not.toMatch(/FileSystemSize|BurstCredit|InstanceType/);

    // Redelivered: the run is closed; nothing more happens.
    ebMock.resetHistory();
    expect(await orchestrator.handle(TERMINATED, FUNCTION_ARN)).toMatchObject({ runs: [] });
    expect(ebMock.calls()).toHaveLength(0);
    expect(metrics).toHaveLength(1);
  });

  it("the worker's figures of the file systems are metrics too, its instance type a property", async () => {
    await runEndedAs({
      Status: 'Success',
      StopTime: '2026-11-26T03:00:00.000Z',
      InstanceType: 'c7gn.large',
      SourceFileSystemSize: 5_000_000,
      DestinationFileSystemSize: 7_000_000,
      SourceThroughputMode: 'bursting',
      SourceBurstCreditBalanceAtStart: 2_000_000_000,
      SourceBurstCreditBalanceAtEnd: 1_500_000_000,
    });
    await orchestrator.handle(TERMINATED, FUNCTION_ARN);
    const emf = JSON.parse(metrics[0]!) as {
      _aws: { CloudWatchMetrics: { Metrics: { Name: string; Unit: string }[] }[] };
    } & Record<string, unknown>;
    expect(emf).toMatchObject({
      InstanceType: 'c7gn.large',
      SourceFileSystemSize: 5_000_000,
      DestinationFileSystemSize: 7_000_000,
      SourceBurstCreditBalanceAtStart: 2_000_000_000,
      SourceBurstCreditBalanceAtEnd: 1_500_000_000,
    });
    expect(emf._aws.CloudWatchMetrics[0]!.Metrics).toEqual(
      expect.arrayContaining([
        { Name: 'SourceFileSystemSize', Unit: 'Bytes' },
        { Name: 'DestinationFileSystemSize', Unit: 'Bytes' },
        { Name: 'SourceBurstCreditBalanceAtStart', Unit: 'Bytes' },
        { Name: 'SourceBurstCreditBalanceAtEnd', Unit: 'Bytes' },
      ]),
    );
    expect(emf._aws.CloudWatchMetrics[0]!.Metrics.map((m) => m.Name)).not.toContain('InstanceType');
  });

  it('a plain success is not notified unless asked', async () => {
    await runEndedAs({ Status: 'Success', StopTime: '2026-11-26T03:00:00.000Z' });
    await orchestrator.handle(TERMINATED, FUNCTION_ARN);
    expect(snsMock.calls()).toHaveLength(0);
  });

  it('a failure the worker could not notify is notified now, once', async () => {
    await runEndedAs({
      Status: 'Failed',
      Message: 'cannot mount the source file system',
      StopTime: '2026-11-26T02:05:00.000Z',
      Host: 'ip-10-0-1-5',
    });
    expect(await orchestrator.handle(TERMINATED, FUNCTION_ARN)).toMatchObject({
      runs: [{ backupId: BACKUP_ID, status: 'Failed', notified: true }],
    });
    const published = inputs(snsMock, PublishCommand);
    expect(published).toEqual([
      {
        TopicArn: TOPIC,
        Subject: '[efs-backup] Failed: efs-backup/daily on ip-10-0-1-5',
        Message: expect.stringContaining(
          'efs-backup efs-backup/daily failed: cannot mount the source file system',
        ),
        MessageAttributes: { Status: { DataType: 'String', StringValue: 'Failed' } },
      },
    ]);
    await orchestrator.handle(TERMINATED, FUNCTION_ARN);
    expect(inputs(snsMock, PublishCommand)).toHaveLength(1);
  });

  it('a run the worker never reported becomes Unknown and is notified', async () => {
    await runEndedAs({});
    await orchestrator.handle(TERMINATED, FUNCTION_ARN);
    const item = await orchestrator.store.getItem(BACKUP_ID);
    expect(item).toMatchObject({
      Status: 'Unknown',
      StopTime: '2026-11-26T04:52:31.000Z',
      Host: INSTANCE,
    });
    expect(item?.Message).toMatch(
      /^the worker \(instance i-0a1b2c3d4e5f60718\) ended before it reported/,
    );
    expect(inputs(snsMock, PublishCommand)[0]).toMatchObject({
      Subject: `[efs-backup] Unknown: efs-backup/daily on ${INSTANCE}`,
    });
  });

  it('a run no worker ever claimed is closed Failed when an instance goes after its stop time', async () => {
    await orchestrator.handle(START, FUNCTION_ARN);
    // 04:52:31, past the run's stop at 04:45 (whose own event was lost).
    expect(await orchestrator.handle(TERMINATED, FUNCTION_ARN)).toMatchObject({
      runs: [{ backupId: BACKUP_ID, status: 'Failed', notified: true }],
    });
    expect(await orchestrator.store.getItem(BACKUP_ID)).toMatchObject({
      Status: 'Failed',
      Message: `no worker took the run: the Auto Scaling group ${GROUP} started no instance since the run's start (is its maximum capacity 0, or its launch template gone?)`,
      Host: INSTANCE,
      Closed: '2026-11-26T04:52:31.000Z',
    });
    expect(inputs(snsMock, PublishCommand)).toHaveLength(1);
  });

  it("the race: a run that starts while the previous run's instance terminates is not closed with it", async () => {
    await orchestrator.handle(START, FUNCTION_ARN);
    for (const m of [asMock, ebMock, snsMock]) m.resetHistory();
    // The previous run's instance is gone at 02:00:40, after this run started at 02:00:00.
    const previous = variant(TERMINATED, {
      time: '2026-11-26T02:00:40Z',
      detail: { EC2InstanceId: 'i-0ffffffffffffffff' },
    });
    expect(await orchestrator.handle(previous, FUNCTION_ARN)).toMatchObject({ runs: [] });
    expect(await orchestrator.store.getItem(BACKUP_ID)).toMatchObject({
      Status: 'Running',
      WorkerState: 'launching',
      StopRule: RULE,
    });
    expect((await orchestrator.store.getItem(BACKUP_ID))?.Closed).toBeUndefined();
    expect(ebMock.calls()).toHaveLength(0);
    expect(snsMock.calls()).toHaveLength(0);
    // Its own worker claims it afterwards.
    expect((await claimRun(orchestrator.store, INSTANCE))?.BackupId).toBe(BACKUP_ID);
  });

  it('the instance launched for a run ends before its worker started: the run is closed Failed at once', async () => {
    await orchestrator.handle(START, FUNCTION_ARN);
    // 02:00:45: the group launched the instance for the run.
    expect(await orchestrator.handle(LAUNCHED, FUNCTION_ARN)).toEqual({
      event: 'launched',
      action: 'paired',
      instanceId: INSTANCE,
      backupId: BACKUP_ID,
    });
    expect((await orchestrator.store.getItem(BACKUP_ID))?.LaunchedInstance).toBe(INSTANCE);
    // Its user data failed and scaled the group to 0: it is gone at 02:20, long before the stop.
    const gone = variant(TERMINATED, { time: '2026-11-26T02:20:00Z' });
    expect(await orchestrator.handle(gone, FUNCTION_ARN)).toMatchObject({
      runs: [{ backupId: BACKUP_ID, status: 'Failed', notified: true }],
    });
    const item = await orchestrator.store.getItem(BACKUP_ID);
    expect(item).toMatchObject({ Status: 'Failed', Host: INSTANCE, WorkerState: 'done' });
    expect(item?.Message).toMatch(
      /^no worker took the run: its instance i-0a1b2c3d4e5f60718 ended before the worker started: the instance could not set the worker up \(it sent a notice saying why\) or was terminated \(Auto Scaling: At 2026-11-26T04:45:03Z a user request/,
    );
    expect(inputs(ebMock, DeleteRuleCommand)).toEqual([{ Name: RULE }]);
  });

  it('a stop rule already gone is no error', async () => {
    await runEndedAs({ Status: 'Success', StopTime: '2026-11-26T03:00:00.000Z' });
    const gone = new ResourceNotFoundException({ message: 'Rule does not exist', $metadata: {} });
    ebMock.on(RemoveTargetsCommand).rejects(gone);
    ebMock.on(DeleteRuleCommand).rejects(gone);
    expect(await orchestrator.handle(TERMINATED, FUNCTION_ARN)).toMatchObject({
      runs: [{ status: 'Success' }],
    });
  });

  it('a stop rule that cannot be removed yet does not keep the run open: a later start removes it', async () => {
    await runEndedAs({
      Status: 'Failed',
      Message: 'cannot mount',
      StopTime: '2026-11-26T02:05:00.000Z',
    });
    ebMock.on(RemoveTargetsCommand).rejects(new Error('Rate exceeded'));
    expect(await orchestrator.handle(TERMINATED, FUNCTION_ARN)).toMatchObject({
      runs: [{ status: 'Failed', notified: true }],
    });
    expect((await orchestrator.store.getItem(BACKUP_ID))?.Closed).toBe('2026-11-26T04:52:31.000Z');
    expect(logged.some((l) => l.msg === 'cannot remove the stop rule yet')).toBe(true);
    // The next day's start finds the rule of the closed run and removes it.
    ebMock.on(RemoveTargetsCommand).resolves({ FailedEntryCount: 0, FailedEntries: [] });
    ebMock.on(ListRulesCommand).resolves({ Rules: [{ Name: RULE }] });
    ebMock.resetHistory();
    await orchestrator.handle(
      variant(START, { id: 'next-day', time: '2026-11-27T02:00:00Z' }),
      FUNCTION_ARN,
    );
    expect(inputs(ebMock, DeleteRuleCommand)).toEqual([{ Name: RULE }]);
  });
});

describe('launches (the Auto Scaling group reports each)', () => {
  const STATUS =
    'We currently do not have sufficient c7gn.large capacity in the Availability Zone you requested (us-east-1b). Our system will be working on provisioning additional capacity. You can currently get c7gn.large capacity by not specifying an Availability Zone in your request or choosing us-east-1a, us-east-1c. Launching EC2 instance failed.';
  const failure = (n: number, time: string) =>
    variant(LAUNCH_FAILED, { id: `lf-${n}`, time, detail: { ActivityId: `activity-${n}` } });

  it('a launch is paired with the run waiting for it, once', async () => {
    await orchestrator.handle(START, FUNCTION_ARN);
    for (const m of [asMock, ssmMock, ebMock, snsMock]) m.resetHistory();
    await orchestrator.handle(LAUNCHED, FUNCTION_ARN);
    const other = variant(LAUNCHED, { detail: { EC2InstanceId: 'i-0ccccccccccccccccc' } });
    expect(await orchestrator.handle(other, FUNCTION_ARN)).toMatchObject({
      action: 'ignored',
      backupId: null,
    });
    expect((await orchestrator.store.getItem(BACKUP_ID))?.LaunchedInstance).toBe(INSTANCE);
    for (const m of [asMock, ssmMock, ebMock, snsMock]) expect(m.calls()).toHaveLength(0);
  });

  it('a launch before the run started, or of another group, pairs nothing', async () => {
    await orchestrator.handle(START, FUNCTION_ARN);
    const before = variant(LAUNCHED, { time: '2026-11-26T01:59:00Z' });
    expect(await orchestrator.handle(before, FUNCTION_ARN)).toMatchObject({ action: 'ignored' });
    const elsewhere = variant(LAUNCHED, { detail: { AutoScalingGroupName: 'someone-else' } });
    expect(await orchestrator.handle(elsewhere, FUNCTION_ARN)).toEqual({
      event: 'ignored',
      reason: 'another Auto Scaling group: someone-else',
    });
    expect((await orchestrator.store.getItem(BACKUP_ID))?.LaunchedInstance).toBeUndefined();
  });

  it('a failed launch records its cause; Auto Scaling tries again', async () => {
    await orchestrator.handle(START, FUNCTION_ARN);
    for (const m of [asMock, ebMock, snsMock]) m.resetHistory();
    expect(await orchestrator.handle(LAUNCH_FAILED, FUNCTION_ARN)).toEqual({
      event: 'launch-failed',
      action: 'recorded',
      runs: [{ backupId: BACKUP_ID, failures: 1, closed: false }],
      cause: STATUS,
    });
    // Redelivered: the same activity counts once.
    await orchestrator.handle(LAUNCH_FAILED, FUNCTION_ARN);
    expect(await orchestrator.store.getItem(BACKUP_ID)).toMatchObject({
      Status: 'Running',
      LaunchFailures: 1,
      LaunchError: STATUS,
      LaunchActivity: '0e5f6a7b-8c9d-4e0f-a1b2-c3d4e5f6a7b8',
    });
    expect(asMock.calls()).toHaveLength(0);
    expect(snsMock.calls()).toHaveLength(0);
  });

  it('the third failed launch closes the run Failed with the cause, notifies it and sets the group to 0', async () => {
    await orchestrator.handle(START, FUNCTION_ARN);
    await orchestrator.handle(failure(1, '2026-11-26T02:00:14Z'), FUNCTION_ARN);
    await orchestrator.handle(failure(2, '2026-11-26T02:00:40Z'), FUNCTION_ARN);
    for (const m of [asMock, ebMock, snsMock]) m.resetHistory();
    expect(await orchestrator.handle(failure(3, '2026-11-26T02:01:30Z'), FUNCTION_ARN)).toEqual({
      event: 'launch-failed',
      action: 'closed',
      runs: [{ backupId: BACKUP_ID, failures: 3, closed: true }],
      cause: STATUS,
    });
    const item = await orchestrator.store.getItem(BACKUP_ID);
    expect(item).toMatchObject({
      Status: 'Failed',
      Message: `the Auto Scaling group ${GROUP} could not launch the worker (3 tries): ${STATUS}`,
      StopTime: '2026-11-26T02:01:30.000Z',
      Closed: '2026-11-26T02:01:30.000Z',
      WorkerState: 'done',
    });
    expect(inputs(asMock, SetDesiredCapacityCommand)).toEqual([
      { AutoScalingGroupName: GROUP, DesiredCapacity: 0, HonorCooldown: false },
    ]);
    expect(inputs(snsMock, PublishCommand)).toEqual([
      expect.objectContaining({
        Subject: '[efs-backup] Failed: efs-backup/daily on pending',
        Message: expect.stringContaining('could not launch the worker (3 tries)'),
      }),
    ]);
    expect(inputs(ebMock, DeleteRuleCommand)).toEqual([{ Name: RULE }]);
    // A late failure finds nothing to close.
    expect(
      await orchestrator.handle(failure(4, '2026-11-26T02:02:00Z'), FUNCTION_ARN),
    ).toMatchObject({ action: 'ignored', runs: [] });
  });

  it('a failed launch leaves a run that a worker claimed alone', async () => {
    const o = await newOrchestrator({ LAUNCH_FAILURE_LIMIT: '1' });
    await o.handle(START, FUNCTION_ARN);
    await claimRun(o.store, INSTANCE);
    asMock.resetHistory();
    expect(await o.handle(LAUNCH_FAILED, FUNCTION_ARN)).toMatchObject({ action: 'ignored' });
    expect(await o.store.getItem(BACKUP_ID)).toMatchObject({ Status: 'Running' });
    expect(asMock.calls()).toHaveLength(0);
  });
});

describe('a run of several workers (WORKERS 3)', () => {
  const I = ['i-0000000000000000a', 'i-0000000000000000b', 'i-0000000000000000c'];
  const launched = (id: string, n: number) =>
    variant(LAUNCHED, { id: `launch-${n}`, detail: { EC2InstanceId: id } });
  const terminating = (id: string) =>
    variant(TERMINATING, { id: `terminating-${id}`, detail: { EC2InstanceId: id } });
  const terminated = (id: string, time = '2026-11-26T04:52:31Z') =>
    variant(TERMINATED, { id: `terminated-${id}`, time, detail: { EC2InstanceId: id } });
  let o: Orchestrator;

  beforeEach(async () => {
    o = await newOrchestrator({ WORKERS: '3' });
  });

  /** Started, its three instances launched and joined. */
  async function joined(): Promise<void> {
    await o.handle(START, FUNCTION_ARN);
    for (const [n, id] of I.entries()) await o.handle(launched(id, n), FUNCTION_ARN);
    for (const id of I) expect((await claimRun(o.store, id))?.BackupId).toBe(BACKUP_ID);
    for (const m of [asMock, ssmMock, ebMock, snsMock]) m.resetHistory();
  }

  it('a start asks the group for 3 instances, and the record says 3 workers', async () => {
    await o.handle(START, FUNCTION_ARN);
    expect(inputs(asMock, SetDesiredCapacityCommand)).toEqual([
      { AutoScalingGroupName: GROUP, DesiredCapacity: 3, HonorCooldown: false },
    ]);
    expect(await o.store.getItem(BACKUP_ID)).toMatchObject({
      Status: 'Running',
      Workers: 3,
      Seats: 3,
      WorkerState: 'launching',
      Message: `waiting for the workers: the Auto Scaling group ${GROUP} is launching 3 instances`,
    });
    // A redelivered start asks for the same 3.
    await o.handle(START, FUNCTION_ARN);
    expect(inputs(asMock, SetDesiredCapacityCommand).map((c) => c.DesiredCapacity)).toEqual([3, 3]);
  });

  it('each of its three launches is paired with it; a fourth is not', async () => {
    await o.handle(START, FUNCTION_ARN);
    for (const [n, id] of I.entries())
      expect(await o.handle(launched(id, n), FUNCTION_ARN)).toMatchObject({
        action: 'paired',
        backupId: BACKUP_ID,
      });
    // Redelivered, and one more instance: nothing more is paired.
    expect(await o.handle(launched(I[0]!, 0), FUNCTION_ARN)).toMatchObject({ action: 'ignored' });
    expect(await o.handle(launched('i-0000000000000000d', 3), FUNCTION_ARN)).toMatchObject({
      action: 'ignored',
    });
    expect(await o.store.getItem(BACKUP_ID)).toMatchObject({
      LaunchedInstance: I[0],
      LaunchedInstances: new Set(I),
    });
  });

  it('three workers join it, the first claims it; a fourth may not, a join repeated takes no seat', async () => {
    await o.handle(START, FUNCTION_ARN);
    const first = await claimRun(o.store, I[0]!);
    expect(first).toMatchObject({ WorkerState: 'running', WorkerInstance: I[0], Seats: 2 });
    await claimRun(o.store, I[1]!);
    await claimRun(o.store, I[2]!);
    expect(await claimRun(o.store, 'i-0000000000000000d')).toBeNull();
    expect((await claimRun(o.store, I[1]!))?.BackupId).toBe(BACKUP_ID);
    expect(await o.store.getItem(BACKUP_ID)).toMatchObject({
      WorkerInstance: I[0],
      WorkerInstances: new Set(I),
      Seats: 0,
    });
  });

  it('the stop: every instance is told through its own Run Command, each for the window', async () => {
    await joined();
    expect(await o.handle(STOP, FUNCTION_ARN)).toMatchObject({ action: 'stopped' });
    expect(inputs(asMock, SetDesiredCapacityCommand)).toEqual([
      { AutoScalingGroupName: GROUP, DesiredCapacity: 0, HonorCooldown: false },
    ]);
    // The group terminates its three instances: each one's lifecycle action, each one told.
    for (const id of I)
      expect(await o.handle(terminating(id), FUNCTION_ARN)).toMatchObject({
        action: 'stop-sent',
        instanceId: id,
        reason: 'window',
      });
    expect(inputs(ssmMock, SendCommandCommand).map((c) => c.InstanceIds)).toEqual(
      I.map((id) => [id]),
    );
  });

  it('closed once, when the last worker is gone: not at the first, nor twice when two go at once', async () => {
    await joined();
    // The committer reported the run's end; the others did not.
    await o.store.update(BACKUP_ID, {
      Status: 'Success',
      StopTime: '2026-11-26T03:00:00.000Z',
      Reporter: I[1],
      WorkerState: 'done',
    });
    expect(await o.handle(terminated(I[0]!), FUNCTION_ARN)).toEqual({
      event: 'terminated',
      action: 'closed',
      instanceId: I[0],
      runs: [],
      going: [{ backupId: BACKUP_ID, workers: 2 }],
    });
    expect((await o.store.getItem(BACKUP_ID))?.Closed).toBeUndefined();
    expect(ebMock.calls()).toHaveLength(0);
    expect(metrics).toHaveLength(0);
    // The last two at once: one of them closes the run.
    const results = await Promise.all(
      I.slice(1).map((id) => o.handle(terminated(id), FUNCTION_ARN)),
    );
    const closed = results.flatMap((r) => (r.event === 'terminated' ? r.runs : []));
    expect(closed).toEqual([{ backupId: BACKUP_ID, status: 'Success', notified: false }]);
    expect(metrics).toHaveLength(1);
    expect(JSON.parse(metrics[0]!)).toMatchObject({ Workers: 3, RunsSucceeded: 1 });
    expect(inputs(ebMock, DeleteRuleCommand)).toEqual([{ Name: RULE }]);
    expect(await o.store.getItem(BACKUP_ID)).toMatchObject({
      Closed: '2026-11-26T04:52:31.000Z',
      WorkersGone: new Set(I),
    });
    // Redelivered: nothing more.
    expect(await o.handle(terminated(I[2]!), FUNCTION_ARN)).toMatchObject({ runs: [] });
    expect(metrics).toHaveLength(1);
  });

  it('a close cut short (its Lambda ended after the claim) is finished by the same event redelivered', async () => {
    await joined();
    await o.store.update(BACKUP_ID, {
      Status: 'Failed',
      Message: 'disk full',
      StopTime: '2026-11-26T03:00:00.000Z',
    });
    for (const id of I.slice(0, 2)) await o.handle(terminated(id), FUNCTION_ARN);
    // The last one's first attempt counted it gone and claimed the close, then stopped (its
    // Lambda timed out, 3 minutes ago): the event's retry closes the run.
    await o.store.workerGone(BACKUP_ID, I[2]!);
    await o.store.update(BACKUP_ID, { Closing: new Date(Date.now() - 180_000).toISOString() });
    expect(await o.handle(terminated(I[2]!), FUNCTION_ARN)).toMatchObject({
      runs: [{ backupId: BACKUP_ID, status: 'Failed', notified: true }],
    });
    // Another instance's event does not close it a second time.
    expect(await o.handle(terminated(I[0]!), FUNCTION_ARN)).toMatchObject({ runs: [] });
    expect(inputs(snsMock, PublishCommand)).toHaveLength(1);
  });

  it('the last end delivered twice at once closes the run once', async () => {
    await joined();
    await o.store.update(BACKUP_ID, {
      Status: 'Failed',
      Message: 'disk full',
      StopTime: '2026-11-26T03:00:00.000Z',
    });
    for (const id of I.slice(0, 2)) await o.handle(terminated(id), FUNCTION_ARN);
    const twice = await Promise.all([1, 2].map(() => o.handle(terminated(I[2]!), FUNCTION_ARN)));
    expect(twice.flatMap((r) => (r.event === 'terminated' ? r.runs : []))).toHaveLength(1);
    expect(metrics).toHaveLength(1);
    expect(inputs(snsMock, PublishCommand)).toHaveLength(1);
  });

  it('no worker reported: closed with the most telling end a worker kept (stopped before failed), notified', async () => {
    await joined();
    const running = (await o.store.get(BACKUP_ID))!;
    await o.store.addWorkerEnd(BACKUP_ID, I[0]!, {
      ...running,
      Status: 'Failed',
      Message: 'cannot mount the source file system',
      StopTime: '2026-11-26T02:10:00.000Z',
      Host: 'ip-10-0-0-1',
      NumberOfFilesTransferred: 3,
    });
    await o.store.addWorkerEnd(BACKUP_ID, I[1]!, {
      ...running,
      Status: 'Incomplete',
      Message:
        'the backup window ended before the backup completed; the next run continues from where this one stopped',
      StopTime: '2026-11-26T04:45:05.000Z',
      Host: 'ip-10-0-0-2',
      NumberOfFilesTransferred: 40,
      WorkerFigures: [{ Worker: I[1]!, Units: 2, Entries: 40, Bytes: 400, Seconds: 9 }],
    });
    for (const id of I) await o.handle(terminated(id), FUNCTION_ARN);
    const zero = { Units: 0, Entries: 0, Bytes: 0, Seconds: 0 };
    expect(await o.store.getItem(BACKUP_ID)).toMatchObject({
      Status: 'Incomplete',
      Message:
        'the backup window ended before the backup completed; the next run continues from where this one stopped',
      Host: 'ip-10-0-0-2',
      // Each worker counts its own part: the run's figures are their sums.
      NumberOfFilesTransferred: 40 + 3,
      StopTime: '2026-11-26T04:45:05.000Z',
      // Every worker that joined, one that kept no figures (or no end) at nothing.
      WorkerFigures: [
        { Worker: I[0], ...zero },
        { Worker: I[1], Units: 2, Entries: 40, Bytes: 400, Seconds: 9 },
        { Worker: I[2], ...zero },
      ],
      Closed: expect.any(String),
      Notified: expect.any(String),
    });
    expect(inputs(snsMock, PublishCommand)).toEqual([
      expect.objectContaining({
        Subject: '[efs-backup] Incomplete: efs-backup/daily on ip-10-0-0-2',
      }),
    ]);
  });

  it('no worker reported and none kept an end: Unknown, naming every worker', async () => {
    await joined();
    for (const id of I) await o.handle(terminated(id), FUNCTION_ARN);
    const item = await o.store.getItem(BACKUP_ID);
    expect(item?.Status).toBe('Unknown');
    expect(item?.Message).toMatch(
      new RegExp(`^the workers \\(instances ${I.join(', ')}\\) ended before any of them reported`),
    );
  });

  it("a worker's instance gone mid-run gives its seat back: a replacement joins, and the run waits for it", async () => {
    await joined();
    await o.handle(terminated(I[0]!, '2026-11-26T02:30:00Z'), FUNCTION_ARN);
    expect((await o.store.getItem(BACKUP_ID))?.Seats).toBe(1);
    const replacement = 'i-0000000000000000d';
    expect((await claimRun(o.store, replacement))?.BackupId).toBe(BACKUP_ID);
    for (const id of I.slice(1))
      expect(await o.handle(terminated(id), FUNCTION_ARN)).toMatchObject({
        runs: [],
        going: [{ backupId: BACKUP_ID, workers: expect.any(Number) }],
      });
    expect(await o.handle(terminated(replacement), FUNCTION_ARN)).toMatchObject({
      runs: [{ backupId: BACKUP_ID }],
    });
  });

  it('no worker yet: the run is closed Failed only once every instance launched for it is gone', async () => {
    await o.handle(START, FUNCTION_ARN);
    for (const [n, id] of I.entries()) await o.handle(launched(id, n), FUNCTION_ARN);
    const early = (id: string) => terminated(id, '2026-11-26T02:20:00Z');
    for (const id of I.slice(0, 2))
      expect(await o.handle(early(id), FUNCTION_ARN)).toMatchObject({ runs: [] });
    expect(await o.store.getItem(BACKUP_ID)).toMatchObject({
      Status: 'Running',
      LaunchedInstances: new Set([I[2]]),
    });
    expect(await o.handle(early(I[2]!), FUNCTION_ARN)).toMatchObject({
      runs: [{ backupId: BACKUP_ID, status: 'Failed', notified: true }],
    });
    expect((await o.store.getItem(BACKUP_ID))?.Message).toMatch(
      new RegExp(`^no worker took the run: its instance ${I[2]} ended before the worker started`),
    );
  });

  it('failed launches do not close a run while an instance launched for it may still start a worker', async () => {
    const limited = await newOrchestrator({ WORKERS: '3', LAUNCH_FAILURE_LIMIT: '1' });
    await limited.handle(START, FUNCTION_ARN);
    await limited.handle(launched(I[0]!, 0), FUNCTION_ARN);
    asMock.resetHistory();
    expect(await limited.handle(LAUNCH_FAILED, FUNCTION_ARN)).toMatchObject({
      action: 'recorded',
      runs: [{ backupId: BACKUP_ID, failures: 1, closed: false }],
    });
    expect(asMock.calls()).toHaveLength(0);
    // Its worker takes the run: the failures are only recorded.
    expect((await claimRun(limited.store, I[0]!))?.BackupId).toBe(BACKUP_ID);
    expect(await limited.store.getItem(BACKUP_ID)).toMatchObject({
      Status: 'Running',
      LaunchFailures: 1,
    });
  });
});

/** An item of another run, as the orchestrator writes one. */
function runItem(id: string, over: Partial<RunItem>): RunItem {
  return {
    ...newRunRecord({
      id,
      label: 'efs-backup',
      interval: 'daily',
      retain: 7,
      source: '/mnt/efs/fs-0123456789abcdef0',
      prefix: '/',
      destination: '/mnt/efs/fs-0fedcba9876543210',
      start: new Date('2026-11-25T02:00:00Z'),
      host: 'pending',
      expireDays: 90,
    }),
    ...over,
  };
}

describe("the stop rules of the stack's runs", () => {
  const rule = (name: string) => ({
    Name: name,
    Arn: `arn:aws:events:us-east-1:123456789012:rule/${name}`,
    State: 'ENABLED' as const,
    ScheduleExpression: 'cron(45 4 26 11 ? 2026)',
  });

  it('a start removes the rules runs left behind, and keeps those of open runs', async () => {
    // A closed run's rule whose removal failed, and an open run's.
    await orchestrator.store.create(
      runItem('old-closed', {
        Status: 'Success',
        StopRule: 'efs-backup-stop-old-closed',
        Closed: '2026-11-25T04:50:00.000Z',
      }),
    );
    await orchestrator.store.create(
      runItem('still-open', {
        // Reported, but its instance is not gone yet: the run is not closed.
        Status: 'Success',
        StopRule: 'efs-backup-stop-still-open',
        StopAt: '2026-11-26T05:00:00.000Z',
        WorkerState: 'running',
        WorkerInstance: 'i-0dddddddddddddddd',
      }),
    );
    ebMock.on(ListRulesCommand).resolves({
      Rules: [rule('efs-backup-stop-old-closed'), rule('efs-backup-stop-still-open'), rule(RULE)],
    });
    await orchestrator.handle(START, FUNCTION_ARN);
    expect(inputs(ebMock, ListRulesCommand)).toEqual([
      { NamePrefix: 'efs-backup-stop-', Limit: 100 },
    ]);
    expect(inputs(ebMock, DeleteRuleCommand)).toEqual([{ Name: 'efs-backup-stop-old-closed' }]);
    expect(inputs(ebMock, RemoveTargetsCommand)).toEqual([
      { Rule: 'efs-backup-stop-old-closed', Ids: ['orchestrator'] },
    ]);
  });

  it('a start goes on when the rules cannot be listed', async () => {
    ebMock.on(ListRulesCommand).rejects(new Error('AccessDenied'));
    expect(await orchestrator.handle(START, FUNCTION_ARN)).toMatchObject({ action: 'started' });
    expect(logged.some((l) => l.msg === 'cannot tidy the stop rules left behind')).toBe(true);
  });

  it('the stack deletion removes every rule of the stack, page by page, and answers CloudFormation', async () => {
    const answers: { method?: string; type?: string; body: Record<string, unknown> }[] = [];
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        answers.push({
          ...(req.method ? { method: req.method } : {}),
          ...(req.headers['content-type'] ? { type: req.headers['content-type'] } : {}),
          body: JSON.parse(body) as Record<string, unknown>,
        });
        res.end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/cfn-response?X-Amz-Signature=x`;
    try {
      ebMock
        .on(ListRulesCommand, { NamePrefix: 'efs-backup-stop-', Limit: 100 })
        .resolves({ Rules: [rule('efs-backup-stop-a')], NextToken: 'page-2' });
      ebMock
        .on(ListRulesCommand, { NamePrefix: 'efs-backup-stop-', Limit: 100, NextToken: 'page-2' })
        .resolves({ Rules: [rule('efs-backup-stop-b')] });
      const request = {
        RequestType: 'Delete',
        ServiceToken: FUNCTION_ARN,
        ResponseURL: url,
        StackId:
          'arn:aws:cloudformation:us-east-1:123456789012:stack/efs-backup/1c2fa620-982a-11e3-aff7-50e2416294e0',
        RequestId: 'req-1',
        ResourceType: 'Custom::StopRuleCleanup',
        LogicalResourceId: 'BackupStopRuleCleanup',
        PhysicalResourceId: 'efs-backup-stop-rules',
        ResourceProperties: { ServiceToken: FUNCTION_ARN, Prefix: 'efs-backup-stop-' },
      };
      expect(await orchestrator.handle(request, FUNCTION_ARN)).toEqual({
        event: 'stack',
        action: 'deleted',
        rulesRemoved: 2,
      });
      expect(inputs(ebMock, DeleteRuleCommand)).toEqual([
        { Name: 'efs-backup-stop-a' },
        { Name: 'efs-backup-stop-b' },
      ]);
      expect(answers).toEqual([
        {
          method: 'PUT',
          body: {
            Status: 'SUCCESS',
            PhysicalResourceId: 'efs-backup-stop-rules',
            StackId: request.StackId,
            RequestId: 'req-1',
            LogicalResourceId: 'BackupStopRuleCleanup',
            Data: { RulesRemoved: '2' },
          },
        },
      ]);
      // Created: answered, nothing touched.
      ebMock.resetHistory();
      const created = { ...request, RequestType: 'Create', RequestId: 'req-0' } as Record<
        string,
        unknown
      >;
      delete created.PhysicalResourceId;
      expect(await orchestrator.handle(created, FUNCTION_ARN)).toEqual({
        event: 'stack',
        action: 'created',
        rulesRemoved: 0,
      });
      expect(ebMock.calls()).toHaveLength(0);
      expect(answers[1]!.body).toMatchObject({
        Status: 'SUCCESS',
        PhysicalResourceId: 'efs-backup-stop-rules',
        RequestId: 'req-0',
      });
    } finally {
      server.close();
    }
  });
});

describe('anything else', () => {
  it.each([
    [
      'a plain Scheduled Event of another rule',
      load('scheduled-plain'),
      'not an orchestrator event (Scheduled Event)',
    ],
    [
      'an S3 notification',
      { Records: [{ eventSource: 'aws:s3' }] },
      'not an orchestrator event (no detail-type)',
    ],
    ['null', null, 'not an orchestrator event (no detail-type)'],
    ['a string', 'hello', 'not an orchestrator event (no detail-type)'],
  ])('%s is logged and ignored', async (_name, event, reason) => {
    expect(await orchestrator.handle(event, FUNCTION_ARN)).toEqual({ event: 'ignored', reason });
    expect(logged.at(-1)).toMatchObject({
      level: 'info',
      msg: 'ignored an event the orchestrator does not handle',
    });
    for (const m of [asMock, ssmMock, ebMock, snsMock]) expect(m.calls()).toHaveLength(0);
    expect(await orchestrator.store.list()).toEqual([]);
  });

  it('a start with a bad parameter is logged as an error, and nothing is done', async () => {
    const bad = variant(START, { detail: { retain: '0', windowMinutes: '20' } });
    const r = await orchestrator.handle(bad, FUNCTION_ARN);
    expect(r).toMatchObject({ event: 'ignored' });
    expect((r as { reason: string }).reason).toMatch(
      /^malformed Scheduled Event: .*retain.*windowMinutes/s,
    );
    expect(logged.at(-1)).toMatchObject({ level: 'error' });
    expect(asMock.calls()).toHaveLength(0);
  });
});

describe('the Lambda handler', () => {
  it('names the setting its environment lacks', async () => {
    await expect(handler(START, { invokedFunctionArn: FUNCTION_ARN })).rejects.toThrow(
      /the orchestrator's environment is not right: .*TABLE_NAME/s,
    );
  });
});

describe('how many workers, as the stack says it', () => {
  const env = {
    TABLE_NAME: 't',
    TOPIC_ARN: TOPIC,
    AUTO_SCALING_GROUP_NAME: GROUP,
    SOURCE_FILE_SYSTEM_ID: 'fs-0123456789abcdef0',
    BACKUP_FILE_SYSTEM_ID: 'fs-0fedcba9876543210',
  };
  const worker = {
    region: REGION,
    table: 't',
    bucket: 'b',
    topicArn: TOPIC,
    autoScalingGroupName: GROUP,
    sourceFileSystemId: 'fs-0123456789abcdef0',
    backupFileSystemId: 'fs-0fedcba9876543210',
  };

  it('the orchestrator takes WORKERS from 1 to 16 (1 without it); the worker needs a lease table for more than 1', () => {
    expect(OrchestratorSettingsSchema.parse(env).WORKERS).toBe(1);
    expect(OrchestratorSettingsSchema.parse({ ...env, WORKERS: '16' }).WORKERS).toBe(16);
    for (const bad of ['0', '17', '2.5', 'three'])
      expect(OrchestratorSettingsSchema.safeParse({ ...env, WORKERS: bad }).success).toBe(false);
    expect(WorkerConfigSchema.parse(worker)).toMatchObject({ workers: 1 });
    expect(
      WorkerConfigSchema.parse({ ...worker, workers: '3', leaseTable: 'l', leaseSeconds: '2' }),
    ).toMatchObject({
      workers: 3,
      leaseTable: 'l',
      leaseSeconds: 2,
    });
    const r = WorkerConfigSchema.safeParse({ ...worker, workers: 3 });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]).toMatchObject({
      path: ['leaseTable'],
      message: 'workers above 1 need a leaseTable to share the run through',
    });
  });
});

describe('the staleness alarm (its Lambda action)', () => {
  const ALARM = load('alarm-stale');

  it('in ALARM: a notice through the topic, with the newest successful run of the records', async () => {
    orchestrator = await newOrchestrator({ STALE_AFTER_HOURS: '48', LABEL: 'efs-backup' });
    await orchestrator.store.create(
      runItem('older', { Status: 'Success', StartTime: '2026-11-24T02:00:00.000Z' }),
    );
    await orchestrator.store.create(
      runItem('newest', { Status: 'SuccessWithWarnings', StartTime: '2026-11-25T02:00:00.000Z' }),
    );
    await orchestrator.store.create(
      runItem('failed', { Status: 'Failed', StartTime: '2026-11-27T02:00:00.000Z' }),
    );
    const r = await orchestrator.handle(ALARM, FUNCTION_ARN);
    expect(r).toEqual({
      event: 'alarm',
      action: 'notified',
      alarm: 'efs-backup-prod-Backup-stale',
      state: 'ALARM',
    });
    expect(inputs(snsMock, PublishCommand)).toEqual([
      {
        TopicArn: TOPIC,
        Subject: '[efs-backup] Stale: no successful backup of fs-0123456789abcdef0 for 48 hours',
        Message: [
          'No backup of efs-backup of fs-0123456789abcdef0 has succeeded for 48 hours.',
          'The newest successful run the records hold started 2026-11-25T02:00:00.000Z (newest, SuccessWithWarnings).',
          'Look at the schedule rule (is it enabled?), the stack (an update gone wrong?), and the records and notices of the last runs.',
          '',
          'Alarm: efs-backup-prod-Backup-stale (arn:aws:cloudwatch:us-east-1:123456789012:alarm:efs-backup-prod-Backup-stale)',
          'Since: 2026-11-28T02:05:12.490+0000',
          'Reason: Threshold Crossed: no datapoints were received for 48 periods and 48 missing datapoints were treated as [Breaching].',
        ].join('\n'),
        MessageAttributes: { Status: { DataType: 'String', StringValue: 'Stale' } },
      },
    ]);
    // Nothing else touched.
    expect(asMock.calls()).toHaveLength(0);
    expect(ebMock.calls()).toHaveLength(0);
  });

  it('with no successful run recorded, the notice says so', async () => {
    orchestrator = await newOrchestrator({ STALE_AFTER_HOURS: '48' });
    await orchestrator.handle(ALARM, FUNCTION_ARN);
    const [p] = inputs(snsMock, PublishCommand) as { Message: string }[];
    expect(p!.Message).toContain('The records hold no successful run.');
  });

  it('back to OK: logged, nobody told', async () => {
    const ok = {
      ...ALARM,
      alarmData: {
        ...(ALARM.alarmData as object),
        state: {
          value: 'OK',
          reason: 'Threshold Crossed',
          timestamp: '2026-11-29T03:05:00.000+0000',
        },
      },
    };
    expect(await orchestrator.handle(ok, FUNCTION_ARN)).toEqual({
      event: 'alarm',
      action: 'ignored',
      alarm: 'efs-backup-prod-Backup-stale',
      state: 'OK',
    });
    expect(snsMock.calls()).toHaveLength(0);
  });
});
