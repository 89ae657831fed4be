/**
 * End to end: a configuration file with two jobs on one backup set (daily, retain 3; weekly,
 * retain 2), driven by the scheduler through three weeks of a clock the test moves, with the
 * real engine, SQLite and log files; then the real `efs-backup history` command lists every run.
 */
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { cli, requireBuild } from '../../cli/test/helpers.js';
import { diffTrees } from '../../core/test/fixtures/tree.js';
import {
  loadConfig,
  ManualClock,
  Scheduler,
  type RunOutcome,
  type RunRecord,
} from '../src/index.js';
import { localPorts } from '../src/local.js';
import { setUp, snapshots } from './fixtures.js';

beforeAll(requireBuild);

const DAYS = 22; // 2030-01-01 is a Tuesday: Sundays 6, 13 and 20.
const day = (n: number, hour: number): Date => new Date(Date.UTC(2030, 0, n, hour, 0, 0));
const stamp = (n: number, hour: number): string =>
  `203001${String(n).padStart(2, '0')}T${String(hour).padStart(2, '0')}0000Z`;

describe('two jobs, three weeks of schedules', () => {
  it('keeps the right snapshots, and history shows every run', async () => {
    const { base, src, dst } = setUp('efs-backup-e2e-');
    const file = path.join(base, 'efs-backup.yaml');
    fs.writeFileSync(
      file,
      `jobs:
  - name: daily
    source: src
    destination: dst
    interval: daily
    retain: 3
    schedule: "0 2 * * *"
    timezone: UTC
    windowMinutes: 60
  - name: weekly
    source: src
    destination: dst
    interval: weekly
    retain: 2
    schedule: "0 3 * * 0"
    timezone: UTC
`,
    );
    const config = loadConfig(file);
    const clock = new ManualClock(day(1, 0));
    const ends: RunOutcome[] = [];
    const scheduler = new Scheduler({
      config,
      ports: localPorts(config),
      clock,
      onRunEnd: (o) => ends.push(o),
    });
    scheduler.start();
    for (let n = 1; n <= DAYS; n++) {
      // The source changes every day, before the daily run.
      await clock.advanceTo(day(n, 1));
      fs.writeFileSync(path.join(src, `day-${n}.txt`), `day ${n}\n`);
      for (const hour of [2, 3]) {
        await clock.advanceTo(day(n, hour));
        await scheduler.idle();
      }
    }
    await scheduler.stop();

    const sundays = [6, 13, 20];
    expect(ends).toHaveLength(DAYS + sundays.length);
    expect(ends.filter((o) => o.record.Status !== 'Success')).toEqual([]);
    expect(snapshots(dst, 'daily')).toEqual([stamp(20, 2), stamp(21, 2), stamp(22, 2)]);
    expect(snapshots(dst, 'weekly')).toEqual([stamp(13, 3), stamp(20, 3)]);
    expect(fs.readlinkSync(path.join(dst, 'efs-backup', 'latest'))).toBe(`daily/${stamp(22, 2)}`);
    // Each snapshot is the source as it was: the weekly of the 13th has days 1 to 13.
    const weekly13 = path.join(dst, 'efs-backup', 'weekly', stamp(13, 3));
    expect(fs.readdirSync(weekly13).filter((n) => n.startsWith('day-')).length).toBe(13);
    expect(diffTrees(src, path.join(dst, 'efs-backup', 'daily', stamp(22, 2)))).toEqual([]);
    // Retention pruned as it went: the daily runs from the 4th on each pruned one.
    expect(ends.filter((o) => o.record.SnapshotsPruned === 1)).toHaveLength(DAYS - 3 + 1);

    // `efs-backup history`, from the configuration, newest first: every run.
    const all = cli(['history', '--config', file, '--json']);
    expect(all.status, all.stderr).toBe(0);
    const runs = JSON.parse(all.stdout) as RunRecord[];
    const expected = ends.map((o) => o.record).sort((a, b) => (a.StartTime < b.StartTime ? 1 : -1));
    expect(runs).toEqual(expected);
    expect(runs[0]).toMatchObject({ Job: 'daily', Snapshot: stamp(22, 2) });
    expect(runs.at(-1)).toMatchObject({ Job: 'daily', Snapshot: stamp(1, 2) });

    const weekly = cli(['history', '--job', 'weekly', '--config', file, '--json']);
    expect(weekly.status, weekly.stderr).toBe(0);
    expect((JSON.parse(weekly.stdout) as RunRecord[]).map((r) => r.Snapshot)).toEqual([
      stamp(20, 3),
      stamp(13, 3),
      stamp(6, 3),
    ]);

    // The set's own records file serves `--destination` too; the text lists one line per run.
    const text = cli(['history', '--destination', dst]);
    expect(text.status, text.stderr).toBe(0);
    const lines = text.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^STARTED\s+JOB\s+INTERVAL\s+STATUS\s+SNAPSHOT\s+ENTRIES/);
    expect(lines).toHaveLength(1 + ends.length);
    for (const r of expected) expect(text.stdout).toContain(r.BackupId);
    expect(lines[1]).toMatch(/^2030-01-22 02:00:00Z\s+daily\s+daily\s+Success\s+20300122T020000Z/);
  });
});
