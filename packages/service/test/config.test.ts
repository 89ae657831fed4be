/**
 * The configuration file: the examples load; each kind of mistake is refused with one message
 * naming the file, the line, the key and what is allowed (the CLI exits 2 on it, see
 * packages/cli/test/service-cli.test.ts); the published JSON Schema is the zod schema's.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { tmpDir } from '../../core/test/fixtures/tmp.js';
import { ConfigError, configJsonSchema, findJob, loadConfig, parseConfig } from '../src/index.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const EXAMPLES = path.join(REPO, 'examples');

/** The schema's checks only: these files name mounts of other hosts (/mnt/efs, ...). */
const SCHEMA_ONLY = { checkPaths: false };

describe('the examples', () => {
  const files = fs.readdirSync(EXAMPLES).filter((f) => f.endsWith('.yaml'));

  it('are there', () => {
    expect(files).toContain('efs-backup.yaml');
    expect(files.length).toBeGreaterThanOrEqual(3);
  });

  it.each(files)('%s loads', (name) => {
    const c = loadConfig(path.join(EXAMPLES, name), SCHEMA_ONLY);
    expect(c.jobs.length).toBeGreaterThan(0);
    for (const j of c.jobs) {
      expect(path.isAbsolute(j.source)).toBe(true);
      expect(path.isAbsolute(j.destination)).toBe(true);
    }
  });

  it('efs-backup.yaml has the shape of the issue, with its defaults filled in', () => {
    const c = loadConfig(path.join(EXAMPLES, 'efs-backup.yaml'), SCHEMA_ONLY);
    expect(findJob(c, 'projects')).toEqual({
      name: 'projects',
      source: '/mnt/efs',
      prefix: '/projects',
      destination: '/mnt/efs-backup',
      label: 'efs-backup',
      interval: 'daily',
      retain: 7,
      schedule: '0 2 * * *',
      windowMinutes: 180,
      notifyOnSuccess: false,
      exclude: ['*.tmp', '**/node_modules/', '/scratch'],
      excludeIfPresent: ['CACHEDIR.TAG'],
    });
    expect(c.notifications).toEqual({
      email: {
        smtp: 'smtp://mail.example.com:587',
        from: 'backup@example.com',
        to: ['ops@example.com'],
      },
      webhook: { url: 'https://hooks.example.com/T000/B000' },
      console: false,
    });
    expect(c.records).toEqual({ expireDays: 90 });
  });

  it('minimal.yaml gets every default', () => {
    const job = loadConfig(path.join(EXAMPLES, 'minimal.yaml'), SCHEMA_ONLY).jobs[0]!;
    expect(job).toMatchObject({
      prefix: '/',
      label: 'efs-backup',
      interval: 'daily',
      retain: 7,
      notifyOnSuccess: false,
    });
    expect(job.windowMinutes).toBeUndefined();
  });
});

describe('relative paths', () => {
  it('are read from the configuration file’s folder', () => {
    const dir = tmpDir('efs-backup-config-');
    const file = path.join(dir, 'sub', 'efs-backup.yaml');
    fs.mkdirSync(path.dirname(file));
    fs.writeFileSync(
      file,
      'jobs:\n  - {name: a, source: ../src, destination: dst, schedule: "0 2 * * *"}\nrecords: {path: db/records.sqlite}\n',
    );
    const c = loadConfig(file, SCHEMA_ONLY);
    expect(c.jobs[0]!.source).toBe(path.join(dir, 'src'));
    expect(c.jobs[0]!.destination).toBe(path.join(dir, 'sub', 'dst'));
    expect(c.records.path).toBe(path.join(dir, 'sub', 'db', 'records.sqlite'));
    expect(c.file).toBe(file);
  });
});

const GOOD_JOB = `  - name: projects
    source: /mnt/efs
    destination: /mnt/efs-backup
    schedule: "0 2 * * *"
`;

const GOOD_JOB_WITH = (from: string, to: string): string => `jobs:\n${GOOD_JOB.replace(from, to)}`;

/** The problems of a configuration text, as the CLI prints them. */
function problems(text: string): string[] {
  try {
    parseConfig(text, '/etc/efs-backup.yaml', 'efs-backup.yaml', SCHEMA_ONLY);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as ConfigError).code).toBe('BAD_INPUT');
    return (e as ConfigError).problems;
  }
  throw new Error('the configuration was accepted');
}

describe('each kind of mistake gives one precise message: file, line, key, what is allowed', () => {
  const cases: { name: string; text: string; message: RegExp }[] = [
    {
      name: 'a YAML syntax error',
      text: `jobs:\n  - name: [projects\n`,
      message: /^efs-backup\.yaml:\d+:\d+: not valid YAML: /,
    },
    {
      name: 'a key given twice',
      text: `jobs:\n${GOOD_JOB}    retain: 3\n    retain: 4\n`,
      message: /^efs-backup\.yaml:7:\d+: not valid YAML: Map keys must be unique/,
    },
    {
      name: 'an empty file',
      text: '',
      message: /^efs-backup\.yaml: the file is empty; it must have a jobs: list/,
    },
    {
      name: 'a list at the top',
      text: `- name: projects\n`,
      message:
        /^efs-backup\.yaml:1: \(top level\) is a list of 1, but must be a mapping with a jobs: list/,
    },
    {
      name: 'no jobs',
      text: `notifications: {console: true}\n`,
      message:
        /^efs-backup\.yaml:1: jobs is missing; it must be a list of jobs, each with name, source, destination and schedule/,
    },
    {
      name: 'an empty jobs list',
      text: `jobs: []\n`,
      message:
        /^efs-backup\.yaml:1: jobs is an empty list, but must be a list of at least one job$/,
    },
    {
      name: 'a misspelt key',
      text: `jobs:\n${GOOD_JOB}    retian: 3\n`,
      message:
        /^efs-backup\.yaml:6: jobs\[0\]\.retian is not a known key; allowed here: name, source, prefix, destination, label, interval, retain, schedule, timezone, windowMinutes, notifyOnSuccess, concurrency, checksum, xattrs, maxMiBps, maxOps, workers, staleAfterHours, exclude, excludeIfPresent$/,
    },
    {
      name: 'an unknown top-level key',
      text: `jobs:\n${GOOD_JOB}notify: {}\n`,
      message:
        /^efs-backup\.yaml:6: notify is not a known key; allowed here: jobs, notifications, records$/,
    },
    {
      name: 'a missing schedule',
      text: `jobs:\n  - name: projects\n    source: /mnt/efs\n    destination: /mnt/efs-backup\n`,
      message:
        /^efs-backup\.yaml:2: jobs\[0\]\.schedule is missing; it must be a cron expression in quotes, such as "0 2 \* \* \*"/,
    },
    {
      name: 'a bad cron expression',
      text: `jobs:\n${GOOD_JOB.replace('0 2 * * *', '0 25 * * *')}`,
      message:
        /^efs-backup\.yaml:5: jobs\[0\]\.schedule is "0 25 \* \* \*", which is not a cron expression \(.+\); use five fields such as "0 2 \* \* \*"/,
    },
    {
      name: 'retain 0',
      text: `jobs:\n${GOOD_JOB}    retain: 0\n`,
      message:
        /^efs-backup\.yaml:6: jobs\[0\]\.retain is 0, but must be a whole number of snapshots to keep, at least 1$/,
    },
    {
      name: 'retain as text',
      text: `jobs:\n${GOOD_JOB}    retain: seven\n`,
      message: /^efs-backup\.yaml:6: jobs\[0\]\.retain is "seven", but must be a whole number/,
    },
    {
      name: 'a fractional retain',
      text: `jobs:\n${GOOD_JOB}    retain: 2.5\n`,
      message: /^efs-backup\.yaml:6: jobs\[0\]\.retain is 2\.5, but must be a whole number/,
    },
    {
      name: 'a negative window',
      text: `jobs:\n${GOOD_JOB}    windowMinutes: -5\n`,
      message:
        /^efs-backup\.yaml:6: jobs\[0\]\.windowMinutes is -5, but must be the minutes a run may take: a number of minutes, at least 0\.1/,
    },
    {
      name: 'an interval that is not a word',
      text: `jobs:\n${GOOD_JOB}    interval: every day\n`,
      message:
        /^efs-backup\.yaml:6: jobs\[0\]\.interval is "every day", but must be a plain word such as hourly, daily/,
    },
    {
      name: 'the interval "latest"',
      text: `jobs:\n${GOOD_JOB}    interval: latest\n`,
      message: /^efs-backup\.yaml:6: jobs\[0\]\.interval is "latest", but must be .*not "latest"/,
    },
    {
      name: 'a label with a slash',
      text: `jobs:\n${GOOD_JOB}    label: a/b\n`,
      message:
        /^efs-backup\.yaml:6: jobs\[0\]\.label is "a\/b", but must be a folder name: label "a\/b" must not contain "\/"$/,
    },
    {
      name: 'a prefix with ..',
      text: `jobs:\n${GOOD_JOB}    prefix: /a/../b\n`,
      message:
        /^efs-backup\.yaml:6: jobs\[0\]\.prefix is "\/a\/\.\.\/b", but must be the sub-path of the source to back up, starting with "\/", without "\.\."$/,
    },
    {
      name: 'a prefix leaving the source at once',
      text: `jobs:\n${GOOD_JOB}    prefix: /../etc\n`,
      message:
        /^efs-backup\.yaml:6: jobs\[0\]\.prefix is "\/\.\.\/etc", but must be the sub-path of the source to back up, starting with "\/", without "\.\."$/,
    },
    {
      name: 'a schedule that never fires',
      text: GOOD_JOB_WITH('schedule: "0 2 * * *"', 'schedule: "0 0 31 2 *"'),
      message:
        /^efs-backup\.yaml:5: jobs\[0\]\.schedule is "0 0 31 2 \*", which never fires: no date matches it/,
    },
    {
      name: 'notifyOnSuccess as text',
      text: `jobs:\n${GOOD_JOB}    notifyOnSuccess: sometimes\n`,
      message:
        /^efs-backup\.yaml:6: jobs\[0\]\.notifyOnSuccess is "sometimes", but must be true or false$/,
    },
    {
      name: 'a concurrency out of range',
      text: `jobs:\n${GOOD_JOB}    concurrency: 5000\n`,
      message:
        /^efs-backup\.yaml:6: jobs\[0\]\.concurrency is 5000, but must be a whole number of file-system calls in flight, from 1 to 1024$/,
    },
    {
      name: 'an unknown time zone',
      text: `jobs:\n${GOOD_JOB}    timezone: Mars/Olympus\n`,
      message:
        /^efs-backup\.yaml:6: jobs\[0\]\.timezone is "Mars\/Olympus", but must be an IANA time zone/,
    },
    {
      name: 'a job that is not a mapping',
      text: `jobs:\n  - projects\n`,
      message:
        /^efs-backup\.yaml:2: jobs\[0\] is "projects", but must be a mapping with name, source, destination and schedule$/,
    },
    {
      name: 'two jobs of one name',
      text: `jobs:\n${GOOD_JOB}${GOOD_JOB}`,
      message:
        /^efs-backup\.yaml:6: jobs\[1\]\.name is "projects", the name of jobs\[0\] too; every job needs a name of its own$/,
    },
    {
      name: 'a job name with a space',
      text: `jobs:\n${GOOD_JOB.replace('name: projects', 'name: my projects')}`,
      message: /^efs-backup\.yaml:2: jobs\[0\]\.name is "my projects", but must be a plain word/,
    },
    {
      name: 'an SMTP URL of another scheme',
      text: `jobs:\n${GOOD_JOB}notifications:\n  email: {smtp: "http://mail:25", from: a@example.com, to: b@example.com}\n`,
      message:
        /^efs-backup\.yaml:7: notifications\.email\.smtp is "http:\/\/mail:25", but must be an smtp or smtps URL such as smtp:\/\//,
    },
    {
      name: 'an e-mail address without @',
      text: `jobs:\n${GOOD_JOB}notifications:\n  email: {smtp: "smtp://mail:25", from: a@example.com, to: [ops]}\n`,
      message:
        /^efs-backup\.yaml:7: notifications\.email\.to\[0\] is "ops", but must be an e-mail address such as ops@example\.com$/,
    },
    {
      name: 'e-mail without recipients',
      text: `jobs:\n${GOOD_JOB}notifications:\n  email: {smtp: "smtp://mail:25", from: a@example.com}\n`,
      message:
        /^efs-backup\.yaml:7: notifications\.email\.to is missing; it must be an e-mail address or a list of them$/,
    },
    {
      name: 'a webhook URL that is not a URL',
      text: `jobs:\n${GOOD_JOB}notifications:\n  webhook: {url: hooks.example.com}\n`,
      message:
        /^efs-backup\.yaml:7: notifications\.webhook\.url is "hooks\.example\.com", but must be an http or https URL/,
    },
    {
      name: 'an exclude pattern that is a comment',
      text: `jobs:\n${GOOD_JOB}    exclude:\n      - "*.tmp"\n      - "#cache"\n`,
      message:
        /^efs-backup\.yaml:8: jobs\[0\]\.exclude\[1\] is "#cache", a pattern that starts with "#", which makes it a comment in gitignore syntax: write \\# to match a name starting with #$/,
    },
    {
      name: 'exclude as one pattern, not a list',
      text: `jobs:\n${GOOD_JOB}    exclude: "*.tmp"\n`,
      message:
        /^efs-backup\.yaml:6: jobs\[0\]\.exclude is "\*\.tmp", but must be a list of gitignore-style patterns/,
    },
    {
      name: 'an excludeIfPresent name with a slash',
      text: `jobs:\n${GOOD_JOB}    excludeIfPresent: [cache/CACHEDIR.TAG]\n`,
      message:
        /^efs-backup\.yaml:6: jobs\[0\]\.excludeIfPresent\[0\] is "cache\/CACHEDIR\.TAG", a name that contains "\/"/,
    },
    {
      name: 'records kept 0 days',
      text: `jobs:\n${GOOD_JOB}records: {expireDays: 0}\n`,
      message:
        /^efs-backup\.yaml:6: records\.expireDays is 0, but must be a whole number of days, at least 1$/,
    },
  ];

  it.each(cases)('$name', ({ text, message }) => {
    const got = problems(text);
    expect(got, got.join('\n')).toHaveLength(1);
    expect(got[0]).toMatch(message);
  });

  it('several mistakes: one line each, in the order of the file', () => {
    const got = problems(
      `jobs:\n${GOOD_JOB}    retain: 0\n${GOOD_JOB.replace('projects', 'other')}    interval: "a b"\n    colour: red\n`,
    );
    expect(got).toHaveLength(3);
    expect(got.map((p) => p.split(':')[1])).toEqual(['6', '11', '12']);
  });

  it('a missing file names it and says how to give one', () => {
    expect(() => loadConfig('/nonexistent/efs-backup.yaml')).toThrow(
      /^\/nonexistent\/efs-backup\.yaml: no such configuration file \(write one, or name it with --config FILE\)$/,
    );
  });

  it('an unknown job is refused with the names there are', () => {
    const c = parseConfig(`jobs:\n${GOOD_JOB}`, '/etc/efs-backup.yaml', undefined, SCHEMA_ONLY);
    expect(() => findJob(c, 'nope')).toThrow(
      '/etc/efs-backup.yaml: no job named "nope"; the jobs are projects',
    );
  });
});

describe('the published JSON Schema', () => {
  const file = path.join(REPO, 'packages/service/efs-backup.schema.json');

  it('is the zod schema’s (regenerate: npm run build && npm run schema -w @efs-backup/service)', () => {
    expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toEqual(configJsonSchema());
  });

  it('describes the keys, defaults and limits', () => {
    const s = configJsonSchema() as {
      required: string[];
      additionalProperties: boolean;
      properties: { jobs: { items: { required: string[]; properties: Record<string, object> } } };
    };
    expect(s.required).toEqual(['jobs']);
    expect(s.additionalProperties).toBe(false);
    const job = s.properties.jobs.items;
    expect(job.required.sort()).toEqual(['destination', 'name', 'schedule', 'source']);
    expect(job.properties.retain).toMatchObject({ type: 'integer', minimum: 1, default: 7 });
    expect(job.properties.label).toMatchObject({ type: 'string', default: 'efs-backup' });
    expect(job.properties.schedule).toMatchObject({ type: 'string' });
  });
});
