/**
 * Where the workers of one run share its work (scale-out): a DynamoDB table of leases, keyed
 * `Scope` (a backup set's interval, `<label>/<interval>`) and `Key` (the scope's run, its units
 * and its commit claim), written with conditional writes by `DynamoDbLeaseStore`. A stopped
 * run's leases stay for the next run to continue, so nothing here expires by itself.
 */
import { RemovalPolicy } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';

export interface LeaseTableProps {
  /** What happens to the table when the stack is deleted. @default RemovalPolicy.RETAIN */
  readonly removalPolicy?: RemovalPolicy;
}

/** The actions `DynamoDbLeaseStore` calls, and no other. */
export const LEASE_ACTIONS = [
  'dynamodb:GetItem',
  'dynamodb:PutItem',
  'dynamodb:UpdateItem',
  'dynamodb:DeleteItem',
  'dynamodb:Query',
  'dynamodb:BatchWriteItem',
];

export class LeaseTable extends Construct {
  readonly table: dynamodb.Table;

  constructor(scope: Construct, id: string, props: LeaseTableProps = {}) {
    super(scope, id);
    this.table = new dynamodb.Table(this, 'Table', {
      partitionKey: { name: 'Scope', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'Key', type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
    });
  }

  /** Lets a worker take, renew, finish and clear leases: the lease store's calls only. */
  grantLeases(grantee: iam.IGrantable): iam.Grant {
    return this.table.grant(grantee, ...LEASE_ACTIONS);
  }
}
