/**
 * The two templates, `efs-to-efs-backup` and `efs-to-efs-restore`: the constructs with the
 * original solution's parameters as CloudFormation parameters, grouped for the console.
 */
import {
  Aws,
  CfnCondition,
  CfnMapping,
  CfnOutput,
  CfnParameter,
  CfnResource,
  CfnRule,
  Fn,
  Stack,
  Token,
  Validations,
  type IResolvable,
  type StackProps,
} from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import type * as efs from 'aws-cdk-lib/aws-efs';
import * as events from 'aws-cdk-lib/aws-events';
import { Construct } from 'constructs';

/** Whole hours from 1 to 168 (CloudWatch: an alarm evaluates at most 7 days). */
export const STALE_AFTER_PATTERN = '^(16[0-8]|1[0-5][0-9]|[1-9][0-9]?)$';
import { DEFAULT_BURST_CREDIT_FLOOR, MAX_WORKERS } from '@efs-backup/aws/contract';
import { EfsToEfsBackup } from './backup.js';
import { EfsToEfsRestore } from './restore.js';
import { DEFAULT_INSTANCE_TYPE, GRAVITON_INSTANCE_TYPE } from './worker-host.js';

/** The days EFS's lifecycle policies take (AFTER_1_DAY ... AFTER_365_DAYS). */
export const LIFECYCLE_DAYS = ['1', '7', '14', '30', '60', '90', '180', '270', '365'] as const;

const FILE_SYSTEM_ID = '^fs-[0-9a-f]{8,40}$';
const OPTIONAL_SECURITY_GROUP = '^(sg-[0-9a-f]{8,40})?$';
const WORD = '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$';
// Values go into JSON (the schedule's event, the worker's configuration): no '"' or '\'.
const PREFIX = '^/([^./"\\\\][^/"\\\\]*(/[^./"\\\\][^/"\\\\]*)*)?/?$';
const OPTIONAL_EMAIL = '^([^\\s@]+@[^\\s@]+\\.[^\\s@]+)?$';

/** A template's parameters, labelled and grouped for the CloudFormation console. */
class Parameters {
  private readonly groups: { Label: { default: string }; Parameters: string[] }[] = [];
  private readonly labels: Record<string, { default: string }> = {};

  constructor(private readonly stack: Stack) {}

  group(label: string, params: [CfnParameter, string][]): void {
    this.groups.push({ Label: { default: label }, Parameters: params.map(([p]) => p.logicalId) });
    for (const [p, l] of params) this.labels[p.logicalId] = { default: l };
  }

  /** Writes the console's interface metadata; parameters made elsewhere (assets) go last. */
  write(): void {
    this.stack.templateOptions.metadata = {
      'AWS::CloudFormation::Interface': {
        ParameterGroups: this.groups,
        ParameterLabels: this.labels,
      },
    };
  }
}

function yesNo(
  stack: Stack,
  id: string,
  description: string,
  dflt: 'Yes' | 'No',
): [CfnParameter, CfnCondition] {
  const p = new CfnParameter(stack, id, {
    type: 'String',
    allowedValues: ['Yes', 'No'],
    default: dflt,
    description,
  });
  return [
    p,
    new CfnCondition(stack, `${id}Chosen`, {
      expression: Fn.conditionEquals(p.valueAsString, 'Yes'),
    }),
  ];
}

function notEmpty(stack: Stack, id: string, p: CfnParameter): CfnCondition {
  return new CfnCondition(stack, id, {
    expression: Fn.conditionNot(Fn.conditionEquals(p.valueAsString, '')),
  });
}

/** The VPC and two of its subnets, from the template's parameters. */
function network(stack: Stack): { vpc: ec2.IVpc; vpcId: CfnParameter; subnets: CfnParameter } {
  const vpcId = new CfnParameter(stack, 'VpcId', {
    type: 'AWS::EC2::VPC::Id',
    description: "The VPC of the file systems' mount targets.",
  });
  const subnets = new CfnParameter(stack, 'Subnets', {
    type: 'List<AWS::EC2::Subnet::Id>',
    description:
      'Two subnets in two Availability Zones, each with a mount target of the source file system, that reach the AWS APIs (through a NAT gateway or VPC endpoints). The worker runs there.',
  });
  const list = subnets.valueAsList;
  const vpc = ec2.Vpc.fromVpcAttributes(stack, 'Vpc', {
    vpcId: vpcId.valueAsString,
    availabilityZones: [Fn.select(0, Fn.getAzs()), Fn.select(1, Fn.getAzs())],
    privateSubnetIds: [Fn.select(0, list), Fn.select(1, list)],
  });
  Validations.of(vpc).acknowledge({
    id: '@aws-cdk/aws-ec2:noSubnetRouteTableId',
    reason:
      "Nothing here reads the subnets' route tables: the worker and the mount targets only need the subnet ids.",
  });
  return { vpc, vpcId, subnets };
}

/** The worker's instance type, as a parameter: Graviton only (the worker installs arm64). */
function instanceTypeParameter(stack: Stack): CfnParameter {
  return new CfnParameter(stack, 'InstanceType', {
    type: 'String',
    default: DEFAULT_INSTANCE_TYPE,
    allowedPattern: GRAVITON_INSTANCE_TYPE,
    constraintDescription:
      'must be a Graviton (arm64) instance type, such as c7gn.large, c6gn.large or m7g.xlarge',
    description:
      "The worker's EC2 instance type, Graviton (arm64). The default, c7gn.large, has a network baseline of 6.25 Gbps, which a backup moving data between two NFS mounts uses; it runs only during a run.",
  });
}

const condition = (c: CfnCondition, ...resources: (Construct | undefined)[]): void => {
  for (const r of resources) {
    if (r) ((r.node.defaultChild ?? r) as CfnResource).cfnOptions.condition = c;
  }
};

export class BackupStack extends Stack {
  readonly backup: EfsToEfsBackup;

  constructor(scope: Construct, id: string, props: StackProps = {}) {
    super(scope, id, {
      description:
        'efs-backup: scheduled, incremental, browsable backups of an Amazon EFS file system onto another',
      ...props,
    });
    const params = new Parameters(this);
    const source = new CfnParameter(this, 'SourceEfsId', {
      type: 'String',
      allowedPattern: FILE_SYSTEM_ID,
      description: 'The EFS file system to back up (fs-...).',
      constraintDescription: 'must be an EFS file system id such as fs-0123456789abcdef0',
    });
    const sourceSg = new CfnParameter(this, 'SourceEfsSecurityGroup', {
      type: 'String',
      default: '',
      allowedPattern: OPTIONAL_SECURITY_GROUP,
      description:
        "The security group of the source file system's mount targets: NFS from the worker is allowed into it. Leave empty if they already allow it.",
    });
    const interval = new CfnParameter(this, 'IntervalTag', {
      type: 'String',
      default: 'daily',
      allowedPattern: WORD,
      description: 'The tag of the series: hourly, daily, weekly, monthly or a word of your own.',
    });
    const retain = new CfnParameter(this, 'Retain', {
      type: 'Number',
      default: 7,
      minValue: 1,
      description: 'How many complete snapshots of the interval to keep.',
    });
    const label = new CfnParameter(this, 'FolderLabel', {
      type: 'String',
      default: 'efs-backup',
      allowedPattern: WORD,
      description: 'The folder on the backup file system that holds this backup set.',
    });
    const window = new CfnParameter(this, 'BackupWindow', {
      type: 'Number',
      default: 180,
      minValue: 30,
      maxValue: 10080,
      description:
        'Minutes a run may take. The worker is stopped 15 minutes before they are up; the next run continues an incomplete one.',
    });
    const schedule = new CfnParameter(this, 'BackupSchedule', {
      type: 'String',
      default: 'cron(0 2 * * ? *)',
      allowedPattern: '^(cron|rate)\\([^"\\\\]+\\)$',
      description: 'When runs start, as an EventBridge schedule expression (UTC).',
    });
    const prefix = new CfnParameter(this, 'BackupPrefix', {
      type: 'String',
      default: '/',
      allowedPattern: PREFIX,
      description: 'The sub-path of the source to back up.',
    });
    const mode = new CfnParameter(this, 'EfsMode', {
      type: 'String',
      default: 'generalPurpose',
      allowedValues: ['generalPurpose', 'maxIO'],
      description: "The backup file system's performance mode.",
    });
    const [encrypt, encrypted] = yesNo(
      this,
      'EfsEncryption',
      'Encrypt the backup file system at rest.',
      'Yes',
    );
    const throughput = new CfnParameter(this, 'ThroughputMode', {
      type: 'String',
      default: 'elastic',
      allowedValues: ['elastic', 'bursting', 'provisioned'],
      description:
        "The backup file system's throughput mode. elastic: pay per GB read and written, never short of throughput (the default; the only one with Archive). bursting: no throughput charge, throughput from the size in Standard and burst credits. provisioned: ProvisionedThroughput MiB/s paid all month. elastic is not available with EfsMode maxIO.",
    });
    const provisioned = new CfnParameter(this, 'ProvisionedThroughput', {
      type: 'Number',
      default: 0,
      minValue: 0,
      description:
        'MiB/s of throughput to provision, with ThroughputMode provisioned only (and then required: 1 or more; EFS allows up to 3414 by default). Ignored otherwise.',
    });
    const ia = new CfnParameter(this, 'TransitionToIA', {
      type: 'String',
      default: '30',
      allowedValues: ['none', ...LIFECYCLE_DAYS],
      description:
        'Days a file of the backup file system goes unread before it moves to Infrequent Access (much cheaper to keep; a read costs per GB). none: never. A file read there stays there: backups are read rarely.',
    });
    const archive = new CfnParameter(this, 'TransitionToArchive', {
      type: 'String',
      default: 'none',
      allowedValues: ['none', ...LIFECYCLE_DAYS],
      description:
        'Days a file goes unread before it moves to Archive (cheaper still; at least 90 days billed per file). More than TransitionToIA; ThroughputMode elastic and EfsMode generalPurpose only. none: never.',
    });
    const instanceType = instanceTypeParameter(this);
    const workers = new CfnParameter(this, 'Workers', {
      type: 'Number',
      default: 1,
      minValue: 1,
      maxValue: MAX_WORKERS,
      description: `How many instances build each snapshot together, sharing its work: a start launches this many for the run's window. 1 (the default) is the original workflow: one worker. Up to ${MAX_WORKERS}.`,
      constraintDescription: `must be a whole number from 1 to ${MAX_WORKERS}`,
    });
    const maxMiBps = new CfnParameter(this, 'MaxMiBps', {
      type: 'Number',
      default: 0,
      minValue: 0,
      description:
        'Gentle on the source: at most this many MiB read from it per second, over every read in flight. 0: no limit.',
      constraintDescription: 'must be a number, 0 or more',
    });
    const maxOps = new CfnParameter(this, 'MaxOps', {
      type: 'Number',
      default: 0,
      minValue: 0,
      description:
        'Gentle on the source: at most this many file-system calls on it per second (listings, stats, opens, reads). 0: no limit.',
      constraintDescription: 'must be a number, 0 or more',
    });
    const creditFloor = new CfnParameter(this, 'BurstCreditFloor', {
      type: 'Number',
      default: DEFAULT_BURST_CREDIT_FLOOR,
      minValue: 0,
      description:
        'A source in Bursting mode whose BurstCreditBalance (bytes) is under this slows the run to LowCreditMaxMiBps until it recovers (read every 5 minutes). The default, 1 TiB, is half the 2.1 TiB a new file system starts with. 0: never.',
      constraintDescription: 'must be a number of bytes, 0 or more',
    });
    const lowCreditRate = new CfnParameter(this, 'LowCreditMaxMiBps', {
      type: 'Number',
      default: 10,
      minValue: 0.1,
      description:
        'MiB/s read from the source while its burst credits are under BurstCreditFloor (MaxMiBps, if lower, still holds).',
      constraintDescription: 'must be a number, 0.1 or more',
    });
    // A String with a pattern: a Number parameter would take 1.5, which the alarm's whole
    // number of evaluation periods then refuses at deployment, after the stack began.
    const staleAfter = new CfnParameter(this, 'StaleAfterHours', {
      type: 'String',
      default: '48',
      allowedPattern: STALE_AFTER_PATTERN,
      description:
        'The staleness alarm notifies when no run has succeeded for this many hours. Set it to twice the period of BackupSchedule (48 for a daily schedule); CloudWatch allows up to 7 days.',
      constraintDescription: 'must be a whole number of hours from 1 to 168',
    });
    const [success, notifySuccess] = yesNo(
      this,
      'SuccessNotification',
      'Notify successful runs too (failures are always notified).',
      'No',
    );
    const email = new CfnParameter(this, 'Email', {
      type: 'String',
      default: '',
      allowedPattern: OPTIONAL_EMAIL,
      description:
        'An address that gets the notices by e-mail (it confirms the subscription first). Leave empty for none.',
    });
    const [dash, dashboard] = yesNo(
      this,
      'Dashboard',
      'A CloudWatch dashboard of the file systems and the runs.',
      'Yes',
    );
    const net = network(this);

    this.backup = new EfsToEfsBackup(this, 'Backup', {
      sourceFileSystemId: source.valueAsString,
      sourceSecurityGroupId: sourceSg.valueAsString,
      vpc: net.vpc,
      label: label.valueAsString,
      interval: interval.valueAsString,
      retain: retain.valueAsNumber,
      prefix: prefix.valueAsString,
      windowMinutes: window.valueAsNumber,
      schedule: events.Schedule.expression(schedule.valueAsString),
      performanceMode: mode.valueAsString as efs.PerformanceMode,
      instanceType: new ec2.InstanceType(instanceType.valueAsString),
      workers: workers.valueAsNumber,
      maxMiBps: maxMiBps.valueAsNumber,
      maxOps: maxOps.valueAsNumber,
      burstCreditFloor: creditFloor.valueAsNumber,
      lowCreditMaxMiBps: lowCreditRate.valueAsNumber,
      staleAfterHours: Token.asNumber(staleAfter.valueAsString),
      email: email.valueAsString,
      dashboard: true,
    });
    // What a parameter turns on or off at deployment.
    const b = this.backup;
    (b.backupFileSystem.node.defaultChild as efs.CfnFileSystem).encrypted = Fn.conditionIf(
      encrypted.logicalId,
      true,
      false,
    );
    this.storageParameters(b, { mode, throughput, provisioned, ia, archive });
    Validations.of(b.backupFileSystem).acknowledge({
      id: 'AwsSolutions-EFS1',
      reason:
        'Encrypted unless the EfsEncryption parameter (default Yes) says otherwise, a condition the rule cannot evaluate before deployment.',
    });
    b.orchestrator.addEnvironment(
      'NOTIFY_ON_SUCCESS',
      Token.asString(Fn.conditionIf(notifySuccess.logicalId, 'true', 'false')),
    );
    condition(notEmpty(this, 'EmailGiven', email), b.runs.emailSubscription);
    condition(notEmpty(this, 'SourceSecurityGroupGiven', sourceSg), b.sourceIngress);
    condition(dashboard, b.dashboard?.dashboard);

    params.group('Source', [
      [source, 'Source EFS file system'],
      [sourceSg, 'Security group of its mount targets (optional)'],
      [prefix, 'Sub-path to back up'],
    ]);
    params.group('Backup', [
      [schedule, 'Schedule'],
      [window, 'Backup window (minutes)'],
      [interval, 'Interval tag'],
      [retain, 'Snapshots to keep'],
      [label, 'Folder label'],
    ]);
    params.group('Backup file system', [
      [mode, 'Performance mode'],
      [encrypt, 'Encrypt at rest'],
      [throughput, 'Throughput mode'],
      [provisioned, 'Provisioned throughput (MiB/s)'],
      [ia, 'Days unread before Infrequent Access'],
      [archive, 'Days unread before Archive'],
    ]);
    params.group('Worker', [
      [instanceType, 'Instance type (Graviton)'],
      [workers, 'Workers per run (instances)'],
    ]);
    params.group('Gentle on the source', [
      [maxMiBps, 'Max MiB/s read (0: no limit)'],
      [maxOps, 'Max calls per second (0: no limit)'],
      [creditFloor, 'Burst credit floor (bytes)'],
      [lowCreditRate, 'MiB/s while credits are under the floor'],
    ]);
    params.group('Notices', [
      [staleAfter, 'Hours without success before the alarm'],
      [email, 'E-mail address'],
      [success, 'Notify successful runs'],
      [dash, 'CloudWatch dashboard'],
    ]);
    params.group('Network', [
      [net.vpcId, 'VPC'],
      [net.subnets, 'Two subnets'],
    ]);
    params.write();

    new CfnOutput(this, 'BackupFileSystemId', {
      value: b.backupFileSystem.fileSystemId,
      description: 'The backup file system: the restore stack reads it.',
    });
    new CfnOutput(this, 'BackupSecurityGroupId', {
      value: b.backupFileSystem.connections.securityGroups[0]!.securityGroupId,
      description: "The security group of the backup file system's mount targets.",
    });
    new CfnOutput(this, 'RecordTable', {
      value: b.runs.table.tableName,
      description: 'The record of every run.',
    });
    new CfnOutput(this, 'LeaseTable', {
      value: b.leases.table.tableName,
      description: 'Where the workers of a run share its work.',
    });
    new CfnOutput(this, 'LogBucket', {
      value: b.runs.logBucket.bucketName,
      description: "Each run's log.",
    });
    new CfnOutput(this, 'NoticeTopic', {
      value: b.runs.topic.topicArn,
      description: 'The notices.',
    });
    new CfnOutput(this, 'Orchestrator', {
      value: b.orchestrator.functionName,
      description:
        'The orchestrator Lambda function (invoke it with a start event to run a backup now).',
    });
    new CfnOutput(this, 'WorkerRole', {
      value: b.worker.role.roleArn,
      description: "The worker's role: a source file system policy must let it mount.",
    });
    new CfnOutput(this, 'WorkerGroup', {
      value: b.worker.group.autoScalingGroupName,
      description: "The worker's Auto Scaling group (0 between runs).",
    });
  }

  /**
   * The backup file system's throughput and lifecycle from the parameters, and the rules that
   * refuse at deployment what EFS would refuse at creation.
   */
  private storageParameters(
    b: EfsToEfsBackup,
    p: Record<'mode' | 'throughput' | 'provisioned' | 'ia' | 'archive', CfnParameter>,
  ): void {
    const fs = b.backupFileSystem.node.defaultChild as efs.CfnFileSystem;
    const days = new CfnMapping(this, 'LifecycleDays', {
      mapping: Object.fromEntries([
        ['none', { Policy: 'NONE' }],
        ...LIFECYCLE_DAYS.map((d) => [
          d,
          { Policy: d === '1' ? 'AFTER_1_DAY' : `AFTER_${d}_DAYS` },
        ]),
      ]),
    });
    const provisioned = new CfnCondition(this, 'ThroughputProvisioned', {
      expression: Fn.conditionEquals(p.throughput.valueAsString, 'provisioned'),
    });
    const iaChosen = new CfnCondition(this, 'TransitionToIAChosen', {
      expression: Fn.conditionNot(Fn.conditionEquals(p.ia.valueAsString, 'none')),
    });
    const archiveChosen = new CfnCondition(this, 'TransitionToArchiveChosen', {
      expression: Fn.conditionNot(Fn.conditionEquals(p.archive.valueAsString, 'none')),
    });
    const lifecycle = new CfnCondition(this, 'LifecycleChosen', {
      expression: Fn.conditionOr(iaChosen, archiveChosen),
    });
    fs.throughputMode = p.throughput.valueAsString;
    fs.provisionedThroughputInMibps = Token.asNumber(
      Fn.conditionIf(provisioned.logicalId, p.provisioned.valueAsNumber, Aws.NO_VALUE),
    );
    // No TransitionToPrimaryStorageClass: a backup read once stays in IA or Archive.
    fs.lifecyclePolicies = Fn.conditionIf(
      lifecycle.logicalId,
      [
        Fn.conditionIf(
          iaChosen.logicalId,
          { TransitionToIA: days.findInMap(p.ia.valueAsString, 'Policy') },
          Aws.NO_VALUE,
        ),
        Fn.conditionIf(
          archiveChosen.logicalId,
          { TransitionToArchive: days.findInMap(p.archive.valueAsString, 'Policy') },
          Aws.NO_VALUE,
        ),
      ],
      Aws.NO_VALUE,
    ) as IResolvable;

    Validations.of(this).acknowledge({
      id: 'CloudFormation-Validate::W1030',
      reason:
        'ProvisionedThroughput reaches the file system only when ThroughputMode is provisioned, and the ProvisionedThroughputGiven rule then refuses its default of 0.',
    });
    Validations.of(b.backupFileSystem).acknowledge({
      id: 'CloudFormation-Validate::W1034',
      reason:
        "The LifecycleDays mapping's none entry is never a policy: the TransitionToIAChosen and TransitionToArchiveChosen conditions leave the policy out then.",
    });
    const is = (param: CfnParameter, value: string) =>
      Fn.conditionEquals(param.valueAsString, value);
    new CfnRule(this, 'ProvisionedThroughputGiven', {
      ruleCondition: is(p.throughput, 'provisioned'),
      assertions: [
        {
          assert: Fn.conditionNot(is(p.provisioned, '0')),
          assertDescription:
            'ThroughputMode provisioned needs ProvisionedThroughput: 1 MiB/s or more.',
        },
      ],
    });
    new CfnRule(this, 'ElasticNotWithMaxIO', {
      ruleCondition: is(p.mode, 'maxIO'),
      assertions: [
        {
          assert: Fn.conditionNot(is(p.throughput, 'elastic')),
          assertDescription:
            'EFS has no Elastic throughput for EfsMode maxIO: choose ThroughputMode bursting or provisioned.',
        },
      ],
    });
    new CfnRule(this, 'ArchiveNeedsElastic', {
      ruleCondition: Fn.conditionNot(is(p.archive, 'none')),
      assertions: [
        {
          assert: is(p.throughput, 'elastic'),
          assertDescription:
            'TransitionToArchive needs ThroughputMode elastic: EFS Archive is for Elastic throughput only.',
        },
        {
          assert: is(p.mode, 'generalPurpose'),
          assertDescription: 'TransitionToArchive needs EfsMode generalPurpose.',
        },
      ],
    });
    new CfnRule(this, 'ArchiveAfterIA', {
      ruleCondition: Fn.conditionAnd(
        Fn.conditionNot(is(p.archive, 'none')),
        Fn.conditionNot(is(p.ia, 'none')),
      ),
      assertions: LIFECYCLE_DAYS.map((d) => {
        const later = LIFECYCLE_DAYS.filter((x) => Number(x) > Number(d));
        return {
          assert: later.length
            ? Fn.conditionOr(
                Fn.conditionNot(is(p.ia, d)),
                Fn.conditionContains([...later], p.archive.valueAsString),
              )
            : Fn.conditionNot(is(p.ia, d)),
          assertDescription: later.length
            ? `With TransitionToIA ${d}, TransitionToArchive must be more days: ${later.join(', ')} or none.`
            : `With TransitionToIA ${d}, TransitionToArchive must be none (no later transition).`,
        };
      }),
    });
  }
}

export class RestoreStack extends Stack {
  readonly restore: EfsToEfsRestore;

  constructor(scope: Construct, id: string, props: StackProps = {}) {
    super(scope, id, {
      description:
        'efs-backup: restores a snapshot of an efs-backup backup set into an Amazon EFS file system',
      ...props,
    });
    const params = new Parameters(this);
    const target = new CfnParameter(this, 'SourceEfsId', {
      type: 'String',
      allowedPattern: FILE_SYSTEM_ID,
      description: 'The file system to restore into: usually the one that was backed up (fs-...).',
    });
    const targetSg = new CfnParameter(this, 'SourceEfsSecurityGroup', {
      type: 'String',
      default: '',
      allowedPattern: OPTIONAL_SECURITY_GROUP,
      description:
        'The security group of its mount targets: NFS from the worker is allowed into it. Leave empty if they already allow it.',
    });
    const backupFs = new CfnParameter(this, 'BackupEfsId', {
      type: 'String',
      allowedPattern: FILE_SYSTEM_ID,
      description:
        "The file system that holds the backups (the backup stack's BackupFileSystemId output).",
    });
    const backupSg = new CfnParameter(this, 'BackupEfsSecurityGroup', {
      type: 'String',
      default: '',
      allowedPattern: OPTIONAL_SECURITY_GROUP,
      description:
        "The security group of the backup file system's mount targets (the backup stack's BackupSecurityGroupId output). Leave empty if it already allows the worker.",
    });
    const label = new CfnParameter(this, 'FolderLabel', {
      type: 'String',
      default: 'efs-backup',
      allowedPattern: WORD,
      description: 'The backup set (folder label) on the backup file system.',
    });
    const snapshot = new CfnParameter(this, 'Snapshot', {
      type: 'String',
      default: 'latest',
      allowedPattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$',
      description:
        'The snapshot to restore: latest, daily.0 (the newest daily), daily.3 (the fourth newest), a stamp (20261126T020000Z) or a BackupId.',
    });
    const subdir = new CfnParameter(this, 'RestoreSubdirectory', {
      type: 'String',
      default: '',
      allowedPattern: '^([^/."\\\\][^"\\\\]*)?$',
      description:
        'A directory or file inside the snapshot to restore (such as projects/site). Leave empty for the whole snapshot.',
    });
    const restorePrefix = new CfnParameter(this, 'RestorePrefix', {
      type: 'String',
      default: '/efs-restore',
      allowedPattern: PREFIX,
      description: 'Where on the target file system the restore goes.',
    });
    const [mirror, mirrored] = yesNo(
      this,
      'MirrorDelete',
      'Delete from the restore location what the snapshot does not hold (a mirror).',
      'No',
    );
    const email = new CfnParameter(this, 'Email', {
      type: 'String',
      default: '',
      allowedPattern: OPTIONAL_EMAIL,
      description: "An address that gets the restore's notice by e-mail. Leave empty for none.",
    });
    const window = new CfnParameter(this, 'RestoreWindow', {
      type: 'Number',
      default: 720,
      minValue: 30,
      maxValue: 1440,
      description:
        'Minutes the restore may take. The worker stops 15 minutes before they are up (the restore is Incomplete: create the stack again to finish it, nothing restored is written again); at their end the instance goes, whatever it does.',
    });
    const instanceType = instanceTypeParameter(this);
    const net = network(this);

    this.restore = new EfsToEfsRestore(this, 'Restore', {
      targetFileSystemId: target.valueAsString,
      targetSecurityGroupId: targetSg.valueAsString,
      backupFileSystemId: backupFs.valueAsString,
      backupSecurityGroupId: backupSg.valueAsString,
      vpc: net.vpc,
      label: label.valueAsString,
      snapshot: snapshot.valueAsString,
      subdir: subdir.valueAsString,
      targetPrefix: restorePrefix.valueAsString,
      email: email.valueAsString,
      windowMinutes: window.valueAsNumber,
      instanceType: new ec2.InstanceType(instanceType.valueAsString),
    });
    const r = this.restore;
    r.worker.config.restore!.delete = Token.asString(
      Fn.conditionIf(mirrored.logicalId, 'true', 'false'),
    ) as 'true' | 'false';
    condition(notEmpty(this, 'EmailGiven', email), r.runs.emailSubscription);
    condition(notEmpty(this, 'TargetSecurityGroupGiven', targetSg), r.targetIngress);
    condition(notEmpty(this, 'BackupSecurityGroupGiven', backupSg), r.backupIngress);

    params.group('What to restore', [
      [backupFs, 'Backup EFS file system'],
      [backupSg, 'Security group of its mount targets (optional)'],
      [label, 'Folder label'],
      [snapshot, 'Snapshot'],
      [subdir, 'Sub-directory (optional)'],
    ]);
    params.group('Where to', [
      [target, 'Target EFS file system'],
      [targetSg, 'Security group of its mount targets (optional)'],
      [restorePrefix, 'Restore prefix'],
      [mirror, 'Mirror (delete what the snapshot lacks)'],
    ]);
    params.group('Worker', [
      [window, 'Restore window (minutes)'],
      [instanceType, 'Instance type (Graviton)'],
    ]);
    params.group('Notices', [[email, 'E-mail address']]);
    params.group('Network', [
      [net.vpcId, 'VPC'],
      [net.subnets, 'Two subnets'],
    ]);
    params.write();

    new CfnOutput(this, 'RecordTable', {
      value: r.runs.table.tableName,
      description: "The restore's record.",
    });
    new CfnOutput(this, 'LogBucket', {
      value: r.runs.logBucket.bucketName,
      description: "The restore's log.",
    });
  }
}
