/**
 * The service on the command line, as a user runs it: `backup` writes a record and a log (with
 * or without a configuration), `backup --job`, `history`, `status`, and `run`, the daemon,
 * stopped by SIGTERM with its running backup recorded Incomplete. Needs a build.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dir, file, sourceAndDestination } from '../../core/test/fixtures/tree.js';
import { newRunRecord } from '../../service/src/record.js';
import { SqliteRecordStore } from '../../service/src/sqlite-record-store.js';
import { BIN, cli, cliJson, expectOneLineError, fingerprint, requireBuild } from './helpers.js';

beforeAll(requireBuild);

type Rec = Record<string, unknown>;

function setup(): { base: string; src: string; dst: string } {
  return sourceAndDestination(
    { 'a.txt': file('hello\n'), sub: dir({ 'b.txt': file('bb') }) },
    'efs-backup-service-cli-',
  );
}

function writeConfig(base: string, body: string): string {
  const f = path.join(base, 'efs-backup.yaml');
  fs.writeFileSync(f, body);
  return f;
}

const jobYaml = (src: string, dst: string, schedule = '0 2 * * *', name = 'projects'): string =>
  `jobs:
  - name: ${name}
    source: ${src}
    destination: ${dst}
    retain: 2
    schedule: "${schedule}"
`;

describe('backup writes a record and a log', () => {
  it('without a configuration: the record in the set, the log beside it; history lists it', () => {
    const { src, dst } = setup();
    const { result, json } = cliJson<Rec>(['backup', '--source', src, '--destination', dst]);
    expect(result.status, result.stderr).toBe(0);
    expect(json).toMatchObject({ Status: 'Success', Job: null, Schedule: null });
    expect(json.LogLocation).toBe(
      path.join(dst, 'efs-backup', '.efs-backup', 'logs', `${json.BackupId as string}.log`),
    );
    expect(fs.readFileSync(json.LogLocation as string, 'utf8')).toContain(
      `efs-backup efs-backup/daily succeeded: snapshot daily/${json.Snapshot as string} is complete`,
    );
    expect(json.ExpireItem).toBe(
      Math.floor(Date.parse(json.StartTime as string) / 1000) + 90 * 86_400,
    );
    expect(fs.existsSync(path.join(dst, 'efs-backup', '.efs-backup', 'records.sqlite'))).toBe(true);

    const second = cliJson<Rec>(['backup', '--source', src, '--destination', dst]);
    const h = cliJson<Rec[]>(['history', '--destination', dst]);
    expect(h.result.status, h.result.stderr).toBe(0);
    expect(h.json.map((r) => r.BackupId)).toEqual([second.json.BackupId, json.BackupId]);
    expect(h.json[1]).toEqual(json);

    const text = cli(['history', '--destination', dst]);
    expect(text.status).toBe(0);
    expect(text.stdout.split('\n')[1]).toContain(second.json.BackupId as string);
    expect(text.stdout).toMatch(/Success\s+\d{8}T\d{6}Z\s+3\s+0\s+0 B/);
  });

  it('history tells a restore from a backup: its INTERVAL column says restore', async () => {
    const { src, dst } = setup();
    const backup = cliJson<Rec>(['backup', '--source', src, '--destination', dst]);
    expect(backup.result.status, backup.result.stderr).toBe(0);
    // Only the AWS restore worker records restores; written here as it writes them.
    const store = SqliteRecordStore.open(
      path.join(dst, 'efs-backup', '.efs-backup', 'records.sqlite'),
    );
    const restore = {
      ...newRunRecord({
        kind: 'restore',
        id: 'restore-1',
        label: 'efs-backup',
        snapshot: 'daily.0',
        source: path.join(dst, 'efs-backup'),
        prefix: '/',
        target: '/restored',
        mirror: false,
        start: new Date(Date.parse(backup.json.StartTime as string) + 60_000),
        host: 'h',
        expireDays: 90,
      }),
      Status: 'Success' as const,
      Message: 'restored',
      Interval: 'daily',
      StopTime: new Date().toISOString(),
    };
    await store.put(restore);
    await store.close();
    const h = cliJson<Rec[]>(['history', '--destination', dst]);
    expect(h.json.map((r) => [r.BackupId, r.Kind])).toEqual([
      ['restore-1', 'restore'],
      [backup.json.BackupId, 'backup'],
    ]);
    const lines = cli(['history', '--destination', dst]).stdout.split('\n');
    expect(lines[0]).toMatch(/^STARTED\s+JOB\s+INTERVAL\s+STATUS/);
    expect(lines[1]).toMatch(/\s-\s+restore\s+Success\s+.*restore-1/);
    expect(lines[2]).toMatch(/\s-\s+daily\s+Success\s/);
  });

  it('history with a path still lists the versions of that path', () => {
    const { src, dst } = setup();
    expect(cli(['backup', '--source', src, '--destination', dst]).status).toBe(0);
    const r = cliJson<unknown[]>(['history', 'a.txt', '--destination', dst]);
    expect(r.result.status, r.result.stderr).toBe(0);
    expect(r.json).toHaveLength(1);
  });

  it('--job runs a configuration job now: its settings, its name in the record', () => {
    const { base, src, dst } = setup();
    const config = writeConfig(base, jobYaml(src, dst));
    const { result, json } = cliJson<Rec>(['backup', '--job', 'projects', '--config', config]);
    expect(result.status, result.stderr).toBe(0);
    expect(json).toMatchObject({
      Status: 'Success',
      Job: 'projects',
      Schedule: '0 2 * * *',
      Retain: 2,
      Source: src,
      Destination: dst,
    });
    const h = cliJson<Rec[]>(['history', '--job', 'projects', '--config', config]);
    expect(h.json.map((r) => r.BackupId)).toEqual([json.BackupId]);
    // The default configuration file is efs-backup.yaml in the working directory.
    const again = cliJson<Rec>(['backup', '--job', 'projects'], { cwd: base });
    expect(again.result.status, again.result.stderr).toBe(0);
    expect(cliJson<Rec[]>(['history'], { cwd: base }).json).toHaveLength(2);
  });
});

describe('bad input: exit 2, one line naming the problem, nothing written', () => {
  it.each([
    {
      name: '--job with --source',
      args: (c: string, src: string) => [
        'backup',
        '--job',
        'projects',
        '--config',
        c,
        '--source',
        src,
      ],
      names: /--source cannot be given with --job/,
    },
    {
      name: '--config without --job',
      args: (c: string) => ['backup', '--config', c],
      names: /--config is used with --job NAME/,
    },
    {
      name: 'an unknown job',
      args: (c: string) => ['backup', '--job', 'nope', '--config', c],
      names: /efs-backup\.yaml: no job named "nope"; the jobs are projects$/,
    },
    {
      name: 'a missing configuration file',
      args: (c: string) => ['run', '--config', `${c}.missing`],
      names: /efs-backup\.yaml\.missing: no such configuration file/,
    },
    {
      name: 'history with neither a set nor a job',
      args: () => ['history'],
      names: /history needs --destination D \[--label L\], --job NAME, or a configuration/,
    },
    {
      name: 'history of a set that is not mounted',
      args: (c: string) => ['history', '--destination', path.join(path.dirname(c), 'nope')],
      names: /destination \S+nope does not exist \(is it mounted\?\)/,
    },
  ])('$name', ({ args, names }) => {
    const { base, src, dst } = setup();
    const c = writeConfig(base, jobYaml(src, dst));
    const before = fingerprint(base);
    const r = cli(args(c, src), { cwd: dst });
    expect(r.status, r.stderr).toBe(2);
    expectOneLineError(r, names);
    expect(fingerprint(base)).toEqual(before);
  });

  it('a configuration mistake names the file, line, key and what is allowed, for run and backup --job', () => {
    const { base, src, dst } = setup();
    const c = writeConfig(base, jobYaml(src, dst).replace('retain: 2', 'retain: 0'));
    const before = fingerprint(base);
    for (const args of [
      ['run', '--config', c],
      ['backup', '--job', 'projects', '--config', c],
      ['status', '--config', c],
      ['history', '--job', 'projects', '--config', c],
    ]) {
      const r = cli(args);
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expectOneLineError(
        r,
        /^efs-backup: \S+efs-backup\.yaml:5: jobs\[0\]\.retain is 0, but must be a whole number of snapshots to keep, at least 1$/,
      );
    }
    expect(fingerprint(base)).toEqual(before);
  });
});

describe('run, the daemon; status; SIGTERM', () => {
  let base = '';
  afterAll(() => {
    if (base) fs.rmSync(base, { recursive: true, force: true });
  });

  it('runs the schedule, shows in status, and on SIGTERM records its running backup Incomplete and exits 0', async () => {
    ({ base } = setup());
    const src = path.join(base, 'big');
    const dst = path.join(base, 'big-dst');
    fs.mkdirSync(dst);
    // 50 000 names for a run that lasts long enough to be stopped: hard links, which cost no
    // inode to make (fresh inodes are slow to allocate on ext4 after many deletions).
    for (let d = 0; d < 2; d++) {
      const sub = path.join(src, `d${d}`);
      fs.mkdirSync(sub, { recursive: true });
      fs.writeFileSync(path.join(sub, 'base'), `base ${d}\n`);
      for (let i = 0; i < 25_000; i++) fs.linkSync(path.join(sub, 'base'), path.join(sub, `l${i}`));
    }
    const config = writeConfig(base, jobYaml(src, dst, '* * * * * *', 'often'));
    const statusFile = path.join(dst, 'efs-backup', '.efs-backup', 'status', 'often.json');
    const readStatus = (): { running: unknown; nextRun: string | null; pid: number } | null => {
      try {
        return JSON.parse(fs.readFileSync(statusFile, 'utf8')) as never;
      } catch {
        return null;
      }
    };

    const child = spawn(process.execPath, [BIN, 'run', '--config', config], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((resolve) =>
      child.on('close', (code) => resolve(code)),
    );
    try {
      const until = async (what: string, ok: () => boolean): Promise<void> => {
        const t0 = Date.now();
        while (!ok()) {
          if (Date.now() - t0 > 60_000) throw new Error(`no ${what} in 60 s:\n${stderr}`);
          await new Promise((r) => setTimeout(r, 5));
        }
      };
      await until('run going', () => readStatus()?.running != null);
      expect(readStatus()!.pid).toBe(child.pid);

      const status = cliJson<{ jobs: Rec[]; running: Rec[] }>(['status', '--config', config]);
      expect(status.result.status, status.result.stderr).toBe(0);
      expect(status.json.jobs).toEqual([
        expect.objectContaining({
          job: 'often',
          schedule: '* * * * * *',
          daemon: { pid: child.pid, host: expect.any(String) },
        }),
      ]);
      const text = cli(['status', '--config', config]);
      expect(text.stdout).toMatch(/^Running now:/);
      expect(text.stdout).toMatch(/\n\s*JOB\s+SCHEDULE\s+NEXT RUN\s+DAEMON/);
      expect(text.stdout).toMatch(
        new RegExp(`often\\s+\\* \\* \\* \\* \\* \\*\\s+\\S+ \\S+\\s+pid ${child.pid}`),
      );

      // Stopped as soon as a run has started (its status file is written before the engine runs).
      await until('next run going', () => readStatus()?.running != null);
      child.kill('SIGTERM');
      expect(await exited, stderr).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
    const runs = cliJson<Rec[]>(['history', '--config', config]).json;
    expect(runs.filter((r) => r.Status === 'Running')).toEqual([]);
    // The newest run that started (runs due while it went are Skipped) was stopped.
    expect(runs.filter((r) => r.Status !== 'Skipped')[0]).toMatchObject({
      Status: 'Incomplete',
      Job: 'often',
      Message:
        'the efs-backup service was stopped before the backup completed; the next run continues from where this one stopped',
    });
    for (const r of runs) {
      expect(['Success', 'Incomplete', 'Skipped']).toContain(r.Status);
      expect(fs.existsSync(r.LogLocation as string)).toBe(true);
    }
    expect(readStatus()).toMatchObject({ nextRun: null, running: null });
    // The daemon's own log: JSON lines on standard error (piped: JSON by default).
    const events = stderr
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Rec);
    expect(events.map((e) => e.msg)).toContain('stopped');
    // And status, after it: no daemon, nothing running.
    const after = cliJson<{ jobs: Rec[]; running: Rec[] }>(['status', '--config', config]);
    expect(after.json.running).toEqual([]);
    expect(after.json.jobs[0]!.daemon).toBeNull();
  });

  it('--log-format pretty: human lines, even piped; a format it does not know is refused', async () => {
    const { base, src, dst } = setup();
    const config = writeConfig(base, jobYaml(src, dst, '* * * * * *', 'often'));
    const bad = cli(['run', '--config', config, '--log-format', 'xml']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--log-format.*xml.*json, pretty/);

    const child = spawn(
      process.execPath,
      [BIN, 'run', '--config', config, '--log-format', 'pretty'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, NO_COLOR: '1' },
      },
    );
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((resolve) =>
      child.on('close', (code) => resolve(code)),
    );
    try {
      const t0 = Date.now();
      while (!/often: Success/.test(stderr)) {
        if (Date.now() - t0 > 60_000) throw new Error(`no run in 60 s:\n${stderr}`);
        await new Promise((r) => setTimeout(r, 5));
      }
      child.kill('SIGTERM');
      expect(await exited, stderr).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
    const lines = stderr.trim().split('\n');
    const time = String.raw`\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\]`;
    expect(lines[0]).toMatch(
      new RegExp(
        `^${time} INFO: efs-backup run: 1 job\\(s\\) from \\S+efs-backup\\.yaml jobs=\\["often"\\]$`,
      ),
    );
    expect(lines).toContainEqual(
      expect.stringMatching(
        new RegExp(
          `^${time} INFO: job often: Success: snapshot daily/\\d{8}T\\d{6}Z is complete BackupId=\\S+ LogLocation=\\S+\\.log$`,
        ),
      ),
    );
    expect(lines.at(-1)).toMatch(new RegExp(`^${time} INFO: stopped$`));
    expect(lines.filter((l) => l.startsWith('{'))).toEqual([]);
  });
});
