/**
 * The scheduler: with a clock the test moves (and once with the real clock and a seconds-level
 * schedule), runs start on time, stop by their window, never overlap within a backup set (the
 * run due meanwhile is recorded Skipped), and stopping the daemon ends running backups as
 * Incomplete with their records and logs. The real engine runs every backup; where a run must
 * stay "in progress", it waits at a gate in front of the engine (see gatedEngine), so the
 * tests hold on a fast machine as on a slow one.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ManualClock,
  parseConfig,
  readRunLog,
  readStatuses,
  Scheduler,
  type Config,
  type RunOutcome,
} from '../src/index.js';
import { localPorts } from '../src/local.js';
import { gatedEngine, records, setUp, snapshots } from './fixtures.js';

function configOf(jobs: string, dir: string): Config {
  return parseConfig(`jobs:\n${jobs}`, path.join(dir, 'efs-backup.yaml'));
}

const job = (o: {
  name: string;
  src: string;
  dst: string;
  schedule: string;
  label?: string;
  interval?: string;
  extra?: string;
}): string =>
  `  - name: ${o.name}
    source: ${o.src}
    destination: ${o.dst}
    label: ${o.label ?? 'efs-backup'}
    interval: ${o.interval ?? 'daily'}
    schedule: "${o.schedule}"
    timezone: UTC
${o.extra ?? ''}`;

const at = (iso: string): Date => new Date(iso);

describe('on a clock the test moves', () => {
  it('runs start on time, every time, and say when they run next', async () => {
    const { base, src, dst } = setUp();
    const config = configOf(job({ name: 'nightly', src, dst, schedule: '0 2 * * *' }), base);
    const clock = new ManualClock(at('2030-01-01T00:00:00Z'));
    const ends: RunOutcome[] = [];
    const s = new Scheduler({
      config,
      ports: localPorts(config),
      clock,
      onRunEnd: (o) => ends.push(o),
    });
    s.start();
    await clock.advanceTo(at('2030-01-01T00:00:00Z'));
    expect(s.nextRuns()).toEqual([{ job: 'nightly', next: at('2030-01-01T02:00:00Z') }]);

    await clock.advanceTo(at('2030-01-01T01:59:59Z'));
    await s.idle();
    expect(ends).toEqual([]);

    await clock.advanceTo(at('2030-01-01T02:00:00Z'));
    await s.idle();
    expect(ends.map((o) => [o.record.StartTime, o.record.Status, o.record.Snapshot])).toEqual([
      ['2030-01-01T02:00:00.000Z', 'Success', '20300101T020000Z'],
    ]);
    expect(s.nextRuns()).toEqual([{ job: 'nightly', next: at('2030-01-02T02:00:00Z') }]);

    for (const day of ['2030-01-02T02:00:00Z', '2030-01-03T02:00:00Z']) {
      await clock.advanceTo(new Date(Date.parse(day) - 1000));
      await s.idle();
      await clock.advanceTo(at(day));
      await s.idle();
    }
    expect(ends.map((o) => o.record.StartTime)).toEqual([
      '2030-01-01T02:00:00.000Z',
      '2030-01-02T02:00:00.000Z',
      '2030-01-03T02:00:00.000Z',
    ]);
    expect(snapshots(dst)).toEqual(['20300101T020000Z', '20300102T020000Z', '20300103T020000Z']);
    const rows = await records(dst);
    expect(rows.map((r) => [r.Job, r.Schedule, r.Status])).toEqual(
      Array(3).fill(['nightly', '0 2 * * *', 'Success']),
    );
    await s.stop();
    expect(s.nextRuns()).toEqual([{ job: 'nightly', next: null }]);
  });

  it('a run stops by its window (Incomplete, partial kept), and the next run completes it', async () => {
    const { base, src, dst } = setUp();
    const config = configOf(
      job({ name: 'nightly', src, dst, schedule: '0 2 * * *', extra: '    windowMinutes: 30\n' }),
      base,
    );
    const clock = new ManualClock(at('2030-01-01T00:00:00Z'));
    const gate = gatedEngine();
    const s = new Scheduler({
      config,
      ports: localPorts(config),
      clock,
      engine: gate.engine,
      statusIntervalMs: 0,
    });
    s.start();
    await clock.advanceTo(at('2030-01-01T02:00:00Z'));
    await gate.reached(1);
    expect(s.running().map((r) => r.job)).toEqual(['nightly']);
    const [running] = await records(dst);
    expect(running).toMatchObject({ Status: 'Running', StopTime: null, WindowMinutes: 30 });
    // `status` reads what runs now and what runs next from the job's status file.
    expect(readStatuses(dst, 'efs-backup')).toEqual([
      expect.objectContaining({
        key: 'nightly',
        writer: 'run',
        pid: process.pid,
        nextRun: '2030-01-02T02:00:00.000Z',
        running: expect.objectContaining({ BackupId: running!.BackupId }),
      }),
    ]);

    // A 30-minute window stops the run a minute before its end, to leave time to finish.
    await clock.advanceTo(at('2030-01-01T02:28:59Z'));
    expect(s.running()).toHaveLength(1);
    await clock.advanceTo(at('2030-01-01T02:29:00Z'));
    await s.idle();
    expect(s.running()).toEqual([]);
    const [stopped] = await records(dst);
    expect(stopped).toMatchObject({
      BackupId: running!.BackupId,
      Status: 'Incomplete',
      Snapshot: null,
      WindowMinutes: 30,
      Message:
        'the backup window ended before the backup completed; the next run continues from where this one stopped',
    });
    expect(readRunLog(stopped!.LogLocation!).lines).toContainEqual(
      expect.objectContaining({ msg: 'stopping the run', reason: 'window' }),
    );
    expect(snapshots(dst)).toEqual([]);
    const partials = fs.readdirSync(path.join(dst, 'efs-backup', 'daily'));
    expect(partials).toEqual([expect.stringMatching(/^\.\d{8}T\d{6}Z\.partial$/)]);

    gate.open();
    await clock.advanceTo(at('2030-01-02T02:00:00Z'));
    await s.idle();
    const [resumed] = await records(dst);
    expect(resumed).toMatchObject({ Status: 'Success' });
    expect(snapshots(dst)).toEqual([resumed!.Snapshot]);
    await s.stop();
  });

  it('never two runs of one backup set: the run due meanwhile is Skipped with the reason; other sets run', async () => {
    const { base, src, dst } = setUp();
    const config = configOf(
      job({ name: 'daily', src, dst, schedule: '0 2 * * *' }) +
        job({ name: 'weekly', src, dst, schedule: '30 2 * * *', interval: 'weekly' }) +
        job({ name: 'elsewhere', src, dst, schedule: '30 2 * * *', label: 'other-set' }),
      base,
    );
    const clock = new ManualClock(at('2030-01-01T00:00:00Z'));
    const gate = gatedEngine();
    const ends: RunOutcome[] = [];
    const s = new Scheduler({
      config,
      ports: localPorts(config),
      clock,
      engine: gate.engine,
      onRunEnd: (o) => ends.push(o),
    });
    s.start();
    await clock.advanceTo(at('2030-01-01T02:00:00Z'));
    await gate.reached(1);
    const daily = s.running()[0]!;
    expect(daily.job).toBe('daily');

    await clock.advanceTo(at('2030-01-01T02:30:00Z'));
    await gate.reached(2);
    // The other set's run started; the weekly run of the busy set did not.
    expect(
      s
        .running()
        .map((r) => r.job)
        .sort(),
    ).toEqual(['daily', 'elsewhere']);
    while (!ends.some((o) => o.record.Job === 'weekly')) await new Promise((r) => setTimeout(r, 5));
    const skipped = ends.find((o) => o.record.Job === 'weekly')!;
    expect(skipped.record).toMatchObject({
      Status: 'Skipped',
      Interval: 'weekly',
      StartTime: '2030-01-01T02:30:00.000Z',
      StopTime: '2030-01-01T02:30:00.000Z',
      Snapshot: null,
    });
    expect(skipped.record.Message).toBe(
      `the run due at 2030-01-01T02:30:00.000Z did not start: run ${daily.BackupId} of job daily, ` +
        `started 2030-01-01T02:00:00.000Z, is still writing the backup set efs-backup on ${dst}`,
    );
    expect(fs.existsSync(skipped.record.LogLocation!)).toBe(true);

    gate.open();
    await s.idle();
    expect(ends.map((o) => [o.record.Job, o.record.Status]).sort()).toEqual([
      ['daily', 'Success'],
      ['elsewhere', 'Success'],
      ['weekly', 'Skipped'],
    ]);
    expect(snapshots(dst, 'weekly')).toEqual([]);
    expect((await records(dst)).map((r) => r.Job).sort()).toEqual(['daily', 'weekly']);
    await s.stop();
  });

  it('stopping the daemon ends running backups as Incomplete, with records and logs written', async () => {
    const { base, src, dst } = setUp();
    const config = configOf(
      job({ name: 'daily', src, dst, schedule: '0 2 * * *' }) +
        job({ name: 'other', src, dst, schedule: '0 2 * * *', label: 'other-set' }),
      base,
    );
    const clock = new ManualClock(at('2030-01-01T00:00:00Z'));
    const gate = gatedEngine();
    const s = new Scheduler({ config, ports: localPorts(config), clock, engine: gate.engine });
    s.start();
    await clock.advanceTo(at('2030-01-01T02:00:00Z'));
    await gate.reached(2);
    await s.stop();
    for (const label of ['efs-backup', 'other-set']) {
      const [r] = await records(dst, label);
      expect(r).toMatchObject({
        Status: 'Incomplete',
        Message:
          'the efs-backup service was stopped before the backup completed; the next run continues from where this one stopped',
      });
      expect(readRunLog(r!.LogLocation!).summary).toContain('Status        Incomplete');
      expect(readStatuses(dst, label)).toEqual([
        expect.objectContaining({ nextRun: null, running: null }),
      ]);
    }
    expect(s.running()).toEqual([]);
    expect(s.nextRuns().map((n) => n.next)).toEqual([null, null]);
  });
});

describe('on the real clock', () => {
  it('a seconds-level schedule runs again and again until stopped', async () => {
    const { base, src, dst } = setUp();
    const config = configOf(job({ name: 'often', src, dst, schedule: '* * * * * *' }), base);
    const ends: RunOutcome[] = [];
    const s = new Scheduler({ config, ports: localPorts(config), onRunEnd: (o) => ends.push(o) });
    const started = Date.now();
    s.start();
    while (ends.filter((o) => o.record.Status === 'Success').length < 2) {
      expect(Date.now() - started, 'two runs in 30 s').toBeLessThan(30_000);
      await new Promise((r) => setTimeout(r, 50));
    }
    await s.stop();
    const ok = ends.filter((o) => o.record.Status === 'Success').map((o) => o.record);
    // Each started at (or just after) a whole second of its own, the one the schedule named.
    const seconds = ok.map((r) => Math.floor(Date.parse(r.StartTime) / 1000));
    expect(new Set(seconds).size).toBe(seconds.length);
    expect(new Set(ok.map((r) => r.Snapshot)).size).toBe(ok.length);
    expect((await records(dst)).length).toBe(ends.length);
  });
});
