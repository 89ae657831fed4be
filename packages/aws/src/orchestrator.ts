/**
 * The orchestrator (DESIGN.md, "On AWS"): EventBridge invokes it for the schedule's start, the
 * run's one-time stop, the Auto Scaling group's termination lifecycle action and the end of the
 * worker's instance. Each step is idempotent, so a redelivered event does no harm.
 *
 *   start       → Running record, desired capacity 1, one-time stop rule (window end − 15 min)
 *   stop        → desired capacity 0
 *   terminating → SSM Run Command: the worker stops gracefully, then completes the action
 *   terminated  → the run closed: notified per status, metrics logged, stop rule removed
 */
import { SetDesiredCapacityCommand, type AutoScalingClient } from '@aws-sdk/client-auto-scaling';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  DeleteRuleCommand,
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
} from '@efs-backup/service';
import path from 'node:path';
import { z } from 'zod';
import { DynamoDbRecordStore, recordOf } from './dynamodb-record-store.js';
import {
  KNOWN_DETAIL_TYPES,
  OrchestratorEventSchema,
  SCHEDULED_INPUT_PATHS,
  scheduledInputTemplate,
  STOP_MARGIN_MINUTES,
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
  | { event: 'stop'; action: 'stopped' | 'ignored'; backupId: string; reason?: string }
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
    }
  | { event: 'ignored'; reason: string };

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

  private ownGroup(e: TerminatingEvent | TerminatedEvent): OrchestratorResult | null {
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
        message: `waiting for the worker: the Auto Scaling group ${s.AUTO_SCALING_GROUP_NAME} is launching an instance`,
        start: time,
        host: 'pending',
        expireDays: s.EXPIRE_DAYS,
      });
      if (live) return this.skip(record, live, time);
      item = {
        ...record,
        NotifyOnSuccess: s.NOTIFY_ON_SUCCESS,
        ScheduledTime: time.toISOString(),
        StopAt: stopAt.toISOString(),
        StopRule: stopRule,
        WorkerState: 'launching',
      };
      if (!(await this.store.create(item))) {
        this.log.info({ BackupId: backupId }, 'start redelivered: the record was written already');
      }
    }

    // Each call is idempotent: a redelivered start finishes what an earlier attempt began.
    await this.clients.autoScaling.send(
      new SetDesiredCapacityCommand({
        AutoScalingGroupName: s.AUTO_SCALING_GROUP_NAME,
        DesiredCapacity: 1,
        HonorCooldown: false,
      }),
    );
    await this.clients.events.send(
      new PutRuleCommand({
        Name: stopRule,
        ScheduleExpression: oneTimeCron(stopAt),
        State: 'ENABLED',
        Description: `efs-backup: stops the run ${backupId} (${job.label}/${job.interval}) ${STOP_MARGIN_MINUTES} minutes before its window ends`,
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
      'run started: the worker is launching',
    );
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

  // ---- stop ----------------------------------------------------------------------------------

  private async stop(e: StopEvent): Promise<OrchestratorResult> {
    const backupId = e.detail.backupId;
    const item = await this.store.getItem(backupId);
    const time = Date.parse(e.time);
    if (item) {
      const started = Date.parse(item.ScheduledTime ?? item.StartTime);
      if (time - started < MIN_MINUTES_BEFORE_STOP * 60_000) {
        const reason = `the stop came ${Math.round((time - started) / 1000)} s after the run's start (less than ${MIN_MINUTES_BEFORE_STOP} minutes)`;
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
    await this.clients.autoScaling.send(
      new SetDesiredCapacityCommand({
        AutoScalingGroupName: this.settings.AUTO_SCALING_GROUP_NAME,
        DesiredCapacity: 0,
        HonorCooldown: false,
      }),
    );
    this.log.info({ BackupId: backupId }, 'window ending: the worker is being stopped');
    return { event: 'stop', action: 'stopped', backupId };
  }

  // ---- terminating lifecycle action ---------------------------------------------------------

  private async terminating(e: TerminatingEvent): Promise<OrchestratorResult> {
    const instanceId = e.detail.EC2InstanceId;
    const runs = await this.store.listItems({ WorkerInstance: instanceId });
    const time = Date.parse(e.time);
    // Stopped by the stop rule (its window) or by anything else (a scale-in, a replacement).
    const reason = runs.some((r) => r.StopAt && Date.parse(r.StopAt) - 60_000 <= time)
      ? 'window'
      : 'shutdown';
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
      }),
    );
    const commandId = r.Command?.CommandId ?? null;
    this.log.info({ instanceId, reason, commandId }, 'the worker was told to stop');
    return { event: 'terminating', action: 'stop-sent', instanceId, reason, commandId };
  }

  // ---- instance terminated -------------------------------------------------------------------

  private async terminated(e: TerminatedEvent): Promise<OrchestratorResult> {
    const instanceId = e.detail.EC2InstanceId;
    const time = new Date(e.time);
    const items = (await this.store.listItems()).filter(
      (r) =>
        !r.Closed &&
        (r.WorkerInstance === instanceId ||
          // A run no worker ever claimed: its instance died before it could.
          (r.Status === 'Running' &&
            r.WorkerState === 'launching' &&
            !r.WorkerInstance &&
            Date.parse(r.StartTime) <= time.getTime())),
    );
    const runs: { backupId: string; status: string; notified: boolean }[] = [];
    for (let item of items) {
      if (item.Status === 'Running') {
        item = {
          ...item,
          Status: 'Unknown',
          Message: `the worker (instance ${instanceId}) ended before it reported the run's end: it was stopped or failed before it could write its figures (see the Auto Scaling group's activity and the instance's console output); the next run continues from the partial snapshot, if any`,
          StopTime: time.toISOString(),
          Host: item.Host === 'pending' ? instanceId : item.Host,
        };
        await this.store.put(recordOf(item));
      }
      const notified = await this.notifyOnce(item);
      this.metrics(metricsLine(recordOf(item), this.settings.SOURCE_FILE_SYSTEM_ID, time));
      if (item.StopRule) await this.removeStopRule(item.StopRule);
      await this.store.update(item.BackupId, { Closed: time.toISOString(), WorkerState: 'done' });
      runs.push({ backupId: item.BackupId, status: item.Status, notified });
    }
    this.log.info({ instanceId, runs }, 'the worker is gone: runs closed');
    return { event: 'terminated', action: 'closed', instanceId, runs };
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
