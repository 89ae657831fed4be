/**
 * The AWS LogStore: each run's log is one S3 object, `s3://<bucket>/<prefix><Label>/<BackupId>.log`:
 * the run's JSON lines, then its human summary (the same text as the local log file). Each
 * worker of a run several workers share has its own, `<BackupId>.<instance>.log`.
 */
import { DeleteObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { LogStore, RunLog, RunRecord } from '@efs-backup/service';

export interface S3LogStoreOptions {
  bucket: string;
  /** Key prefix of every log. @default 'logs/' */
  prefix?: string;
  /**
   * One worker of a run several workers share: its own log, `<BackupId>.<worker>.log`.
   * @default the run's one log
   */
  worker?: string;
  client: S3Client;
}

export class S3LogStore implements LogStore {
  readonly bucket: string;
  readonly prefix: string;
  private readonly worker: string | null;
  private readonly client: S3Client;

  constructor(o: S3LogStoreOptions) {
    this.bucket = o.bucket;
    this.prefix = o.prefix ?? 'logs/';
    this.worker = o.worker ?? null;
    this.client = o.client;
  }

  /** The key of a run's log (of this worker's part, with several). */
  keyOf(record: Pick<RunRecord, 'Label' | 'BackupId'>): string {
    return `${this.prefix}${record.Label}/${record.BackupId}${this.worker ? `.${this.worker}` : ''}.log`;
  }

  async open(record: RunRecord): Promise<RunLog> {
    const key = this.keyOf(record);
    // The log is kept in memory and stored once: even 100 000 warnings are a few tens of MB.
    const chunks: string[] = [];
    let stored = false;
    return {
      location: `s3://${this.bucket}/${key}`,
      write(line: string) {
        if (!stored) chunks.push(line.endsWith('\n') ? line : `${line}\n`);
      },
      store: async (summary: string) => {
        if (stored) return;
        stored = true;
        chunks.push(`\n${summary}`);
        await this.client.send(
          new PutObjectCommand({
            Bucket: this.bucket,
            Key: key,
            Body: chunks.join(''),
            ContentType: 'text/plain; charset=utf-8',
          }),
        );
      },
    };
  }

  async remove(location: string): Promise<void> {
    // Only a log of this store is ever removed.
    const head = `s3://${this.bucket}/${this.prefix}`;
    if (!location.startsWith(head) || !location.endsWith('.log')) return;
    await this.client.send(
      new DeleteObjectCommand({
        Bucket: this.bucket,
        Key: location.slice(`s3://${this.bucket}/`.length),
      }),
    );
  }
}
