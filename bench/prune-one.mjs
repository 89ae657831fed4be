// Deletes the oldest complete snapshot of an interval with efs-backup's prune (the benchmark's
// "deleting one old snapshot" scenario): UV_THREADPOOL_SIZE=64 node prune-one.mjs <destination>
// <interval> (the pool must be sized before Node starts, as the efs-backup command does).
import { BackupSet, defaultConcurrency, prune } from '../packages/core/dist/index.js';

const [destination, interval] = process.argv.slice(2);
const set = new BackupSet(destination, 'efs-backup');
const count = set.snapshots(interval).length;
const r = await prune(set, interval, count - 1, {
  concurrency: defaultConcurrency(destination),
  deadline: null,
});
if (r.pruned !== 1 || r.warnings.length > 0) {
  console.error(`expected to prune one snapshot: ${JSON.stringify(r)}`);
  process.exit(1);
}
