import { Cron } from 'croner';
import {
  badInput,
  checkLabel,
  EfsBackupError,
  excludePatternProblem,
  ifPresentNameProblem,
  isIntervalName,
  MIN_WINDOW_MINUTES,
  OptionError,
  resolveBackupOptions,
  WINDOW_RULE,
} from '@efs-backup/core';
import fs from 'node:fs';
import path from 'node:path';
import { isMap, isSeq, LineCounter, parseDocument, type Document } from 'yaml';
import * as z from 'zod';

/** The configuration file read when `--config` is not given. */
export const DEFAULT_CONFIG_FILE = 'efs-backup.yaml';

import { DEFAULT_EXPIRE_DAYS } from './record.js';

export { DEFAULT_EXPIRE_DAYS };

/** What a key allows, said once: it is both the error message and the JSON Schema description. */
function allowed(text: string) {
  return {
    error: (iss: { input?: unknown; code?: string }) =>
      iss.input === undefined
        ? `is missing; it must be ${text}`
        : `is ${show(iss.input)}, but must be ${text}`,
  };
}

function show(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return v.length === 0 ? 'an empty list' : `a list of ${v.length}`;
  if (typeof v === 'object') return 'a mapping';
  const s = JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

const WORD = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;
const EMAIL = /^[^\s@<>]+@[^\s@<>]+$/;

function checks(test: (v: string) => string | null) {
  return (v: string, ctx: z.RefinementCtx) => {
    const problem = test(v);
    if (problem) ctx.addIssue({ code: 'custom', message: problem, input: v });
  };
}

/** Cron expressions: five fields (minute precision) or six (seconds first). */
export function parseSchedule(schedule: string, timezone?: string): Cron {
  return new Cron(schedule, {
    paused: true,
    mode: '5-or-6-parts',
    ...(timezone ? { timezone } : {}),
  });
}

const pathText = 'a path (absolute, or relative to the configuration file)';

export const JobSchema = z
  .strictObject(
    {
      name: z
        .string(
          allowed('a plain word naming the job (letters, digits, "-", "_"), such as projects'),
        )
        .regex(
          WORD,
          allowed('a plain word naming the job (letters, digits, "-", "_"), such as projects'),
        )
        .describe('the job name, a plain word'),
      source: z
        .string(allowed(`the file system to back up: ${pathText}`))
        .min(1, allowed(`the file system to back up: ${pathText}`))
        .describe('the file system (or directory) to back up'),
      prefix: z
        .string(allowed('the sub-path of the source to back up, starting with "/", without ".."'))
        .regex(
          /^(?!.*(^|\/)\.\.(\/|$))\//,
          allowed('the sub-path of the source to back up, starting with "/", without ".."'),
        )
        .default('/')
        .describe('the sub-path of the source to back up'),
      destination: z
        .string(allowed(`the file system that holds the backups: ${pathText}`))
        .min(1, allowed(`the file system that holds the backups: ${pathText}`))
        .describe('the file system that holds the backups'),
      label: z
        .string(
          allowed(
            'the backup set folder on the destination: a name without "/" or "..", not starting with "."',
          ),
        )
        .superRefine(
          checks((v) => {
            try {
              checkLabel(v);
              return null;
            } catch (e) {
              return `is ${show(v)}, but must be a folder name: ${(e as Error).message}`;
            }
          }),
        )
        .default('efs-backup')
        .describe('the backup set folder on the destination'),
      interval: z
        .string(
          allowed(
            'a plain word such as hourly, daily, weekly or monthly (letters, digits, "-", "_"; not "latest")',
          ),
        )
        .refine(
          isIntervalName,
          allowed(
            'a plain word such as hourly, daily, weekly or monthly (letters, digits, "-", "_"; not "latest")',
          ),
        )
        .default('daily')
        .describe('the series tag: hourly, daily, weekly, monthly or a word of your own'),
      retain: z
        .number(allowed('a whole number of snapshots to keep, at least 1'))
        .int(allowed('a whole number of snapshots to keep, at least 1'))
        .min(1, allowed('a whole number of snapshots to keep, at least 1'))
        .default(7)
        .describe('complete snapshots of the interval to keep'),
      schedule: z
        .string(
          allowed(
            'a cron expression in quotes, such as "0 2 * * *" (minute hour day month weekday; a sixth leading field for seconds)',
          ),
        )
        .superRefine(
          checks((v) => {
            let cron: Cron;
            try {
              cron = parseSchedule(v);
            } catch (e) {
              return `is ${show(v)}, which is not a cron expression (${(e as Error).message}); use five fields such as "0 2 * * *" (minute hour day month weekday), or six with seconds first`;
            }
            // The daemon would wait for it forever: under systemd, backups silently stopped.
            if (cron.nextRun() === null)
              return `is ${show(v)}, which never fires: no date matches it (such as February 30th); use one that does, such as "0 2 * * *"`;
            return null;
          }),
        )
        .describe('when runs start: a cron expression, five fields or six with seconds first'),
      timezone: z
        .string(allowed('an IANA time zone such as UTC or Europe/Paris'))
        .superRefine(
          checks((v) => {
            try {
              new Intl.DateTimeFormat('en', { timeZone: v });
              return null;
            } catch {
              return `is ${show(v)}, but must be an IANA time zone such as UTC or Europe/Paris`;
            }
          }),
        )
        .optional()
        .describe('the time zone of the schedule; default: the host time zone'),
      windowMinutes: z
        .number(allowed(`the minutes a run may take: ${WINDOW_RULE}`))
        .min(MIN_WINDOW_MINUTES, allowed(`the minutes a run may take: ${WINDOW_RULE}`))
        .optional()
        .describe('minutes a run may take; it stops gracefully before, and the next run continues'),
      notifyOnSuccess: z
        .boolean(allowed('true or false'))
        .default(false)
        .describe('send a notice after a successful run too (failures always notify)'),
      concurrency: z
        .number(allowed('a whole number of file-system calls in flight, from 1 to 1024'))
        .int(allowed('a whole number of file-system calls in flight, from 1 to 1024'))
        .min(1, allowed('a whole number of file-system calls in flight, from 1 to 1024'))
        .max(1024, allowed('a whole number of file-system calls in flight, from 1 to 1024'))
        .optional()
        .describe('file-system calls in flight; default: from the file-system type'),
      checksum: z
        .boolean(allowed('true or false'))
        .optional()
        .describe(
          'hash every source file and compare it with the last snapshot (for a monthly job, say): catches changes that keep every stat field; slow, it reads everything',
        ),
      xattrs: z
        .boolean(allowed('true or false'))
        .optional()
        .describe('keep extended attributes and POSIX ACLs; default: true'),
      maxMiBps: z
        .number(allowed('a number of MiB per second above 0'))
        .positive(allowed('a number of MiB per second above 0'))
        .optional()
        .describe(
          'read at most this many MiB per second from the source, over every call in flight (gentle on production); default: no limit',
        ),
      maxOps: z
        .number(allowed('a number of calls per second above 0'))
        .positive(allowed('a number of calls per second above 0'))
        .optional()
        .describe(
          'make at most this many file-system calls per second on the source; default: no limit',
        ),
      workers: z
        .number(allowed('a whole number from 1 to 64'))
        .int(allowed('a whole number from 1 to 64'))
        .min(1, allowed('a whole number from 1 to 64'))
        .max(64, allowed('a whole number from 1 to 64'))
        .optional()
        .describe(
          'worker processes that build each snapshot together, each with the concurrency and limits above as its own; default: 1, no lease store',
        ),
      staleAfterHours: z
        .number(allowed('a number of hours above 0'))
        .positive(allowed('a number of hours above 0'))
        .optional()
        .describe(
          "`efs-backup status --check` fails when the job's newest snapshot is older than this; default: twice the longest gap between the schedule's runs",
        ),
      exclude: z
        .array(
          z
            .string(allowed('a gitignore-style pattern such as *.tmp, build/ or /cache'))
            .superRefine(
              checks((v) => {
                const why = excludePatternProblem(v);
                return why ? `is ${show(v)}, a pattern that ${why}` : null;
              }),
            ),
          allowed('a list of gitignore-style patterns such as ["*.tmp", "build/", "/cache"]'),
        )
        .optional()
        .describe(
          'what to leave out: gitignore-style patterns relative to the backed-up root (source plus prefix), such as *.tmp, build/, /cache, **/node_modules/ or !keep.tmp; the last that matches decides',
        ),
      excludeIfPresent: z
        .array(
          z.string(allowed('a file name such as CACHEDIR.TAG')).superRefine(
            checks((v) => {
              const why = ifPresentNameProblem(v);
              return why ? `is ${show(v)}, a name that ${why}` : null;
            }),
          ),
          allowed('a list of file names such as ["CACHEDIR.TAG"]'),
        )
        .optional()
        .describe(
          'names such as CACHEDIR.TAG: a directory holding one is kept empty, its content left out',
        ),
    },
    allowed('a mapping with name, source, destination and schedule'),
  )
  .describe('one backup job: what to back up, where, how often and how many to keep');

const emailAddress = z
  .string(allowed('an e-mail address such as ops@example.com'))
  .regex(EMAIL, allowed('an e-mail address such as ops@example.com'));

const url = (schemes: string[], example: string) => {
  const text = `an ${schemes.join(' or ')} URL such as ${example}`;
  return z.string(allowed(text)).superRefine(
    checks((v) => {
      try {
        const u = new URL(v);
        if (schemes.includes(u.protocol.replace(/:$/, ''))) return null;
      } catch {
        /* said below */
      }
      return `is ${show(v)}, but must be ${text}`;
    }),
  );
};

export const NotificationsSchema = z
  .strictObject({
    email: z
      .strictObject({
        smtp: url(['smtp', 'smtps'], 'smtp://user:password@mail.example.com:587'),
        from: emailAddress,
        to: z.union(
          [emailAddress, z.array(emailAddress).min(1, allowed('one or more e-mail addresses'))],
          allowed('an e-mail address or a list of them'),
        ),
      })
      .optional()
      .describe('e-mail over SMTP'),
    webhook: z
      .strictObject({
        url: url(['http', 'https'], 'https://hooks.example.com/T000/B000'),
        headers: z.record(z.string(), z.string(allowed('a header value (a string)'))).optional(),
      })
      .optional()
      .describe('a JSON POST with the record and a Slack-compatible text field'),
    console: z
      .boolean(allowed('true or false'))
      .default(false)
      .describe('print notices on standard error'),
  })
  .describe('where notices go; several channels at once');

export const ConfigSchema = z
  .strictObject(
    {
      jobs: z
        .array(
          JobSchema,
          allowed('a list of jobs, each with name, source, destination and schedule'),
        )
        .min(1, allowed('a list of at least one job')),
      notifications: NotificationsSchema.optional(),
      records: z
        .strictObject({
          path: z
            .string(allowed(`the SQLite file of the run records: ${pathText}`))
            .min(1, allowed(`the SQLite file of the run records: ${pathText}`))
            .optional()
            .describe('default: <destination>/<label>/.efs-backup/records.sqlite of each job'),
          expireDays: z
            .number(allowed('a whole number of days, at least 1'))
            .int(allowed('a whole number of days, at least 1'))
            .min(1, allowed('a whole number of days, at least 1'))
            .default(DEFAULT_EXPIRE_DAYS)
            .describe('records and their logs are purged this many days after the run'),
        })
        .optional(),
    },
    allowed('a mapping with a jobs: list (see examples/efs-backup.yaml)'),
  )
  .superRefine((c, ctx) => {
    const seen = new Map<string, number>();
    c.jobs.forEach((j, i) => {
      const first = seen.get(j.name);
      if (first !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['jobs', i, 'name'],
          input: j.name,
          message: `is ${show(j.name)}, the name of jobs[${first}] too; every job needs a name of its own`,
        });
      } else seen.set(j.name, i);
    });
  })
  .describe('efs-backup configuration: scheduled, incremental, browsable backups');

export type Job = z.output<typeof JobSchema>;
export type Notifications = z.output<typeof NotificationsSchema>;
export type Config = z.output<typeof ConfigSchema> & {
  /** The file the configuration was read from (absolute). */
  file: string;
  records: { path?: string; expireDays: number };
};

/** The published JSON Schema of the configuration file (editors complete and check with it). */
export function configJsonSchema(): Record<string, unknown> {
  return {
    ...z.toJSONSchema(ConfigSchema, { io: 'input', target: 'draft-2020-12' }),
    $id: 'https://github.com/efs-backup/efs-backup/efs-backup.schema.json',
    title: 'efs-backup configuration',
  };
}

/** A configuration that cannot be used: the CLI exits 2 and writes nothing. */
export class ConfigError extends EfsBackupError {
  readonly problems: string[];
  constructor(problems: string[]) {
    super('BAD_INPUT', problems.join('\n'));
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

function keyPath(p: readonly PropertyKey[]): string {
  let out = '';
  for (const k of p) out += typeof k === 'number' ? `[${k}]` : out ? `.${String(k)}` : String(k);
  return out || '(top level)';
}

/** The keys an object at `p` allows, for "unknown key" messages. */
function keysAt(p: readonly PropertyKey[]): string[] {
  let s: z.core.$ZodType = ConfigSchema;
  for (const k of [...p, null]) {
    for (;;) {
      const def = s._zod.def as { type: string; innerType?: z.core.$ZodType; in?: z.core.$ZodType };
      if (def.innerType) s = def.innerType;
      else if (def.type === 'pipe' && def.in) s = def.in;
      else break;
    }
    if (k === null) break;
    const def = s._zod.def as {
      type: string;
      shape?: Record<string, z.core.$ZodType>;
      element?: z.core.$ZodType;
    };
    if (def.type === 'array' && def.element) s = def.element;
    else if (def.type === 'object' && def.shape?.[String(k)]) s = def.shape[String(k)]!;
    else return [];
  }
  const shape = (s._zod.def as { shape?: Record<string, unknown> }).shape;
  return shape ? Object.keys(shape) : [];
}

/** The line of the node at `p` in the YAML document, when it has one. */
function lineOf(doc: Document, lines: LineCounter, p: readonly PropertyKey[]): number | null {
  for (let n = p.length; n >= 0; n--) {
    const node = n === 0 ? doc.contents : doc.getIn(p.slice(0, n) as (string | number)[], true);
    const range = (node as { range?: [number, number, number] } | null | undefined)?.range;
    if (range) return lines.linePos(range[0]).line;
    // A key's value may be a scalar without a node of its own: look at its parent's pairs.
    if (n > 0 && (isMap(node) || isSeq(node))) break;
  }
  return null;
}

export interface LoadOptions {
  /**
   * Check every job on disk as `backup --source` checks its options, before anything starts:
   * its source, prefix and destination there (is it mounted?), neither inside the other.
   * @default true
   */
  checkPaths?: boolean;
}

/** Reads and checks a configuration file; every problem names the file, the key and what is allowed. */
export function loadConfig(file: string, o: LoadOptions = {}): Config {
  const abs = path.resolve(file);
  let text: string;
  try {
    text = fs.readFileSync(abs, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ConfigError([
      code === 'ENOENT'
        ? `${file}: no such configuration file (write one, or name it with --config FILE)`
        : `${file}: cannot read the configuration file (${code ?? (e as Error).message})`,
    ]);
  }
  return parseConfig(text, abs, file, o);
}

const lineNumber = (p: string): number => Number(/^[^:]*:(\d+)/.exec(p)?.[1] ?? 0);
const byLine = (a: string, b: string): number => lineNumber(a) - lineNumber(b);

/** Checks configuration text; `shown` is how messages name the file. */
export function parseConfig(text: string, abs: string, shown = abs, o: LoadOptions = {}): Config {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => {
        const at = e.linePos?.[0];
        const what = e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
        return `${shown}${at ? `:${at.line}:${at.col}` : ''}: not valid YAML: ${what}`;
      }),
    );
  }
  const data: unknown = doc.toJS();
  if (data === null || data === undefined) {
    throw new ConfigError([
      `${shown}: the file is empty; it must have a jobs: list (see examples/efs-backup.yaml)`,
    ]);
  }
  const parsed = ConfigSchema.safeParse(data);
  if (!parsed.success) {
    const problems: string[] = [];
    for (const iss of parsed.error.issues) {
      if (iss.code === 'unrecognized_keys') {
        for (const key of iss.keys) {
          const p = [...iss.path, key];
          const line = lineOf(doc, lines, p);
          const ok = keysAt(iss.path);
          problems.push(
            `${shown}${line ? `:${line}` : ''}: ${keyPath(p)} is not a known key; allowed here: ${ok.join(', ')}`,
          );
        }
        continue;
      }
      const line = lineOf(doc, lines, iss.path);
      problems.push(`${shown}${line ? `:${line}` : ''}: ${keyPath(iss.path)} ${iss.message}`);
    }
    throw new ConfigError(problems.sort(byLine));
  }
  const c = parsed.data;
  const dir = path.dirname(abs);
  const resolve = (p: string): string => path.resolve(dir, p);
  const config: Config = {
    ...c,
    file: abs,
    jobs: c.jobs.map((j) => ({
      ...j,
      source: resolve(j.source),
      destination: resolve(j.destination),
    })),
    records: {
      expireDays: c.records?.expireDays ?? DEFAULT_EXPIRE_DAYS,
      ...(c.records?.path ? { path: resolve(c.records.path) } : {}),
    },
  };
  if (o.checkPaths ?? true) {
    const problems = config.jobs.flatMap((job, i) => {
      const problem = jobOnDisk(job);
      if (!problem) return [];
      const p = ['jobs', i, ...(problem.key ? [problem.key] : [])];
      const line = lineOf(doc, lines, p);
      return [`${shown}${line ? `:${line}` : ''}: ${keyPath(p)} ${problem.text}`];
    });
    if (problems.length > 0) throw new ConfigError(problems);
  }
  return config;
}

/**
 * What the command line's own check (`resolveBackupOptions`, the one rule) refuses in a job,
 * said as the configuration says things; null when the job is good.
 */
function jobOnDisk(job: Job): { key: string | null; text: string } | null {
  try {
    resolveBackupOptions(job);
    return null;
  } catch (e) {
    if (e instanceof OptionError)
      return { key: e.option, text: `is ${JSON.stringify(e.value)}, which ${e.problem}` };
    if (e instanceof EfsBackupError && e.code === 'BAD_INPUT')
      return { key: null, text: e.message };
    throw e;
  }
}

/** The job of that name, or a BAD_INPUT error listing the names there are. */
export function findJob(config: Config, name: string): Job {
  const job = config.jobs.find((j) => j.name === name);
  if (!job) {
    throw badInput(
      `${config.file}: no job named "${name}"; the jobs are ${config.jobs.map((j) => j.name).join(', ')}`,
    );
  }
  return job;
}
