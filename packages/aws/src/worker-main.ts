/**
 * The worker's command line (bundled as one file, `efs-backup-worker.cjs`):
 *
 *   node efs-backup-worker.cjs backup  --config /etc/efs-backup/worker.json
 *   node efs-backup-worker.cjs restore --config /etc/efs-backup/worker.json
 *
 * Logs are JSON lines on standard output (journald on the instance). Exit codes: 0 the worker
 * did its part (the run's own status is in its record), 2 bad configuration, 3 it broke.
 */
import { jsonLog, errorText } from './json-log.js';
import { runRestoreWorker } from './restore-worker.js';
import { StopListener } from './stop-listener.js';
import { instanceMetadata, workerClients } from './worker-clients.js';
import { readWorkerConfig, type WorkerConfig } from './worker-config.js';
import { runBackupWorker } from './worker.js';

const USAGE = 'usage: efs-backup-worker (backup | restore) --config FILE';

export async function main(argv: string[]): Promise<number> {
  const log = jsonLog();
  const [command, ...rest] = argv.slice(2);
  const i = rest.indexOf('--config');
  const file = i >= 0 ? rest[i + 1] : '/etc/efs-backup/worker.json';
  if ((command !== 'backup' && command !== 'restore') || !file) {
    console.error(USAGE);
    return 2;
  }
  let config: WorkerConfig;
  try {
    config = readWorkerConfig(file);
    if (command === 'restore' && !config.restore)
      throw new Error(`${file} has no "restore" section`);
  } catch (e) {
    console.error(`efs-backup-worker: ${errorText(e)}`);
    return 2;
  }
  try {
    const metadata =
      config.instanceId !== undefined
        ? { instanceId: config.instanceId, instanceType: config.instanceType ?? null }
        : await instanceMetadata();
    const { instanceId } = metadata;
    const instanceType = config.instanceType ?? metadata.instanceType;
    const clients = workerClients(config);
    if (command === 'restore') {
      await runRestoreWorker(config, { clients, instanceId, instanceType, log });
      return 0;
    }
    const stop = new StopListener(config.runDir);
    try {
      const r = await runBackupWorker(config, { clients, instanceId, instanceType, stop, log });
      log.info({ ...r }, 'worker done');
    } finally {
      stop.close();
    }
    return 0;
  } catch (e) {
    log.error({ err: errorText(e), stack: (e as Error).stack }, 'the worker broke');
    return 3;
  }
}
