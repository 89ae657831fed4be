import { AutoScalingClient, SetDesiredCapacityCommand } from '@aws-sdk/client-auto-scaling';
import { CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { EFSClient } from '@aws-sdk/client-efs';
import { S3Client } from '@aws-sdk/client-s3';
import { SNSClient } from '@aws-sdk/client-sns';
import type { ServiceLog } from '@efs-backup/service';
import { errorText } from './json-log.js';
import type { WorkerConfig } from './worker-config.js';

/** The AWS clients a worker uses: the instance role's credentials, the stack's region. */
export interface WorkerClients {
  dynamodb: DynamoDBClient;
  s3: S3Client;
  sns: SNSClient;
  autoScaling: AutoScalingClient;
  efs: EFSClient;
  cloudwatch: CloudWatchClient;
}

export function workerClients(config: Pick<WorkerConfig, 'region' | 'endpoints'>): WorkerClients {
  const base = { region: config.region, maxAttempts: 5 };
  const e = config.endpoints;
  const at = (endpoint: string | undefined) => (endpoint ? { endpoint } : {});
  return {
    dynamodb: new DynamoDBClient({ ...base, ...at(e.dynamodb) }),
    // An emulator's endpoint takes the bucket in the path.
    s3: new S3Client({ ...base, ...(e.s3 ? { endpoint: e.s3, forcePathStyle: true } : {}) }),
    sns: new SNSClient({ ...base, ...at(e.sns) }),
    autoScaling: new AutoScalingClient({ ...base, ...at(e.autoScaling) }),
    efs: new EFSClient({ ...base, ...at(e.efs) }),
    cloudwatch: new CloudWatchClient({ ...base, ...at(e.cloudwatch) }),
  };
}

/** What the worker reads from the instance metadata service. */
export interface InstanceMetadata {
  instanceId: string;
  /** @default null when the service does not say */
  instanceType: string | null;
}

/** The instance's id and type, from the instance metadata service (IMDSv2: a session token first). */
export async function instanceMetadata(base = 'http://169.254.169.254'): Promise<InstanceMetadata> {
  const signal = AbortSignal.timeout(5000);
  const token = await fetch(`${base}/latest/api/token`, {
    method: 'PUT',
    headers: { 'X-aws-ec2-metadata-token-ttl-seconds': '300' },
    signal,
  });
  if (!token.ok) throw new Error(`the instance metadata service answered ${token.status}`);
  const headers = { 'X-aws-ec2-metadata-token': await token.text() };
  const read = async (what: string): Promise<Response> =>
    fetch(`${base}/latest/meta-data/${what}`, { headers, signal });
  const id = await read('instance-id');
  if (!id.ok) throw new Error(`the instance metadata service answered ${id.status}`);
  const type = await read('instance-type');
  return {
    instanceId: (await id.text()).trim(),
    instanceType: type.ok ? (await type.text()).trim() : null,
  };
}

/** The instance's id, from the instance metadata service. */
export async function instanceIdFromMetadata(base = 'http://169.254.169.254'): Promise<string> {
  return (await instanceMetadata(base)).instanceId;
}

/** Scales the worker's group to 0 (its instance goes); a failure is logged, not thrown. */
export async function scaleGroupToZero(
  autoScaling: AutoScalingClient,
  groupName: string,
  log: ServiceLog,
): Promise<boolean> {
  try {
    await autoScaling.send(
      new SetDesiredCapacityCommand({
        AutoScalingGroupName: groupName,
        DesiredCapacity: 0,
        HonorCooldown: false,
      }),
    );
    return true;
  } catch (e) {
    log.error({ err: errorText(e) }, 'cannot scale the Auto Scaling group to 0');
    return false;
  }
}
