/**
 * One answer per mistake (issue 13, part 3): the same situation gets the same exit code and the
 * same message in every form. A configuration is checked when it is loaded, every job as
 * `backup --source` checks its options, before `run`, `backup --job`, `history --job` or
 * `status --config` starts anything; a set that is not there is answered alike by every command
 * that reads one; with --json every failure is a JSON object on stdout. Needs a build
 * (EFS_BACKUP_BIN runs these against another one).
 */
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dir, file, sourceAndDestination } from '../../core/test/fixtures/tree.js';
import {
  cli,
  cliJson,
  expectOneLineError,
  fingerprint,
  liveProcess,
  plantLock,
  requireBuild,
  type CliResult,
} from './helpers.js';

beforeAll(requireBuild);

type Rec = Record<string, unknown>;

interface JsonFailure {
  error: { code: string; message: string; exitCode: number; problems?: string[] };
}

function setup(): { base: string; src: string; dst: string } {
  return sourceAndDestination(
    { 'a.txt': file('hello\n'), sub: dir({ 'b.txt': file('bb') }) },
    'efs-backup-one-answer-',
  );
}

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** A job of a configuration, each key on its own line (line numbers are asserted). */
const jobLines = (o: {
  name: string;
  source: string;
  destination: string;
  prefix?: string;
  schedule?: string;
}): string =>
  `  - name: ${o.name}
    source: ${o.source}
    destination: ${o.destination}
    prefix: ${o.prefix ?? '/'}
    schedule: "${o.schedule ?? '0 2 * * *'}"
`;

function writeConfig(base: string, jobs: string[]): string {
  const f = path.join(base, 'efs-backup.yaml');
  fs.writeFileSync(f, `jobs:\n${jobs.join('')}`);
  return f;
}

const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
});

/** Another run's live lock on the default set of `dst`. */
function plantLiveLock(dst: string): number {
  const holder = liveProcess();
  children.push(holder);
  plantLock(dst, { pid: holder.pid! });
  return holder.pid!;
}

/** The JSON object a failure prints with --json: its code, message and exit code. */
function expectJsonFailure(r: CliResult, code: string, exitCode: number): JsonFailure['error'] {
  let parsed: JsonFailure;
  try {
    parsed = JSON.parse(r.stdout) as JsonFailure;
  } catch {
    throw new Error(`not JSON (exit ${r.status}):\n${r.stdout}\n--- stderr\n${r.stderr}`);
  }
  expect(r.status, r.stderr).toBe(exitCode);
  expect(parsed.error).toMatchObject({ code, exitCode, message: expect.any(String) });
  return parsed.error;
}

describe('lock held: exit 3 in every form; the daemon and --job record it Skipped', () => {
  it('backup --source: exit 3 naming the other run; with --json an error object on stdout', () => {
    const { dst, src } = setup();
    const pid = plantLiveLock(dst);
    const r = cli(['backup', '--source', src, '--destination', dst]);
    expect(r.status, r.stderr).toBe(3);
    expectOneLineError(r, new RegExp(`another run.*pid ${pid}`));
    const j = cli(['backup', '--source', src, '--destination', dst, '--json']);
    const e = expectJsonFailure(j, 'LOCKED', 3);
    expect(e.message).toContain('other-run-0000');
  });

  it('backup --job: exit 3 too, the run recorded Skipped (and printed, with --json)', () => {
    const { base, src, dst } = setup();
    const config = writeConfig(base, [
      jobLines({ name: 'projects', source: src, destination: dst }),
    ]);
    plantLiveLock(dst);
    const { result, json } = cliJson<Rec>(['backup', '--job', 'projects', '--config', config]);
    expect(result.status, result.stderr).toBe(3);
    expect(json).toMatchObject({ Status: 'Skipped', Job: 'projects' });
    expect(json.Message).toMatch(/another run \(other-run-0000/);
    const history = cliJson<Rec[]>(['history', '--job', 'projects', '--config', config]);
    expect(history.json.map((r) => r.Status)).toEqual(['Skipped']);
  });
});

describe('a missing source: exit 2 and nothing written, with --source and with --job', () => {
  it('backup --source', () => {
    const { base, dst } = setup();
    const nope = path.join(base, 'nope');
    const before = fingerprint(base);
    const r = cli(['backup', '--source', nope, '--destination', dst]);
    expect(r.status, r.stderr).toBe(2);
    expectOneLineError(r, new RegExp(`source ${escape(nope)} does not exist`));
    const j = cli(['backup', '--source', nope, '--destination', dst, '--json']);
    expect(expectJsonFailure(j, 'BAD_INPUT', 2).message).toBe(`source ${nope} does not exist`);
    expect(fingerprint(base)).toEqual(before);
  });

  it('backup --job: refused when the configuration is loaded, naming file, line and key', () => {
    const { base, dst } = setup();
    const nope = path.join(base, 'nope');
    const config = writeConfig(base, [
      jobLines({ name: 'projects', source: nope, destination: dst }),
    ]);
    const before = fingerprint(base);
    const r = cli(['backup', '--job', 'projects', '--config', config]);
    expect(r.status, r.stderr).toBe(2);
    expectOneLineError(
      r,
      new RegExp(
        `^efs-backup: ${escape(config)}:3: jobs\\[0\\]\\.source is "${escape(nope)}", which does not exist$`,
      ),
    );
    expect(fingerprint(base)).toEqual(before);
  });
});

describe('a configuration is checked when it is loaded, every job, before anything starts', () => {
  const commands = (config: string, job: string): string[][] => [
    ['run', '--config', config],
    ['backup', '--job', job, '--config', config],
    ['history', '--job', job, '--config', config],
    ['status', '--config', config],
  ];

  /** Each case: the jobs of the file (relative to base, src and dst), the one message. */
  const cases: {
    name: string;
    jobs: (b: { base: string; src: string; dst: string }) => string[];
    message: (b: { base: string; src: string; dst: string }) => RegExp;
  }[] = [
    {
      name: 'the destination inside the source (it would back itself up)',
      jobs: ({ src }) => [
        jobLines({
          name: 'projects',
          source: src,
          destination: path.join(src, 'sub'),
          schedule: '* * * * * *',
        }),
      ],
      message: ({ src }) =>
        new RegExp(
          `:4: jobs\\[0\\]\\.destination is "${escape(path.join(src, 'sub'))}", which is inside the source ${escape(src)}: the backup would back itself up$`,
        ),
    },
    {
      name: 'the source inside the destination',
      jobs: ({ dst }) => {
        fs.mkdirSync(path.join(dst, 'data'));
        return [jobLines({ name: 'projects', source: path.join(dst, 'data'), destination: dst })];
      },
      message: ({ dst }) =>
        new RegExp(
          `:3: jobs\\[0\\]\\.source is "${escape(path.join(dst, 'data'))}", which is inside the destination ${escape(dst)}$`,
        ),
    },
    {
      name: 'a destination that is not there (not mounted)',
      jobs: ({ base, src }) => [
        jobLines({ name: 'projects', source: src, destination: path.join(base, 'unmounted') }),
      ],
      message: ({ base }) =>
        new RegExp(
          `:4: jobs\\[0\\]\\.destination is "${escape(path.join(base, 'unmounted'))}", which does not exist \\(is it mounted\\?\\)$`,
        ),
    },
    {
      name: 'a source that is not there',
      jobs: ({ base, dst }) => [
        jobLines({ name: 'projects', source: path.join(base, 'gone'), destination: dst }),
      ],
      message: ({ base }) =>
        new RegExp(
          `:3: jobs\\[0\\]\\.source is "${escape(path.join(base, 'gone'))}", which does not exist$`,
        ),
    },
    {
      name: 'a prefix that is not in the source',
      jobs: ({ src, dst }) => [
        jobLines({ name: 'projects', source: src, destination: dst, prefix: '/nope' }),
      ],
      message: ({ src }) =>
        new RegExp(
          `:5: jobs\\[0\\]\\.prefix is "/nope", which does not exist in source ${escape(src)}$`,
        ),
    },
    {
      name: 'prefix /../etc (the JSON Schema forbids it)',
      jobs: ({ src, dst }) => [
        jobLines({ name: 'projects', source: src, destination: dst, prefix: '/../etc' }),
      ],
      message: () =>
        /:5: jobs\[0\]\.prefix is "\/\.\.\/etc", but must be the sub-path of the source to back up, starting with "\/", without "\.\."$/,
    },
    {
      name: 'a schedule that never fires (0 0 31 2 *)',
      jobs: ({ src, dst }) => [
        jobLines({ name: 'projects', source: src, destination: dst, schedule: '0 0 31 2 *' }),
      ],
      message: () =>
        /:6: jobs\[0\]\.schedule is "0 0 31 2 \*", which never fires: no date matches it/,
    },
    {
      name: 'a second job with its destination inside its source: the first job is refused too',
      jobs: ({ src, dst }) => [
        jobLines({ name: 'projects', source: src, destination: dst }),
        jobLines({
          name: 'other',
          source: src,
          destination: path.join(src, 'sub'),
          schedule: '* * * * * *',
        }),
      ],
      message: ({ src }) =>
        new RegExp(
          `:9: jobs\\[1\\]\\.destination is "${escape(path.join(src, 'sub'))}", which is inside the source`,
        ),
    },
  ];

  it.each(cases)('$name: exit 2, file:line: jobs[i].key, nothing written anywhere', (c) => {
    const b = setup();
    const config = writeConfig(b.base, c.jobs(b));
    // The whole test directory: the source, the destination and the configuration's folder.
    const before = fingerprint(b.base);
    for (const args of commands(config, 'projects')) {
      // A daemon that wrongly starts is stopped by the timeout (and fails the test).
      const r = cli(args, { cwd: b.base, timeout: 20_000 });
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expectOneLineError(r, new RegExp(`^efs-backup: ${escape(config)}${c.message(b).source}`));
      expect(fingerprint(b.base), args.join(' ')).toEqual(before);
    }
    // And as JSON: the error object, the configuration's problems listed.
    const j = cli(['backup', '--job', 'projects', '--config', config, '--json']);
    const e = expectJsonFailure(j, 'BAD_INPUT', 2);
    expect(e.problems).toHaveLength(1);
    expect(e.problems![0]).toMatch(c.message(b));
    expect(fingerprint(b.base)).toEqual(before);
  });
});

describe('verify: the wrong source, conflicting selectors, labels', () => {
  it('a source that does not exist is bad input naming it, not a list of removed entries', () => {
    const { base, src, dst } = setup();
    expect(cli(['backup', '--source', src, '--destination', dst]).status).toBe(0);
    const nope = path.join(base, 'nope');
    const r = cli(['verify', '--destination', dst, '--source', nope]);
    expect(r.status, r.stdout).toBe(2);
    expectOneLineError(r, new RegExp(`source ${escape(nope)} does not exist`));
    expect(r.stdout).toBe('');
    const j = cli(['verify', '--destination', dst, '--source', nope, '--json']);
    expect(expectJsonFailure(j, 'BAD_INPUT', 2).message).toBe(`source ${nope} does not exist`);
  });

  it("a source without the snapshot's prefix is bad input as for backup, not `removed: .`", () => {
    const { base, src, dst } = setup();
    const b = cli(['backup', '--source', src, '--prefix', '/sub', '--destination', dst]);
    expect(b.status, b.stderr).toBe(0);
    const before = fingerprint(base);
    // The directory that was backed up, given as the source: it has no /sub inside.
    const wrong = path.join(src, 'sub');
    const r = cli(['verify', '--destination', dst, '--source', wrong]);
    expect(r.status, r.stdout).toBe(2);
    expectOneLineError(
      r,
      new RegExp(
        `prefix /sub \\(of snapshot daily/\\d{8}T\\d{6}Z\\) does not exist in source ${escape(wrong)}$`,
      ),
    );
    expect(r.stdout).toBe('');
    expect(fingerprint(base)).toEqual(before);
    // The backup's own form says the same of the same source.
    const same = cli(['backup', '--source', wrong, '--prefix', '/sub', '--destination', dst]);
    expect(same.status).toBe(2);
    expectOneLineError(same, new RegExp(`prefix /sub does not exist in source ${escape(wrong)}$`));
  });

  it('a real difference at the root of the source is named "."', () => {
    const { src, dst } = setup();
    expect(cli(['backup', '--source', src, '--destination', dst]).status).toBe(0);
    fs.chmodSync(src, 0o750);
    const r = cli(['verify', '--destination', dst, '--source', src]);
    expect(r.status, r.stderr).toBe(1);
    expect(r.stdout).toMatch(/\n {2}changed: \.: mode\n/);
  });

  it('--all with --snapshot: exit 2, and with --json the error object', () => {
    const { src, dst } = setup();
    expect(cli(['backup', '--source', src, '--destination', dst]).status).toBe(0);
    const args = ['verify', '--destination', dst, '--all', '--snapshot', 'latest'];
    const r = cli(args);
    expect(r.status).toBe(2);
    expectOneLineError(r, /--all checks every snapshot and --snapshot latest names one/);
    const e = expectJsonFailure(cli([...args, '--json']), 'BAD_INPUT', 2);
    expect(e.message).toMatch(/--all checks every snapshot/);
  });
});

describe('every command that names a set answers a wrong one alike: exit 2, nothing written', () => {
  /** Every command that reads a set, with its own arguments, for `--destination D --label L`. */
  const readers = (base: string): { name: string; args: string[] }[] => [
    { name: 'snapshots', args: ['snapshots'] },
    { name: 'verify', args: ['verify'] },
    {
      name: 'restore',
      args: ['restore', '--snapshot', 'latest', '--target', path.join(base, 'restored')],
    },
    { name: 'ls', args: ['ls'] },
    { name: 'diff', args: ['diff', 'latest', 'latest'] },
    { name: 'history PATH', args: ['history', 'a.txt'] },
    { name: 'history', args: ['history'] },
    { name: 'status', args: ['status'] },
    { name: 'adopt', args: ['adopt'] },
  ];

  function withSet(): { base: string; src: string; dst: string } {
    const b = setup();
    const r = cli(['backup', '--source', b.src, '--destination', b.dst]);
    expect(r.status, r.stderr).toBe(0);
    return b;
  }

  it('a label with no set there: the destination and label named, the folders there listed', () => {
    const { base, dst } = withSet();
    const before = fingerprint(base);
    for (const c of readers(base)) {
      const args = [...c.args, '--destination', dst, '--label', 'nolabel'];
      const r = cli(args);
      expect(r.status, `${c.name}: ${r.stdout}${r.stderr}`).toBe(2);
      expectOneLineError(
        r,
        new RegExp(
          `^efs-backup: no backup set nolabel on ${escape(dst)} \\(the folders there: efs-backup\\)$`,
        ),
      );
      const e = expectJsonFailure(cli([...args, '--json']), 'BAD_INPUT', 2);
      expect(e.message).toMatch(/^no backup set nolabel on /);
    }
    expect(fingerprint(base)).toEqual(before);
  });

  it('label ".": its own message, not the one about ".."', () => {
    const { base, src, dst } = withSet();
    const before = fingerprint(base);
    const all = [...readers(base).map((c) => c.args), ['backup', '--source', src]];
    for (const args of all) {
      const r = cli([...args, '--destination', dst, '--label', '.']);
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expectOneLineError(
        r,
        /^efs-backup: label "\." is the destination itself: name a folder in it, such as efs-backup$/,
      );
    }
    expect(fingerprint(base)).toEqual(before);
  });

  it('a destination that is not there: "is it mounted?" from every command', () => {
    const { base, src } = withSet();
    const nope = path.join(base, 'unmounted');
    const before = fingerprint(base);
    for (const args of [...readers(base).map((c) => c.args), ['backup', '--source', src]]) {
      const r = cli([...args, '--destination', nope, '--label', 'efs-backup']);
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expectOneLineError(
        r,
        new RegExp(
          `^efs-backup: destination ${escape(nope)} does not exist \\(is it mounted\\?\\)$`,
        ),
      );
    }
    expect(fingerprint(base)).toEqual(before);
  });
});

describe('--json: every outcome is a JSON object on stdout, failures included', () => {
  it('a bad flag, a missing option, bad input of backup', () => {
    const { src, dst } = setup();
    const bogus = expectJsonFailure(cli(['backup', '--bogus', '--json']), 'BAD_INPUT', 2);
    expect(bogus.message).toBe("unknown option '--bogus'");
    const missing = expectJsonFailure(cli(['backup', '--source', src, '--json']), 'BAD_INPUT', 2);
    expect(missing.message).toMatch(/--destination/);
    const retain = cli([
      'backup',
      '--source',
      src,
      '--destination',
      dst,
      '--retain',
      'x',
      '--json',
    ]);
    expect(expectJsonFailure(retain, 'BAD_INPUT', 2).message).toMatch(
      /retain must be a whole number/,
    );
    expect(fs.readdirSync(dst)).toEqual([]);
  });

  it('a snapshot selector that matches nothing, for restore, ls, diff and verify', () => {
    const { base, src, dst } = setup();
    expect(cli(['backup', '--source', src, '--destination', dst]).status).toBe(0);
    for (const args of [
      ['restore', '--snapshot', 'weekly.0', '--target', path.join(base, 't')],
      ['ls', '--snapshot', 'weekly.0'],
      ['diff', 'weekly.0', 'latest'],
      ['verify', '--snapshot', 'weekly.0'],
    ]) {
      const r = cli([...args, '--destination', dst, '--json']);
      const e = expectJsonFailure(r, 'BAD_INPUT', 2);
      expect(e.message, args.join(' ')).toMatch(/no snapshot weekly\.0/);
    }
  });
});

describe('the same pair of options, or the same path, gets the same answer in every command', () => {
  it('an option that another one replaces is refused, as backup refuses --source with --job', () => {
    const { base, src, dst } = setup();
    const config = writeConfig(base, [
      jobLines({ name: 'projects', source: src, destination: dst }),
    ]);
    expect(cli(['backup', '--job', 'projects', '--config', config]).status).toBe(0);
    const before = fingerprint(base);
    for (const { args, names } of [
      {
        args: ['backup', '--job', 'projects', '--config', config, '--destination', dst],
        names:
          /^efs-backup: --destination cannot be given with --job: the job's settings come from the configuration file$/,
      },
      {
        args: ['history', '--job', 'projects', '--config', config, '--destination', dst],
        names:
          /^efs-backup: --destination cannot be given with --job: the job's settings come from the configuration file$/,
      },
      {
        args: ['history', '--config', config, '--label', 'other'],
        names:
          /^efs-backup: --label cannot be given with --config: the configuration names the sets$/,
      },
      {
        args: ['status', '--config', config, '--destination', dst],
        names:
          /^efs-backup: --destination cannot be given with --config: the configuration names the sets$/,
      },
      {
        args: ['history', 'a.txt', '--destination', dst, '--job', 'projects', '--config', config],
        names: /^efs-backup: --job cannot be given with a path: /,
      },
    ]) {
      const r = cli(args);
      expect(r.status, `${args.join(' ')}: ${r.stdout}`).toBe(2);
      expectOneLineError(r, names);
    }
    expect(fingerprint(base)).toEqual(before);
  });

  it('an absolute path inside the snapshots: refused by history PATH as by ls and restore', () => {
    const { src, dst } = setup();
    expect(cli(['backup', '--source', src, '--destination', dst]).status).toBe(0);
    for (const [args, what] of [
      [['ls', '/sub'], 'path'],
      [['history', '/sub'], 'path'],
      [
        [
          'restore',
          '--snapshot',
          'latest',
          '--subdir',
          '/sub',
          '--target',
          path.join(dst, '..', 't'),
        ],
        'subdir',
      ],
    ] as const) {
      const r = cli([...args, '--destination', dst]);
      expect(r.status, `${args.join(' ')}: ${r.stdout}`).toBe(2);
      expectOneLineError(
        r,
        new RegExp(`^efs-backup: ${what} "/sub" must be relative to the snapshot, not absolute$`),
      );
    }
  });
});
