/**
 * Where runs are recorded, logged and told about: the DynamoDB table of records (key
 * `BackupId`, TTL on `ExpireItem`), the S3 bucket of run logs and the SNS topic of notices with
 * its e-mail subscription. Shared by the backup and the restore constructs.
 */
import { Duration, RemovalPolicy, Stack, Validations, type CfnElement } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sns from 'aws-cdk-lib/aws-sns';
import { SSM_OUTPUT_PREFIX } from '@efs-backup/aws/contract';
import { Construct } from 'constructs';

export interface RunStoreProps {
  /** Days a run's log is kept. @default 90 */
  readonly logExpireDays?: number;
  /** An address that gets every notice by e-mail (it confirms the subscription first). @default no subscription */
  readonly email?: string;
  /** What happens to the table and the log bucket when the stack is deleted. @default RemovalPolicy.RETAIN */
  readonly removalPolicy?: RemovalPolicy;
  /** The topic's display name (the e-mail sender's name). @default 'efs-backup' */
  readonly displayName?: string;
}

/** The key prefix of the run logs (the workers' default). */
export const LOG_PREFIX = 'logs/';

export class RunStore extends Construct {
  readonly table: dynamodb.Table;
  readonly logBucket: s3.Bucket;
  readonly topic: sns.Topic;
  /** The e-mail subscription, when an address was given. */
  readonly emailSubscription?: sns.Subscription;

  constructor(scope: Construct, id: string, props: RunStoreProps = {}) {
    super(scope, id);
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;

    this.table = new dynamodb.Table(this, 'RecordTable', {
      partitionKey: { name: 'BackupId', type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      timeToLiveAttribute: 'ExpireItem',
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      removalPolicy,
    });

    this.logBucket = new s3.Bucket(this, 'LogBucket', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      versioned: true,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      enforceSSL: true,
      lifecycleRules: [
        {
          id: 'ExpireOldLogs',
          expiration: Duration.days(props.logExpireDays ?? 90),
          noncurrentVersionExpiration: Duration.days(30),
          abortIncompleteMultipartUploadAfter: Duration.days(7),
        },
      ],
      removalPolicy,
    });
    Validations.of(this.logBucket).acknowledge({
      id: 'AwsSolutions-S1',
      reason:
        "The bucket holds only this stack's run logs, written by its own worker role; CloudTrail records access to it, and an access-log bucket would need one of its own.",
    });

    this.topic = new sns.Topic(this, 'NoticeTopic', {
      displayName: props.displayName ?? 'efs-backup',
      // SNS's own AWS-managed key: encrypted at rest with nothing to manage or pay for.
      masterKey: kms.Alias.fromAliasName(this, 'SnsKey', 'alias/aws/sns'),
      enforceSSL: true,
    });
    if (props.email !== undefined) {
      this.emailSubscription = new sns.Subscription(this, 'EmailSubscription', {
        topic: this.topic,
        protocol: sns.SubscriptionProtocol.EMAIL,
        endpoint: props.email,
      });
    }
  }

  /**
   * Lets a role read and write run records: items by key and scans (the table is small and has
   * no index), rather than the table's grantReadWriteData (batches, streams, queries).
   */
  grantRecords(grantee: iam.IGrantable, o: { remove: boolean }): iam.Grant {
    return this.table.grant(
      grantee,
      'dynamodb:GetItem',
      'dynamodb:PutItem',
      'dynamodb:UpdateItem',
      'dynamodb:Scan',
      ...(o.remove ? ['dynamodb:DeleteItem'] : []),
    );
  }

  /**
   * Lets a worker write run logs (and delete those whose record expired): objects under the
   * logs prefix only, rather than the bucket's grantPut (tagging, retention, legal hold too).
   */
  grantLogWrite(role: iam.Role, o: { remove: boolean }): void {
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'RunLogs',
        actions: ['s3:PutObject', ...(o.remove ? ['s3:DeleteObject'] : [])],
        resources: [this.logBucket.arnForObjects(`${LOG_PREFIX}*`)],
      }),
    );
    const bucketId = Stack.of(this).getLogicalId(this.logBucket.node.defaultChild as CfnElement);
    Validations.of(role).acknowledge({
      id: `AwsSolutions-IAM5[Resource::<${bucketId}.Arn>/${LOG_PREFIX}*]`,
      reason:
        "Each run's log is an object named after the run, under the logs prefix: the key is not known before the run.",
    });
  }

  /**
   * Lets an instance's SSM agent store a Run Command's output under `ssm-logs/` (it writes as
   * the instance role, and reads the bucket's encryption first).
   */
  grantSsmOutput(role: iam.Role): void {
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'RunCommandOutput',
        actions: ['s3:PutObject'],
        resources: [this.logBucket.arnForObjects(`${SSM_OUTPUT_PREFIX}*`)],
      }),
    );
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'RunCommandOutputEncryption',
        actions: ['s3:GetEncryptionConfiguration'],
        resources: [this.logBucket.bucketArn],
      }),
    );
    const bucketId = Stack.of(this).getLogicalId(this.logBucket.node.defaultChild as CfnElement);
    Validations.of(role).acknowledge({
      id: `AwsSolutions-IAM5[Resource::<${bucketId}.Arn>/${SSM_OUTPUT_PREFIX}*]`,
      reason:
        'Run Command names each output object after its command and instance, under the ssm-logs prefix: the key is not known before the command.',
    });
  }
}
