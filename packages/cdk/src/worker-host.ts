/**
 * The EC2 side of a backup or a restore: the worker's role, its security group, a launch
 * template (Amazon Linux 2023 on Graviton, IMDSv2 required, encrypted root volume, SSM agent,
 * Node.js and amazon-efs-utils from the distribution, the worker bundle fetched from the
 * assets bucket and run by systemd) and an Auto Scaling group of 0..N instances (N: a backup's
 * workers, 1 for a restore), each tagged with the group's name under a key of this stack's
 * own. An instance that cannot set the worker up, or whose worker fails, tells the stack's
 * topic why and scales its group to 0: none is left running for nothing.
 */
import { WORKER_BUNDLE_FILE } from '@efs-backup/aws/bundles';
import type { WorkerConfigInput } from '@efs-backup/aws/contract';
import {
  ArnFormat,
  Aws,
  Duration,
  Fn,
  Lazy,
  Stack,
  Tags,
  Tokenization,
  Validations,
} from 'aws-cdk-lib';
import * as autoscaling from 'aws-cdk-lib/aws-autoscaling';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as assets from 'aws-cdk-lib/aws-s3-assets';
import { Construct } from 'constructs';

/** The worker's paths on the instance. */
export const WORKER_HOME = '/opt/efs-backup';
export const WORKER_CONFIG = '/etc/efs-backup/worker.json';
export const WORKER_SERVICE = 'efs-backup-worker';
/** What runs when the worker cannot start or fails: the notice, then the group to 0. */
export const WORKER_FAILED_SCRIPT = `${WORKER_HOME}/worker-failed.sh`;
/**
 * The tag every instance of a worker group carries (propagated at launch): its group's name.
 * The orchestrator's Run Command permission is conditioned on it, a tag of the stack's own
 * rather than Auto Scaling's `aws:` one.
 */
export const WORKER_TAG = 'efs-backup:worker-group';
/** The worker's default instance type: Graviton, for network bandwidth (README, "Cost"). */
export const DEFAULT_INSTANCE_TYPE = 'c7gn.large';
/**
 * Graviton instance types (family, generation, `g`, options): the worker installs arm64
 * packages and Amazon Linux 2023 for arm64.
 */
export const GRAVITON_INSTANCE_TYPE = '^[a-z]+[0-9]+g[a-z]*\\.[a-z0-9-]+$';
export interface WorkerHostProps {
  readonly vpc: ec2.IVpc;
  /** @default the VPC's private subnets */
  readonly vpcSubnets?: ec2.SubnetSelection;
  /** A Graviton type (the worker installs arm64 packages). @default c7gn.large */
  readonly instanceType?: ec2.InstanceType | undefined;
  /** `backup` or `restore`: the worker's command. */
  readonly command: 'backup' | 'restore';
  /** The worker's configuration; the group's and the hook's names are added. */
  readonly config: Omit<WorkerConfigInput, 'autoScalingGroupName' | 'lifecycleHookName' | 'region'>;
  /**
   * The group is named `<stack name>-<groupSuffix>`: known before the group exists, as its
   * instances' configuration and the policies need it.
   */
  readonly groupSuffix: string;
  /**
   * The most instances the group may run: a backup's workers (its orchestrator asks for that
   * many at a start). @default 1
   */
  readonly maxCapacity?: number;
  /**
   * A restore starts at once; a backup's group waits at 0 for the orchestrator.
   * @default none set: the group starts at its minimum, 0
   */
  readonly desiredCapacity?: number;
  /**
   * The termination lifecycle hook's name, for a backup: the worker completes it.
   * @default no lifecycle hook
   */
  readonly lifecycleHookName?: string;
  /** How long the hook holds a terminating instance at most. @default 15 minutes */
  readonly lifecycleHeartbeat?: Duration;
  /**
   * systemd stops the worker after this many minutes (its failure handler then notifies and
   * scales the group to 0): a restore's window. @default no limit (a backup's stop rule ends it)
   */
  readonly runtimeMaxMinutes?: number;
  /** Collect the group's GroupInServiceInstances metric (an alarm reads it). @default false */
  readonly inServiceMetric?: boolean;
}

export class WorkerHost extends Construct {
  readonly role: iam.Role;
  readonly securityGroup: ec2.SecurityGroup;
  readonly launchTemplate: ec2.LaunchTemplate;
  readonly group: autoscaling.AutoScalingGroup;
  readonly bundle: assets.Asset;
  readonly lifecycleHook?: autoscaling.LifecycleHook;
  /** The group's name: `<stack name>-<groupSuffix>`. */
  readonly groupName: string;
  /** The ARN of the group, for policies (its id is not known before it exists). */
  readonly groupArnPattern: string;
  /** The tag each instance carries at launch: `WORKER_TAG` = the group's name. */
  readonly instanceTag: { readonly key: string; readonly value: string };
  private readonly groupSuffix: string;
  /**
   * The worker's configuration file, rendered into the user data at synthesis: a template may
   * still set a value from a parameter here.
   */
  readonly config: WorkerConfigInput;

  constructor(scope: Construct, id: string, props: WorkerHostProps) {
    super(scope, id);
    const stack = Stack.of(this);
    this.groupSuffix = props.groupSuffix;
    this.groupName = Fn.join('-', [Aws.STACK_NAME, props.groupSuffix]);

    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com'),
      description: `efs-backup ${props.command} worker`,
      managedPolicies: [iam.ManagedPolicy.fromAwsManagedPolicyName('AmazonSSMManagedInstanceCore')],
    });
    Validations.of(this.role).acknowledge({
      id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonSSMManagedInstanceCore]',
      reason:
        'The SSM agent needs exactly this AWS-maintained policy to take the Run Command that stops the worker gracefully.',
    });

    this.securityGroup = new ec2.SecurityGroup(this, 'SecurityGroup', {
      vpc: props.vpc,
      description: `efs-backup ${props.command} worker: no inbound; outbound to EFS (NFS) and the AWS APIs`,
      allowAllOutbound: true,
    });

    this.bundle = new assets.Asset(this, 'Bundle', { path: WORKER_BUNDLE_FILE });
    // The one object, rather than the assets bucket's grantRead (every object, List*, GetBucket*).
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'WorkerBundle',
        actions: ['s3:GetObject'],
        resources: [this.bundle.bucket.arnForObjects(this.bundle.s3ObjectKey)],
      }),
    );

    this.config = {
      ...props.config,
      region: Aws.REGION,
      autoScalingGroupName: this.groupName,
      ...(props.lifecycleHookName ? { lifecycleHookName: props.lifecycleHookName } : {}),
    };
    const userData = ec2.UserData.forLinux();
    const runtimeMax =
      props.runtimeMaxMinutes !== undefined
        ? [`RuntimeMaxSec=${Tokenization.stringifyNumber(props.runtimeMaxMinutes)}min`]
        : [];
    userData.addCommands(
      'set -euo pipefail',
      // First of all, what a failure does: the topic hears why, the group goes to 0.
      `mkdir -p ${WORKER_HOME} /etc/efs-backup`,
      `cat > ${WORKER_FAILED_SCRIPT} <<'EOF'`,
      ...this.failureScript(props.command, props.config.topicArn),
      'EOF',
      `chmod 0755 ${WORKER_FAILED_SCRIPT}`,
      `trap 'rc=$?; ${WORKER_FAILED_SCRIPT} "did not start" "the instance could not set the efs-backup ${props.command} worker up: line $LINENO ($BASH_COMMAND) exited $rc"; exit $rc' ERR`,
      // Amazon Linux 2023 ships the SSM agent: it takes the Run Command that stops the worker.
      'systemctl enable --now amazon-ssm-agent',
      // Node.js 20 or later and amazon-efs-utils (mount -t efs -o tls) from the distribution.
      'dnf install -y amazon-efs-utils',
      'dnf install -y nodejs22 || dnf install -y nodejs20 || dnf install -y nodejs',
      'NODE=$(command -v node-22 || command -v node-20 || command -v node)',
      `"$NODE" -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'`,
      `aws s3 cp '${this.bundle.s3ObjectUrl}' ${WORKER_HOME}/efs-backup-worker.cjs --region ${Aws.REGION}`,
      `cat > ${WORKER_CONFIG} <<'EOF'`,
      Lazy.string({ produce: () => stack.toJsonString(this.config) }),
      'EOF',
      `cat > /etc/systemd/system/${WORKER_SERVICE}.service <<EOF`,
      '[Unit]',
      `Description=efs-backup ${props.command} worker`,
      'Wants=network-online.target',
      'After=network-online.target amazon-ssm-agent.service',
      // A worker that fails (exit 2 or 3, killed, past RuntimeMaxSec) still lets its group go.
      `OnFailure=${WORKER_SERVICE}-failed.service`,
      '[Service]',
      'Type=exec',
      'Environment=UV_THREADPOOL_SIZE=64',
      `ExecStart=$NODE ${WORKER_HOME}/efs-backup-worker.cjs ${props.command} --config ${WORKER_CONFIG}`,
      // The worker writes its figures and log before it lets the instance go.
      'TimeoutStopSec=900',
      ...runtimeMax,
      'Restart=no',
      'EOF',
      `cat > /etc/systemd/system/${WORKER_SERVICE}-failed.service <<'EOF'`,
      '[Unit]',
      `Description=efs-backup ${props.command} worker failed: notice, group to 0`,
      '[Service]',
      'Type=oneshot',
      `ExecStart=${WORKER_FAILED_SCRIPT} failed "the efs-backup ${props.command} worker ended with a failure (journalctl -u ${WORKER_SERVICE} on the instance says why)"`,
      'EOF',
      'systemctl daemon-reload',
      `systemctl start --no-block ${WORKER_SERVICE}.service`,
      // Set up: from here the worker's own failures are told by its unit's OnFailure.
      'trap - ERR',
    );

    this.launchTemplate = new ec2.LaunchTemplate(this, 'LaunchTemplate', {
      machineImage: ec2.MachineImage.latestAmazonLinux2023({
        cpuType: ec2.AmazonLinuxCpuType.ARM_64,
      }),
      instanceType: props.instanceType ?? new ec2.InstanceType(DEFAULT_INSTANCE_TYPE),
      role: this.role,
      securityGroup: this.securityGroup,
      userData,
      requireImdsv2: true,
      httpPutResponseHopLimit: 1,
      blockDevices: [
        {
          deviceName: '/dev/xvda',
          volume: ec2.BlockDeviceVolume.ebs(16, {
            encrypted: true,
            volumeType: ec2.EbsDeviceVolumeType.GP3,
          }),
        },
      ],
    });

    // The console's name of the template, its instances and their volumes: the stack's.
    Tags.of(this.launchTemplate).add(
      'Name',
      Fn.join('-', [Aws.STACK_NAME, props.groupSuffix, 'worker']),
      {
        priority: 200,
      },
    );

    this.group = new autoscaling.AutoScalingGroup(this, 'Group', {
      autoScalingGroupName: this.groupName,
      vpc: props.vpc,
      ...(props.vpcSubnets ? { vpcSubnets: props.vpcSubnets } : {}),
      launchTemplate: this.launchTemplate,
      minCapacity: 0,
      maxCapacity: props.maxCapacity ?? 1,
      ...(props.desiredCapacity !== undefined ? { desiredCapacity: props.desiredCapacity } : {}),
      cooldown: Duration.seconds(60),
      ...(props.inServiceMetric
        ? {
            groupMetrics: [
              new autoscaling.GroupMetrics(autoscaling.GroupMetric.IN_SERVICE_INSTANCES),
            ],
          }
        : {}),
    });
    this.instanceTag = { key: WORKER_TAG, value: this.groupName };
    Tags.of(this.group).add(WORKER_TAG, this.groupName, { applyToLaunchedInstances: true });
    Validations.of(this.group).acknowledge(
      {
        id: '@aws-cdk/aws-autoscaling:desiredCapacitySet',
        reason:
          'Only a restore sets it: each deployment that updates the group runs the restore again, which is what a changed restore stack asks for.',
      },
      {
        id: 'AwsSolutions-AS2',
        reason:
          'The worker serves no traffic: there is no load balancer whose health check the group could use.',
      },
      {
        id: 'AwsSolutions-AS3',
        reason:
          "Each run's outcome is notified through the stack's topic; a mail for every launch and termination of the worker would be noise.",
      },
    );
    this.groupArnPattern = stack.formatArn({
      service: 'autoscaling',
      resource: 'autoScalingGroup',
      resourceName: `*:autoScalingGroupName/${this.groupName}`,
      arnFormat: ArnFormat.COLON_RESOURCE_NAME,
    });

    if (props.lifecycleHookName) {
      this.lifecycleHook = this.group.addLifecycleHook('Terminating', {
        lifecycleHookName: props.lifecycleHookName,
        lifecycleTransition: autoscaling.LifecycleTransition.INSTANCE_TERMINATING,
        heartbeatTimeout: props.lifecycleHeartbeat ?? Duration.minutes(15),
        defaultResult: autoscaling.DefaultResult.CONTINUE,
      });
    }
  }

  /**
   * The script an instance runs when it cannot set the worker up or its worker fails, with
   * `did not start` or `failed` and why: one notice to the topic, then the group to 0 (the
   * instance role may do both). It never fails itself.
   */
  private failureScript(command: string, topicArn: string): string[] {
    const region = Aws.REGION;
    return [
      '#!/bin/bash',
      `# efs-backup: the ${command} worker did not start, or failed: the topic hears why, the group goes to 0.`,
      'what="${1:-failed}"',
      'why="${2:-the efs-backup worker failed}"',
      'imds=http://169.254.169.254/latest',
      `token=$(curl -sf -m 5 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' "$imds/api/token" || true)`,
      `id=$(curl -sf -m 5 -H "X-aws-ec2-metadata-token: $token" "$imds/meta-data/instance-id" || echo 'an instance')`,
      `echo "efs-backup: $why" >&2`,
      `aws sns publish --region ${region} --topic-arn '${topicArn}' \\`,
      `  --subject "[efs-backup] Failed: the ${command} worker on $id $what" \\`,
      `  --message "$why`,
      '',
      `The instance's group (${this.groupName}) is scaled to 0, so the instance goes. Its console output and the journal of ${WORKER_SERVICE} have the details." || true`,
      `aws autoscaling set-desired-capacity --region ${region} --auto-scaling-group-name '${this.groupName}' \\`,
      '  --desired-capacity 0 --no-honor-cooldown || true',
    ];
  }

  /** Lets this worker change its own group's desired capacity (a backup's also completes its hook). */
  grantScaling(role: iam.Role, actions: string[]): iam.Grant {
    Validations.of(role).acknowledge({
      id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:autoscaling:<AWS::Region>:<AWS::AccountId>:autoScalingGroup:*:autoScalingGroupName/<AWS::StackName>-${this.groupSuffix}]`,
      reason:
        "A group's ARN holds an id assigned when it is created; its name pins the grant to this stack's worker group.",
    });
    return iam.Grant.addToPrincipal({
      grantee: role,
      actions,
      resourceArns: [this.groupArnPattern],
    });
  }
}
