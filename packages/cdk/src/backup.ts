/**
 * `EfsToEfsBackup`: scheduled, incremental backups of one EFS file system onto a new one, the
 * workflow of the original AWS solution. An EventBridge schedule invokes the orchestrator
 * Lambda, which records the run and scales the worker group to one instance; the worker
 * mounts both file systems and backs up; a one-time rule stops it 15 minutes before the window
 * ends; the termination lifecycle hook has the orchestrator tell the worker (SSM Run Command)
 * to stop gracefully; once the instance is gone, the orchestrator notifies. The group's
 * launches reach the orchestrator too, so a run whose worker never comes is closed and told;
 * the stack's deletion removes the one-time stop rules (a custom resource the orchestrator
 * serves). With `workers` above 1, a start asks the group for that many instances, which build
 * one snapshot together through the lease table.
 */
import { ORCHESTRATOR_BUNDLE_DIR } from '@efs-backup/aws/bundles';
import {
  DEFAULT_BURST_CREDIT_FLOOR,
  MAX_WORKERS,
  METRICS_NAMESPACE,
  SCHEDULED_INPUT_PATHS,
  scheduledInputTemplate,
  STOP_RULE_CLEANUP_TYPE,
  type OrchestratorEnvironment,
} from '@efs-backup/aws/contract';
import {
  Aws,
  CustomResource,
  Duration,
  Fn,
  Lazy,
  RemovalPolicy,
  Size,
  Stack,
  Tags,
  Token,
  Tokenization,
  Validations,
} from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cwActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as efs from 'aws-cdk-lib/aws-efs';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { BackupDashboard } from './dashboard.js';
import { LeaseTable } from './lease-table.js';
import { RunStore } from './run-store.js';
import { DEFAULT_INSTANCE_TYPE, WorkerHost } from './worker-host.js';

export interface EfsToEfsBackupProps {
  /** The EFS file system to back up (`fs-...`). */
  readonly sourceFileSystemId: string;
  /**
   * The security group of the source's mount targets: NFS from the worker is allowed into it.
   * @default none: the source's mount targets must already allow NFS (TCP 2049) from the worker
   */
  readonly sourceSecurityGroupId?: string;
  /** The VPC of the source's mount targets. */
  readonly vpc: ec2.IVpc;
  /**
   * Where the worker runs and the backup file system's mount targets are: subnets in different
   * Availability Zones, each with a mount target of the source, that reach the AWS APIs (a NAT
   * gateway or VPC endpoints).
   * @default the VPC's private subnets
   */
  readonly vpcSubnets?: ec2.SubnetSelection;
  /** The folder on the backup file system for this backup set (the original's folder label). @default 'efs-backup' */
  readonly label?: string;
  /** The tag of the series: `hourly`, `daily`, `weekly`, `monthly` or a word of your own. @default 'daily' */
  readonly interval?: string;
  /** Complete snapshots of the interval to keep. @default 7 */
  readonly retain?: number;
  /** The sub-path of the source to back up. @default '/' */
  readonly prefix?: string;
  /** Minutes a run may take; the worker is stopped 15 minutes before they are up. At least 30. @default 180 */
  readonly windowMinutes?: number;
  /** When runs start (UTC). @default every day at 02:00 UTC: `cron(0 2 * * ? *)` */
  readonly schedule?: events.Schedule;
  /** The backup file system's performance mode. @default efs.PerformanceMode.GENERAL_PURPOSE */
  readonly performanceMode?: efs.PerformanceMode;
  /**
   * The backup file system's throughput mode: Elastic charges per byte read and written, so a
   * daily incremental costs little and never runs out of burst credits; Bursting is free but
   * limited by the size in Standard (little, once the lifecycle moves backups to IA);
   * Provisioned pays for `provisionedThroughputMibps` all month. Not Elastic with MAX_IO.
   * @default efs.ThroughputMode.ELASTIC
   */
  readonly throughputMode?: efs.ThroughputMode;
  /** MiB/s, with `throughputMode` PROVISIONED (and then required): 1 to 3414 by default quota. */
  readonly provisionedThroughputMibps?: number;
  /**
   * When files not read move to Infrequent Access; null: never. A file read there stays (no
   * transition back to Standard: backups are read rarely).
   * @default efs.LifecyclePolicy.AFTER_30_DAYS
   */
  readonly transitionToIA?: efs.LifecyclePolicy | null;
  /**
   * When files not read move to Archive (later than `transitionToIA`); Elastic throughput and
   * General Purpose only. Archive bills at least 90 days per file.
   * @default never
   */
  readonly transitionToArchive?: efs.LifecyclePolicy;
  /** Encrypt the backup file system at rest (with the AWS-managed EFS key). @default true */
  readonly encrypted?: boolean;
  /** Notify a run that succeeded too; failures and incomplete runs are always notified. @default false */
  readonly notifyOnSuccess?: boolean;
  /** An address that gets every notice by e-mail. @default no subscription */
  readonly email?: string;
  /** A CloudWatch dashboard of the file systems and the runs. @default true */
  readonly dashboard?: boolean;
  /** Days a run's record is kept. @default 90 */
  readonly recordExpireDays?: number;
  /** Days a run's log is kept. @default 90 */
  readonly logExpireDays?: number;
  /**
   * The worker's instance type, Graviton (the worker installs arm64 packages); chosen for its
   * network baseline, since a backup moves data between two NFS mounts.
   * @default c7gn.large
   */
  readonly instanceType?: ec2.InstanceType;
  /** Bytes read per second from the source, in MiB; 0: no limit. @default 0 */
  readonly maxMiBps?: number;
  /** File-system calls per second on the source; 0: no limit. @default 0 */
  readonly maxOps?: number;
  /**
   * A source in Bursting mode whose BurstCreditBalance (bytes) is under this slows the run to
   * `lowCreditMaxMiBps` until it recovers; 0: never. @default 1 TiB (half a new file system's 2.1 TiB)
   */
  readonly burstCreditFloor?: number;
  /** MiB/s read while the source's credits are under the floor. @default 10 */
  readonly lowCreditMaxMiBps?: number;
  /**
   * Hours without a successful run after which the staleness alarm notifies: twice the
   * schedule's period is right (a template cannot work it out from the expression). 1 to 168.
   * @default 48 (a daily schedule)
   */
  readonly staleAfterHours?: number;
  /**
   * How many instances build one snapshot together: a start asks the group for this many, and
   * they share the run's work through the lease table. 1 is the original workflow: one
   * worker. 1 to 16.
   * @default 1
   */
  readonly workers?: number;
  /** Failed launches of a run's worker after which the run is closed Failed. @default 3 */
  readonly launchFailureLimit?: number;
  /** What happens to the backup file system when the stack is deleted. @default RemovalPolicy.RETAIN */
  readonly backupFileSystemRemovalPolicy?: RemovalPolicy;
  /** What happens to the records and lease tables and the log bucket when the stack is deleted. @default RemovalPolicy.RETAIN */
  readonly dataRemovalPolicy?: RemovalPolicy;
}

/** The events the orchestrator takes from the worker group. */
const WORKER_EVENT_TYPES = [
  'EC2 Instance Launch Successful',
  'EC2 Instance Launch Unsuccessful',
  'EC2 Instance-terminate Lifecycle Action',
  'EC2 Instance Terminate Successful',
];

/** A Scheduled Event with the job in its detail: what the orchestrator's schema takes. */
class ScheduledEventInput extends events.RuleTargetInput {
  constructor(private readonly detail: Record<string, unknown>) {
    super();
  }
  bind(): events.RuleTargetInputProperties {
    return {
      inputPathsMap: { ...SCHEDULED_INPUT_PATHS },
      inputTemplate: scheduledInputTemplate(this.detail),
    };
  }
}

export class EfsToEfsBackup extends Construct {
  readonly backupFileSystem: efs.FileSystem;
  readonly runs: RunStore;
  /** Where the workers of one run share its work. */
  readonly leases: LeaseTable;
  readonly worker: WorkerHost;
  readonly orchestrator: lambda.Function;
  readonly schedule: events.Rule;
  readonly workerEvents: events.Rule;
  readonly dashboard?: BackupDashboard;
  /** No successful run for `staleAfterHours`: it invokes the orchestrator, which notifies. */
  readonly staleAlarm: cloudwatch.Alarm;
  /** The ingress rule into the source's security group, when one was given. */
  readonly sourceIngress?: ec2.CfnSecurityGroupIngress;
  /** Removes the one-time stop rules when the stack is deleted. */
  readonly stopRuleCleanup: CustomResource;
  /**
   * The name every stop rule of this construct starts with: unique to the stack (its id) and
   * to the construct, so two stacks never touch each other's rules.
   */
  readonly stopRulePrefix: string;

  constructor(scope: Construct, id: string, props: EfsToEfsBackupProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const label = props.label ?? 'efs-backup';
    const expireDays = props.recordExpireDays ?? 90;
    const staleAfterHours = props.staleAfterHours ?? 48;
    const workers = props.workers ?? 1;
    checkLimits(this, { ...props, staleAfterHours, workers });

    this.runs = new RunStore(this, 'Runs', {
      logExpireDays: props.logExpireDays ?? 90,
      ...(props.email !== undefined ? { email: props.email } : {}),
      removalPolicy: props.dataRemovalPolicy ?? RemovalPolicy.RETAIN,
      displayName: 'efs-backup',
    });
    this.leases = new LeaseTable(this, 'Leases', {
      removalPolicy: props.dataRemovalPolicy ?? RemovalPolicy.RETAIN,
    });

    const throughputMode = props.throughputMode ?? efs.ThroughputMode.ELASTIC;
    const performanceMode = props.performanceMode ?? efs.PerformanceMode.GENERAL_PURPOSE;
    const transitionToIA =
      props.transitionToIA === undefined ? efs.LifecyclePolicy.AFTER_30_DAYS : props.transitionToIA;
    checkStorage(this, { ...props, throughputMode, performanceMode, transitionToIA });
    this.backupFileSystem = new efs.FileSystem(this, 'BackupFileSystem', {
      vpc: props.vpc,
      ...(props.vpcSubnets ? { vpcSubnets: props.vpcSubnets } : {}),
      encrypted: props.encrypted ?? true,
      performanceMode,
      throughputMode,
      ...(props.provisionedThroughputMibps !== undefined
        ? { provisionedThroughputPerSecond: Size.mebibytes(props.provisionedThroughputMibps) }
        : {}),
      ...(transitionToIA ? { lifecyclePolicy: transitionToIA } : {}),
      ...(props.transitionToArchive
        ? { transitionToArchivePolicy: props.transitionToArchive }
        : {}),
      // No outOfInfrequentAccessPolicy: a backup read once (a restore) stays in IA or Archive.
      removalPolicy: props.backupFileSystemRemovalPolicy ?? RemovalPolicy.RETAIN,
      enableAutomaticBackups: false,
    });
    // The console's name of the file system (and its security group): the stack's, not the
    // construct path every stack of this template shares.
    Tags.of(this.backupFileSystem).add('Name', Fn.join('-', [Aws.STACK_NAME, id, 'backups']), {
      priority: 200,
    });
    const source = efs.FileSystem.fromFileSystemAttributes(this, 'SourceFileSystem', {
      fileSystemId: props.sourceFileSystemId,
      securityGroup: ec2.SecurityGroup.fromSecurityGroupId(
        this,
        'SourceSecurityGroup',
        props.sourceSecurityGroupId ?? 'sg-none',
        { mutable: false },
      ),
    });

    this.worker = new WorkerHost(this, 'Worker', {
      vpc: props.vpc,
      ...(props.vpcSubnets ? { vpcSubnets: props.vpcSubnets } : {}),
      instanceType: props.instanceType,
      command: 'backup',
      groupSuffix: id,
      maxCapacity: workers,
      // Named after the stack and the construct, as every name this construct sets.
      lifecycleHookName: Fn.join('-', [Aws.STACK_NAME, id, 'terminating']),
      config: {
        table: this.runs.table.tableName,
        bucket: this.runs.logBucket.bucketName,
        topicArn: this.runs.topic.topicArn,
        sourceFileSystemId: props.sourceFileSystemId,
        backupFileSystemId: this.backupFileSystem.fileSystemId,
        expireDays,
        // Scale-out: how many workers share a run, and where they share it.
        workers: Tokenization.stringifyNumber(workers),
        leaseTable: this.leases.table.tableName,
        // Gentle on the source: the limits, and the floor of its burst credits.
        maxMiBps: Tokenization.stringifyNumber(props.maxMiBps ?? 0),
        maxOps: Tokenization.stringifyNumber(props.maxOps ?? 0),
        burstCreditFloor: Tokenization.stringifyNumber(
          props.burstCreditFloor ?? DEFAULT_BURST_CREDIT_FLOOR,
        ),
        lowCreditMaxMiBps: Tokenization.stringifyNumber(props.lowCreditMaxMiBps ?? 10),
      },
    });
    const workerRole = this.worker.role;
    this.backupFileSystem.connections.allowDefaultPortFrom(
      this.worker.securityGroup,
      'NFS from the efs-backup worker',
    );
    if (props.sourceSecurityGroupId !== undefined) {
      this.sourceIngress = new ec2.CfnSecurityGroupIngress(this, 'SourceNfsFromWorker', {
        groupId: props.sourceSecurityGroupId,
        ipProtocol: 'tcp',
        fromPort: 2049,
        toPort: 2049,
        sourceSecurityGroupId: this.worker.securityGroup.securityGroupId,
        description: 'NFS from the efs-backup worker',
      });
    }

    // The worker: reads the source (as root, to keep every owner), writes the backup, records,
    // logs, notifies, scales its group to 0 and completes its lifecycle action.
    // It also records both file systems' sizes and the source's burst credits.
    source.grant(
      workerRole,
      'elasticfilesystem:ClientMount',
      'elasticfilesystem:ClientRootAccess',
      'elasticfilesystem:DescribeFileSystems',
    );
    this.backupFileSystem.grant(
      workerRole,
      'elasticfilesystem:ClientMount',
      'elasticfilesystem:ClientWrite',
      'elasticfilesystem:ClientRootAccess',
      'elasticfilesystem:DescribeFileSystems',
    );
    this.runs.grantRecords(workerRole, { remove: true });
    this.leases.grantLeases(workerRole);
    this.runs.grantLogWrite(workerRole, { remove: true });
    this.runs.grantSsmOutput(workerRole);
    this.runs.topic.grantPublish(workerRole);
    this.worker.grantScaling(workerRole, [
      'autoscaling:SetDesiredCapacity',
      'autoscaling:CompleteLifecycleAction',
    ]);
    workerRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'BurstCredits',
        actions: ['cloudwatch:GetMetricData'],
        resources: ['*'],
      }),
    );
    Validations.of(workerRole).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        "CloudWatch's GetMetricData takes no resource in a policy: it reads the source's BurstCreditBalance, and grants reading metrics only.",
    });

    // The orchestrator.
    const logGroup = new logs.LogGroup(this, 'OrchestratorLogs', {
      retention: logs.RetentionDays.ONE_YEAR,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const role = new iam.Role(this, 'OrchestratorRole', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: 'efs-backup orchestrator',
    });
    logGroup.grantWrite(role);
    // efsb-<the stack id's first 8 hex digits>-<6 of this construct's address>-: 21 characters,
    // which leave 43 of a rule name's 64 for the run's id (an event id: 36).
    const stackId8 = Fn.select(0, Fn.split('-', Fn.select(2, Fn.split('/', Aws.STACK_ID))));
    this.stopRulePrefix = Fn.join('', ['efsb-', stackId8, `-${this.node.addr.slice(0, 6)}-`]);
    const environment: OrchestratorEnvironment = {
      TABLE_NAME: this.runs.table.tableName,
      TOPIC_ARN: this.runs.topic.topicArn,
      AUTO_SCALING_GROUP_NAME: this.worker.groupName,
      SOURCE_FILE_SYSTEM_ID: props.sourceFileSystemId,
      BACKUP_FILE_SYSTEM_ID: this.backupFileSystem.fileSystemId,
      NOTIFY_ON_SUCCESS: String(props.notifyOnSuccess ?? false),
      EXPIRE_DAYS: Tokenization.stringifyNumber(expireDays),
      STOP_RULE_PREFIX: this.stopRulePrefix,
      LOG_BUCKET: this.runs.logBucket.bucketName,
      STACK_NAME: Aws.STACK_NAME,
      STALE_AFTER_HOURS: Tokenization.stringifyNumber(staleAfterHours),
      LABEL: label,
      WORKERS: Tokenization.stringifyNumber(workers),
      ...(props.launchFailureLimit !== undefined
        ? { LAUNCH_FAILURE_LIMIT: Tokenization.stringifyNumber(props.launchFailureLimit) }
        : {}),
    };
    this.orchestrator = new lambda.Function(this, 'Orchestrator', {
      description:
        'efs-backup orchestrator: starts and stops the backup worker, closes and notifies runs',
      runtime: lambda.Runtime.NODEJS_24_X,
      architecture: lambda.Architecture.ARM_64,
      handler: 'index.handler',
      code: lambda.Code.fromAsset(ORCHESTRATOR_BUNDLE_DIR),
      memorySize: 256,
      timeout: Duration.minutes(1),
      role,
      logGroup,
      environment: { ...environment },
      retryAttempts: 2,
      maxEventAge: Duration.hours(1),
    });
    this.runs.grantRecords(role, { remove: false });
    this.runs.topic.grantPublish(role);
    this.worker.grantScaling(role, ['autoscaling:SetDesiredCapacity']);
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'RunShellScriptDocument',
        actions: ['ssm:SendCommand'],
        resources: [
          stack.formatArn({
            service: 'ssm',
            account: '',
            resource: 'document',
            resourceName: 'AWS-RunShellScript',
          }),
        ],
      }),
    );
    // Conditioned on the tag the group puts on its instances at launch (the stack's own key):
    // how `aws:` tag keys are evaluated does not matter.
    const tag = this.worker.instanceTag;
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'RunShellScriptOnTheWorker',
        actions: ['ssm:SendCommand'],
        resources: [stack.formatArn({ service: 'ec2', resource: 'instance', resourceName: '*' })],
        conditions: { StringEquals: { [`ssm:resourceTag/${tag.key}`]: tag.value } },
      }),
    );
    // Why a launch failed, when no Launch Unsuccessful event told.
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'ScalingActivities',
        actions: ['autoscaling:DescribeScalingActivities'],
        resources: ['*'],
      }),
    );
    // The stop rules left behind, at each start and at the stack's deletion.
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'ListStopRules',
        actions: ['events:ListRules'],
        resources: ['*'],
      }),
    );
    const stopRules = stack.formatArn({
      service: 'events',
      resource: 'rule',
      resourceName: Fn.join('', [this.stopRulePrefix, '*']),
    });
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'OneTimeStopRules',
        actions: [
          'events:PutRule',
          'events:PutTargets',
          'events:RemoveTargets',
          'events:DeleteRule',
        ],
        resources: [stopRules],
      }),
    );
    this.orchestrator.addPermission('InvokeFromStopRules', {
      principal: new iam.ServicePrincipal('events.amazonaws.com'),
      sourceArn: stopRules,
      sourceAccount: Aws.ACCOUNT_ID,
    });
    Validations.of(role).acknowledge(
      {
        id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:events:<AWS::Region>:<AWS::AccountId>:rule/efsb-${JSON.stringify(stack.resolve(stackId8))}-${this.node.addr.slice(0, 6)}-*]`,
        reason:
          "Each run's one-time stop rule is named after the run, which does not exist when the policy is written; only rules of this stack's and construct's prefix can be touched.",
      },
      {
        id: 'AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>:instance/*]',
        reason: `The worker instance is launched later; the condition on the ${tag.key} tag its group puts on it limits the command to this stack's worker.`,
      },
      {
        id: 'AwsSolutions-IAM5[Resource::*]',
        reason:
          "DescribeScalingActivities and ListRules take no resource in a policy: they only read the group's activities and list rules, which the orchestrator filters by its group and its prefix.",
      },
    );

    // The schedule starts runs; the worker group's events reach the orchestrator.
    const schedule = props.schedule ?? events.Schedule.cron({ minute: '0', hour: '2' });
    this.schedule = new events.Rule(this, 'BackupSchedule', {
      description: `efs-backup: starts a backup of ${props.sourceFileSystemId}`,
      schedule,
      targets: [
        new targets.LambdaFunction(this.orchestrator, {
          event: new ScheduledEventInput({
            action: 'start',
            label,
            interval: props.interval ?? 'daily',
            retain: Tokenization.stringifyNumber(props.retain ?? 7),
            prefix: props.prefix ?? '/',
            windowMinutes: Tokenization.stringifyNumber(props.windowMinutes ?? 180),
            schedule: schedule.expressionString,
          }),
        }),
      ],
    });
    this.workerEvents = new events.Rule(this, 'WorkerEvents', {
      description: "efs-backup: the worker group's launches and termination, to the orchestrator",
      eventPattern: {
        source: ['aws.autoscaling'],
        detailType: WORKER_EVENT_TYPES,
        detail: { AutoScalingGroupName: [this.worker.groupName] },
      },
      targets: [new targets.LambdaFunction(this.orchestrator)],
    });

    // The stack's deletion: CloudFormation asks the orchestrator (before deleting it and its
    // role) to remove the stop rules, which are not the stack's resources.
    this.stopRuleCleanup = new CustomResource(this, 'StopRuleCleanup', {
      serviceToken: this.orchestrator.functionArn,
      resourceType: STOP_RULE_CLEANUP_TYPE,
      properties: { Prefix: this.stopRulePrefix },
    });
    this.stopRuleCleanup.node.addDependency(role, logGroup);

    // Staleness: no successful run for staleAfterHours. RunsSucceeded is 1 for each run that
    // committed a snapshot (the orchestrator's metrics line when it closes a run): its hourly
    // sums over the hours all under 1, or no data at all (a schedule deleted, an orchestrator
    // that no longer runs), is the alarm. Its action invokes the orchestrator, which notifies
    // through the topic: an alarm cannot publish to a topic encrypted with the AWS-managed key.
    this.staleAlarm = new cloudwatch.Alarm(this, 'Stale', {
      alarmName: Fn.join('-', [Aws.STACK_NAME, id, 'stale']),
      alarmDescription: Fn.join('', [
        'efs-backup: no successful backup of ',
        props.sourceFileSystemId,
        ' for ',
        Tokenization.stringifyNumber(staleAfterHours),
        ' hours',
      ]),
      metric: new cloudwatch.Metric({
        namespace: METRICS_NAMESPACE,
        metricName: 'RunsSucceeded',
        dimensionsMap: { FileSystemId: props.sourceFileSystemId, Label: label },
        statistic: 'Sum',
        period: Duration.hours(1),
      }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      evaluationPeriods: staleAfterHours,
      datapointsToAlarm: staleAfterHours,
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
    });
    this.staleAlarm.addAlarmAction(new cwActions.LambdaAction(this.orchestrator));

    if (props.dashboard ?? true) {
      this.dashboard = new BackupDashboard(this, 'Dashboard', {
        sourceFileSystemId: props.sourceFileSystemId,
        backupFileSystemId: this.backupFileSystem.fileSystemId,
        orchestrator: this.orchestrator,
        orchestratorLogs: logGroup,
        label,
        instanceType: this.worker.launchTemplate.instanceType?.toString() ?? DEFAULT_INSTANCE_TYPE,
        // What the file system ends up with (a template may set it from a parameter).
        throughputMode: Lazy.string({
          produce: () =>
            (this.backupFileSystem.node.defaultChild as efs.CfnFileSystem).throughputMode ??
            throughputMode,
        }),
        dashboardName: Fn.join('-', [Aws.STACK_NAME, id]),
      });
    }
  }
}

/** Limits out of their range, refused at synthesis (a template's parameters have their own rules). */
function checkLimits(
  scope: Construct,
  p: Pick<EfsToEfsBackupProps, 'maxMiBps' | 'maxOps' | 'burstCreditFloor' | 'lowCreditMaxMiBps'> & {
    staleAfterHours: number;
    workers: number;
  },
): void {
  const known = (v: number | undefined): v is number => v !== undefined && !Token.isUnresolved(v);
  const fail = (m: string): never => {
    throw new Error(`${scope.node.path}: ${m}`);
  };
  for (const k of ['maxMiBps', 'maxOps', 'burstCreditFloor'] as const) {
    const v = p[k];
    if (known(v) && !(v >= 0)) fail(`${k} must be 0 (no limit) or more, not ${v}`);
  }
  if (known(p.lowCreditMaxMiBps) && !(p.lowCreditMaxMiBps > 0))
    fail(`lowCreditMaxMiBps must be more than 0, not ${p.lowCreditMaxMiBps}`);
  const h = p.staleAfterHours;
  // CloudWatch: evaluation periods × period at most 7 days, here hours of 3600 s.
  if (known(h) && !(Number.isInteger(h) && h >= 1 && h <= 168))
    fail(`staleAfterHours must be a whole number of hours from 1 to 168 (7 days), not ${h}`);
  const w = p.workers;
  if (known(w) && !(Number.isInteger(w) && w >= 1 && w <= MAX_WORKERS))
    fail(`workers must be a whole number from 1 to ${MAX_WORKERS}, not ${w}`);
}

/** Storage settings that EFS would refuse at deployment, refused at synthesis. */
function checkStorage(
  scope: Construct,
  p: {
    throughputMode: efs.ThroughputMode;
    performanceMode: efs.PerformanceMode;
    provisionedThroughputMibps?: number | undefined;
    transitionToIA: efs.LifecyclePolicy | null;
    transitionToArchive?: efs.LifecyclePolicy | undefined;
  },
): void {
  const known = (v: unknown): boolean => v !== undefined && !Token.isUnresolved(v);
  const fail = (m: string): never => {
    throw new Error(`${scope.node.path}: ${m}`);
  };
  if (known(p.throughputMode) && known(p.provisionedThroughputMibps)) {
    if (p.throughputMode !== efs.ThroughputMode.PROVISIONED)
      fail('provisionedThroughputMibps is for throughputMode PROVISIONED only');
    if (!(p.provisionedThroughputMibps! >= 1))
      fail('provisionedThroughputMibps must be 1 MiB/s or more');
  }
  if (
    p.throughputMode === efs.ThroughputMode.PROVISIONED &&
    p.provisionedThroughputMibps === undefined
  )
    fail('throughputMode PROVISIONED needs provisionedThroughputMibps');
  if (p.transitionToArchive && known(p.transitionToArchive)) {
    if (known(p.throughputMode) && p.throughputMode !== efs.ThroughputMode.ELASTIC)
      fail('transitionToArchive needs throughputMode ELASTIC (EFS Archive is Elastic only)');
    if (known(p.performanceMode) && p.performanceMode !== efs.PerformanceMode.GENERAL_PURPOSE)
      fail('transitionToArchive needs performanceMode GENERAL_PURPOSE');
    if (
      p.transitionToIA &&
      known(p.transitionToIA) &&
      lifecycleDays(p.transitionToArchive) <= lifecycleDays(p.transitionToIA)
    )
      fail('transitionToArchive must come later than transitionToIA');
  }
}

/** The days of an EFS lifecycle policy: AFTER_1_DAY → 1, AFTER_30_DAYS → 30. */
export function lifecycleDays(policy: efs.LifecyclePolicy): number {
  return Number(/^AFTER_(\d+)_DAYS?$/.exec(policy)?.[1] ?? NaN);
}
