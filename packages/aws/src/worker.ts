/**
 * The EC2 worker agent of a backup (DESIGN.md, "On AWS"): it claims the run the orchestrator
 * recorded, mounts the source (read-only) and the backup file system, and runs the service's
 * run lifecycle with DynamoDB records, S3 logs and SNS notices. It stops gracefully when told
 * (SSM command: stop file and SIGTERM) or when the window's stop time comes. Unless it was told
 * to stop (finished early, or stopped by its stop time), it scales its group to 0 itself and
 * waits to be told; then it completes the termination lifecycle action, its record, log and
 * notice written.
 *
 * A run given several workers (scale-out): each instance joins it and runs the engine as one of
 * its workers, sharing the run's work through the lease table (scope `<label>/<interval>`).
 * The worker that commits the snapshot writes the run's end (record, notice); every other
 * worker keeps its own end on the run (WorkerEnds) and its own log (`<BackupId>.<instance>.log`),
 * for the orchestrator to close the run with when no worker committed. A worker whose part
 * ends on its own (a failure) while others go on leaves the group as it is.
 */
import { CompleteLifecycleActionCommand } from '@aws-sdk/client-auto-scaling';
import { backup, RunOver, type StartedBackup } from '@efs-backup/core';
import {
  composeNotice,
  runBackup,
  shouldNotify,
  summary,
  type JobSpec,
  type RunRecord,
  type RunStatus,
  type ServiceLog,
  type SharedRun,
  type WorkerFigure,
} from '@efs-backup/service';
import os from 'node:os';
import { CreditWatch } from './credit-watch.js';
import { DynamoDbLeaseStore } from './dynamodb-lease-store.js';
import { DynamoDbRecordStore, isWorkerOf, recordOf } from './dynamodb-record-store.js';
import { endFigures, startFigures, type FiguresContext } from './file-system-figures.js';
import { errorText } from './json-log.js';
import { mount, MountError } from './mount.js';
import type { RunItem } from './run-item.js';
import { S3LogStore } from './s3-log-store.js';
import { SnsNotifier } from './sns-notifier.js';
import type { StopListener } from './stop-listener.js';
import { scaleGroupToZero, type WorkerClients } from './worker-clients.js';
import type { WorkerConfig } from './worker-config.js';

export interface WorkerOptions {
  clients: WorkerClients;
  instanceId: string;
  /** Recorded with the run. @default none recorded */
  instanceType?: string | null;
  stop: StopListener;
  log: ServiceLog;
}

/**
 * The adapters of a worker, from its configuration; `instanceId` names its own log, as one
 * worker of a run several workers share.
 */
export function workerPorts(config: WorkerConfig, clients: WorkerClients, instanceId?: string) {
  return {
    store: new DynamoDbRecordStore({ tableName: config.table, client: clients.dynamodb }),
    logs: new S3LogStore({
      bucket: config.bucket,
      prefix: config.logPrefix,
      client: clients.s3,
      ...(instanceId ? { worker: instanceId } : {}),
    }),
    notifier: new SnsNotifier({ topicArn: config.topicArn, client: clients.sns }),
  };
}
type WorkerPorts = ReturnType<typeof workerPorts>;

export interface BackupWorkerResult {
  backupId: string | null;
  status: RunStatus | null;
  /** The run ended before its window's stop time and before anyone asked it to stop. */
  finishedEarly: boolean;
  lifecycleCompleted: boolean;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits for the stop, at most `ms`; the timer keeps the process alive while it waits. */
async function waitForStop(stop: StopListener, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((r) => (timer = setTimeout(() => r(false), ms)));
  try {
    return await Promise.race([stop.told.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The newest run this instance's worker may take, joined (conditionally): a run that waits for
 * its worker, or, with several workers, one whose workers are fewer than it was given.
 */
export async function claimRun(
  store: DynamoDbRecordStore,
  instanceId: string,
): Promise<RunItem | null> {
  const open = (await store.listItems({ Status: 'Running' })).filter(
    (r) =>
      !r.Closing &&
      (r.WorkerState === 'launching' || r.WorkerState === 'running') &&
      (r.WorkerInstances?.has(instanceId) ||
        (r.Seats !== undefined ? r.Seats > 0 : r.WorkerState === 'launching' && !r.WorkerInstance)),
  );
  for (const run of open) {
    const joined = await store.joinRun(run.BackupId, instanceId);
    if (joined) return joined;
  }
  return null;
}

export async function runBackupWorker(
  config: WorkerConfig,
  o: WorkerOptions,
): Promise<BackupWorkerResult> {
  const store = workerPorts(config, o.clients).store;
  const log = o.log;
  let backupId: string | null = null;
  let status: RunStatus | null = null;
  // Whether the group is left as it is at this worker's end: other workers of its run go on.
  let othersGoOn = false;

  const run = await claimRun(store, o.instanceId);
  if (!run) {
    log.warn({ instanceId: o.instanceId }, 'no run waits for a worker: nothing to back up');
    othersGoOn = await sharedRunGoing(store, o.instanceId);
  } else {
    backupId = run.BackupId;
    const shared = run.Workers > 1;
    const ports = workerPorts(config, o.clients, shared ? o.instanceId : undefined);
    log.info(
      { BackupId: backupId, instanceId: o.instanceId, workers: run.Workers },
      shared ? `run joined: one of its ${run.Workers} workers` : 'run claimed',
    );
    // The window: stopped at the stop rule's time even if its event never comes.
    const deadline = run.StopAt ? Date.parse(run.StopAt) - Date.now() : null;
    const windowTimer =
      deadline !== null ? setTimeout(() => o.stop.stopWith('window'), Math.max(0, deadline)) : null;
    const figures: FiguresContext = {
      efs: o.clients.efs,
      cloudwatch: o.clients.cloudwatch,
      sourceFileSystemId: config.sourceFileSystemId,
      backupFileSystemId: config.backupFileSystemId,
      log,
    };
    try {
      const atStart = {
        ...(o.instanceType ? { InstanceType: o.instanceType } : {}),
        ...(await startFigures(figures)),
      };
      await ports.store.update(backupId, atStart);
      // In Bursting mode, the run slows down while the source's credits are low.
      const watch =
        atStart.SourceThroughputMode === 'bursting' && config.burstCreditFloor > 0
          ? new CreditWatch({
              cloudwatch: o.clients.cloudwatch,
              fileSystemId: config.sourceFileSystemId,
              settings: config,
              log,
            })
          : null;
      if (watch) {
        watch.observe(atStart.SourceBurstCreditBalanceAtStart ?? null);
        watch.start();
      }
      try {
        status = await backupOnce(config, run, ports, o, watch);
      } finally {
        await watch?.stop();
      }
      await ports.store.update(backupId, await endFigures(figures, atStart.SourceThroughputMode));
      // Its part ended on its own (a failure, not the run's end nor its window): the others go on.
      othersGoOn =
        shared &&
        status !== 'Success' &&
        status !== 'SuccessWithWarnings' &&
        o.stop.reason !== 'window' &&
        othersGoing(await ports.store.getItem(backupId), o.instanceId);
    } finally {
      if (windowTimer) clearTimeout(windowTimer);
    }
  }

  // Unless told to stop (the group is already terminating this instance), the worker lets its
  // group go to 0 itself: it finished early, or stopped by its window's stop time on its own.
  const finishedEarly = !o.stop.signal.aborted;
  if (!o.stop.toldToStop && othersGoOn) {
    // Scaling the group to 0 would stop the run's other workers: this one waits to be told,
    // with them, at the run's end (or its window's).
    log.info(
      { BackupId: backupId },
      "this worker's part has ended while the run's other workers go on: the group is left as it is",
    );
    await o.stop.told;
  } else if (!o.stop.toldToStop) {
    log.info(
      { BackupId: backupId, finishedEarly },
      finishedEarly
        ? 'finished before the window ended: scaling the group to 0'
        : 'stopped at the window: scaling the group to 0',
    );
    // Should this fail, the stop rule scales the group to 0 at the window's end anyway.
    await scaleGroupToZero(o.clients.autoScaling, config.autoScalingGroupName, log);
    const asked = await waitForStop(o.stop, config.stopWaitSeconds * 1000);
    if (!asked) log.warn({}, 'no stop came: completing the lifecycle action anyway');
  }
  const lifecycleCompleted = await completeLifecycleAction(config, o);
  return { backupId, status, finishedEarly, lifecycleCompleted };
}

/** Mounts, runs the lifecycle and marks the run done; returns its status. */
async function backupOnce(
  config: WorkerConfig,
  run: RunItem,
  ports: WorkerPorts,
  o: WorkerOptions,
  watch: CreditWatch | null,
): Promise<RunStatus> {
  let source: string;
  let destination: string;
  try {
    source = await mount(
      config,
      { fileSystemId: config.sourceFileSystemId, role: 'source', readOnly: true },
      o.stop.signal,
    );
    destination = await mount(
      config,
      { fileSystemId: config.backupFileSystemId, role: 'backup', readOnly: false },
      o.stop.signal,
    );
  } catch (e) {
    if (!(e instanceof MountError)) throw e;
    return recordFailure(run, e.message, ports, o);
  }

  const job: JobSpec = {
    source,
    destination,
    prefix: run.Prefix,
    label: run.Label,
    // A backup's record always has them; the engine's defaults otherwise.
    ...(run.Interval !== null ? { interval: run.Interval } : {}),
    ...(run.Retain !== null ? { retain: run.Retain } : {}),
    schedule: run.Schedule,
    ...(run.WindowMinutes !== null ? { windowMinutes: run.WindowMinutes } : {}),
    ...(config.concurrency !== undefined ? { concurrency: config.concurrency } : {}),
    // Gentle on the source (the template's MaxMiBps, MaxOps; 0: no limit).
    ...(config.maxMiBps > 0 ? { maxMiBps: config.maxMiBps } : {}),
    ...(config.maxOps > 0 ? { maxOps: config.maxOps } : {}),
    // EFS has no extended attributes, and the worker's bundle carries no native code.
    xattrs: false,
    notifyOnSuccess: run.NotifyOnSuccess ?? false,
  };
  const outcome = await runBackup(
    job,
    { records: async () => ports.store, logs: ports.logs, notifiers: [ports.notifier] },
    {
      backupId: run.BackupId,
      signal: o.stop.signal,
      refusals: 'record',
      expireDays: config.expireDays,
      log: o.log,
      // The watch's throttle, whose limits it changes while the run goes.
      ...(watch ? { engine: (options) => backup({ ...options, throttle: watch.throttle }) } : {}),
      ...(run.Workers > 1 ? { shared: sharedRun(config, run, ports, o) } : {}),
    },
  );
  if (outcome.reported) {
    const sns = outcome.notices.find((n) => n.channel === ports.notifier.channel);
    await ports.store.update(run.BackupId, {
      WorkerState: 'done',
      ...(sns && sns.error === null ? { Notified: new Date().toISOString() } : {}),
    });
  }
  o.log.info(
    {
      BackupId: run.BackupId,
      Status: outcome.record.Status,
      reported: outcome.reported,
      problems: outcome.problems,
    },
    outcome.reported
      ? `run ended: ${outcome.record.Status}`
      : `this worker's part ended: ${outcome.record.Status} (its end is kept on the run)`,
  );
  return outcome.record.Status;
}

/**
 * This instance as one of a run's workers: the engine's share (the lease table, scope
 * `<label>/<interval>`, this instance's id), and which worker writes the run's end: the one
 * that committed the snapshot, with every worker that joined among the figures; any other keeps
 * its own end on the run, for the orchestrator to close the run with should no worker commit.
 */
function sharedRun(
  config: WorkerConfig,
  run: RunItem,
  ports: WorkerPorts,
  o: WorkerOptions,
): SharedRun {
  if (!config.leaseTable)
    throw new Error(
      `the run ${run.BackupId} has ${run.Workers} workers, but this worker's configuration names no leaseTable`,
    );
  const store = new DynamoDbLeaseStore({
    tableName: config.leaseTable,
    client: o.clients.dynamodb,
    scope: `${run.Label}/${run.Interval ?? 'daily'}`,
  });
  return {
    share: {
      store,
      worker: o.instanceId,
      workers: run.Workers,
      ...(config.leaseSeconds !== undefined ? { leaseMs: config.leaseSeconds * 1000 } : {}),
    },
    joined: (started) => beginsOnce(run, ports, o, started),
    end: async (record, committed) => {
      if (!committed) {
        await ports.store.addWorkerEnd(run.BackupId, o.instanceId, record);
        return null;
      }
      // One report, whatever happens: the first committer to claim it writes the run's end.
      if (
        !(await ports.store.update(run.BackupId, { Reporter: o.instanceId }, { Reporter: null }))
      ) {
        o.log.error(
          { BackupId: run.BackupId, instanceId: o.instanceId },
          'another worker of the run reported its commit already: this end is kept on the run instead',
        );
        await ports.store.addWorkerEnd(run.BackupId, o.instanceId, record);
        return null;
      }
      const item = await ports.store.getItem(run.BackupId);
      return {
        ...record,
        WorkerFigures: everyWorker(record.WorkerFigures ?? [], item?.WorkerInstances),
      };
    },
  };
}

/**
 * One worker of a shared run took its lock afresh (none joined): it begins the run, once. A
 * worker that comes after the run has ended (committed, or stopped, and its lock let go) would
 * take the lock afresh too, and begin the run again into a new partial: the run's item says it
 * was begun already, and this worker takes no part (RunOver).
 */
async function beginsOnce(
  run: RunItem,
  ports: WorkerPorts,
  o: WorkerOptions,
  started: StartedBackup,
): Promise<void> {
  if (started.lock.joined) return;
  const me = o.instanceId;
  try {
    if (await ports.store.update(run.BackupId, { Begun: me }, { Begun: null })) return;
    if ((await ports.store.getItem(run.BackupId))?.Begun === me) return;
  } catch (e) {
    // The records cannot say: this worker begins the run, as the first one does.
    o.log.warn({ BackupId: run.BackupId, err: errorText(e) }, 'cannot mark the run begun');
    return;
  }
  throw new RunOver(run.BackupId);
}

/** The figures of every worker that joined, by id: one that finished no unit has zeros. */
function everyWorker(figures: WorkerFigure[], joined: Set<string> | undefined): WorkerFigure[] {
  const all = new Map(figures.map((f) => [f.Worker, f]));
  for (const id of joined ?? [])
    if (!all.has(id)) all.set(id, { Worker: id, Units: 0, Entries: 0, Bytes: 0, Seconds: 0 });
  return [...all.values()].sort((a, b) => (a.Worker < b.Worker ? -1 : a.Worker > b.Worker ? 1 : 0));
}

/** Whether a worker of the run other than `instanceId` is still at its part. */
function othersGoing(item: RunItem | null, instanceId: string): boolean {
  if (!item || item.Status !== 'Running') return false;
  const joined = item.WorkerInstances ?? new Set<string>();
  return [...joined].some(
    (id) => id !== instanceId && !item.WorkersGone?.has(id) && !item.WorkerEnds?.[id],
  );
}

/** Whether a run of several workers is going, which this instance did not join. */
async function sharedRunGoing(store: DynamoDbRecordStore, instanceId: string): Promise<boolean> {
  const running = await store.listItems({ Status: 'Running' });
  return running.some(
    (r) => r.Workers > 1 && !isWorkerOf(r, instanceId) && othersGoing(r, instanceId),
  );
}

/**
 * A run that could not start (a file system would not mount): Failed, logged, notified. One
 * worker of a run several share keeps it as its own end (and its log) for the orchestrator.
 */
async function recordFailure(
  run: RunItem,
  message: string,
  ports: WorkerPorts,
  o: WorkerOptions,
): Promise<RunStatus> {
  const log = o.log;
  const shared = run.Workers > 1;
  const now = new Date().toISOString();
  const record: RunRecord = {
    ...recordOf(run),
    Status: 'Failed',
    Message: message,
    StopTime: now,
    Host: os.hostname(),
  };
  const keep = shared
    ? (r: RunRecord) => ports.store.addWorkerEnd(run.BackupId, o.instanceId, r)
    : (r: RunRecord) => ports.store.put(r);
  log.error({ BackupId: run.BackupId }, message);
  try {
    const runLog = await ports.logs.open(record);
    record.LogLocation = runLog.location;
    runLog.write(
      JSON.stringify({ level: 'error', time: now, BackupId: run.BackupId, msg: message }),
    );
    await keep(record);
    await runLog.store(summary(record));
  } catch (e) {
    log.error({ err: errorText(e) }, 'cannot store the log of the failed run');
    await keep(record);
  }
  if (shared) return 'Failed';
  let notified = false;
  if (shouldNotify(record.Status, run.NotifyOnSuccess ?? false)) {
    try {
      await ports.notifier.send(composeNotice(record));
      notified = true;
    } catch (e) {
      // The orchestrator notifies what the worker could not, once the instance is gone.
      log.error({ err: errorText(e) }, 'the sns notice was not sent');
    }
  }
  await ports.store.update(run.BackupId, {
    WorkerState: 'done',
    ...(notified ? { Notified: new Date().toISOString() } : {}),
  });
  return 'Failed';
}

/**
 * Lets the instance go: CONTINUE on the termination lifecycle action. It exists only once the
 * group is terminating the instance, so a few tries are made.
 */
async function completeLifecycleAction(config: WorkerConfig, o: WorkerOptions): Promise<boolean> {
  if (!config.lifecycleHookName) return false;
  for (let attempt = 1; ; attempt++) {
    try {
      await o.clients.autoScaling.send(
        new CompleteLifecycleActionCommand({
          AutoScalingGroupName: config.autoScalingGroupName,
          LifecycleHookName: config.lifecycleHookName,
          InstanceId: o.instanceId,
          LifecycleActionResult: 'CONTINUE',
        }),
      );
      o.log.info({ instanceId: o.instanceId }, 'lifecycle action completed: the instance may go');
      return true;
    } catch (e) {
      if (attempt >= 12) {
        // The hook's heartbeat timeout lets the instance go anyway.
        o.log.error({ err: errorText(e) }, 'cannot complete the lifecycle action');
        return false;
      }
      await sleep(5000);
    }
  }
}
