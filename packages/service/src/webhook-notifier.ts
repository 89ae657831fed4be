import type { Notice, Notifier } from './ports.js';

export interface WebhookOptions {
  url: string;
  headers?: Record<string, string>;
  /** @default 15000 */
  timeoutMs?: number;
}

/**
 * Notices as a JSON POST: `text` (one line, as Slack's incoming webhooks take it), `subject`,
 * `body` and the whole `record`.
 */
export class WebhookNotifier implements Notifier {
  readonly channel = 'webhook';
  constructor(private readonly o: WebhookOptions) {}

  async send(notice: Notice): Promise<void> {
    const res = await fetch(this.o.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...this.o.headers },
      body: JSON.stringify({
        text: notice.text,
        subject: notice.subject,
        body: notice.body,
        record: notice.record,
      }),
      signal: AbortSignal.timeout(this.o.timeoutMs ?? 15_000),
    });
    // The body is read so the connection is freed.
    const answer = await res.text().catch(() => '');
    if (!res.ok)
      throw new Error(
        `${this.o.url} answered ${res.status} ${res.statusText} ${answer.slice(0, 200)}`.trim(),
      );
  }
}
