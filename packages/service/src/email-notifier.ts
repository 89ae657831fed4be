import { failureText, NoticeError } from './notice-error.js';
import type { Notice, Notifier } from './ports.js';

export interface EmailOptions {
  /** smtp://user:password@host:587 or smtps://...; nodemailer's URL options apply. */
  smtp: string;
  from: string;
  to: string | string[];
  /** Connection, greeting and socket timeouts. @default 15000 */
  timeoutMs?: number;
}

/**
 * An SMTP server as logs show it: `SMTP host:port` (the port nodemailer takes when the URL has
 * none), never the user or password of the URL.
 */
export function smtpTarget(smtp: string): string {
  let u: URL;
  try {
    u = new URL(smtp);
  } catch {
    return 'SMTP (the configured URL is not a valid URL)';
  }
  const port = u.port || (u.protocol === 'smtps:' ? '465' : '587');
  return `SMTP ${u.hostname}:${port}`;
}

/** Notices by e-mail over SMTP (nodemailer). */
export class EmailNotifier implements Notifier {
  readonly channel = 'email';
  readonly target: string;
  constructor(private readonly o: EmailOptions) {
    this.target = smtpTarget(o.smtp);
  }

  async send(notice: Notice): Promise<void> {
    // Loaded on the first notice: most runs send none.
    const { default: nodemailer } = await import('nodemailer');
    const t = this.o.timeoutMs ?? 15_000;
    // Settings in the URL's query (nodemailer's) win over these defaults.
    const transport = nodemailer.createTransport({
      url: this.o.smtp,
      connectionTimeout: t,
      greetingTimeout: t,
      socketTimeout: t,
    });
    try {
      await transport
        .sendMail({
          from: this.o.from,
          to: this.o.to,
          subject: notice.subject,
          text: notice.body,
          headers: {
            'X-EFS-Backup-Id': notice.record.BackupId,
            'X-EFS-Backup-Status': notice.record.Status,
          },
        })
        .catch((e: unknown) => {
          const { code, why } = failureText(e, t);
          throw new NoticeError(this.target, code, why, { cause: e });
        });
    } finally {
      transport.close();
    }
  }
}
