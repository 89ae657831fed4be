/**
 * The AWS Notifier: one SNS message per notice, to a topic that e-mail (and anything else)
 * subscribes to. The status goes as a message attribute, so subscriptions can filter on it.
 */
import { PublishCommand, type SNSClient } from '@aws-sdk/client-sns';
import type { Notice, Notifier } from '@efs-backup/service';

export interface SnsNotifierOptions {
  topicArn: string;
  client: SNSClient;
}

/** SNS takes a subject of at most 100 printable ASCII characters on one line. */
export function snsSubject(subject: string): string {
  const ascii = subject
    .replace(/[\r\n\t]+/g, ' ')
    .replace(/[^\x20-\x7e]/g, '?')
    .trim();
  return ascii.length <= 100 ? ascii : `${ascii.slice(0, 97)}...`;
}

export class SnsNotifier implements Notifier {
  readonly channel = 'sns';
  readonly topicArn: string;
  private readonly client: SNSClient;

  constructor(o: SnsNotifierOptions) {
    this.topicArn = o.topicArn;
    this.client = o.client;
  }

  async send(notice: Notice): Promise<void> {
    await this.publish(notice.subject, notice.body, notice.record.Status);
  }

  /** Publishes one message; returns its MessageId. */
  async publish(subject: string, body: string, status: string): Promise<string | undefined> {
    const r = await this.client.send(
      new PublishCommand({
        TopicArn: this.topicArn,
        Subject: snsSubject(subject),
        Message: body,
        MessageAttributes: { Status: { DataType: 'String', StringValue: status } },
      }),
    );
    return r.MessageId;
  }
}
