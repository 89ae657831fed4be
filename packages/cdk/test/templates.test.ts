/**
 * The two templates `npm run dist` ships, synthesized once for the file (the dist synthesizer,
 * cdk-nag's AwsSolutions pack plugged in): every resource and property the AWS deployment
 * issue asks for, and what the running code reads out of them (the worker's configuration in
 * the user data, the orchestrator's environment, the schedule's event) checked with the same
 * schemas the code uses.
 */
import {
  OrchestratorSettingsSchema,
  StartEventSchema,
  WorkerConfigSchema,
} from '@efs-backup/aws/contract';
import { ORCHESTRATOR_BUNDLE_DIR, WORKER_BUNDLE_FILE } from '@efs-backup/aws/bundles';
import { App, Stack, Validations } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as efs from 'aws-cdk-lib/aws-efs';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildApp,
  DistSynthesizer,
  EfsToEfsBackup,
  type EfsBackupApp,
  type EfsToEfsBackupProps,
} from '../src/index.js';
import { conditionsOf, render, ruleFailures, type RenderContext } from './fixtures/cfn.js';

let built: EfsBackupApp;
let outdir: string;
let backup: Template;
let restore: Template;

beforeAll(() => {
  outdir = fs.mkdtempSync(path.join(os.tmpdir(), 'efs-backup-cdk-'));
  built = buildApp({
    outdir,
    synthesizer: () =>
      new DistSynthesizer({ bucket: 'my-assets', keyPrefix: 'efs-backup/v9.9.9/' }),
  });
  // cdk-nag runs here: a finding not acknowledged fails the synthesis.
  built.app.synth();
  backup = Template.fromStack(built.backup);
  restore = Template.fromStack(built.restore);
});

afterAll(() => {
  if (outdir) fs.rmSync(outdir, { recursive: true, force: true });
});

type Json = Parameters<typeof render>[0];
const resources = (t: Template, type: string): [string, Record<string, Json>][] =>
  Object.entries(t.findResources(type)) as [string, Record<string, Json>][];
const only = (t: Template, type: string): [string, Record<string, Json>] => {
  const all = resources(t, type);
  expect(all).toHaveLength(1);
  return all[0]!;
};
const props = (t: Template, type: string): Record<string, Json> =>
  only(t, type)[1].Properties as Record<string, Json>;

const BACKUP_PARAMS: RenderContext = {
  parameters: {
    SourceEfsId: 'fs-0123456789abcdef0',
    SourceEfsSecurityGroup: 'sg-0123456789abcdef0',
    IntervalTag: 'daily',
    Retain: '7',
    FolderLabel: 'efs-backup',
    BackupWindow: '180',
    BackupSchedule: 'cron(0 2 * * ? *)',
    BackupPrefix: '/',
    // Numbers, as CloudFormation renders them into a string.
    MaxMiBps: '0',
    MaxOps: '0',
    BurstCreditFloor: '1099511627776',
    LowCreditMaxMiBps: '10',
    StaleAfterHours: '48',
    Workers: '1',
    VpcId: 'vpc-0123',
    Subnets: ['subnet-a', 'subnet-b'],
    AssetsBucket: 'my-assets',
    AssetsKeyPrefix: 'efs-backup/v9.9.9/',
    'AWS::StackId':
      'arn:aws:cloudformation:us-east-1:123456789012:stack/efs-backup/1c2fa620-982a-11e3-aff7-50e2416294e0',
  },
};

/** The backup construct's stop rule prefix in the stack BACKUP_PARAMS names. */
const stopRulePrefix = (): string => `efsb-1c2fa620-${built.backup.backup.node.addr.slice(0, 6)}-`;

/** The worker's configuration file, as the user data writes it on the instance. */
function workerConfig(t: Template, ctx: RenderContext): unknown {
  const data = (props(t, 'AWS::EC2::LaunchTemplate').LaunchTemplateData as Record<string, Json>)
    .UserData!;
  const script = render(data, ctx) as string;
  const json = /cat > \/etc\/efs-backup\/worker\.json <<'EOF'\n(.*)\nEOF\n/.exec(script)?.[1];
  expect(json).toBeDefined();
  return JSON.parse(json!);
}

function userData(t: Template, ctx: RenderContext): string {
  const data = (props(t, 'AWS::EC2::LaunchTemplate').LaunchTemplateData as Record<string, Json>)
    .UserData!;
  return render(data, ctx) as string;
}

describe('efs-to-efs-backup.template', () => {
  it("has the original's parameters, grouped for the console, and the assets' location", () => {
    const p = backup.toJSON().Parameters as Record<string, Record<string, unknown>>;
    expect(p.SourceEfsId).toMatchObject({ Type: 'String', AllowedPattern: '^fs-[0-9a-f]{8,40}$' });
    expect(p.IntervalTag).toMatchObject({ Type: 'String', Default: 'daily' });
    expect(p.Retain).toMatchObject({ Type: 'Number', Default: 7, MinValue: 1 });
    expect(p.FolderLabel).toMatchObject({ Type: 'String', Default: 'efs-backup' });
    expect(p.BackupWindow).toMatchObject({ Type: 'Number', Default: 180, MinValue: 30 });
    expect(p.BackupSchedule).toMatchObject({ Type: 'String', Default: 'cron(0 2 * * ? *)' });
    expect(p.BackupPrefix).toMatchObject({ Type: 'String', Default: '/' });
    expect(p.EfsMode).toMatchObject({
      AllowedValues: ['generalPurpose', 'maxIO'],
      Default: 'generalPurpose',
    });
    expect(p.EfsEncryption).toMatchObject({ AllowedValues: ['Yes', 'No'], Default: 'Yes' });
    expect(p.SuccessNotification).toMatchObject({ AllowedValues: ['Yes', 'No'], Default: 'No' });
    expect(p.VpcId).toMatchObject({ Type: 'AWS::EC2::VPC::Id' });
    expect(p.Subnets).toMatchObject({ Type: 'List<AWS::EC2::Subnet::Id>' });
    expect(p.Email).toMatchObject({ Type: 'String', Default: '' });
    expect(p.Dashboard).toMatchObject({ AllowedValues: ['Yes', 'No'], Default: 'Yes' });
    expect(p.SourceEfsSecurityGroup).toMatchObject({ Default: '' });
    expect(p.AssetsBucket).toMatchObject({ Type: 'String', Default: 'my-assets' });
    expect(p.AssetsKeyPrefix).toMatchObject({ Type: 'String', Default: 'efs-backup/v9.9.9/' });
    // Amazon Linux 2023 for Graviton, from its public SSM parameter.
    expect(
      Object.values(p).some(
        (v) => v.Default === '/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-6.1-arm64',
      ),
    ).toBe(true);
    // No CDK bootstrap needed: no bootstrap version parameter or rule.
    expect(p.BootstrapVersion).toBeUndefined();
    expect(Object.keys(backup.toJSON().Rules as object)).not.toContain('CheckBootstrapVersion');
    const iface = (backup.toJSON().Metadata as Record<string, Record<string, unknown>>)[
      'AWS::CloudFormation::Interface'
    ]!;
    const grouped = (iface.ParameterGroups as { Parameters: string[] }[]).flatMap(
      (g) => g.Parameters,
    );
    for (const name of [
      'SourceEfsId',
      'IntervalTag',
      'Retain',
      'FolderLabel',
      'BackupWindow',
      'BackupSchedule',
      'BackupPrefix',
      'EfsMode',
      'EfsEncryption',
      'SuccessNotification',
      'VpcId',
      'Subnets',
      'Email',
      'Dashboard',
      'ThroughputMode',
      'ProvisionedThroughput',
      'TransitionToIA',
      'TransitionToArchive',
      'InstanceType',
      'MaxMiBps',
      'MaxOps',
      'BurstCreditFloor',
      'LowCreditMaxMiBps',
      'StaleAfterHours',
      'Workers',
    ]) {
      expect(grouped).toContain(name);
    }
  });

  it('cost and performance parameters, with their defaults and constraints', () => {
    const p = backup.toJSON().Parameters as Record<string, Record<string, unknown>>;
    expect(p.ThroughputMode).toMatchObject({
      Type: 'String',
      Default: 'elastic',
      AllowedValues: ['elastic', 'bursting', 'provisioned'],
    });
    expect(p.ProvisionedThroughput).toMatchObject({ Type: 'Number', Default: 0, MinValue: 0 });
    const days = ['1', '7', '14', '30', '60', '90', '180', '270', '365'];
    expect(p.TransitionToIA).toMatchObject({
      Type: 'String',
      Default: '30',
      AllowedValues: ['none', ...days],
    });
    expect(p.TransitionToArchive).toMatchObject({
      Type: 'String',
      Default: 'none',
      AllowedValues: ['none', ...days],
    });
    expect(p.InstanceType).toMatchObject({ Type: 'String', Default: 'c7gn.large' });
    // Each day count maps to EFS's enum, AFTER_1_DAY ... AFTER_365_DAYS.
    expect(backup.toJSON().Mappings.LifecycleDays).toMatchObject({
      '1': { Policy: 'AFTER_1_DAY' },
      '7': { Policy: 'AFTER_7_DAYS' },
      '30': { Policy: 'AFTER_30_DAYS' },
      '365': { Policy: 'AFTER_365_DAYS' },
    });
  });

  it('gentle on the source: the limits and the burst credit floor, with defaults and constraints, into the worker', () => {
    const p = backup.toJSON().Parameters as Record<string, Record<string, unknown>>;
    expect(p.MaxMiBps).toMatchObject({ Type: 'Number', Default: 0, MinValue: 0 });
    expect(p.MaxOps).toMatchObject({ Type: 'Number', Default: 0, MinValue: 0 });
    expect(p.BurstCreditFloor).toMatchObject({ Type: 'Number', Default: 2 ** 40, MinValue: 0 });
    expect(p.LowCreditMaxMiBps).toMatchObject({ Type: 'Number', Default: 10, MinValue: 0.1 });
    expect(p.StaleAfterHours).toMatchObject({ Type: 'String', Default: '48' });
    // Whole hours from 1 to 168 only: 1.5 would pass a Number parameter and fail the alarm.
    const hours = new RegExp(String(p.StaleAfterHours.AllowedPattern));
    for (const ok of ['1', '9', '48', '99', '100', '159', '168']) expect(ok).toMatch(hours);
    for (const bad of ['0', '1.5', '169', '200', '048', '', '-1', '1e2'])
      expect(bad).not.toMatch(hours);
    // The defaults: no limit, a floor of 1 TiB, 10 MiB/s under it, read every 5 minutes.
    expect(WorkerConfigSchema.parse(workerConfig(backup, BACKUP_PARAMS))).toMatchObject({
      maxMiBps: 0,
      maxOps: 0,
      burstCreditFloor: 2 ** 40,
      lowCreditMaxMiBps: 10,
      creditCheckSeconds: 300,
    });
    const set = {
      ...BACKUP_PARAMS,
      parameters: {
        ...BACKUP_PARAMS.parameters,
        MaxMiBps: '40',
        MaxOps: '800',
        BurstCreditFloor: '500000000000',
        LowCreditMaxMiBps: '5',
      },
    };
    expect(WorkerConfigSchema.parse(workerConfig(backup, set))).toMatchObject({
      maxMiBps: 40,
      maxOps: 800,
      burstCreditFloor: 500_000_000_000,
      lowCreditMaxMiBps: 5,
    });
  });

  it('a staleness alarm: no successful run for StaleAfterHours invokes the orchestrator, which notifies', () => {
    const [id, alarm] = only(backup, 'AWS::CloudWatch::Alarm');
    const a = alarm.Properties as Record<string, Json>;
    expect(a).toMatchObject({
      Namespace: 'EfsBackup',
      MetricName: 'RunsSucceeded',
      Dimensions: expect.arrayContaining([
        { Name: 'FileSystemId', Value: { Ref: 'SourceEfsId' } },
        { Name: 'Label', Value: { Ref: 'FolderLabel' } },
      ]),
      Statistic: 'Sum',
      // StaleAfterHours periods of an hour (CloudWatch: at most 7 days in all), all breaching.
      Period: 3600,
      EvaluationPeriods: { Ref: 'StaleAfterHours' },
      DatapointsToAlarm: { Ref: 'StaleAfterHours' },
      Threshold: 1,
      ComparisonOperator: 'LessThanThreshold',
      // No run at all (a schedule deleted, an orchestrator that no longer runs) is stale too.
      TreatMissingData: 'breaching',
      AlarmActions: [{ 'Fn::GetAtt': [expect.stringMatching(/^BackupOrchestrator/), 'Arn'] }],
    });
    expect(render(a.AlarmName!, BACKUP_PARAMS)).toBe('<AWS::StackName>-Backup-stale');
    // The alarm may invoke the orchestrator, and only this alarm.
    const [, permission] = resources(backup, 'AWS::Lambda::Permission').find(
      ([, r]) =>
        (r.Properties as Record<string, Json>).Principal ===
        'lambda.alarms.cloudwatch.amazonaws.com',
    )!;
    expect(permission.Properties).toMatchObject({
      Action: 'lambda:InvokeFunction',
      FunctionName: { 'Fn::GetAtt': [expect.stringMatching(/^BackupOrchestrator/), 'Arn'] },
      SourceArn: { 'Fn::GetAtt': [id, 'Arn'] },
    });
    // The orchestrator says how many hours in its notice.
    const fn = resources(backup, 'AWS::Lambda::Function').find(([k]) =>
      /^BackupOrchestrator[0-9A-F]{8}$/.test(k),
    )![1];
    const env = render(
      ((fn.Properties as Record<string, Json>).Environment as Record<string, Json>).Variables!,
      BACKUP_PARAMS,
    );
    expect(OrchestratorSettingsSchema.parse(env)).toMatchObject({
      STALE_AFTER_HOURS: 48,
      LABEL: 'efs-backup',
    });
  });

  it('its rules refuse, before anything is created, what EFS would refuse', () => {
    const t = backup.toJSON();
    const failures = (over: Record<string, string>) =>
      ruleFailures(t, { ...BACKUP_PARAMS.parameters, ...over });
    expect(failures({})).toEqual([]);
    // Provisioned throughput needs a figure; it is ignored otherwise.
    expect(failures({ ThroughputMode: 'provisioned' })).toEqual([
      'ThroughputMode provisioned needs ProvisionedThroughput: 1 MiB/s or more.',
    ]);
    expect(failures({ ThroughputMode: 'provisioned', ProvisionedThroughput: '100' })).toEqual([]);
    expect(failures({ ThroughputMode: 'bursting', ProvisionedThroughput: '100' })).toEqual([]);
    // Elastic is not for maxIO.
    expect(failures({ EfsMode: 'maxIO' })).toEqual([
      'EFS has no Elastic throughput for EfsMode maxIO: choose ThroughputMode bursting or provisioned.',
    ]);
    expect(failures({ EfsMode: 'maxIO', ThroughputMode: 'bursting' })).toEqual([]);
    // Archive: Elastic and General Purpose only, and later than IA.
    expect(failures({ TransitionToArchive: '90' })).toEqual([]);
    expect(failures({ TransitionToArchive: '90', TransitionToIA: 'none' })).toEqual([]);
    expect(failures({ TransitionToArchive: '90', ThroughputMode: 'bursting' })).toEqual([
      'TransitionToArchive needs ThroughputMode elastic: EFS Archive is for Elastic throughput only.',
    ]);
    expect(failures({ TransitionToArchive: '30' })).toEqual([
      'With TransitionToIA 30, TransitionToArchive must be more days: 60, 90, 180, 270, 365 or none.',
    ]);
    expect(failures({ TransitionToArchive: '7', TransitionToIA: '365' })).toEqual([
      'With TransitionToIA 365, TransitionToArchive must be none (no later transition).',
    ]);
    expect(failures({ TransitionToArchive: '14', TransitionToIA: '7' })).toEqual([]);
  });

  it('the backup file system takes its throughput and lifecycle from the parameters, never back to Standard on read', () => {
    const t = backup.toJSON();
    const fileSystem = (over: Record<string, string>) =>
      render(
        props(backup, 'AWS::EFS::FileSystem'),
        conditionsOf(t, { ...BACKUP_PARAMS.parameters, ...over }),
      ) as Record<string, Json>;
    // The defaults: Elastic, to IA after 30 days unread, nothing provisioned.
    const defaults = fileSystem({});
    expect(defaults).toMatchObject({
      ThroughputMode: 'elastic',
      LifecyclePolicies: [{ TransitionToIA: 'AFTER_30_DAYS' }],
    });
    expect(defaults.ProvisionedThroughputInMibps).toBeUndefined();
    expect(
      fileSystem({ ThroughputMode: 'provisioned', ProvisionedThroughput: '250' }),
    ).toMatchObject({ ThroughputMode: 'provisioned', ProvisionedThroughputInMibps: '250' });
    expect(
      fileSystem({ TransitionToIA: '7', TransitionToArchive: '90' }).LifecyclePolicies,
    ).toEqual([{ TransitionToIA: 'AFTER_7_DAYS' }, { TransitionToArchive: 'AFTER_90_DAYS' }]);
    expect(fileSystem({ TransitionToIA: '1' }).LifecyclePolicies).toEqual([
      { TransitionToIA: 'AFTER_1_DAY' },
    ]);
    expect(fileSystem({ TransitionToIA: 'none' }).LifecyclePolicies).toBeUndefined();
    expect(JSON.stringify(t.Resources)).not.toContain('TransitionToPrimaryStorageClass');
  });

  it('creates the backup file system: encrypted by default, kept on deletion, mount targets in both subnets', () => {
    backup.hasResource('AWS::EFS::FileSystem', {
      Properties: {
        Encrypted: { 'Fn::If': ['EfsEncryptionChosen', true, false] },
        PerformanceMode: { Ref: 'EfsMode' },
        ThroughputMode: { Ref: 'ThroughputMode' },
      },
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
    });
    expect(backup.toJSON().Conditions.EfsEncryptionChosen).toEqual({
      'Fn::Equals': [{ Ref: 'EfsEncryption' }, 'Yes'],
    });
    const targets = resources(backup, 'AWS::EFS::MountTarget').map(([, r]) =>
      render((r.Properties as Record<string, Json>).SubnetId!, BACKUP_PARAMS),
    );
    expect(targets.sort()).toEqual(['subnet-a', 'subnet-b']);
    // The file system's security group takes NFS from the worker only; the source's too, when given.
    backup.hasResourceProperties('AWS::EC2::SecurityGroupIngress', {
      IpProtocol: 'tcp',
      FromPort: 2049,
      ToPort: 2049,
      SourceSecurityGroupId: {
        'Fn::GetAtt': [Match.stringLikeRegexp('WorkerSecurityGroup'), 'GroupId'],
      },
      GroupId: {
        'Fn::GetAtt': [Match.stringLikeRegexp('BackupFileSystemEfsSecurityGroup'), 'GroupId'],
      },
    });
    backup.hasResource('AWS::EC2::SecurityGroupIngress', {
      Condition: 'SourceSecurityGroupGiven',
      Properties: { GroupId: { Ref: 'SourceEfsSecurityGroup' }, FromPort: 2049, ToPort: 2049 },
    });
  });

  it('launches the worker from a launch template: Amazon Linux 2023, IMDSv2, encrypted disk, the bundle from the assets bucket', () => {
    const lt = props(backup, 'AWS::EC2::LaunchTemplate').LaunchTemplateData as Record<string, Json>;
    expect(lt).toMatchObject({
      MetadataOptions: { HttpTokens: 'required', HttpPutResponseHopLimit: 1 },
      BlockDeviceMappings: [
        { DeviceName: '/dev/xvda', Ebs: { Encrypted: true, VolumeType: 'gp3' } },
      ],
      InstanceType: { Ref: 'InstanceType' },
    });
    const script = userData(backup, BACKUP_PARAMS);
    expect(script).toContain('dnf install -y amazon-efs-utils');
    expect(script).toMatch(
      /dnf install -y nodejs22 \|\| dnf install -y nodejs20 \|\| dnf install -y nodejs/,
    );
    const bundle = path.basename(WORKER_BUNDLE_FILE);
    expect(script).toMatch(
      new RegExp(
        `aws s3 cp 's3://my-assets-<AWS::Region>/efs-backup/v9\\.9\\.9/[0-9a-f]{64}\\.cjs' /opt/efs-backup/${bundle}`,
      ),
    );
    expect(script).toContain(
      `ExecStart=$NODE /opt/efs-backup/${bundle} backup --config /etc/efs-backup/worker.json`,
    );
    expect(script).toContain('systemctl start --no-block efs-backup-worker.service');
    // A bootstrap that fails, and a worker that fails, tell the topic and let the group go.
    const lines = script.split('\n');
    const trap = lines.findIndex((l) =>
      l.startsWith("trap 'rc=$?; /opt/efs-backup/worker-failed.sh"),
    );
    expect(trap).toBeGreaterThan(0);
    expect(lines.findIndex((l) => l.startsWith('dnf install'))).toBeGreaterThan(trap);
    expect(lines[1]).toBe('set -euo pipefail');
    expect(script).toContain('OnFailure=efs-backup-worker-failed.service');
    expect(script).toContain(
      'ExecStart=/opt/efs-backup/worker-failed.sh failed "the efs-backup backup worker ended with a failure',
    );
    expect(script).toMatch(
      /aws autoscaling set-desired-capacity --region <AWS::Region> --auto-scaling-group-name '<AWS::StackName>-Backup' \\\n {2}--desired-capacity 0 --no-honor-cooldown \|\| true/,
    );
    expect(script).toMatch(
      /aws sns publish --region <AWS::Region> --topic-arn '<BackupRunsNoticeTopic\w+>'/,
    );
    // A backup's worker has no time limit of its own: its stop rule ends it.
    expect(script).not.toContain('RuntimeMaxSec');

    // The configuration the worker reads, checked by the worker's own schema.
    const config = WorkerConfigSchema.parse(workerConfig(backup, BACKUP_PARAMS));
    expect(config).toMatchObject({
      region: '<AWS::Region>',
      table: expect.stringMatching(/^<BackupRunsRecordTable/),
      bucket: expect.stringMatching(/^<BackupRunsLogBucket/),
      topicArn: expect.stringMatching(/^<BackupRunsNoticeTopic/),
      autoScalingGroupName: '<AWS::StackName>-Backup',
      lifecycleHookName: '<AWS::StackName>-Backup-terminating',
      sourceFileSystemId: 'fs-0123456789abcdef0',
      backupFileSystemId: expect.stringMatching(/^<BackupBackupFileSystem/),
      mountRoot: '/mnt/efs',
      runDir: '/run/efs-backup',
      // amazon-efs-utils, with TLS in transit and IAM authorization.
      mount: {
        command: ['mount', '-t', 'efs', '-o', '{options}', '{fileSystemId}:/', '{path}'],
        options: 'tls,iam',
      },
      expireDays: 90,
    });
    // The SSM agent takes the stop command: the instance role has its policy.
    backup.hasResourceProperties('AWS::IAM::Role', {
      AssumeRolePolicyDocument: Match.objectLike({
        Statement: [Match.objectLike({ Principal: { Service: 'ec2.amazonaws.com' } })],
      }),
      ManagedPolicyArns: [
        {
          'Fn::Join': [
            '',
            ['arn:', { Ref: 'AWS::Partition' }, ':iam::aws:policy/AmazonSSMManagedInstanceCore'],
          ],
        },
      ],
    });
  });

  it('an Auto Scaling group of 0..Workers with a termination lifecycle hook', () => {
    const asg = props(backup, 'AWS::AutoScaling::AutoScalingGroup');
    expect(asg).toMatchObject({ MinSize: '0', MaxSize: { Ref: 'Workers' } });
    expect(render(asg.MaxSize!, BACKUP_PARAMS)).toBe('1');
    expect(asg.DesiredCapacity).toBeUndefined();
    expect(render(asg.AutoScalingGroupName!, BACKUP_PARAMS)).toBe('<AWS::StackName>-Backup');
    expect(render(asg.VPCZoneIdentifier!, BACKUP_PARAMS)).toEqual(['subnet-a', 'subnet-b']);
    backup.hasResourceProperties('AWS::AutoScaling::LifecycleHook', {
      LifecycleHookName: { 'Fn::Join': ['-', [{ Ref: 'AWS::StackName' }, 'Backup-terminating']] },
      LifecycleTransition: 'autoscaling:EC2_INSTANCE_TERMINATING',
      HeartbeatTimeout: 900,
      DefaultResult: 'CONTINUE',
    });
    // Its instances carry, from their launch, a tag of the stack's own: the group's name.
    expect(render(asg.Tags!, BACKUP_PARAMS)).toEqual([
      { Key: 'efs-backup:worker-group', PropagateAtLaunch: true, Value: '<AWS::StackName>-Backup' },
    ]);
  });

  it('Workers: how many instances a start asks for, the most the group runs, and what each worker is told', () => {
    const p = backup.toJSON().Parameters as Record<string, Record<string, unknown>>;
    expect(p.Workers).toMatchObject({ Type: 'Number', Default: 1, MinValue: 1, MaxValue: 16 });
    const fn = resources(backup, 'AWS::Lambda::Function').find(([k]) =>
      /^BackupOrchestrator[0-9A-F]{8}$/.test(k),
    )![1];
    const env = (ctx: RenderContext) =>
      OrchestratorSettingsSchema.parse(
        render(
          ((fn.Properties as Record<string, Json>).Environment as Record<string, Json>).Variables!,
          ctx,
        ),
      );
    const three = { ...BACKUP_PARAMS, parameters: { ...BACKUP_PARAMS.parameters, Workers: '3' } };
    // The default: one instance, one worker, as the original solution.
    expect(env(BACKUP_PARAMS).WORKERS).toBe(1);
    expect(WorkerConfigSchema.parse(workerConfig(backup, BACKUP_PARAMS))).toMatchObject({
      workers: 1,
      leaseTable: expect.stringMatching(/^<BackupLeasesTable\w+>$/),
    });
    // Three: the orchestrator's start asks for 3, the group may run 3, each worker knows it.
    expect(env(three).WORKERS).toBe(3);
    const asg = props(backup, 'AWS::AutoScaling::AutoScalingGroup');
    expect(render(asg.MaxSize!, three)).toBe('3');
    expect(asg.DesiredCapacity).toBeUndefined();
    expect(WorkerConfigSchema.parse(workerConfig(backup, three))).toMatchObject({
      workers: 3,
      leaseTable: expect.stringMatching(/^<BackupLeasesTable\w+>$/),
    });
  });

  it('the lease table: key Scope and Key, on demand, encrypted, point-in-time recovery, kept', () => {
    const [id, table] = resources(backup, 'AWS::DynamoDB::Table').find(([k]) =>
      k.startsWith('BackupLeasesTable'),
    )!;
    expect(table).toMatchObject({
      Properties: {
        KeySchema: [
          { AttributeName: 'Scope', KeyType: 'HASH' },
          { AttributeName: 'Key', KeyType: 'RANGE' },
        ],
        AttributeDefinitions: [
          { AttributeName: 'Scope', AttributeType: 'S' },
          { AttributeName: 'Key', AttributeType: 'S' },
        ],
        BillingMode: 'PAY_PER_REQUEST',
        SSESpecification: { SSEEnabled: true },
        PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      },
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
    });
    // A stopped run's leases wait for the next run: nothing expires them.
    expect((table.Properties as Record<string, Json>).TimeToLiveSpecification).toBeUndefined();
    // Only the worker touches it (the policy test lists its actions).
    const granted = resources(backup, 'AWS::IAM::Policy')
      .filter(([, r]) => JSON.stringify(r).includes(id))
      .map(([k]) => k);
    expect(granted).toEqual([expect.stringMatching(/^BackupWorkerRoleDefaultPolicy/)]);
  });

  it('names what it names after the stack: two stacks never show the same names', () => {
    // No name is a construct path, which every stack made from the template shares.
    for (const t of [backup, restore]) {
      const names: string[] = [];
      const visit = (o: unknown): void => {
        if (Array.isArray(o)) o.forEach(visit);
        else if (o && typeof o === 'object') {
          const r = o as Record<string, unknown>;
          if (r.Key === 'Name') names.push(JSON.stringify(r.Value));
          Object.values(r).forEach(visit);
        }
      };
      visit(t.toJSON().Resources);
      expect(names.length).toBeGreaterThan(2);
      for (const n of names) expect(n).toContain('AWS::StackName');
    }
    const names = (type: string, key: string) =>
      resources(backup, type).map(([, r]) =>
        render((r.Properties as Record<string, Json>)[key]!, BACKUP_PARAMS),
      );
    expect(names('AWS::CloudWatch::Dashboard', 'DashboardName')).toEqual([
      '<AWS::StackName>-Backup',
    ]);
    expect(names('AWS::AutoScaling::LifecycleHook', 'LifecycleHookName')).toEqual([
      '<AWS::StackName>-Backup-terminating',
    ]);
    expect(render(props(backup, 'AWS::EFS::FileSystem').FileSystemTags!, BACKUP_PARAMS)).toEqual([
      { Key: 'Name', Value: '<AWS::StackName>-Backup-backups' },
    ]);
    const lt = props(backup, 'AWS::EC2::LaunchTemplate').LaunchTemplateData as Record<string, Json>;
    expect(render(lt.TagSpecifications!, BACKUP_PARAMS)).toEqual([
      {
        ResourceType: 'instance',
        Tags: [{ Key: 'Name', Value: '<AWS::StackName>-Backup-worker' }],
      },
      { ResourceType: 'volume', Tags: [{ Key: 'Name', Value: '<AWS::StackName>-Backup-worker' }] },
    ]);
  });

  it('the orchestrator runs on the newest Node.js runtime CDK offers, from the assets bucket, with its settings', () => {
    const newest = Object.values(lambda.Runtime)
      .filter(
        (r): r is lambda.Runtime => r instanceof lambda.Runtime && /^nodejs\d+\.x$/.test(r.name),
      )
      .map((r) => Number(/^nodejs(\d+)/.exec(r.name)![1]))
      .sort((a, b) => b - a)[0];
    const fn = props(backup, 'AWS::Lambda::Function');
    expect(fn).toMatchObject({
      Runtime: `nodejs${newest}.x`,
      Handler: 'index.handler',
      Architectures: ['arm64'],
    });
    expect(render(fn.Code!, BACKUP_PARAMS)).toEqual({
      S3Bucket: 'my-assets-<AWS::Region>',
      S3Key: expect.stringMatching(/^efs-backup\/v9\.9\.9\/[0-9a-f]{64}\.zip$/),
    });
    expect(fs.existsSync(path.join(ORCHESTRATOR_BUNDLE_DIR, 'index.js'))).toBe(true);
    const env = render((fn.Environment as Record<string, Json>).Variables!, {
      ...BACKUP_PARAMS,
      conditions: { SuccessNotificationChosen: false },
    }) as Record<string, string>;
    expect(OrchestratorSettingsSchema.parse(env)).toMatchObject({
      AUTO_SCALING_GROUP_NAME: '<AWS::StackName>-Backup',
      SOURCE_FILE_SYSTEM_ID: 'fs-0123456789abcdef0',
      NOTIFY_ON_SUCCESS: false,
      EXPIRE_DAYS: 90,
      RUN_DIR: '/run/efs-backup',
      MOUNT_ROOT: '/mnt/efs',
      // This stack's and this construct's own: the first 8 hex digits of the stack id.
      STOP_RULE_PREFIX: stopRulePrefix(),
      LOG_BUCKET: expect.stringMatching(/^<BackupRunsLogBucket\w+>$/),
      STACK_NAME: '<AWS::StackName>',
      LAUNCH_FAILURE_LIMIT: 3,
    });
    expect(
      render((fn.Environment as Record<string, Json>).Variables!, BACKUP_PARAMS),
    ).toMatchObject({ NOTIFY_ON_SUCCESS: 'true' });
    // Retries of asynchronous events are bounded; a redelivery is harmless anyway.
    backup.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      MaximumRetryAttempts: 2,
      MaximumEventAgeInSeconds: 3600,
    });
    // Logs kept a year, written by the function's own role (no AWS-managed policy).
    backup.hasResourceProperties('AWS::Logs::LogGroup', { RetentionInDays: 365 });
    backup.hasResourceProperties('AWS::IAM::Role', {
      AssumeRolePolicyDocument: Match.objectLike({
        Statement: [Match.objectLike({ Principal: { Service: 'lambda.amazonaws.com' } })],
      }),
      ManagedPolicyArns: Match.absent(),
    });
  });

  it('the schedule sends the orchestrator a Scheduled Event with the job, as its schema takes it', () => {
    const [, rule] = resources(backup, 'AWS::Events::Rule').find(
      ([, r]) => (r.Properties as Record<string, Json>).ScheduleExpression,
    )!;
    const p = rule.Properties as Record<string, Json>;
    expect(p.ScheduleExpression).toEqual({ Ref: 'BackupSchedule' });
    const target = (p.Targets as Record<string, Json>[])[0]!;
    expect(target.Arn).toEqual({
      'Fn::GetAtt': [expect.stringMatching(/^BackupOrchestrator/), 'Arn'],
    });
    const transformer = target.InputTransformer as {
      InputPathsMap: Record<string, string>;
      InputTemplate: Json;
    };
    expect(transformer.InputPathsMap).toEqual({
      id: '$.id',
      account: '$.account',
      time: '$.time',
      region: '$.region',
      resources: '$.resources',
    });
    // What EventBridge delivers: the placeholders filled from the schedule's own event.
    let delivered = render(transformer.InputTemplate, BACKUP_PARAMS) as string;
    const scheduled = {
      id: 'e-1',
      account: '123456789012',
      time: '2026-11-26T02:00:00Z',
      region: 'us-east-1',
      resources: ['arn:aws:events:us-east-1:123456789012:rule/r'],
    };
    for (const [k, v] of Object.entries(scheduled))
      delivered = delivered.replace(`<${k}>`, JSON.stringify(v));
    expect(StartEventSchema.parse(JSON.parse(delivered))).toMatchObject({
      'detail-type': 'Scheduled Event',
      detail: {
        action: 'start',
        label: 'efs-backup',
        interval: 'daily',
        retain: 7,
        prefix: '/',
        windowMinutes: 180,
        schedule: 'cron(0 2 * * ? *)',
      },
    });
  });

  it("the worker group's launches and termination reach the orchestrator; the one-time stop rules may invoke it", () => {
    const [, rule] = resources(backup, 'AWS::Events::Rule').find(
      ([, r]) => (r.Properties as Record<string, Json>).EventPattern,
    )!;
    const p = rule.Properties as Record<string, Json>;
    expect(render(p.EventPattern!, BACKUP_PARAMS)).toEqual({
      source: ['aws.autoscaling'],
      'detail-type': [
        'EC2 Instance Launch Successful',
        'EC2 Instance Launch Unsuccessful',
        'EC2 Instance-terminate Lifecycle Action',
        'EC2 Instance Terminate Successful',
      ],
      detail: { AutoScalingGroupName: ['<AWS::StackName>-Backup'] },
    });
    const permissions = resources(backup, 'AWS::Lambda::Permission').map(
      ([, r]) => render(r.Properties!, BACKUP_PARAMS) as Record<string, Json>,
    );
    expect(permissions).toContainEqual(
      expect.objectContaining({
        Action: 'lambda:InvokeFunction',
        Principal: 'events.amazonaws.com',
        SourceArn: `arn:<AWS::Partition>:events:<AWS::Region>:<AWS::AccountId>:rule/${stopRulePrefix()}*`,
        SourceAccount: '<AWS::AccountId>',
      }),
    );
    // The schedule's, the group's events', the stop rules' and the staleness alarm's.
    expect(permissions).toHaveLength(4);
  });

  it("the stack's deletion has the orchestrator remove its stop rules, before the orchestrator and its role go", () => {
    const [, cleanup] = only(backup, 'Custom::StopRuleCleanup');
    expect(render(cleanup.Properties!, BACKUP_PARAMS)).toEqual({
      ServiceToken: expect.stringMatching(/^<BackupOrchestrator\w+\.Arn>$/),
      Prefix: stopRulePrefix(),
    });
    const dependsOn = cleanup.DependsOn as string[];
    for (const id of [
      'BackupOrchestratorRoleDefaultPolicy',
      'BackupOrchestratorRole',
      'BackupOrchestratorLogs',
    ])
      expect(dependsOn.some((d) => d.startsWith(id))).toBe(true);
    // 21 characters: a run's id (36) still fits in a rule name (64).
    expect(stopRulePrefix()).toHaveLength(21);
  });

  it('records in DynamoDB: key BackupId, TTL on ExpireItem, encrypted, point-in-time recovery, on demand, kept', () => {
    backup.hasResource('AWS::DynamoDB::Table', {
      Properties: {
        KeySchema: [{ AttributeName: 'BackupId', KeyType: 'HASH' }],
        AttributeDefinitions: [{ AttributeName: 'BackupId', AttributeType: 'S' }],
        BillingMode: 'PAY_PER_REQUEST',
        TimeToLiveSpecification: { AttributeName: 'ExpireItem', Enabled: true },
        SSESpecification: { SSEEnabled: true },
        PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      },
      DeletionPolicy: 'Retain',
    });
  });

  it('logs in S3: encrypted, versioned, no public access, TLS only, old logs expire', () => {
    backup.hasResourceProperties('AWS::S3::Bucket', {
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [
          { ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } },
        ],
      },
      VersioningConfiguration: { Status: 'Enabled' },
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      },
      OwnershipControls: { Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] },
      LifecycleConfiguration: {
        Rules: [
          Match.objectLike({
            ExpirationInDays: 90,
            NoncurrentVersionExpiration: { NoncurrentDays: 30 },
            Status: 'Enabled',
          }),
        ],
      },
    });
    backup.hasResourceProperties('AWS::S3::BucketPolicy', {
      PolicyDocument: {
        Statement: [
          Match.objectLike({
            Effect: 'Deny',
            Action: 's3:*',
            Condition: { Bool: { 'aws:SecureTransport': 'false' } },
          }),
        ],
      },
    });
  });

  it('notices through SNS: encrypted with KMS, TLS only, the e-mail subscription when an address is given', () => {
    backup.hasResourceProperties('AWS::SNS::Topic', {
      KmsMasterKeyId: {
        'Fn::Join': [
          '',
          [
            'arn:',
            { Ref: 'AWS::Partition' },
            ':kms:',
            { Ref: 'AWS::Region' },
            ':',
            { Ref: 'AWS::AccountId' },
            ':alias/aws/sns',
          ],
        ],
      },
    });
    backup.hasResourceProperties('AWS::SNS::TopicPolicy', {
      PolicyDocument: {
        Statement: [
          Match.objectLike({
            Effect: 'Deny',
            Condition: { Bool: { 'aws:SecureTransport': 'false' } },
          }),
        ],
      },
    });
    backup.hasResource('AWS::SNS::Subscription', {
      Condition: 'EmailGiven',
      Properties: { Protocol: 'email', Endpoint: { Ref: 'Email' } },
    });
    expect(backup.toJSON().Conditions.EmailGiven).toEqual({
      'Fn::Not': [{ 'Fn::Equals': [{ Ref: 'Email' }, ''] }],
    });
  });

  it('a dashboard of both file systems, the orchestrator and the runs, when asked', () => {
    const [, dash] = only(backup, 'AWS::CloudWatch::Dashboard');
    expect(dash.Condition).toBe('DashboardChosen');
    const body = JSON.parse(
      render((dash.Properties as Record<string, Json>).DashboardBody!, BACKUP_PARAMS) as string,
    ) as { widgets: { properties: { metrics?: unknown[] } }[] };
    const metrics = JSON.stringify(body.widgets.map((w) => w.properties.metrics ?? []));
    for (const fsId of ['fs-0123456789abcdef0', '<BackupBackupFileSystem']) {
      expect(metrics).toMatch(new RegExp(`"AWS/EFS","TotalIOBytes","FileSystemId","${fsId}`));
      expect(metrics).toMatch(new RegExp(`"AWS/EFS","BurstCreditBalance","FileSystemId","${fsId}`));
    }
    // Storage by class: the lifecycle at work on the backup file system.
    for (const storageClass of ['Total', 'Standard', 'IA', 'Archive'])
      expect(metrics).toContain(
        `"AWS/EFS","StorageBytes","FileSystemId","<BackupBackupFileSystemC365EB9F>","StorageClass","${storageClass}"`,
      );
    expect(metrics).toContain(
      '"AWS/EFS","StorageBytes","FileSystemId","fs-0123456789abcdef0","StorageClass","Total"',
    );
    // The figures each run records, and the last runs with their instance type.
    for (const m of [
      'SourceFileSystemSize',
      'DestinationFileSystemSize',
      'SourceBurstCreditBalanceAtStart',
      'SourceBurstCreditBalanceAtEnd',
    ])
      expect(metrics).toContain(`"EfsBackup","${m}","FileSystemId","fs-0123456789abcdef0"`);
    const table = body.widgets.find((w) => (w as { type?: string }).type === 'log') as unknown as {
      properties: { query: string };
    };
    expect(table.properties.query).toMatch(/SOURCE '<BackupOrchestratorLogs\w+>'/);
    expect(table.properties.query).toContain('InstanceType');
    expect(table.properties.query).toContain('filter ispresent(RunsSucceeded)');
    // The header says what the parameters chose (here their defaults).
    const withDefaults = JSON.parse(
      render(
        (dash.Properties as Record<string, Json>).DashboardBody!,
        conditionsOf(backup.toJSON(), BACKUP_PARAMS.parameters),
      ) as string,
    ) as { widgets: unknown[] };
    expect(JSON.stringify(withDefaults.widgets[0])).toContain(
      'Worker: c7gn.large; backup file system throughput: elastic.',
    );
    expect(metrics).toContain('"AWS/Lambda","Invocations"');
    expect(metrics).toContain('"AWS/Lambda","Errors"');
    for (const m of [
      'NumberOfFiles',
      'NumberOfFilesTransferred',
      'TotalTransferredFileSize',
      'DurationSeconds',
      'RunsSucceeded',
      'RunsFailed',
    ]) {
      expect(metrics).toContain(
        `"EfsBackup","${m}","FileSystemId","fs-0123456789abcdef0","Label","efs-backup"`,
      );
    }
  });

  it('grants each role only what it does, on its own resources', () => {
    const policies = resources(backup, 'AWS::IAM::Policy').map(
      ([id, r]) =>
        [
          id,
          render((r.Properties as Record<string, Json>).PolicyDocument!, BACKUP_PARAMS),
        ] as const,
    );
    const statements = (prefix: string) =>
      (
        policies.find(([id]) => id.startsWith(prefix))![1] as {
          Statement: { Action: string | string[]; Resource: Json; Condition?: Json }[];
        }
      ).Statement.map((s) => ({
        actions: ([] as string[]).concat(s.Action),
        resource: s.Resource,
        ...(s.Condition ? { condition: s.Condition } : {}),
      }));
    const table = expect.stringMatching(/^<BackupRunsRecordTable\w+\.Arn>$/);
    const group =
      'arn:<AWS::Partition>:autoscaling:<AWS::Region>:<AWS::AccountId>:autoScalingGroup:*:autoScalingGroupName/<AWS::StackName>-Backup';
    const bucket = (suffix: string) =>
      expect.stringMatching(new RegExp(`^<BackupRunsLogBucket\\w+\\.Arn>${suffix}$`));
    expect(statements('BackupWorkerRole')).toEqual([
      {
        actions: ['s3:GetObject'],
        resource: expect.stringMatching(
          /^arn:<AWS::Partition>:s3:::my-assets-<AWS::Region>\/efs-backup\/v9\.9\.9\/[0-9a-f]{64}\.cjs$/,
        ),
      },
      {
        actions: [
          'elasticfilesystem:ClientMount',
          'elasticfilesystem:ClientRootAccess',
          'elasticfilesystem:DescribeFileSystems',
        ],
        resource:
          'arn:<AWS::Partition>:elasticfilesystem:<AWS::Region>:<AWS::AccountId>:file-system/fs-0123456789abcdef0',
      },
      {
        actions: [
          'elasticfilesystem:ClientMount',
          'elasticfilesystem:ClientWrite',
          'elasticfilesystem:ClientRootAccess',
          'elasticfilesystem:DescribeFileSystems',
        ],
        resource: expect.stringMatching(/^<BackupBackupFileSystem\w+\.Arn>$/),
      },
      {
        actions: [
          'dynamodb:GetItem',
          'dynamodb:PutItem',
          'dynamodb:UpdateItem',
          'dynamodb:Scan',
          'dynamodb:DeleteItem',
        ],
        resource: [table],
      },
      // The lease store's calls, on the lease table only.
      {
        actions: [
          'dynamodb:GetItem',
          'dynamodb:PutItem',
          'dynamodb:UpdateItem',
          'dynamodb:DeleteItem',
          'dynamodb:Query',
          'dynamodb:BatchWriteItem',
        ],
        resource: [expect.stringMatching(/^<BackupLeasesTable\w+\.Arn>$/)],
      },
      { actions: ['s3:PutObject', 's3:DeleteObject'], resource: bucket('\\/logs\\/\\*') },
      // The SSM agent stores the stop command's output as the instance role.
      { actions: ['s3:PutObject'], resource: bucket('\\/ssm-logs\\/\\*') },
      { actions: ['s3:GetEncryptionConfiguration'], resource: bucket('') },
      { actions: ['sns:Publish'], resource: expect.stringMatching(/^<BackupRunsNoticeTopic\w+>$/) },
      {
        actions: ['autoscaling:SetDesiredCapacity', 'autoscaling:CompleteLifecycleAction'],
        resource: group,
      },
      // GetMetricData takes no resource: the source's burst credits.
      { actions: ['cloudwatch:GetMetricData'], resource: '*' },
    ]);
    expect(statements('BackupOrchestratorRole')).toEqual([
      {
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        resource: expect.stringMatching(/^<BackupOrchestratorLogs\w+\.Arn>$/),
      },
      {
        actions: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:Scan'],
        resource: [table],
      },
      { actions: ['sns:Publish'], resource: expect.stringMatching(/^<BackupRunsNoticeTopic\w+>$/) },
      { actions: ['autoscaling:SetDesiredCapacity'], resource: group },
      {
        actions: ['ssm:SendCommand'],
        resource: 'arn:<AWS::Partition>:ssm:<AWS::Region>::document/AWS-RunShellScript',
      },
      {
        actions: ['ssm:SendCommand'],
        resource: 'arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:instance/*',
        // The tag the group puts on its instances at launch, of the stack's own key.
        condition: {
          StringEquals: { 'ssm:resourceTag/efs-backup:worker-group': '<AWS::StackName>-Backup' },
        },
      },
      // Neither takes a resource: why a launch failed; the stop rules left behind.
      { actions: ['autoscaling:DescribeScalingActivities'], resource: '*' },
      { actions: ['events:ListRules'], resource: '*' },
      {
        actions: [
          'events:PutRule',
          'events:PutTargets',
          'events:RemoveTargets',
          'events:DeleteRule',
        ],
        resource: `arn:<AWS::Partition>:events:<AWS::Region>:<AWS::AccountId>:rule/${stopRulePrefix()}*`,
      },
    ]);
    // The tag the condition names is the one the group's instances carry.
    const tags = render(props(backup, 'AWS::AutoScaling::AutoScalingGroup').Tags!, BACKUP_PARAMS);
    expect(tags).toContainEqual({
      Key: 'efs-backup:worker-group',
      PropagateAtLaunch: true,
      Value: '<AWS::StackName>-Backup',
    });
    // No role may put metrics anywhere.
    expect(JSON.stringify(policies)).not.toContain('PutMetricData');
  });

  it('outputs what the restore stack and a person need', () => {
    for (const name of [
      'BackupFileSystemId',
      'BackupSecurityGroupId',
      'RecordTable',
      'LeaseTable',
      'LogBucket',
      'NoticeTopic',
      'Orchestrator',
      'WorkerRole',
      'WorkerGroup',
    ]) {
      backup.hasOutput(name, {});
    }
  });
});

const RESTORE_PARAMS: RenderContext = {
  parameters: {
    SourceEfsId: 'fs-0123456789abcdef0',
    SourceEfsSecurityGroup: '',
    BackupEfsId: 'fs-0fedcba9876543210',
    BackupEfsSecurityGroup: 'sg-0fedcba9876543210',
    FolderLabel: 'efs-backup',
    Snapshot: 'daily.2',
    RestoreSubdirectory: 'projects/site',
    RestorePrefix: '/efs-restore',
    RestoreWindow: '720',
    VpcId: 'vpc-0123',
    Subnets: ['subnet-a', 'subnet-b'],
    AssetsBucket: 'my-assets',
    AssetsKeyPrefix: 'efs-backup/v9.9.9/',
  },
  conditions: { MirrorDeleteChosen: false },
};

describe('efs-to-efs-restore.template', () => {
  it('takes what to restore, where to, and how as parameters', () => {
    const p = restore.toJSON().Parameters as Record<string, Record<string, unknown>>;
    expect(p.SourceEfsId).toMatchObject({ AllowedPattern: '^fs-[0-9a-f]{8,40}$' });
    expect(p.BackupEfsId).toMatchObject({ AllowedPattern: '^fs-[0-9a-f]{8,40}$' });
    expect(p.Snapshot).toMatchObject({ Default: 'latest' });
    expect(p.RestoreSubdirectory).toMatchObject({ Default: '' });
    expect(p.RestorePrefix).toMatchObject({ Default: '/efs-restore' });
    expect(p.MirrorDelete).toMatchObject({ AllowedValues: ['Yes', 'No'], Default: 'No' });
    expect(p.FolderLabel).toMatchObject({ Default: 'efs-backup' });
    expect(p.Email).toMatchObject({ Default: '' });
    expect(p.VpcId).toMatchObject({ Type: 'AWS::EC2::VPC::Id' });
    expect(p.Subnets).toMatchObject({ Type: 'List<AWS::EC2::Subnet::Id>' });
    expect(p.BootstrapVersion).toBeUndefined();
    expect(p.RestoreWindow).toMatchObject({
      Type: 'Number',
      Default: 720,
      MinValue: 30,
      MaxValue: 1440,
    });
    expect(p.InstanceType).toMatchObject({ Type: 'String', Default: 'c7gn.large' });
  });

  it('launches one restore worker at once, which restores, records, logs and notifies', () => {
    const asg = props(restore, 'AWS::AutoScaling::AutoScalingGroup');
    expect(asg).toMatchObject({ MinSize: '0', MaxSize: '1', DesiredCapacity: '1' });
    restore.resourceCountIs('AWS::AutoScaling::LifecycleHook', 0);
    restore.resourceCountIs('AWS::Lambda::Function', 0);
    // Whatever ends it, the worker's failure tells the topic and lets the group go; systemd
    // stops it at the window's end.
    const script = userData(restore, RESTORE_PARAMS);
    expect(script).toContain('OnFailure=efs-backup-worker-failed.service');
    expect(script).toContain('RuntimeMaxSec=720min');
    expect(script).toMatch(/^trap 'rc=\$\?; \/opt\/efs-backup\/worker-failed\.sh "did not start"/m);
    const lt = props(restore, 'AWS::EC2::LaunchTemplate').LaunchTemplateData as Record<
      string,
      Json
    >;
    expect(lt).toMatchObject({ MetadataOptions: { HttpTokens: 'required' } });
    expect(userData(restore, RESTORE_PARAMS)).toContain(
      'efs-backup-worker.cjs restore --config /etc/efs-backup/worker.json',
    );
    expect(WorkerConfigSchema.parse(workerConfig(restore, RESTORE_PARAMS))).toMatchObject({
      autoScalingGroupName: '<AWS::StackName>-Restore',
      sourceFileSystemId: 'fs-0123456789abcdef0',
      backupFileSystemId: 'fs-0fedcba9876543210',
      mount: { options: 'tls,iam' },
      restore: {
        label: 'efs-backup',
        snapshot: 'daily.2',
        subdir: 'projects/site',
        targetPrefix: '/efs-restore',
        delete: false,
        notifyOnSuccess: true,
        windowMinutes: 720,
      },
    });
    expect(
      WorkerConfigSchema.parse(
        workerConfig(restore, { ...RESTORE_PARAMS, conditions: { MirrorDeleteChosen: true } }),
      ),
    ).toMatchObject({
      restore: { delete: true },
    });
    restore.hasResourceProperties('AWS::DynamoDB::Table', {
      TimeToLiveSpecification: { AttributeName: 'ExpireItem', Enabled: true },
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
    });
    restore.hasResourceProperties('AWS::S3::Bucket', {
      VersioningConfiguration: { Status: 'Enabled' },
    });
    restore.hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: Match.anyValue() });
    restore.hasResource('AWS::SNS::Subscription', { Condition: 'EmailGiven' });
    restore.hasResource('AWS::EC2::SecurityGroupIngress', {
      Condition: 'BackupSecurityGroupGiven',
      Properties: { GroupId: { Ref: 'BackupEfsSecurityGroup' }, FromPort: 2049 },
    });
    restore.hasResource('AWS::EC2::SecurityGroupIngress', {
      Condition: 'TargetSecurityGroupGiven',
      Properties: { GroupId: { Ref: 'SourceEfsSecurityGroup' }, FromPort: 2049 },
    });
    // Reads the backup, writes the target (as root, so owners are kept).
    const [, policy] = only(restore, 'AWS::IAM::Policy');
    const statements = (
      render((policy.Properties as Record<string, Json>).PolicyDocument!, RESTORE_PARAMS) as {
        Statement: { Action: Json; Resource: Json }[];
      }
    ).Statement;
    expect(statements).toContainEqual(
      expect.objectContaining({
        Action: [
          'elasticfilesystem:ClientMount',
          'elasticfilesystem:ClientWrite',
          'elasticfilesystem:ClientRootAccess',
        ],
        Resource:
          'arn:<AWS::Partition>:elasticfilesystem:<AWS::Region>:<AWS::AccountId>:file-system/fs-0123456789abcdef0',
      }),
    );
    expect(statements).toContainEqual(
      expect.objectContaining({
        Action: ['elasticfilesystem:ClientMount', 'elasticfilesystem:ClientRootAccess'],
        Resource:
          'arn:<AWS::Partition>:elasticfilesystem:<AWS::Region>:<AWS::AccountId>:file-system/fs-0fedcba9876543210',
      }),
    );
  });
});

describe("the worker's user data, run in a sandbox with fakes of what it calls", () => {
  /**
   * Runs a template's user data under bash with its paths moved into a temporary directory and
   * `systemctl`, `dnf`, `curl` and `aws` replaced by fakes that log their arguments (`fail`
   * names the commands that fail); returns the exit code, the AWS CLI's calls and the sandbox.
   */
  function runUserData(
    script: string,
    fail: ('dnf' | 's3')[] = [],
  ): { code: number | null; aws: string[][]; systemctl: string[][]; dir: string } {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'efs-backup-userdata-'));
    const bin = path.join(dir, 'bin');
    fs.mkdirSync(bin);
    const log = (name: string) => path.join(dir, `${name}.calls`);
    const fake = (name: string, body: string) =>
      fs.writeFileSync(path.join(bin, name), `#!${process.execPath}\n${body}\n`, { mode: 0o755 });
    const record = (name: string) =>
      `require('fs').appendFileSync(${JSON.stringify(log(name))}, JSON.stringify(process.argv.slice(2)) + '\\n');`;
    fake('systemctl', record('systemctl'));
    fake('dnf', `${record('dnf')} process.exit(${fail.includes('dnf') ? 1 : 0});`);
    fake(
      'aws',
      `${record('aws')} process.exit(process.argv[2] === 's3' && ${fail.includes('s3')} ? 1 : 0);`,
    );
    fake(
      'curl',
      `process.stdout.write(process.argv.some((a) => a.endsWith('/api/token')) ? 'token' : 'i-0123456789abcdef0');`,
    );
    const moved = script
      .replaceAll('/opt/efs-backup', path.join(dir, 'opt'))
      .replaceAll('/etc/efs-backup', path.join(dir, 'etc'))
      .replaceAll('/etc/systemd/system', path.join(dir, 'systemd'));
    fs.mkdirSync(path.join(dir, 'systemd'));
    const r = spawnSync('bash', ['-c', moved], {
      env: { PATH: `${bin}:${path.dirname(process.execPath)}:/usr/bin:/bin` },
      encoding: 'utf8',
    });
    const calls = (name: string): string[][] =>
      fs.existsSync(log(name))
        ? fs
            .readFileSync(log(name), 'utf8')
            .trim()
            .split('\n')
            .map((l) => JSON.parse(l) as string[])
        : [];
    return { code: r.status, aws: calls('aws'), systemctl: calls('systemctl'), dir };
  }

  // As CloudFormation resolves it: pseudo parameters have values on the instance.
  const DEPLOYED: RenderContext = {
    parameters: {
      ...BACKUP_PARAMS.parameters,
      'AWS::Region': 'us-east-1',
      'AWS::StackName': 'efs-backup',
      'AWS::Partition': 'aws',
      'AWS::AccountId': '123456789012',
      'AWS::URLSuffix': 'amazonaws.com',
    },
  };
  const notice = (what: string, why: RegExp) => [
    'sns',
    'publish',
    '--region',
    'us-east-1',
    '--topic-arn',
    expect.stringMatching(/^<BackupRunsNoticeTopic\w+>$/),
    '--subject',
    `[efs-backup] Failed: the backup worker on i-0123456789abcdef0 ${what}`,
    '--message',
    expect.stringMatching(why),
  ];
  const toZero = [
    'autoscaling',
    'set-desired-capacity',
    '--region',
    'us-east-1',
    '--auto-scaling-group-name',
    'efs-backup-Backup',
    '--desired-capacity',
    '0',
    '--no-honor-cooldown',
  ];

  it('set up: the worker service starts, nothing is told', () => {
    const r = runUserData(userData(backup, DEPLOYED));
    try {
      expect(r.code).toBe(0);
      expect(r.aws.map((a) => a.slice(0, 2))).toEqual([['s3', 'cp']]);
      expect(r.systemctl).toContainEqual(['start', '--no-block', 'efs-backup-worker.service']);
      expect(
        fs.readFileSync(path.join(r.dir, 'systemd', 'efs-backup-worker.service'), 'utf8'),
      ).toContain('OnFailure=efs-backup-worker-failed.service');
    } finally {
      fs.rmSync(r.dir, { recursive: true, force: true });
    }
  });

  it('a package that will not install: the topic is told which, the group goes to 0, the worker never starts', () => {
    const r = runUserData(userData(backup, DEPLOYED), ['dnf']);
    try {
      expect(r.code).toBe(1);
      expect(r.aws).toEqual([
        notice(
          'did not start',
          /^the instance could not set the efs-backup backup worker up: line \d+ \(dnf install -y amazon-efs-utils\) exited 1\n\nThe instance's group \(efs-backup-Backup\) is scaled to 0, so the instance goes\./,
        ),
        toZero,
      ]);
      expect(r.systemctl.some((c) => c[0] === 'start')).toBe(false);
    } finally {
      fs.rmSync(r.dir, { recursive: true, force: true });
    }
  });

  it('a worker bundle that cannot be fetched: the same', () => {
    const r = runUserData(userData(backup, DEPLOYED), ['s3']);
    try {
      expect(r.code).toBe(1);
      expect(r.aws.slice(1)).toEqual([
        notice(
          'did not start',
          /^the instance could not set the efs-backup backup worker up: line \d+ \(aws s3 cp /,
        ),
        toZero,
      ]);
    } finally {
      fs.rmSync(r.dir, { recursive: true, force: true });
    }
  });

  it("a worker that fails: its unit's OnFailure tells the topic and lets the group go", () => {
    const r = runUserData(userData(backup, DEPLOYED));
    try {
      const unit = fs.readFileSync(
        path.join(r.dir, 'systemd', 'efs-backup-worker-failed.service'),
        'utf8',
      );
      const exec = /^ExecStart=(.*)$/m.exec(unit)![1]!;
      fs.rmSync(path.join(r.dir, 'aws.calls'));
      const failed = spawnSync('bash', ['-c', exec], {
        env: { PATH: `${path.join(r.dir, 'bin')}:/usr/bin:/bin` },
        encoding: 'utf8',
      });
      expect(failed.status).toBe(0);
      const calls = fs
        .readFileSync(path.join(r.dir, 'aws.calls'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as string[]);
      expect(calls).toEqual([
        notice(
          'failed',
          /^the efs-backup backup worker ended with a failure \(journalctl -u efs-backup-worker/,
        ),
        toZero,
      ]);
    } finally {
      fs.rmSync(r.dir, { recursive: true, force: true });
    }
  });
});

describe('the restore window, off the instance', () => {
  it("an alarm on the group's in-service instances scales it to 0 at the window's end", () => {
    const asg = props(restore, 'AWS::AutoScaling::AutoScalingGroup');
    expect(asg.MetricsCollection).toEqual([
      { Granularity: '1Minute', Metrics: ['GroupInServiceInstances'] },
    ]);
    const [policyId, policy] = only(restore, 'AWS::AutoScaling::ScalingPolicy');
    expect(policy.Properties).toEqual({
      AutoScalingGroupName: { Ref: expect.stringMatching(/^RestoreWorkerGroupASG/) },
      PolicyType: 'SimpleScaling',
      AdjustmentType: 'ExactCapacity',
      ScalingAdjustment: 0,
      Cooldown: '60',
    });
    const alarm = render(props(restore, 'AWS::CloudWatch::Alarm'), RESTORE_PARAMS);
    expect(alarm).toMatchObject({
      Namespace: 'AWS/AutoScaling',
      MetricName: 'GroupInServiceInstances',
      Dimensions: [{ Name: 'AutoScalingGroupName', Value: '<AWS::StackName>-Restore' }],
      Statistic: 'Minimum',
      Period: 60,
      // In service for every minute of the window: 720 one-minute periods (a day at most).
      EvaluationPeriods: '720',
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      TreatMissingData: 'notBreaching',
      AlarmActions: [`<${policyId}>`],
    });
  });
});

describe('the backup construct, in a CDK app of your own', () => {
  const construct = (over: Partial<EfsToEfsBackupProps>) => {
    const stack = new Stack(new App(), 'Mine');
    const vpc = ec2.Vpc.fromVpcAttributes(stack, 'Vpc', {
      vpcId: 'vpc-0123',
      availabilityZones: ['us-east-1a', 'us-east-1b'],
      privateSubnetIds: ['subnet-a', 'subnet-b'],
    });
    return new EfsToEfsBackup(stack, 'Backup', {
      sourceFileSystemId: 'fs-0123456789abcdef0',
      vpc,
      ...over,
    });
  };

  it('defaults to Elastic throughput, IA after 30 days, c7gn.large', () => {
    const b = construct({});
    const t = Template.fromStack(Stack.of(b));
    t.hasResourceProperties('AWS::EFS::FileSystem', {
      ThroughputMode: 'elastic',
      LifecyclePolicies: [{ TransitionToIA: 'AFTER_30_DAYS' }],
    });
    t.hasResourceProperties('AWS::EC2::LaunchTemplate', {
      LaunchTemplateData: Match.objectLike({ InstanceType: 'c7gn.large' }),
    });
  });

  it('refuses at synthesis what EFS would refuse at deployment', () => {
    expect(() => construct({ throughputMode: efs.ThroughputMode.PROVISIONED })).toThrow(
      /throughputMode PROVISIONED needs provisionedThroughputMibps/,
    );
    expect(() => construct({ provisionedThroughputMibps: 100 })).toThrow(
      /provisionedThroughputMibps is for throughputMode PROVISIONED only/,
    );
    expect(() =>
      construct({
        throughputMode: efs.ThroughputMode.BURSTING,
        transitionToArchive: efs.LifecyclePolicy.AFTER_90_DAYS,
      }),
    ).toThrow(/transitionToArchive needs throughputMode ELASTIC/);
    expect(() => construct({ transitionToArchive: efs.LifecyclePolicy.AFTER_14_DAYS })).toThrow(
      /transitionToArchive must come later than transitionToIA/,
    );
    // Provisioned, with its figure; Archive after IA; no lifecycle at all.
    const t = Template.fromStack(
      Stack.of(
        construct({
          throughputMode: efs.ThroughputMode.PROVISIONED,
          provisionedThroughputMibps: 128,
          transitionToIA: null,
        }),
      ),
    );
    t.hasResourceProperties('AWS::EFS::FileSystem', {
      ThroughputMode: 'provisioned',
      ProvisionedThroughputInMibps: 128,
      LifecyclePolicies: Match.absent(),
    });
    Template.fromStack(
      Stack.of(construct({ transitionToArchive: efs.LifecyclePolicy.AFTER_90_DAYS })),
    ).hasResourceProperties('AWS::EFS::FileSystem', {
      LifecyclePolicies: [
        { TransitionToIA: 'AFTER_30_DAYS' },
        { TransitionToArchive: 'AFTER_90_DAYS' },
      ],
    });
  });

  it('refuses limits out of range and a staleness CloudWatch cannot evaluate; carries good ones', () => {
    expect(() => construct({ maxMiBps: -1 })).toThrow(/maxMiBps must be 0 \(no limit\) or more/);
    expect(() => construct({ lowCreditMaxMiBps: 0 })).toThrow(
      /lowCreditMaxMiBps must be more than 0/,
    );
    expect(() => construct({ staleAfterHours: 169 })).toThrow(
      /staleAfterHours must be a whole number of hours from 1 to 168 \(7 days\), not 169/,
    );
    expect(() => construct({ staleAfterHours: 1.5 })).toThrow(/staleAfterHours/);
    for (const bad of [0, 17, 2.5])
      expect(() => construct({ workers: bad })).toThrow(
        new RegExp(`workers must be a whole number from 1 to 16, not ${bad}`),
      );
    Template.fromStack(Stack.of(construct({ workers: 4 }))).hasResourceProperties(
      'AWS::AutoScaling::AutoScalingGroup',
      { MinSize: '0', MaxSize: '4' },
    );
    const t = Template.fromStack(
      Stack.of(construct({ maxMiBps: 25, burstCreditFloor: 0, staleAfterHours: 2 })),
    );
    t.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Period: 3600,
      EvaluationPeriods: 2,
      DatapointsToAlarm: 2,
    });
  });
});

describe('parameter patterns', () => {
  // CloudFormation's patterns are Java's; these use only what JavaScript reads the same way.
  const accepts = (t: Template, name: string, value: string): boolean => {
    const p = (t.toJSON().Parameters as Record<string, { AllowedPattern?: string }>)[name]!;
    return new RegExp(p.AllowedPattern!).test(value);
  };

  it('every default passes its own pattern', () => {
    for (const t of [backup, restore]) {
      for (const [name, p] of Object.entries(
        t.toJSON().Parameters as Record<string, { AllowedPattern?: string; Default?: unknown }>,
      )) {
        if (p.AllowedPattern && p.Default !== undefined)
          expect(accepts(t, name, String(p.Default)), name).toBe(true);
      }
    }
  });

  it('refuses what would break the JSON the values go into, or leave the file system', () => {
    expect(accepts(backup, 'BackupPrefix', '/data/projects')).toBe(true);
    for (const bad of ['data', '/a/../b', '/"x', '/a\\b', '/.hidden'])
      expect(accepts(backup, 'BackupPrefix', bad), bad).toBe(false);
    expect(accepts(backup, 'BackupSchedule', 'rate(1 day)')).toBe(true);
    expect(accepts(backup, 'BackupSchedule', 'cron("0 2 * * ? *")')).toBe(false);
    expect(accepts(backup, 'SourceEfsId', 'fs-XYZ')).toBe(false);
    expect(accepts(backup, 'FolderLabel', 'a/b')).toBe(false);
    expect(accepts(restore, 'RestoreSubdirectory', 'projects/site')).toBe(true);
    for (const bad of ['../etc', '/abs', 'a"b'])
      expect(accepts(restore, 'RestoreSubdirectory', bad), bad).toBe(false);
    expect(accepts(restore, 'Snapshot', 'daily.3')).toBe(true);
    expect(accepts(restore, 'Snapshot', 'a b')).toBe(false);
  });

  it('takes Graviton instance types only: the worker installs arm64', () => {
    for (const t of [backup, restore]) {
      for (const good of [
        'c7gn.large',
        'c6gn.xlarge',
        'm7g.xlarge',
        'm6g.large',
        'r8gd.2xlarge',
        't4g.small',
        'c7g.metal',
        'im4gn.large',
        'x2gd.large',
        'hpc7g.4xlarge',
      ])
        expect(accepts(t, 'InstanceType', good), good).toBe(true);
      for (const bad of [
        'c5.xlarge',
        'm6i.large',
        'c7i.large',
        'g5.xlarge',
        'm5dn.large',
        'inf2.xlarge',
        'c7gn',
        'C7GN.LARGE',
      ])
        expect(accepts(t, 'InstanceType', bad), bad).toBe(false);
    }
  });
});

describe('checks', () => {
  it("cdk-nag's AwsSolutions pack: no finding left, each acknowledgment justified in one sentence", () => {
    const report = JSON.parse(
      fs.readFileSync(path.join(outdir, 'validation-report.json'), 'utf8'),
    ) as { pluginReports: unknown[] };
    // Every report a success: nothing left but the findings acknowledged below.
    const reports = report.pluginReports as { conclusion: string; violations: unknown[] }[];
    for (const r of reports) expect(r).toMatchObject({ conclusion: 'success', violations: [] });
    const acknowledged: [string, string, string][] = [];
    const visit = (c: IConstruct): void => {
      for (const m of c.node.metadata) {
        if (m.type !== Validations.ACKNOWLEDGED_RULES_METADATA_KEY) continue;
        for (const [id, reason] of Object.entries(m.data as Record<string, string>))
          acknowledged.push([c.node.path, id, reason]);
      }
      c.node.children.forEach(visit);
    };
    visit(built.app);
    expect(acknowledged.length).toBeGreaterThan(5);
    for (const [where, id, reason] of acknowledged) {
      // One sentence: a capital, no full stop inside, a full stop at the end.
      expect(reason, `${where} ${id}`).toMatch(/^[A-Z][^]*[^.]\.$/);
      expect(reason.slice(0, -1), `${where} ${id}`).not.toMatch(/\.\s/);
    }
    const rules = new Set(
      acknowledged.map(([, id]) => id.replace(/^Annotation::/, '').replace(/\[.*$/, '')),
    );
    expect([...rules].sort()).toEqual([
      '@aws-cdk/aws-autoscaling:desiredCapacitySet',
      '@aws-cdk/aws-ec2:noSubnetRouteTableId',
      'AwsSolutions-AS2',
      'AwsSolutions-AS3',
      'AwsSolutions-EFS1',
      'AwsSolutions-IAM4',
      'AwsSolutions-IAM5',
      'AwsSolutions-S1',
      'CloudFormation-Validate::W1030',
      'CloudFormation-Validate::W1034',
    ]);
  });

  it('the AwsSolutions pack does run: an unchecked bucket fails the synthesis', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'efs-backup-nag-'));
    try {
      const app = new App({ outdir: dir });
      new s3.Bucket(new Stack(app, 'Bad'), 'Open');
      Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
      expect(() => app.synth()).toThrow(/AwsSolutions-S10/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('sends nothing to any metrics endpoint: no such address in the templates or the bundles', () => {
    const code = [
      JSON.stringify(backup.toJSON()),
      JSON.stringify(restore.toJSON()),
      fs.readFileSync(path.join(ORCHESTRATOR_BUNDLE_DIR, 'index.js'), 'utf8'),
      fs.readFileSync(WORKER_BUNDLE_FILE, 'utf8'),
    ].join('\n');
    expect(code).not.toMatch(/awssolutionsbuilder|SendAnonymous|AnonymousData|metrics\.aws/i);
    // No CloudWatch client at all: the figures go out as log lines in the account's own logs.
    expect(code).not.toMatch(/PutMetricData/);
  });
});
