/**
 * The events the orchestrator Lambda takes, as EventBridge delivers them, in one schema that
 * also gives their types. Scheduled Events (the start schedule and the one-time stop) carry
 * their orders in `detail`, which the rules' input transformers fill; the Auto Scaling events
 * are passed on as EventBridge has them.
 */
import * as z from 'zod';

/** The sub-path of the source to back up: starts with "/", no "..". */
const PREFIX = /^\/(?!.*(^|\/)\.\.(\/|$))/;
/** A plain word: a label or an interval, as the engine takes them. */
const WORD = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** Minutes between a run's start and its one-time stop: the window less this margin. */
export const STOP_MARGIN_MINUTES = 15;
/** A window must leave the worker time to run before the stop: the original's minimum. */
export const MIN_WINDOW_MINUTES = 30;

/** What one scheduled run backs up, and how: the start event's `detail`. */
export const JobParametersSchema = z.object({
  action: z.literal('start'),
  /** The folder on the backup file system for this backup set. */
  label: z.string().regex(WORD).default('efs-backup'),
  /** The tag of the series: daily, weekly, ... */
  interval: z.string().regex(WORD).default('daily'),
  /** Complete snapshots of the interval to keep. CloudFormation passes numbers as text. */
  retain: z.coerce.number().int().min(1).max(10_000).default(7),
  prefix: z.string().regex(PREFIX).default('/'),
  /** Minutes the run may take; it is stopped 15 minutes before they are up. */
  windowMinutes: z.coerce
    .number()
    .int()
    .min(MIN_WINDOW_MINUTES)
    .max(7 * 24 * 60)
    .default(180),
  /** The schedule expression that started the run, for the record. */
  schedule: z.string().max(256).nullable().default(null),
});
export type JobParameters = z.infer<typeof JobParametersSchema>;

const StopParametersSchema = z.object({
  action: z.literal('stop'),
  backupId: z.string().min(1).max(128),
});

/** The envelope of every EventBridge event. */
const envelope = {
  version: z.string(),
  id: z.string().min(1).max(128),
  account: z.string(),
  time: z.iso.datetime({ offset: true }),
  region: z.string(),
  resources: z.array(z.string()),
};

const scheduled = {
  ...envelope,
  'detail-type': z.literal('Scheduled Event'),
  source: z.literal('aws.events'),
};

export const StartEventSchema = z.object({ ...scheduled, detail: JobParametersSchema });
export const StopEventSchema = z.object({ ...scheduled, detail: StopParametersSchema });

export const TerminatingEventSchema = z.object({
  ...envelope,
  'detail-type': z.literal('EC2 Instance-terminate Lifecycle Action'),
  source: z.literal('aws.autoscaling'),
  detail: z.object({
    LifecycleActionToken: z.string(),
    AutoScalingGroupName: z.string(),
    LifecycleHookName: z.string(),
    EC2InstanceId: z.string(),
    LifecycleTransition: z.literal('autoscaling:EC2_INSTANCE_TERMINATING'),
    NotificationMetadata: z.string().optional(),
  }),
});

export const TerminatedEventSchema = z.object({
  ...envelope,
  'detail-type': z.literal('EC2 Instance Terminate Successful'),
  source: z.literal('aws.autoscaling'),
  detail: z.object({
    AutoScalingGroupName: z.string(),
    EC2InstanceId: z.string(),
    StatusCode: z.string().optional(),
    Cause: z.string().optional(),
    StartTime: z.string().optional(),
    EndTime: z.string().optional(),
  }),
});

/** An instance of the group launched: the orchestrator pairs it with the run waiting for it. */
export const LaunchedEventSchema = z.object({
  ...envelope,
  'detail-type': z.literal('EC2 Instance Launch Successful'),
  source: z.literal('aws.autoscaling'),
  detail: z.object({
    AutoScalingGroupName: z.string(),
    EC2InstanceId: z.string().min(1),
  }),
});

/**
 * The group could not launch an instance (no capacity for the type in an Availability Zone, no
 * free address, a KMS key the group may not use): `StatusMessage` says why. `EC2InstanceId` is
 * empty when no instance was created.
 */
export const LaunchFailedEventSchema = z.object({
  ...envelope,
  'detail-type': z.literal('EC2 Instance Launch Unsuccessful'),
  source: z.literal('aws.autoscaling'),
  detail: z.object({
    AutoScalingGroupName: z.string(),
    StatusCode: z.string().optional(),
    StatusMessage: z.string().optional(),
    Description: z.string().optional(),
    Cause: z.string().optional(),
    ActivityId: z.string().optional(),
    EC2InstanceId: z.string().optional(),
    StartTime: z.string().optional(),
    EndTime: z.string().optional(),
  }),
});

/** Every event the orchestrator acts on. */
export const OrchestratorEventSchema = z.union([
  StartEventSchema,
  StopEventSchema,
  TerminatingEventSchema,
  TerminatedEventSchema,
  LaunchedEventSchema,
  LaunchFailedEventSchema,
]);

export type StartEvent = z.infer<typeof StartEventSchema>;
export type StopEvent = z.infer<typeof StopEventSchema>;
export type TerminatingEvent = z.infer<typeof TerminatingEventSchema>;
export type TerminatedEvent = z.infer<typeof TerminatedEventSchema>;
export type LaunchedEvent = z.infer<typeof LaunchedEventSchema>;
export type LaunchFailedEvent = z.infer<typeof LaunchFailedEventSchema>;
export type OrchestratorEvent = z.infer<typeof OrchestratorEventSchema>;

/** The detail-types the orchestrator knows: one of them that fails the schema is a mistake. */
export const KNOWN_DETAIL_TYPES = [
  'Scheduled Event',
  'EC2 Instance-terminate Lifecycle Action',
  'EC2 Instance Terminate Successful',
  'EC2 Instance Launch Successful',
  'EC2 Instance Launch Unsuccessful',
] as const;

/**
 * The input template of an EventBridge target that delivers a Scheduled Event (the rule's own
 * id, time, account, region and resources) with `detail` as given. The input paths map these
 * names; see `SCHEDULED_INPUT_PATHS`.
 */
export function scheduledInputTemplate(detail: Record<string, unknown>): string {
  return (
    '{"version":"0","id":<id>,"detail-type":"Scheduled Event","source":"aws.events",' +
    '"account":<account>,"time":<time>,"region":<region>,"resources":<resources>,' +
    `"detail":${JSON.stringify(detail)}}`
  );
}

export const SCHEDULED_INPUT_PATHS = {
  id: '$.id',
  account: '$.account',
  time: '$.time',
  region: '$.region',
  resources: '$.resources',
} as const;

/**
 * A CloudFormation custom resource request (the stack's `StopRuleCleanup`): when the stack is
 * deleted, the orchestrator removes the one-time stop rules it made, which CloudFormation does
 * not know about. The answer goes to `ResponseURL` (a presigned S3 URL).
 */
export const StackEventSchema = z.object({
  RequestType: z.enum(['Create', 'Update', 'Delete']),
  ResponseURL: z.url(),
  StackId: z.string().min(1),
  RequestId: z.string().min(1),
  LogicalResourceId: z.string().min(1),
  PhysicalResourceId: z.string().optional(),
  ResourceType: z.string(),
});
export type StackEvent = z.infer<typeof StackEventSchema>;

/** What the stack's custom resource is called (its `ResourceType`). */
export const STOP_RULE_CLEANUP_TYPE = 'Custom::StopRuleCleanup';

/**
 * A CloudWatch alarm's Lambda action (the staleness alarm of the stack, which invokes the
 * orchestrator directly: an alarm cannot publish to a topic encrypted with the AWS-managed SNS
 * key). Only what the orchestrator reads is checked; the payload carries more.
 */
export const AlarmEventSchema = z.object({
  source: z.literal('aws.cloudwatch'),
  alarmArn: z.string().min(1),
  time: z.string().min(1),
  alarmData: z.object({
    alarmName: z.string().min(1),
    state: z.object({
      value: z.enum(['OK', 'ALARM', 'INSUFFICIENT_DATA']),
      reason: z.string().default(''),
      timestamp: z.string().optional(),
    }),
  }),
});
export type AlarmEvent = z.infer<typeof AlarmEventSchema>;
