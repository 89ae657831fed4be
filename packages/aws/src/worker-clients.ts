import { AutoScalingClient, SetDesiredCapacityCommand } from '@aws-sdk/client-auto-scaling';
import type { ServiceLog } from '@efs-backup/service';
import { errorText } from './json-log.js';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { SNSClient } from '@aws-sdk/client-sns';
import type { WorkerConfig } from './worker-config.js';

/** The AWS clients a worker uses: the instance role's credentials, the stack's region. */
export interface WorkerClients {
  dynamodb: DynamoDBClient;
  s3: S3Client;
  sns: SNSClient;
  autoScaling: AutoScalingClient;
}

export function workerClients(config: Pick<WorkerConfig, 'region' | 'endpoints'>): WorkerClients {
  const base = { region: config.region, maxAttempts: 5 };
  const e = config.endpoints;
  return {
    dynamodb: new DynamoDBClient({ ...base, ...(e.dynamodb ? { endpoint: e.dynamodb } : {}) }),
    // An emulator's endpoint takes the bucket in the path.
    s3: new S3Client({ ...base, ...(e.s3 ? { endpoint: e.s3, forcePathStyle: true } : {}) }),
    sns: new SNSClient({ ...base, ...(e.sns ? { endpoint: e.sns } : {}) }),
    autoScaling: new AutoScalingClient({
      ...base,
      ...(e.autoScaling ? { endpoint: e.autoScaling } : {}),
    }),
  };
}

/** The instance's id, from the instance metadata service (IMDSv2: a session token first). */
export async function instanceIdFromMetadata(base = 'http://169.254.169.254'): Promise<string> {
  const signal = AbortSignal.timeout(5000);
  const token = await fetch(`${base}/latest/api/token`, {
    method: 'PUT',
    headers: { 'X-aws-ec2-metadata-token-ttl-seconds': '300' },
    signal,
  });
  if (!token.ok) throw new Error(`the instance metadata service answered ${token.status}`);
  const id = await fetch(`${base}/latest/meta-data/instance-id`, {
    headers: { 'X-aws-ec2-metadata-token': await token.text() },
    signal,
  });
  if (!id.ok) throw new Error(`the instance metadata service answered ${id.status}`);
  return (await id.text()).trim();
}

/** Scales the worker's group to 0 (its instance goes); a failure is logged, not thrown. */
export async function scaleGroupToZero(
  autoScaling: AutoScalingClient,
  groupName: string,
  log: ServiceLog,
): Promise<void> {
  try {
    await autoScaling.send(
      new SetDesiredCapacityCommand({
        AutoScalingGroupName: groupName,
        DesiredCapacity: 0,
        HonorCooldown: false,
      }),
    );
  } catch (e) {
    log.error({ err: errorText(e) }, 'cannot scale the Auto Scaling group to 0');
  }
}
