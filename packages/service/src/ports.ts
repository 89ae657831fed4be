/**
 * The ports of DESIGN.md that the run lifecycle drives. Local adapters (SQLite, files, SMTP,
 * webhook, console) and AWS adapters (DynamoDB, S3, SNS) implement the same interfaces, so the
 * lifecycle is written once.
 */
import type { RunRecord, RunStatus } from './record.js';

export interface RecordQuery {
  Destination?: string;
  Label?: string;
  Job?: string;
  Status?: RunStatus;
  /** At most this many, newest first. */
  limit?: number;
}

export interface RecordStore {
  /** Where the records are (a file, a table), for messages. */
  readonly location: string;
  /** What opening the store had to do that a person should know (an unreadable file set aside). */
  readonly warnings?: readonly string[];
  /** Writes the record, replacing the one with the same BackupId. */
  put(record: RunRecord): Promise<void>;
  get(backupId: string): Promise<RunRecord | null>;
  /** Records newest first (by StartTime). */
  list(query?: RecordQuery): Promise<RunRecord[]>;
  /** Deletes the records whose ExpireItem has passed and returns them, so their logs go too. */
  purgeExpired(now: Date): Promise<RunRecord[]>;
  close(): Promise<void>;
}

/** One run's log, written as the run goes. */
export interface RunLog {
  /** Where the stored log is (a file, an S3 URL); the record's LogLocation. */
  readonly location: string;
  /** One JSON line. */
  write(line: string): void;
  /** Adds the human summary and stores the log; nothing is written after. */
  store(summary: string): Promise<void>;
}

export interface LogStore {
  open(record: RunRecord): Promise<RunLog>;
  /** Deletes a stored log (its record expired). */
  remove(location: string): Promise<void>;
  /**
   * The record a run's log ends with (`run ended: <Status>`), null when it has none: how a run
   * whose record could not be written at its end is closed with what really happened.
   */
  readEnd?(location: string): Promise<RunRecord | null>;
}

/** What a notice says, composed once for every channel. */
export interface Notice {
  record: RunRecord;
  /** An e-mail subject. */
  subject: string;
  /** One line: what happened and what to do (Slack's `text`). */
  text: string;
  /** Several lines: what happened, what to do, the figures, where the log is. */
  body: string;
}

export interface Notifier {
  /** A name for messages: `email`, `webhook`, `console`, `sns`. */
  readonly channel: string;
  /** Where its notices go, as logs may show it (no secrets): `POST https://host/…`, `SMTP host:587`. */
  readonly target?: string;
  send(notice: Notice): Promise<void>;
}

/** Where the service says what it does (pino's Logger fits). */
export interface ServiceLog {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export const silentLog: ServiceLog = { info: () => {}, warn: () => {}, error: () => {} };
