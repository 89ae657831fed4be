/**
 * Notices: a real SMTP server and a real HTTP server on 127.0.0.1 receive what a run sends,
 * through the channels a configuration file names, several at once; a channel that is down or
 * silent is logged and never fails the run.
 */
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  parseConfig,
  runBackup,
  smtpTarget,
  webhookTarget,
  type RunRecord,
  type ServiceLog,
} from '../src/index.js';
import { localPorts } from '../src/local.js';
import { records, setUp } from './fixtures.js';

interface Mail {
  from: string;
  to: string[];
  headers: Map<string, string>;
  body: string;
}

/** The headers and decoded (quoted-printable) text of a plain message. */
function parseMail(raw: string): Pick<Mail, 'headers' | 'body'> {
  const split = raw.indexOf('\r\n\r\n');
  const head = raw.slice(0, split).replace(/\r\n[ \t]+/g, ' ');
  const headers = new Map<string, string>();
  for (const line of head.split('\r\n')) {
    const i = line.indexOf(':');
    headers.set(line.slice(0, i).toLowerCase(), line.slice(i + 1).trim());
  }
  let body = raw.slice(split + 4);
  if (/quoted-printable/i.test(headers.get('content-transfer-encoding') ?? '')) {
    const bytes = body
      .replace(/=\r\n/g, '')
      .replace(/=([0-9A-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
    body = Buffer.from(bytes, 'latin1').toString('utf8');
  }
  return { headers, body: body.replace(/\r\n/g, '\n') };
}

let smtp: SMTPServer;
let smtpPort = 0;
const mails: Mail[] = [];
let web: http.Server;
let webPort = 0;
const posts: { headers: http.IncomingHttpHeaders; json: Record<string, unknown> }[] = [];
let webStatus = 200;

beforeAll(async () => {
  smtp = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        mails.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          ...parseMail(Buffer.concat(chunks).toString('utf8')),
        });
        callback();
      });
    },
  });
  await new Promise<void>((resolve) => smtp.listen(0, '127.0.0.1', resolve));
  smtpPort = (smtp.server.address() as net.AddressInfo).port;

  web = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      posts.push({
        headers: req.headers,
        json: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>,
      });
      res.writeHead(webStatus, { 'content-type': 'text/plain' });
      res.end(webStatus === 200 ? 'ok' : 'no');
    });
  });
  await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
  webPort = (web.address() as net.AddressInfo).port;
});

afterAll(async () => {
  await new Promise<void>((resolve) => smtp.close(() => resolve()));
  await new Promise<void>((resolve) => web.close(() => resolve()));
});

/** A port of 127.0.0.1 where nothing listens (taken, then freed). */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

function config(o: {
  smtpPort?: number;
  webhook?: string;
  notifyOnSuccess?: boolean;
  source: string;
  dst: string;
  /** A job whose source is gone: as the daemon meets it when it vanished after the start. */
  vanished?: boolean;
}) {
  const text = `
jobs:
  - name: projects
    source: ${o.source}
    destination: ${o.dst}
    schedule: "0 2 * * *"
    notifyOnSuccess: ${o.notifyOnSuccess ?? false}
notifications:
  email:
    smtp: "smtp://127.0.0.1:${o.smtpPort ?? smtpPort}"
    from: backup@example.com
    to: [ops@example.com, oncall@example.com]
  webhook:
    url: "${o.webhook ?? `http://127.0.0.1:${webPort}/hooks/T000/B000`}"
    headers: { x-token: secret }
`;
  return parseConfig(text, path.join(o.dst, 'efs-backup.yaml'), undefined, {
    checkPaths: !o.vanished,
  });
}

function collectLog(): ServiceLog & { lines: { level: string; obj: object; msg?: string }[] } {
  const lines: { level: string; obj: object; msg?: string }[] = [];
  return {
    lines,
    info: (obj, msg) => lines.push({ level: 'info', obj, ...(msg ? { msg } : {}) }),
    warn: (obj, msg) => lines.push({ level: 'warn', obj, ...(msg ? { msg } : {}) }),
    error: (obj, msg) => lines.push({ level: 'error', obj, ...(msg ? { msg } : {}) }),
  };
}

describe('a failed run is notified on every channel at once', () => {
  it('the mail has the right subject and body; the webhook gets the record and a Slack text', async () => {
    const { base, dst } = setUp();
    mails.length = 0;
    posts.length = 0;
    const c = config({ source: path.join(base, 'not-mounted'), dst, vanished: true });
    const { record, notices } = await runBackup(c.jobs[0]!, localPorts(c), { refusals: 'record' });
    expect(record.Status).toBe('Failed');
    expect(notices).toEqual([
      { channel: 'email', error: null },
      { channel: 'webhook', error: null },
    ]);

    expect(mails).toHaveLength(1);
    const mail = mails[0]!;
    expect(mail.from).toBe('backup@example.com');
    expect(mail.to).toEqual(['ops@example.com', 'oncall@example.com']);
    expect(mail.headers.get('subject')).toBe(
      `[efs-backup] Failed: job projects (efs-backup/daily) on ${os.hostname()}`,
    );
    expect(mail.headers.get('x-efs-backup-id')).toBe(record.BackupId);
    // What happened, what to do, and where to read more.
    expect(mail.body).toContain(
      `efs-backup job projects (efs-backup/daily) failed: source ${path.join(base, 'not-mounted')} does not exist`,
    );
    expect(mail.body).toContain(
      'What to do: Check that the source and the destination are mounted and writable and that no other host writes this backup set, then run `efs-backup backup --job projects` to try again.',
    );
    expect(mail.body).toContain(`  BackupId      ${record.BackupId}`);
    expect(mail.body).toContain(`  Log           ${record.LogLocation}`);

    expect(posts).toHaveLength(1);
    const post = posts[0]!;
    expect(post.headers['content-type']).toBe('application/json');
    expect(post.headers['x-token']).toBe('secret');
    expect(post.json.record).toEqual(record);
    const text = post.json.text as string;
    expect(text).not.toContain('\n');
    expect(text).toMatch(
      /^efs-backup job projects \(efs-backup\/daily\) on \S+ failed: source \S+ does not exist\. Check that the source and the destination are mounted/,
    );
    expect(post.json.subject).toBe(mail.headers.get('subject'));
  });
});

describe('which runs notify', () => {
  it('a plain success only with notifyOnSuccess; warnings always', async () => {
    const { src, dst } = setUp();
    mails.length = 0;
    posts.length = 0;
    const quiet = config({ source: src, dst });
    const first = await runBackup(quiet.jobs[0]!, localPorts(quiet));
    expect(first.record.Status).toBe('Success');
    expect(first.notices).toEqual([]);
    expect(mails).toEqual([]);
    expect(posts).toEqual([]);

    const loud = config({ source: src, dst, notifyOnSuccess: true });
    const second = await runBackup(loud.jobs[0]!, localPorts(loud));
    expect(second.record.Status).toBe('Success');
    expect(mails.map((m) => m.headers.get('subject'))).toEqual([
      `[efs-backup] Success: job projects (efs-backup/daily) on ${os.hostname()}`,
    ]);
    expect(mails[0]!.body).toContain(`snapshot daily/${second.record.Snapshot} is complete`);
    expect(mails[0]!.body).toContain('What to do: Nothing to do.');
    expect((posts[0]!.json.record as RunRecord).Status).toBe('Success');
  });

  it('an incomplete run tells that the next run continues', async () => {
    const { src, dst } = setUp();
    mails.length = 0;
    const c = config({ source: src, dst });
    const stop = new AbortController();
    stop.abort('shutdown');
    const { record } = await runBackup(c.jobs[0]!, localPorts(c), { signal: stop.signal });
    expect(record.Status).toBe('Incomplete');
    expect(mails).toHaveLength(1);
    expect(mails[0]!.body).toContain(
      'is incomplete: the efs-backup service was stopped before the backup completed; the next run continues from where this one stopped',
    );
    expect(mails[0]!.body).toContain('What to do: Nothing to do: the next run continues');
  });
});

describe('a channel that fails never fails the run', () => {
  it('an unreachable SMTP server and a webhook answering 500: the backup succeeds, recorded; both logged', async () => {
    const { src, dst } = setUp();
    webStatus = 500;
    posts.length = 0;
    try {
      const c = config({ source: src, dst, smtpPort: await closedPort(), notifyOnSuccess: true });
      const log = collectLog();
      const { record, notices } = await runBackup(c.jobs[0]!, localPorts(c), { log });
      expect(record.Status).toBe('Success');
      expect(record.Snapshot).toMatch(/^\d{8}T\d{6}Z$/);
      expect(notices.map((n) => n.channel)).toEqual(['email', 'webhook']);
      expect(notices[0]!.error).toMatch(/ECONNREFUSED/);
      expect(notices[1]!.error).toBe(
        `POST http://127.0.0.1:${webPort}/…: answered 500 Internal Server Error no`,
      );
      expect((await records(dst)).map((r) => [r.BackupId, r.Status])).toEqual([
        [record.BackupId, 'Success'],
      ]);
      expect(log.lines.filter((l) => l.level === 'warn').map((l) => l.msg)).toEqual([
        `the email notice was not sent: ${notices[0]!.error}`,
        `the webhook notice was not sent: ${notices[1]!.error}`,
      ]);
      expect(posts).toHaveLength(1);
    } finally {
      webStatus = 200;
    }
  });

  it('a webhook and an SMTP server that cannot be reached: the log names each target and the cause', async () => {
    const { src, dst } = setUp();
    const port = await closedPort();
    const c = config({
      source: src,
      dst,
      smtpPort: port,
      webhook: `http://127.0.0.1:${port}/services/T000/B000/s3cr3t?token=t0k3n`,
      notifyOnSuccess: true,
    });
    const log = collectLog();
    const { record, notices } = await runBackup(c.jobs[0]!, localPorts(c), { log });
    expect(record.Status).toBe('Success');
    const warned = log.lines.filter((l) => l.level === 'warn');
    expect(warned.map((l) => l.msg)).toEqual([
      `the email notice was not sent: SMTP 127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port}`,
      `the webhook notice was not sent: POST http://127.0.0.1:${port}/…: connect ECONNREFUSED 127.0.0.1:${port}`,
    ]);
    expect(warned.map((l) => l.obj)).toEqual([
      expect.objectContaining({
        channel: 'email',
        target: `SMTP 127.0.0.1:${port}`,
        code: 'ECONNREFUSED',
      }),
      expect.objectContaining({
        channel: 'webhook',
        target: `POST http://127.0.0.1:${port}/…`,
        code: 'ECONNREFUSED',
      }),
    ]);
    // The webhook's secret (its path and query) is never written down.
    expect(JSON.stringify({ warned, notices })).not.toMatch(/s3cr3t|t0k3n/);
  });

  it('shows a webhook as its scheme and host, and an SMTP server as host and port, never secrets', () => {
    expect(webhookTarget('https://hooks.slack.com/services/T0/B0/XXXX')).toBe(
      'https://hooks.slack.com/…',
    );
    expect(webhookTarget('https://user:pw@example.com:8443/?key=1')).toBe(
      'https://example.com:8443/…',
    );
    expect(webhookTarget('http://127.0.0.1:8080/')).toBe('http://127.0.0.1:8080');
    expect(smtpTarget('smtps://user:pw@mail.example.com')).toBe('SMTP mail.example.com:465');
    expect(smtpTarget('smtp://mail.example.com')).toBe('SMTP mail.example.com:587');
    expect(smtpTarget('smtp://u:p@mail.example.com:2525')).toBe('SMTP mail.example.com:2525');
  });

  it('an SMTP server that never answers is given up after the notice timeout', async () => {
    const { src, dst } = setUp();
    const sockets: net.Socket[] = [];
    const silent = net.createServer((s) => sockets.push(s));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const port = (silent.address() as net.AddressInfo).port;
      const c = config({ source: src, dst, smtpPort: port, notifyOnSuccess: true });
      const { record, notices } = await runBackup(c.jobs[0]!, localPorts(c), {
        notifyTimeoutMs: 1000,
      });
      expect(record.Status).toBe('Success');
      expect(notices[0]).toEqual({
        channel: 'email',
        error: `the email channel (SMTP 127.0.0.1:${port}) did not answer within 1 s`,
      });
      expect(notices[1]).toEqual({ channel: 'webhook', error: null });
    } finally {
      for (const s of sockets) s.destroy();
      silent.close();
    }
  });
});
