import type { Notice, Notifier } from './ports.js';

/** Notices on a stream (standard error by default): for a terminal, or a service's journal. */
export class ConsoleNotifier implements Notifier {
  readonly channel = 'console';
  constructor(private readonly stream: NodeJS.WritableStream = process.stderr) {}

  async send(notice: Notice): Promise<void> {
    this.stream.write(`${notice.subject}\n${notice.body}\n`);
  }
}
