import { failureText, NoticeError } from './notice-error.js';
import type { Notice, Notifier } from './ports.js';

export interface WebhookOptions {
  url: string;
  headers?: Record<string, string>;
  /** @default 15000 */
  timeoutMs?: number;
}

/**
 * A webhook's URL as logs show it: scheme, host and port, the rest elided (`/…`). Webhook URLs
 * carry their secret in the path (Slack's, Discord's, Teams') or the query, and logs, records
 * and journals are read by more people than the configuration.
 */
export function webhookTarget(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return 'the webhook URL (not a valid URL)';
  }
  const rest = u.pathname !== '/' || u.search !== '' ? '/…' : '';
  return `${u.protocol}//${u.host}${rest}`;
}

/**
 * Notices as a JSON POST: `text` (one line, as Slack's incoming webhooks take it), `subject`,
 * `body` and the whole `record`.
 */
export class WebhookNotifier implements Notifier {
  readonly channel = 'webhook';
  readonly target: string;
  constructor(private readonly o: WebhookOptions) {
    this.target = `POST ${webhookTarget(o.url)}`;
  }

  async send(notice: Notice): Promise<void> {
    const target = this.target;
    const timeoutMs = this.o.timeoutMs ?? 15_000;
    let res: Response;
    try {
      res = await fetch(this.o.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...this.o.headers },
        body: JSON.stringify({
          text: notice.text,
          subject: notice.subject,
          body: notice.body,
          record: notice.record,
        }),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (e) {
      const { code, why } = failureText(e, timeoutMs);
      throw new NoticeError(target, code, why, { cause: e });
    }
    // The body is read so the connection is freed.
    const answer = await res.text().catch(() => '');
    if (!res.ok)
      throw new NoticeError(
        target,
        `HTTP ${res.status}`,
        `answered ${res.status} ${res.statusText} ${answer.slice(0, 200)}`.trim(),
      );
  }
}
