/**
 * `EfsToEfsRestore`: restores one snapshot of a backup set (or a sub-directory of it) into an
 * EFS file system, under a prefix of it. The stack launches one worker instance at once; it
 * mounts the backup file system read-only and the target file system, restores, records the
 * run in DynamoDB, stores its log in S3, notifies through SNS and scales its group to 0. The
 * restore has a window, as a backup has: the worker stops 15 minutes before its end
 * (Incomplete, notified); systemd stops a worker still running at its end; and, should the
 * instance itself hang, an alarm on the group's in-service instances scales the group to 0.
 */
import { Duration, RemovalPolicy, Token } from 'aws-cdk-lib';
import * as autoscaling from 'aws-cdk-lib/aws-autoscaling';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as efs from 'aws-cdk-lib/aws-efs';
import { Construct } from 'constructs';
import { RunStore } from './run-store.js';
import { WorkerHost } from './worker-host.js';

export interface EfsToEfsRestoreProps {
  /** The file system to restore into: usually the one that was backed up (`fs-...`). */
  readonly targetFileSystemId: string;
  /**
   * The security group of the target's mount targets: NFS from the worker is allowed into it.
   * @default none: the target's mount targets must already allow NFS (TCP 2049) from the worker
   */
  readonly targetSecurityGroupId?: string;
  /** The file system that holds the backups (the backup stack's `BackupFileSystemId` output). */
  readonly backupFileSystemId: string;
  /**
   * The security group of the backup file system's mount targets (the backup stack's
   * `BackupSecurityGroupId` output): NFS from the worker is allowed into it.
   * @default none: the backup's mount targets must already allow NFS (TCP 2049) from the worker
   */
  readonly backupSecurityGroupId?: string;
  readonly vpc: ec2.IVpc;
  /** Where the worker runs: subnets with mount targets of both file systems. @default the VPC's private subnets */
  readonly vpcSubnets?: ec2.SubnetSelection;
  /** The backup set (folder label) on the backup file system. @default 'efs-backup' */
  readonly label?: string;
  /** The snapshot: `latest`, `daily.0` (newest daily), `daily.3`, a stamp or a BackupId. @default 'latest' */
  readonly snapshot?: string;
  /** A directory or a file inside the snapshot. @default '' (the whole snapshot) */
  readonly subdir?: string;
  /** Where on the target file system the restore goes. @default '/efs-restore' */
  readonly targetPrefix?: string;
  /** Delete from the target what the snapshot does not hold (a mirror). @default false */
  readonly mirror?: boolean;
  /** An address that gets the restore's notice by e-mail. @default no subscription */
  readonly email?: string;
  /** Days the restore's record is kept. @default 90 */
  readonly recordExpireDays?: number;
  /** Days the restore's log is kept. @default 90 */
  readonly logExpireDays?: number;
  /** The worker's instance type, Graviton. @default c7gn.large */
  readonly instanceType?: ec2.InstanceType;
  /**
   * Minutes the restore may take, 30 to 1440 (an alarm's evaluation is at most a day): the
   * worker stops 15 minutes before they are up, and the instance goes at their end.
   * @default 720
   */
  readonly windowMinutes?: number;
  /** What happens to the records table and the log bucket when the stack is deleted. @default RemovalPolicy.RETAIN */
  readonly dataRemovalPolicy?: RemovalPolicy;
}

export class EfsToEfsRestore extends Construct {
  readonly runs: RunStore;
  readonly worker: WorkerHost;
  /** The ingress rule into the target's security group, when one was given. */
  readonly targetIngress?: ec2.CfnSecurityGroupIngress;
  /** The ingress rule into the backup's security group, when one was given. */
  readonly backupIngress?: ec2.CfnSecurityGroupIngress;
  /** In ALARM when the worker's instance is still in service at the window's end. */
  readonly windowAlarm: cloudwatch.Alarm;
  /** What the alarm does: the group's desired capacity to 0. */
  readonly windowStop: autoscaling.CfnScalingPolicy;

  constructor(scope: Construct, id: string, props: EfsToEfsRestoreProps) {
    super(scope, id);
    this.runs = new RunStore(this, 'Runs', {
      logExpireDays: props.logExpireDays ?? 90,
      ...(props.email !== undefined ? { email: props.email } : {}),
      removalPolicy: props.dataRemovalPolicy ?? RemovalPolicy.RETAIN,
      displayName: 'efs-backup restore',
    });

    const windowMinutes = props.windowMinutes ?? 720;
    if (!Token.isUnresolved(windowMinutes) && !(windowMinutes >= 30 && windowMinutes <= 1440))
      throw new Error(
        `${this.node.path}: windowMinutes must be from 30 to 1440, not ${windowMinutes}`,
      );
    this.worker = new WorkerHost(this, 'Worker', {
      vpc: props.vpc,
      ...(props.vpcSubnets ? { vpcSubnets: props.vpcSubnets } : {}),
      instanceType: props.instanceType,
      command: 'restore',
      groupSuffix: id,
      desiredCapacity: 1,
      runtimeMaxMinutes: windowMinutes,
      inServiceMetric: true,
      config: {
        table: this.runs.table.tableName,
        bucket: this.runs.logBucket.bucketName,
        topicArn: this.runs.topic.topicArn,
        sourceFileSystemId: props.targetFileSystemId,
        backupFileSystemId: props.backupFileSystemId,
        expireDays: props.recordExpireDays ?? 90,
        restore: {
          label: props.label ?? 'efs-backup',
          snapshot: props.snapshot ?? 'latest',
          subdir: props.subdir ?? '',
          targetPrefix: props.targetPrefix ?? '/efs-restore',
          delete: props.mirror ?? false,
          notifyOnSuccess: true,
          windowMinutes,
        },
      },
    });
    const role = this.worker.role;
    const target = efs.FileSystem.fromFileSystemAttributes(this, 'TargetFileSystem', {
      fileSystemId: props.targetFileSystemId,
      securityGroup: ec2.SecurityGroup.fromSecurityGroupId(this, 'TargetSg', 'sg-none', {
        mutable: false,
      }),
    });
    const backup = efs.FileSystem.fromFileSystemAttributes(this, 'BackupFileSystem', {
      fileSystemId: props.backupFileSystemId,
      securityGroup: ec2.SecurityGroup.fromSecurityGroupId(this, 'BackupSg', 'sg-none', {
        mutable: false,
      }),
    });
    // Writes the target as root (owners kept); reads the backup.
    target.grant(
      role,
      'elasticfilesystem:ClientMount',
      'elasticfilesystem:ClientWrite',
      'elasticfilesystem:ClientRootAccess',
    );
    backup.grant(role, 'elasticfilesystem:ClientMount', 'elasticfilesystem:ClientRootAccess');
    this.runs.grantRecords(role, { remove: false });
    this.runs.grantLogWrite(role, { remove: false });
    this.runs.topic.grantPublish(role);
    this.worker.grantScaling(role, ['autoscaling:SetDesiredCapacity']);

    const allowNfs = (
      logicalId: string,
      groupId: string | undefined,
      what: string,
    ): ec2.CfnSecurityGroupIngress | undefined =>
      groupId === undefined
        ? undefined
        : new ec2.CfnSecurityGroupIngress(this, logicalId, {
            groupId,
            ipProtocol: 'tcp',
            fromPort: 2049,
            toPort: 2049,
            sourceSecurityGroupId: this.worker.securityGroup.securityGroupId,
            description: `NFS from the efs-backup restore worker into the ${what}`,
          });
    this.targetIngress = allowNfs(
      'TargetNfsFromWorker',
      props.targetSecurityGroupId,
      'target file system',
    );
    this.backupIngress = allowNfs(
      'BackupNfsFromWorker',
      props.backupSecurityGroupId,
      'backup file system',
    );

    // The window's end, off the instance: once the worker's instance has been in service for
    // the whole window, the group goes to 0 (the worker itself stops 15 minutes earlier).
    this.windowStop = new autoscaling.CfnScalingPolicy(this, 'WindowStop', {
      autoScalingGroupName: this.worker.group.autoScalingGroupName,
      policyType: 'SimpleScaling',
      adjustmentType: 'ExactCapacity',
      scalingAdjustment: 0,
      cooldown: '60',
    });
    this.windowAlarm = new cloudwatch.Alarm(this, 'WindowEnded', {
      alarmDescription:
        'efs-backup restore: the worker is still in service at the end of its window; its group is scaled to 0',
      metric: new cloudwatch.Metric({
        namespace: 'AWS/AutoScaling',
        metricName: 'GroupInServiceInstances',
        dimensionsMap: { AutoScalingGroupName: this.worker.groupName },
        statistic: 'Minimum',
        period: Duration.minutes(1),
      }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: windowMinutes,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    this.windowAlarm.addAlarmAction({ bind: () => ({ alarmActionArn: this.windowStop.ref }) });
  }
}
