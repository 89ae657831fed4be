/**
 * The orchestrator (DESIGN.md, "On AWS"): EventBridge invokes it for the schedule's start, the
 * run's one-time stop, the Auto Scaling group's launches, its termination lifecycle action and
 * the end of the worker's instance; CloudFormation, for the stack's deletion. Each step is
 * idempotent, so a redelivered event does no harm. Every run ends closed and told, whatever
 * fails:
 *
 *   start          → Running record, desired capacity WORKERS (1: the original workflow),
 *                    one-time stop rule (window end − 15 min); stop rules of closed runs left
 *                    behind are removed
 *   launched       → the instance is paired with the run waiting for it (up to its Workers)
 *   launch failed  → the cause recorded; after LAUNCH_FAILURE_LIMIT failures, with no instance
 *                    launched for it still coming, the run is closed Failed, notified, and the
 *                    group set to 0
 *   stop           → desired capacity 0; a run no worker took is closed Failed with the Auto
 *                    Scaling group's cause
 *   terminating    → SSM Run Command to that instance: its worker stops gracefully, then
 *                    completes its own action (each of the group's instances has its own)
 *   terminated     → the instance's worker counted gone; its run closed once its last worker's
 *                    instance is gone (once: a conditional write): notified per status, metrics
 *                    logged, stop rule removed; a run waiting for a worker is closed only once
 *                    every instance launched for it is gone, or its stop time has passed (a run
 *                    that starts while the previous instance terminates is not taken for the
 *                    dead one's)
 *   stack deletion → every stop rule of the stack removed
 */
import {
  DescribeScalingActivitiesCommand,
  SetDesiredCapacityCommand,
  type AutoScalingClient,
} from '@aws-sdk/client-auto-scaling';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  DeleteRuleCommand,
  ListRulesCommand,
  PutRuleCommand,
  PutTargetsCommand,
  RemoveTargetsCommand,
  ResourceNotFoundException,
  type EventBridgeClient,
} from '@aws-sdk/client-eventbridge';
import type { SNSClient } from '@aws-sdk/client-sns';
import { SendCommandCommand, type SSMClient } from '@aws-sdk/client-ssm';
import {
  composeNotice,
  newRunRecord,
  shouldNotify,
  type RunRecord,
  type ServiceLog,
  type WorkerFigure,
} from '@efs-backup/service';
import path from 'node:path';
import * as z from 'zod';
import {
  attributesOf,
  DynamoDbRecordStore,
  isWorkerOf,
  recordOf,
} from './dynamodb-record-store.js';
import {
  KNOWN_DETAIL_TYPES,
  OrchestratorEventSchema,
  SCHEDULED_INPUT_PATHS,
  scheduledInputTemplate,
  StackEventSchema,
  AlarmEventSchema,
  type AlarmEvent,
  STOP_MARGIN_MINUTES,
  type LaunchedEvent,
  type LaunchFailedEvent,
  type StackEvent,
  type StartEvent,
  type StopEvent,
  type TerminatedEvent,
  type TerminatingEvent,
} from './events.js';
import { errorText, jsonLog } from './json-log.js';
import { metricsLine } from './metrics.js';
import type { RunItem } from './run-item.js';
import { SnsNotifier } from './sns-notifier.js';
import {
  MIN_MINUTES_BEFORE_STOP,
  SSM_OUTPUT_PREFIX,
  STOP_TARGET_ID,
  type OrchestratorSettings,
} from './orchestrator-settings.js';
import { stopCommands } from './stop-command.js';

export interface OrchestratorClients {
  dynamodb: DynamoDBClient;
  autoScaling: AutoScalingClient;
  ssm: SSMClient;
  events: EventBridgeClient;
  sns: SNSClient;
}

export interface OrchestratorOptions {
  /** @default JSON lines on standard output */
  log?: ServiceLog;
  /** Where the embedded-metric-format lines go. @default standard output */
  metrics?: (line: string) => void;
}

export type OrchestratorResult =
  | {
      event: 'start';
      action: 'started' | 'duplicate' | 'skipped';
      backupId: string;
      stopRule?: string;
      stopAt?: string;
    }
  | {
      event: 'stop';
      action: 'stopped' | 'ignored' | 'closed';
      backupId: string;
      reason?: string;
    }
  | { event: 'launched'; action: 'paired' | 'ignored'; instanceId: string; backupId: string | null }
  | {
      event: 'launch-failed';
      action: 'recorded' | 'closed' | 'ignored';
      runs: { backupId: string; failures: number; closed: boolean }[];
      cause: string;
    }
  | {
      event: 'terminating';
      action: 'stop-sent';
      instanceId: string;
      reason: 'window' | 'shutdown';
      commandId: string | null;
    }
  | {
      event: 'terminated';
      action: 'closed';
      instanceId: string;
      runs: { backupId: string; status: string; notified: boolean }[];
      /** Runs of several workers this instance was one of, whose other workers go on. */
      going?: { backupId: string; workers: number }[];
    }
  | { event: 'stack'; action: 'created' | 'updated' | 'deleted'; rulesRemoved: number }
  | { event: 'alarm'; action: 'notified' | 'ignored'; alarm: string; state: string }
  | { event: 'ignored'; reason: string };

/** A close claimed longer ago than the orchestrator may run (its timeout, 1 min) was cut short. */
const CLOSE_CLAIM_MS = 2 * 60_000;

/** Open runs' stop rules are kept this long past their stop time at most (then they are stale). */
const STALE_RULE_MS = 24 * 3600_000;

/** EventBridge's one-time cron for a moment (UTC, to the minute). */
export function oneTimeCron(at: Date): string {
  return `cron(${at.getUTCMinutes()} ${at.getUTCHours()} ${at.getUTCDate()} ${at.getUTCMonth() + 1} ? ${at.getUTCFullYear()})`;
}

/** Rounds up to the next whole minute (EventBridge fires on minutes). */
function ceilMinute(d: Date): Date {
  const ms = Math.ceil(d.getTime() / 60_000) * 60_000;
  return new Date(ms);
}

export class Orchestrator {
  readonly store: DynamoDbRecordStore;
  private readonly notifier: SnsNotifier;
  private readonly log: ServiceLog;
  private readonly metrics: (line: string) => void;

  constructor(
    readonly settings: OrchestratorSettings,
    private readonly clients: OrchestratorClients,
    o: OrchestratorOptions = {},
  ) {
    this.store = new DynamoDbRecordStore({
      tableName: settings.TABLE_NAME,
      client: clients.dynamodb,
    });
    this.notifier = new SnsNotifier({ topicArn: settings.TOPIC_ARN, client: clients.sns });
    this.log = o.log ?? jsonLog();
    this.metrics = o.metrics ?? ((line) => console.log(line));
  }

  /** Validates the event and acts on it; `functionArn` is the orchestrator's own (the stop's target). */
  async handle(event: unknown, functionArn: string): Promise<OrchestratorResult> {
    const stack = StackEventSchema.safeParse(event);
    if (stack.success) return this.stackEvent(stack.data);
    const alarm = AlarmEventSchema.safeParse(event);
    if (alarm.success) return this.alarm(alarm.data);
    const parsed = OrchestratorEventSchema.safeParse(event);
    if (!parsed.success) return this.ignore(event, parsed.error);
    const e = parsed.data;
    switch (e['detail-type']) {
      case 'Scheduled Event':
        return e.detail.action === 'start'
          ? this.start(e as StartEvent, functionArn)
          : this.stop(e as StopEvent);
      case 'EC2 Instance-terminate Lifecycle Action':
        return this.ownGroup(e) ?? this.terminating(e);
      case 'EC2 Instance Terminate Successful':
        return this.ownGroup(e) ?? this.terminated(e);
      case 'EC2 Instance Launch Successful':
        return this.ownGroup(e) ?? this.launched(e);
      case 'EC2 Instance Launch Unsuccessful':
        return this.ownGroup(e) ?? this.launchFailed(e);
    }
  }

  private ignore(event: unknown, error: z.ZodError): OrchestratorResult {
    const o = (typeof event === 'object' && event !== null ? event : {}) as Record<string, unknown>;
    const type = typeof o['detail-type'] === 'string' ? o['detail-type'] : null;
    const known = type !== null && (KNOWN_DETAIL_TYPES as readonly string[]).includes(type);
    if (known && !(type === 'Scheduled Event' && isEmptyDetail(o.detail))) {
      // One of ours, but malformed: said loudly, never retried.
      this.log.error(
        { event, issues: z.prettifyError(error) },
        `ignored a malformed ${type} event`,
      );
      return { event: 'ignored', reason: `malformed ${type}: ${z.prettifyError(error)}` };
    }
    this.log.info({ event }, 'ignored an event the orchestrator does not handle');
    return { event: 'ignored', reason: `not an orchestrator event (${type ?? 'no detail-type'})` };
  }

  private ownGroup(e: { detail: { AutoScalingGroupName: string } }): OrchestratorResult | null {
    if (e.detail.AutoScalingGroupName === this.settings.AUTO_SCALING_GROUP_NAME) return null;
    this.log.info(
      { group: e.detail.AutoScalingGroupName },
      'ignored an event of another Auto Scaling group',
    );
    return {
      event: 'ignored',
      reason: `another Auto Scaling group: ${e.detail.AutoScalingGroupName}`,
    };
  }

  private mountPath(fileSystemId: string): string {
    return path.posix.join(this.settings.MOUNT_ROOT, fileSystemId);
  }

  private stopRuleName(backupId: string): string {
    // EventBridge rule names: at most 64 of [.-_A-Za-z0-9].
    return `${this.settings.STOP_RULE_PREFIX}${backupId.replace(/[^A-Za-z0-9._-]/g, '')}`.slice(
      0,
      64,
    );
  }

  // ---- start ---------------------------------------------------------------------------------

  private async start(e: StartEvent, functionArn: string): Promise<OrchestratorResult> {
    const s = this.settings;
    const job = e.detail;
    // The event's id is the run's: a redelivered start finds its own record.
    const backupId = e.id;
    const time = new Date(e.time);
    const stopAt = ceilMinute(
      new Date(time.getTime() + (job.windowMinutes - STOP_MARGIN_MINUTES) * 60_000),
    );
    const stopRule = this.stopRuleName(backupId);

    let item = await this.store.getItem(backupId);
    if (item && item.Status !== 'Running') {
      this.log.info(
        { BackupId: backupId, Status: item.Status },
        'start redelivered: the run has ended',
      );
      return { event: 'start', action: 'duplicate', backupId };
    }
    if (!item) {
      const live = (await this.store.listItems({ Status: 'Running' })).find(
        (r) => r.BackupId !== backupId && isLive(r, time),
      );
      const record = newRunRecord({
        id: backupId,
        label: job.label,
        interval: job.interval,
        retain: job.retain,
        source: this.mountPath(s.SOURCE_FILE_SYSTEM_ID),
        prefix: job.prefix,
        destination: this.mountPath(s.BACKUP_FILE_SYSTEM_ID),
        windowMinutes: job.windowMinutes,
        schedule: job.schedule,
        message:
          s.WORKERS === 1
            ? `waiting for the worker: the Auto Scaling group ${s.AUTO_SCALING_GROUP_NAME} is launching an instance`
            : `waiting for the workers: the Auto Scaling group ${s.AUTO_SCALING_GROUP_NAME} is launching ${s.WORKERS} instances`,
        start: time,
        host: 'pending',
        expireDays: s.EXPIRE_DAYS,
        workers: s.WORKERS,
      });
      if (live) return this.skip(record, live, time);
      item = {
        ...record,
        NotifyOnSuccess: s.NOTIFY_ON_SUCCESS,
        ScheduledTime: time.toISOString(),
        StopAt: stopAt.toISOString(),
        StopRule: stopRule,
        WorkerState: 'launching',
        Seats: s.WORKERS,
      };
      if (!(await this.store.create(item))) {
        this.log.info({ BackupId: backupId }, 'start redelivered: the record was written already');
      }
    }

    // Each call is idempotent: a redelivered start finishes what an earlier attempt began.
    await this.setDesiredCapacity(item.Workers ?? s.WORKERS);
    const stack = s.STACK_NAME ? ` (${s.STACK_NAME})` : '';
    await this.clients.events.send(
      new PutRuleCommand({
        Name: stopRule,
        ScheduleExpression: oneTimeCron(stopAt),
        State: 'ENABLED',
        Description:
          `efs-backup${stack}: stops the run ${backupId} (${job.label}/${job.interval}) ${STOP_MARGIN_MINUTES} minutes before its window ends`.slice(
            0,
            512,
          ),
      }),
    );
    await this.clients.events.send(
      new PutTargetsCommand({
        Rule: stopRule,
        Targets: [
          {
            Id: STOP_TARGET_ID,
            Arn: functionArn,
            InputTransformer: {
              InputPathsMap: { ...SCHEDULED_INPUT_PATHS },
              InputTemplate: scheduledInputTemplate({ action: 'stop', backupId }),
            },
          },
        ],
      }),
    );
    this.log.info(
      { BackupId: backupId, stopRule, stopAt: stopAt.toISOString(), job },
      item.Workers > 1
        ? 'run started: the workers are launching'
        : 'run started: the worker is launching',
    );
    await this.tidyStopRules(time);
    return { event: 'start', action: 'started', backupId, stopRule, stopAt: stopAt.toISOString() };
  }

  /** A start while an earlier run's window is still open: recorded Skipped and notified. */
  private async skip(record: RunRecord, live: RunItem, time: Date): Promise<OrchestratorResult> {
    const skipped: RunItem = {
      ...record,
      Status: 'Skipped',
      Message: `the run ${live.BackupId}, started at ${live.StartTime}, is still going (it stops by ${live.StopAt ?? 'its window end'})`,
      StopTime: time.toISOString(),
      Host: live.Host,
      ScheduledTime: time.toISOString(),
      WorkerState: 'done',
    };
    if (await this.store.create(skipped)) {
      await this.notifyOnce(skipped);
      await this.store.update(skipped.BackupId, { Closed: time.toISOString() });
    }
    this.log.warn({ BackupId: record.BackupId, running: live.BackupId }, 'run skipped');
    return { event: 'start', action: 'skipped', backupId: record.BackupId };
  }

  /**
   * Removes the stop rules that outlived their runs (a close that could not delete its rule):
   * EventBridge allows 300 rules per bus. A failure here never fails the start.
   */
  private async tidyStopRules(now: Date): Promise<void> {
    try {
      const rules = await this.listStopRules();
      if (!rules.length) return;
      const kept = new Set(
        (await this.store.listItems())
          .filter(
            (r) =>
              r.StopRule &&
              !r.Closed &&
              !(r.StopAt && Date.parse(r.StopAt) < now.getTime() - STALE_RULE_MS),
          )
          .map((r) => r.StopRule),
      );
      const stale = rules.filter((r) => !kept.has(r));
      for (const rule of stale) await this.removeStopRule(rule);
      if (stale.length) this.log.info({ rules: stale }, 'removed stop rules left behind');
    } catch (e) {
      this.log.warn({ err: errorText(e) }, 'cannot tidy the stop rules left behind');
    }
  }

  // ---- launches ------------------------------------------------------------------------------

  /** The group launched an instance: the run waiting for a worker is paired with it. */
  private async launched(e: LaunchedEvent): Promise<OrchestratorResult> {
    const instanceId = e.detail.EC2InstanceId;
    const time = Date.parse(e.time);
    const run = (await this.waiting(time)).find(
      (r) => (r.LaunchedInstances?.size ?? (r.LaunchedInstance ? 1 : 0)) < r.Workers,
    );
    const paired = !!run && (await this.store.pairLaunch(run.BackupId, instanceId, run.Workers));
    this.log.info(
      { instanceId, BackupId: run?.BackupId ?? null, paired },
      paired ? 'an instance launched for the run' : 'an instance launched; no run waits for it',
    );
    return {
      event: 'launched',
      action: paired ? 'paired' : 'ignored',
      instanceId,
      backupId: paired ? run.BackupId : null,
    };
  }

  /**
   * The group could not launch an instance: the cause is recorded on the waiting run. Auto
   * Scaling tries again (another Availability Zone, a moment later); after LAUNCH_FAILURE_LIMIT
   * failures the run is closed Failed with the cause, and the group goes back to 0.
   */
  private async launchFailed(e: LaunchFailedEvent): Promise<OrchestratorResult> {
    const d = e.detail;
    const cause = (d.StatusMessage || d.Description || d.Cause || 'Auto Scaling gave no reason')
      .replace(/\s+/g, ' ')
      .trim();
    const time = new Date(e.time);
    const limit = this.settings.LAUNCH_FAILURE_LIMIT;
    const runs: { backupId: string; failures: number; closed: boolean }[] = [];
    for (const waiting of await this.waiting(time.getTime())) {
      const counted = await this.countLaunchFailure(waiting, cause, d.ActivityId);
      if (!counted) continue;
      const { run, failures } = counted;
      let closed = false;
      // An instance launched for the run may still start a worker: its end closes the run if not.
      if (failures >= limit && !run.LaunchedInstances?.size) {
        closed = !!(await this.closeUnclaimed(
          { ...run, LaunchFailures: failures, LaunchError: cause },
          time,
          `the Auto Scaling group ${this.settings.AUTO_SCALING_GROUP_NAME} could not launch the worker (${failures} ${failures === 1 ? 'try' : 'tries'}): ${cause}`,
          undefined,
          { LaunchedInstances: null },
        ));
        // Only once the run is closed: a worker that took it meanwhile keeps its instance.
        if (closed) await this.setDesiredCapacity(0);
      }
      runs.push({ backupId: run.BackupId, failures, closed });
    }
    this.log.warn({ runs, cause }, 'the Auto Scaling group could not launch the worker');
    return {
      event: 'launch-failed',
      action: runs.some((r) => r.closed) ? 'closed' : runs.length ? 'recorded' : 'ignored',
      runs,
      cause,
    };
  }

  /**
   * Adds a launch failure to a waiting run (once per Auto Scaling activity), conditionally on
   * the count it read: failures reported at once are all counted. Null once a worker took it.
   */
  private async countLaunchFailure(
    waiting: RunItem,
    cause: string,
    activity: string | undefined,
  ): Promise<{ run: RunItem; failures: number } | null> {
    let run: RunItem | null = waiting;
    for (let attempt = 0; run && isUnclaimed(run) && attempt < 10; attempt++) {
      const counted = !!activity && run.LaunchActivity === activity;
      const failures = (run.LaunchFailures ?? 0) + (counted ? 0 : 1);
      const written = await this.store.update(
        run.BackupId,
        {
          LaunchFailures: failures,
          LaunchError: cause,
          ...(activity ? { LaunchActivity: activity } : {}),
        },
        {
          WorkerState: 'launching',
          WorkerInstance: null,
          LaunchFailures: run.LaunchFailures ?? null,
        },
      );
      if (written) return { run, failures };
      run = await this.store.getItem(run.BackupId);
    }
    return null;
  }

  /** Running runs no worker has claimed, started by `time`, newest first. */
  private async waiting(time: number): Promise<RunItem[]> {
    return (await this.store.listItems({ Status: 'Running', WorkerState: 'launching' })).filter(
      (r) => !r.WorkerInstance && Date.parse(r.StartTime) <= time,
    );
  }

  // ---- stop ----------------------------------------------------------------------------------

  private async stop(e: StopEvent): Promise<OrchestratorResult> {
    const backupId = e.detail.backupId;
    const item = await this.store.getItem(backupId);
    const time = new Date(e.time);
    if (item) {
      const started = Date.parse(item.ScheduledTime ?? item.StartTime);
      if (time.getTime() - started < MIN_MINUTES_BEFORE_STOP * 60_000) {
        const reason = `the stop came ${Math.round((time.getTime() - started) / 1000)} s after the run's start (less than ${MIN_MINUTES_BEFORE_STOP} minutes)`;
        this.log.warn({ BackupId: backupId }, `stop ignored: ${reason}`);
        return { event: 'stop', action: 'ignored', backupId, reason };
      }
      if (item.Status !== 'Running') {
        // The run ended early and its stop rule outlived it: a newer run must not be stopped.
        const reason = `the run has ended (${item.Status})`;
        this.log.info({ BackupId: backupId }, `stop ignored: ${reason}`);
        if (item.StopRule) await this.removeStopRule(item.StopRule);
        return { event: 'stop', action: 'ignored', backupId, reason };
      }
    }
    await this.setDesiredCapacity(0);
    if (item && isUnclaimed(item)) {
      // No worker ever took the run: no instance will report it, so it is closed here.
      const message = `no worker took the run before its stop time: ${await this.launchCause(item)}`;
      if (await this.closeUnclaimed(item, time, message)) {
        this.log.warn({ BackupId: backupId }, message);
        return { event: 'stop', action: 'closed', backupId, reason: message };
      }
    }
    this.log.info({ BackupId: backupId }, 'window ending: the worker is being stopped');
    return { event: 'stop', action: 'stopped', backupId };
  }

  /**
   * Why no worker took a run, in Auto Scaling's words: the newest failed launch since the run's
   * start (DescribeScalingActivities' StatusMessage or Description), or the cause a launch
   * failure event recorded, or the group's last activity.
   */
  private async launchCause(item: RunItem): Promise<string> {
    const group = this.settings.AUTO_SCALING_GROUP_NAME;
    const recorded = item.LaunchError
      ? `the Auto Scaling group ${group} could not launch the worker${item.LaunchFailures ? ` (${item.LaunchFailures} ${item.LaunchFailures === 1 ? 'try' : 'tries'})` : ''}: ${item.LaunchError}`
      : null;
    try {
      const r = await this.clients.autoScaling.send(
        new DescribeScalingActivitiesCommand({ AutoScalingGroupName: group, MaxRecords: 20 }),
      );
      const since = Date.parse(item.StartTime) - 60_000;
      const activities = (r.Activities ?? []).filter(
        (a) => !a.StartTime || a.StartTime.getTime() >= since,
      );
      const failed = activities.find(
        (a) => a.StatusCode === 'Failed' || a.StatusCode === 'Cancelled',
      );
      if (failed) {
        const why = (failed.StatusMessage || failed.Description || failed.StatusCode!)
          .replace(/\s+/g, ' ')
          .trim();
        return `the Auto Scaling group ${group} could not launch the worker: ${why}`;
      }
      if (recorded) return recorded;
      const last = activities[0];
      if (last)
        return `the Auto Scaling group ${group}'s last activity: ${last.Description ?? 'no description'} (${last.StatusCode ?? 'no status'}${last.StatusMessage ? `: ${last.StatusMessage}` : ''}); a worker that launched but never started leaves its reason in the instance's console output`;
      return `the Auto Scaling group ${group} started no instance since the run's start (is its maximum capacity 0, or its launch template gone?)`;
    } catch (e) {
      return (
        recorded ??
        `the Auto Scaling group ${group}'s activities could not be read (${errorText(e)}); see them in the console`
      );
    }
  }

  // ---- terminating lifecycle action ---------------------------------------------------------

  private async terminating(e: TerminatingEvent): Promise<OrchestratorResult> {
    const instanceId = e.detail.EC2InstanceId;
    const runs = (await this.store.listItems()).filter((r) => isWorkerOf(r, instanceId));
    const time = Date.parse(e.time);
    // Stopped by the stop rule (its window) or by anything else (a scale-in, a replacement).
    const reason = runs.some((r) => r.StopAt && Date.parse(r.StopAt) - 60_000 <= time)
      ? 'window'
      : 'shutdown';
    const bucket = this.settings.LOG_BUCKET;
    const keyPrefix = SSM_OUTPUT_PREFIX.replace(/\/$/, '');
    const r = await this.clients.ssm.send(
      new SendCommandCommand({
        DocumentName: 'AWS-RunShellScript',
        InstanceIds: [instanceId],
        Comment: 'efs-backup: stop the backup worker gracefully',
        Parameters: {
          commands: stopCommands(this.settings.RUN_DIR, reason),
          executionTimeout: ['60'],
        },
        TimeoutSeconds: 600,
        // The agent writes the command's output there, as the original solution kept it.
        ...(bucket ? { OutputS3BucketName: bucket, OutputS3KeyPrefix: keyPrefix } : {}),
      }),
    );
    const commandId = r.Command?.CommandId ?? null;
    if (commandId) {
      for (const run of runs.filter((x) => !x.Closed)) {
        await this.store.update(run.BackupId, {
          StopCommandId: commandId,
          ...(bucket
            ? { StopCommandOutput: `s3://${bucket}/${keyPrefix}/${commandId}/${instanceId}/` }
            : {}),
        });
      }
    }
    this.log.info({ instanceId, reason, commandId }, 'the worker was told to stop');
    return { event: 'terminating', action: 'stop-sent', instanceId, reason, commandId };
  }

  // ---- instance terminated -------------------------------------------------------------------

  private async terminated(e: TerminatedEvent): Promise<OrchestratorResult> {
    const instanceId = e.detail.EC2InstanceId;
    const time = new Date(e.time);
    const t = time.getTime();
    const items = (await this.store.listItems()).filter(
      (r) =>
        !r.Closed &&
        (isWorkerOf(r, instanceId) ||
          // A run no worker claimed: its own instance died before the worker started, or its
          // stop time passed. A run that merely started before this event is a newer one's,
          // waiting for its own instance.
          (isUnclaimed(r) &&
            Date.parse(r.StartTime) <= t &&
            (launchedFor(r, instanceId) || stopTimePassed(r, t)))),
    );
    const runs: { backupId: string; status: string; notified: boolean }[] = [];
    const going: { backupId: string; workers: number }[] = [];
    for (let item of items) {
      if (!isWorkerOf(item, instanceId)) {
        const launched = launchedFor(item, instanceId);
        if (launched) {
          // Several instances were launched for it: the others may still start a worker.
          const after =
            (await this.store.launchGone(item.BackupId, instanceId)) ??
            (await this.store.getItem(item.BackupId));
          if (after?.LaunchedInstances?.size) continue;
        }
        const cause = launched
          ? `its instance ${instanceId} ended before the worker started: the instance could not set the worker up (it sent a notice saying why) or was terminated${e.detail.Cause ? ` (Auto Scaling: ${e.detail.Cause.replace(/\s+/g, ' ').trim()})` : ''}`
          : await this.launchCause(item);
        const message = `no worker took the run: ${cause}`;
        const closed = await this.closeUnclaimed(item, time, message, instanceId);
        if (closed) runs.push({ backupId: item.BackupId, status: 'Failed', ...closed });
        continue;
      }
      const after = await this.store.workerGone(item.BackupId, instanceId);
      if (!after) continue;
      const left = workersLeft(after, instanceId);
      if (left.length) {
        // Not its last worker: the others go on, and the last one's end closes the run.
        going.push({ backupId: item.BackupId, workers: left.length });
        continue;
      }
      if (!(await this.claimClose(after))) continue;
      item = after;
      if (item.Status === 'Running') {
        item = { ...item, ...this.endOf(item, instanceId, time) };
        await this.store.put(recordOf(item));
      }
      const notified = await this.finish(item, time);
      runs.push({ backupId: item.BackupId, status: item.Status, notified });
    }
    this.log.info(
      { instanceId, runs, going },
      going.length && !runs.length
        ? 'a worker is gone: its run goes on with the others'
        : 'the worker is gone: runs closed',
    );
    return {
      event: 'terminated',
      action: 'closed',
      instanceId,
      runs,
      ...(going.length ? { going } : {}),
    };
  }

  /**
   * The last worker's instance of a run is gone: the run is closed by one invocation only (two
   * instances that end at once, or one event delivered twice, cannot both close it; a worker
   * that joins meanwhile keeps it open). A claim older than an invocation may live is one whose
   * invocation ended before it closed the run: it is taken over (the event's retry finishes it).
   */
  private async claimClose(item: RunItem): Promise<boolean> {
    const now = new Date().toISOString();
    if (
      await this.store.update(
        item.BackupId,
        { Closing: now },
        { Closing: null, Seats: item.Seats ?? null },
      )
    )
      return true;
    const current = await this.store.getItem(item.BackupId);
    if (!current?.Closing || current.Closed) return false;
    if (Date.parse(current.Closing) > Date.now() - CLOSE_CLAIM_MS) return false;
    return this.store.update(item.BackupId, { Closing: now }, { Closing: current.Closing });
  }

  /**
   * The end of a run no worker reported: with several workers, the ends they kept, as one (see
   * `workersEnd`); else Unknown.
   */
  private endOf(item: RunItem, instanceId: string, time: Date): Partial<RunItem> {
    const ended = workersEnd(Object.values(item.WorkerEnds ?? {}), item.WorkerInstances);
    if (ended) return recordOf({ ...item, ...ended, BackupId: item.BackupId });
    const workers = [...(item.WorkerInstances ?? [instanceId])];
    return {
      Status: 'Unknown',
      Message:
        workers.length > 1
          ? `the workers (instances ${workers.join(', ')}) ended before any of them reported the run's end: they were stopped or failed before they could write their figures (see the Auto Scaling group's activity and the instances' console output); the next run continues from the partial snapshot, if any`
          : `the worker (instance ${instanceId}) ended before it reported the run's end: it was stopped or failed before it could write its figures (see the Auto Scaling group's activity and the instance's console output); the next run continues from the partial snapshot, if any`,
      StopTime: time.toISOString(),
      Host: item.Host === 'pending' ? instanceId : item.Host,
    };
  }

  // ---- the stack's custom resource ------------------------------------------------------------

  /**
   * CloudFormation's request: on the stack's deletion, every stop rule of the stack goes (they
   * are not the stack's resources, and would outlive it). The answer is always SUCCESS, so a
   * rule that cannot be removed does not hold the deletion; it is logged.
   */
  // ---- the staleness alarm ------------------------------------------------------------------

  /**
   * The staleness alarm went off (no successful run for STALE_AFTER_HOURS): a notice through
   * the topic, with the newest successful run the records know. Its return to OK is only logged.
   */
  private async alarm(e: AlarmEvent): Promise<OrchestratorResult> {
    const s = this.settings;
    const state = e.alarmData.state.value;
    const alarm = e.alarmData.alarmName;
    if (state !== 'ALARM') {
      this.log.info({ alarm, state }, `the alarm ${alarm} is ${state}: nothing to tell`);
      return { event: 'alarm', action: 'ignored', alarm, state };
    }
    const hours = s.STALE_AFTER_HOURS;
    const what = `${s.LABEL ?? 'the backup'} of ${s.SOURCE_FILE_SYSTEM_ID}`;
    let last: string;
    try {
      const succeeded = [
        ...(await this.store.listItems({ Status: 'Success' })),
        ...(await this.store.listItems({ Status: 'SuccessWithWarnings' })),
      ].sort((a, b) => (a.StartTime < b.StartTime ? 1 : -1));
      const newest = succeeded[0];
      last = newest
        ? `The newest successful run the records hold started ${newest.StartTime} (${newest.BackupId}, ${newest.Status}).`
        : 'The records hold no successful run.';
    } catch (err) {
      last = `The records could not be read: ${errorText(err)}.`;
    }
    const subject = `[efs-backup] Stale: no successful backup of ${s.SOURCE_FILE_SYSTEM_ID} for ${hours ?? 'too many'} hours`;
    const body = [
      `No backup of ${what} has succeeded for ${hours !== undefined ? `${hours} hours` : 'longer than the alarm allows'}.`,
      last,
      'Look at the schedule rule (is it enabled?), the stack (an update gone wrong?), and the records and notices of the last runs.',
      '',
      `Alarm: ${alarm} (${e.alarmArn})`,
      `Since: ${e.alarmData.state.timestamp ?? e.time}`,
      `Reason: ${e.alarmData.state.reason}`,
    ].join('\n');
    await this.notifier.publish(subject, body, 'Stale');
    this.log.warn({ alarm, hours }, 'no successful backup for too long: notified');
    return { event: 'alarm', action: 'notified', alarm, state };
  }

  private async stackEvent(e: StackEvent): Promise<OrchestratorResult> {
    let removed = 0;
    let reason: string | undefined;
    if (e.RequestType === 'Delete') {
      try {
        for (const rule of await this.listStopRules()) {
          await this.removeStopRule(rule);
          removed++;
        }
      } catch (err) {
        reason = `removed ${removed} stop rules, then: ${errorText(err)}`;
        this.log.error({ err: errorText(err) }, 'cannot remove every stop rule of the stack');
      }
    }
    const body = JSON.stringify({
      Status: 'SUCCESS',
      ...(reason ? { Reason: reason } : {}),
      PhysicalResourceId: e.PhysicalResourceId ?? `${this.settings.STOP_RULE_PREFIX}rules`,
      StackId: e.StackId,
      RequestId: e.RequestId,
      LogicalResourceId: e.LogicalResourceId,
      Data: { RulesRemoved: String(removed) },
    });
    // A presigned S3 URL: no content type (a signed one would have to match).
    const res = await fetch(e.ResponseURL, { method: 'PUT', body: Buffer.from(body) });
    if (!res.ok)
      throw new Error(`CloudFormation's response URL answered ${res.status}: ${await res.text()}`);
    this.log.info({ request: e.RequestType, removed }, 'answered CloudFormation');
    const action = ({ Create: 'created', Update: 'updated', Delete: 'deleted' } as const)[
      e.RequestType
    ];
    return { event: 'stack', action, rulesRemoved: removed };
  }

  // ---- closing runs --------------------------------------------------------------------------

  /**
   * Closes a run no worker claimed, Failed with `message`: only if it is still unclaimed (a
   * worker that takes it meanwhile wins). Null when it was not this call that closed it.
   */
  private async closeUnclaimed(
    item: RunItem,
    time: Date,
    message: string,
    host?: string,
    when: Partial<Record<keyof RunItem, string | null>> = {},
  ): Promise<{ notified: boolean } | null> {
    const failed = {
      Status: 'Failed' as const,
      Message: message,
      StopTime: time.toISOString(),
      Host: item.Host === 'pending' && host ? host : item.Host,
      WorkerState: 'done' as const,
    };
    const closed = await this.store.update(item.BackupId, failed, {
      WorkerState: 'launching',
      WorkerInstance: null,
      ...when,
    });
    return closed ? { notified: await this.finish({ ...item, ...failed }, time) } : null;
  }

  /** The end of a run: notified once, its metrics logged, its stop rule removed, closed. */
  private async finish(item: RunItem, time: Date): Promise<boolean> {
    const notified = await this.notifyOnce(item);
    this.metrics(
      metricsLine(recordOf(item), this.settings.SOURCE_FILE_SYSTEM_ID, time, attributesOf(item)),
    );
    if (item.StopRule) {
      try {
        await this.removeStopRule(item.StopRule);
      } catch (e) {
        // The run is closed all the same: a later start removes the rule it left behind.
        this.log.warn(
          { BackupId: item.BackupId, rule: item.StopRule, err: errorText(e) },
          'cannot remove the stop rule yet',
        );
      }
    }
    await this.store.update(item.BackupId, { Closed: time.toISOString(), WorkerState: 'done' });
    return notified;
  }

  /** Notifies a run's end once, if its status calls for a notice; true when it sent one now. */
  private async notifyOnce(item: RunItem): Promise<boolean> {
    if (item.Notified) return false;
    if (!shouldNotify(item.Status, item.NotifyOnSuccess ?? this.settings.NOTIFY_ON_SUCCESS))
      return false;
    await this.notifier.send(composeNotice(recordOf(item)));
    await this.store.update(item.BackupId, { Notified: new Date().toISOString() });
    return true;
  }

  private async setDesiredCapacity(capacity: number): Promise<void> {
    await this.clients.autoScaling.send(
      new SetDesiredCapacityCommand({
        AutoScalingGroupName: this.settings.AUTO_SCALING_GROUP_NAME,
        DesiredCapacity: capacity,
        HonorCooldown: false,
      }),
    );
  }

  /** The names of the stack's stop rules (every page). */
  private async listStopRules(): Promise<string[]> {
    const names: string[] = [];
    let token: string | undefined;
    do {
      const r = await this.clients.events.send(
        new ListRulesCommand({
          NamePrefix: this.settings.STOP_RULE_PREFIX,
          Limit: 100,
          ...(token ? { NextToken: token } : {}),
        }),
      );
      for (const rule of r.Rules ?? []) if (rule.Name) names.push(rule.Name);
      token = r.NextToken;
    } while (token);
    return names;
  }

  private async removeStopRule(rule: string): Promise<void> {
    try {
      await this.clients.events.send(
        new RemoveTargetsCommand({ Rule: rule, Ids: [STOP_TARGET_ID] }),
      );
    } catch (e) {
      if (!(e instanceof ResourceNotFoundException)) throw e;
    }
    try {
      await this.clients.events.send(new DeleteRuleCommand({ Name: rule }));
    } catch (e) {
      if (!(e instanceof ResourceNotFoundException)) throw e;
      this.log.info({ rule, err: errorText(e) }, 'the stop rule was gone already');
    }
  }
}

/** Whether the group launched `instanceId` for the run (before any worker claimed it). */
function launchedFor(r: RunItem, instanceId: string): boolean {
  return r.LaunchedInstances?.has(instanceId) ?? r.LaunchedInstance === instanceId;
}

/** The run's workers other than `instanceId` whose instances are not gone. */
function workersLeft(r: RunItem, instanceId: string): string[] {
  const joined = r.WorkerInstances ?? new Set(r.WorkerInstance ? [r.WorkerInstance] : []);
  return [...joined].filter((i) => i !== instanceId && !r.WorkersGone?.has(i));
}

/** Which end of a worker tells a run none reported: a committed snapshot, else a stop, else a failure. */
function endRank(r: RunRecord): number {
  if (r.Snapshot !== null) return 0;
  return r.Status === 'Incomplete' ? 1 : r.Status === 'Failed' ? 2 : 3;
}

/** The figures each worker counts of its own part: a run's are their sums. */
const SUMMED = [
  'NumberOfFiles',
  'NumberOfFilesTransferred',
  'NumberOfFilesLinked',
  'NumberOfFilesCopiedForLinkLimit',
  'NumberOfFilesRepaired',
  'NumberOfFilesChangedByChecksum',
  'TotalFileSize',
  'TotalTransferredFileSize',
  'NumberOfWarnings',
] as const satisfies readonly (keyof RunRecord)[];

/**
 * A run's end from the ends its workers kept, none of which wrote it: the status, message, host
 * and log of the most telling one (a snapshot committed, else stopped, else failed; the latest
 * among equals); the figures each counted of its own part, summed; from the first start to the
 * last stop; every worker that joined among the figures. Null without any.
 */
function workersEnd(ends: RunRecord[], joined: Set<string> | undefined): RunRecord | null {
  const told = [...ends].sort(
    (a, b) => endRank(a) - endRank(b) || (b.StopTime ?? '').localeCompare(a.StopTime ?? ''),
  )[0];
  if (!told) return null;
  const out: RunRecord = { ...told };
  for (const f of SUMMED) out[f] = ends.reduce((n, e) => n + (e[f] ?? 0), 0);
  const first = (f: 'StartTime' | 'CopyStartTime'): string | null =>
    ends
      .map((e) => e[f])
      .filter((t): t is string => !!t)
      .sort()[0] ?? told[f];
  const last = (f: 'StopTime' | 'CopyStopTime') =>
    ends
      .map((e) => e[f])
      .filter((t): t is string => !!t)
      .sort()
      .at(-1) ?? told[f];
  out.StartTime = first('StartTime') ?? told.StartTime;
  out.CopyStartTime = first('CopyStartTime');
  out.StopTime = last('StopTime');
  out.CopyStopTime = last('CopyStopTime');
  const figures = new Map<string, WorkerFigure>();
  for (const e of ends)
    for (const w of e.WorkerFigures ?? []) if (!figures.has(w.Worker)) figures.set(w.Worker, w);
  for (const id of joined ?? [])
    if (!figures.has(id))
      figures.set(id, { Worker: id, Units: 0, Entries: 0, Bytes: 0, Seconds: 0 });
  out.WorkerFigures = [...figures.values()].sort((a, b) =>
    a.Worker < b.Worker ? -1 : a.Worker > b.Worker ? 1 : 0,
  );
  return out;
}

/** A Running run no worker has claimed yet. */
function isUnclaimed(r: RunItem): boolean {
  return r.Status === 'Running' && r.WorkerState === 'launching' && !r.WorkerInstance;
}

/** Whether a run's stop time (or, lacking one, its window's end) is past at `t`. */
function stopTimePassed(r: RunItem, t: number): boolean {
  const until = r.StopAt
    ? Date.parse(r.StopAt)
    : Date.parse(r.StartTime) + (r.WindowMinutes ?? 0) * 60_000;
  return until <= t;
}

/** Whether a Running run's window is still open at `time`. */
function isLive(r: RunItem, time: Date): boolean {
  const until = r.StopAt
    ? Date.parse(r.StopAt)
    : Date.parse(r.StartTime) + (r.WindowMinutes ?? 0) * 60_000;
  return until > time.getTime();
}

function isEmptyDetail(detail: unknown): boolean {
  return typeof detail === 'object' && detail !== null && Object.keys(detail).length === 0;
}
