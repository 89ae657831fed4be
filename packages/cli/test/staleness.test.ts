/**
 * `efs-backup status --check`: have backups stopped happening? It exits 1 when a job's newest
 * complete snapshot is older than its bound (the job's `staleAfterHours`, or twice the longest
 * gap of its schedule), for cron and monitoring. Old snapshots are made by renaming a real
 * one (its directory, manifest and `latest`) to a stamp days back.
 */
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { BackupSet, toStamp } from '@efs-backup/core';
import { file, sourceAndDestination } from '../../core/test/fixtures/tree.js';
import { cli, cliJson, requireBuild } from './helpers.js';

beforeAll(requireBuild);

interface Freshness {
  job: string | null;
  interval: string;
  stale: boolean;
  ageHours: number | null;
  staleAfterHours: number;
  newest: { stamp: string } | null;
}

/** Moves the set's only snapshot of `interval` back by `hours`. */
function ageSnapshot(dst: string, interval: string, hours: number): string {
  const set = new BackupSet(dst, 'efs-backup');
  const [snap] = set.snapshots(interval);
  const old = toStamp(new Date(Date.now() - hours * 3_600_000));
  fs.renameSync(snap.path, set.snapshotDir(interval, old));
  fs.renameSync(snap.manifest, set.manifestPath(old));
  fs.rmSync(set.latestLink, { force: true });
  fs.symlinkSync(path.relative(set.dir, set.snapshotDir(interval, old)), set.latestLink);
  return old;
}

function configWith(base: string, src: string, dst: string, jobs: string): string {
  const cfg = path.join(base, 'efs-backup.yaml');
  fs.writeFileSync(
    cfg,
    `jobs:\n${jobs.replaceAll('SRC', JSON.stringify(src)).replaceAll('DST', JSON.stringify(dst))}`,
  );
  return cfg;
}

describe('status --check', () => {
  it('passes while the newest snapshot is young, fails once it is older than twice the schedule', () => {
    const { base, src, dst } = sourceAndDestination({ 'a.txt': file('a') }, 'efs-stale-');
    const cfg = configWith(
      base,
      src,
      dst,
      `  - { name: nightly, source: SRC, destination: DST, schedule: '0 2 * * *' }\n`,
    );
    // No snapshot yet: nothing can be restored, which is what the check is for.
    let r = cli(['status', '--config', cfg, '--check']);
    expect(r.status, r.stderr).toBe(1);
    expect(r.stdout).toMatch(
      /^stale: job nightly \(daily in .*\): no complete snapshot yet; the bound is 48 h$/m,
    );

    expect(cli(['backup', '--job', 'nightly', '--config', cfg]).status).toBe(0);
    r = cli(['status', '--config', cfg, '--check']);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(
      /^ok: job nightly \(daily in .*\): newest snapshot \d{8}T\d{6}Z, 0 h old; the bound is 48 h$/m,
    );

    // Three days without a backup: a daily schedule's bound is two days.
    const old = ageSnapshot(dst, 'daily', 72);
    r = cli(['status', '--config', cfg, '--check']);
    expect(r.status).toBe(1);
    expect(r.stdout).toContain(
      `stale: job nightly (daily in ${path.join(dst, 'efs-backup')}): newest snapshot ${old}, 72 h old; the bound is 48 h`,
    );
    const { result, json } = cliJson<{ freshness: Freshness[] }>([
      'status',
      '--config',
      cfg,
      '--check',
    ]);
    expect(result.status).toBe(1);
    expect(json.freshness).toEqual([
      expect.objectContaining({
        job: 'nightly',
        interval: 'daily',
        stale: true,
        ageHours: 72,
        staleAfterHours: 48,
      }),
    ]);
    // Without --check, status tells the same and exits 0 (it is not a check).
    expect(cliJson(['status', '--config', cfg]).result.status).toBe(0);
  });

  it("takes the job's staleAfterHours, --stale-after, and a weekly schedule's own period", () => {
    const { base, src, dst } = sourceAndDestination({ 'a.txt': file('a') }, 'efs-stale-');
    const cfg = configWith(
      base,
      src,
      dst,
      `  - { name: weekly, source: SRC, destination: DST, interval: weekly, schedule: '0 6 * * 0' }\n` +
        `  - { name: daily, source: SRC, destination: DST, schedule: '0 2 * * *', staleAfterHours: 100 }\n`,
    );
    expect(cli(['backup', '--job', 'weekly', '--config', cfg]).status).toBe(0);
    ageSnapshot(dst, 'weekly', 72);
    expect(cli(['backup', '--job', 'daily', '--config', cfg]).status).toBe(0);
    // 72 h: within a weekly schedule's 336 h; the daily job's own bound of 100 h holds too.
    const { result, json } = cliJson<{ freshness: Freshness[] }>([
      'status',
      '--config',
      cfg,
      '--check',
    ]);
    expect(result.status, JSON.stringify(json)).toBe(0);
    expect(json.freshness.map((f) => [f.job, f.staleAfterHours, f.stale])).toEqual([
      ['weekly', 336, false],
      ['daily', 100, false],
    ]);
    // One bound for every job.
    const r = cli(['status', '--config', cfg, '--check', '--stale-after', '24']);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/^stale: job weekly .*72 h old; the bound is 24 h$/m);
    expect(r.stdout).toMatch(/^ok: job daily .*; the bound is 24 h$/m);
  });

  it('checks every series of one set with --destination (48 h unless told), and refuses a bad bound', () => {
    const { src, dst } = sourceAndDestination({ 'a.txt': file('a') }, 'efs-stale-');
    expect(cli(['backup', '--source', src, '--destination', dst]).status).toBe(0);
    expect(cli(['status', '--destination', dst, '--check']).status).toBe(0);
    ageSnapshot(dst, 'daily', 50);
    expect(cli(['status', '--destination', dst, '--check']).status).toBe(1);
    expect(cli(['status', '--destination', dst, '--check', '--stale-after', '60']).status).toBe(0);
    for (const bad of ['0', '-1', 'soon']) {
      const r = cli(['status', '--destination', dst, '--check', '--stale-after', bad]);
      expect(r.status).toBe(2);
      expect(r.stderr).toContain(`stale-after must be a number of hours above 0, not "${bad}"`);
    }
  });

  it('refuses a staleAfterHours that is not a positive number when the configuration is loaded', () => {
    const { base, src, dst } = sourceAndDestination({ 'a.txt': file('a') }, 'efs-stale-');
    const cfg = configWith(
      base,
      src,
      dst,
      `  - name: nightly\n    source: SRC\n    destination: DST\n    schedule: '0 2 * * *'\n    staleAfterHours: 0\n`,
    );
    const r = cli(['status', '--config', cfg, '--check']);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(
      `efs-backup.yaml:6: jobs[0].staleAfterHours is 0, but must be a number of hours above 0`,
    );
  });
});
