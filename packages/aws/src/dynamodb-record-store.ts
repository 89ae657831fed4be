/**
 * The AWS RecordStore: one DynamoDB table keyed by `BackupId`, with TTL on `ExpireItem`. A
 * record is written as an update of its fields, so the attributes the orchestrator keeps in
 * the same item (RunAttributes) survive the worker's writes.
 */
import { ConditionalCheckFailedException, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  DeleteCommand,
  DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  ScanCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import {
  RECORD_FIELDS,
  type RecordQuery,
  type RecordStore,
  type RunRecord,
} from '@efs-backup/service';
import { RUN_ATTRIBUTES, type RunAttributes, type RunItem } from './run-item.js';

export interface DynamoDbRecordStoreOptions {
  tableName: string;
  client: DynamoDBClient;
}

/** Filters of a scan: attribute name to the value it must equal. */
export type ItemFilter = Partial<Record<keyof RunItem, string | number | boolean>>;

export class DynamoDbRecordStore implements RecordStore {
  readonly location: string;
  readonly tableName: string;
  private readonly doc: DynamoDBDocumentClient;

  constructor(o: DynamoDbRecordStoreOptions) {
    this.tableName = o.tableName;
    this.location = `DynamoDB table ${o.tableName}`;
    this.doc = DynamoDBDocumentClient.from(o.client, {
      marshallOptions: { removeUndefinedValues: true },
    });
  }

  /** Writes the record's fields, leaving the item's other attributes as they are. */
  async put(record: RunRecord): Promise<void> {
    const fields = RECORD_FIELDS.filter((f) => f !== 'BackupId');
    await this.write(
      record.BackupId,
      Object.fromEntries(fields.map((f) => [f, record[f]])) as Partial<RunItem>,
      false,
    );
  }

  async get(backupId: string): Promise<RunRecord | null> {
    const item = await this.getItem(backupId);
    return item ? recordOf(item) : null;
  }

  async list(q: RecordQuery = {}): Promise<RunRecord[]> {
    const filter: ItemFilter = {};
    for (const key of ['Destination', 'Label', 'Status'] as const) {
      if (q[key] !== undefined) filter[key] = q[key];
    }
    if (q.Job !== undefined) filter.Job = q.Job;
    const items = await this.listItems(filter);
    return items.slice(0, q.limit ?? items.length).map(recordOf);
  }

  async purgeExpired(now: Date): Promise<RunRecord[]> {
    const cutoff = Math.floor(now.getTime() / 1000);
    const expired = await this.scan('ExpireItem < :cutoff AND #Status <> :running', {
      names: { '#Status': 'Status' },
      values: { ':cutoff': cutoff, ':running': 'Running' },
    });
    const gone: RunRecord[] = [];
    for (const item of expired) {
      try {
        await this.doc.send(
          new DeleteCommand({
            TableName: this.tableName,
            Key: { BackupId: item.BackupId },
            ConditionExpression: 'ExpireItem < :cutoff',
            ExpressionAttributeValues: { ':cutoff': cutoff },
          }),
        );
        gone.push(recordOf(item));
      } catch (e) {
        if (!(e instanceof ConditionalCheckFailedException)) throw e;
      }
    }
    return gone;
  }

  /** The client is shared; nothing to close. */
  async close(): Promise<void> {}

  /** The whole item: the record and the workflow's attributes. */
  async getItem(backupId: string): Promise<RunItem | null> {
    const r = await this.doc.send(
      new GetCommand({
        TableName: this.tableName,
        Key: { BackupId: backupId },
        ConsistentRead: true,
      }),
    );
    return r.Item ? withDefaults(r.Item as RunItem) : null;
  }

  /** Items whose attributes equal the filter's, newest first (by StartTime). */
  async listItems(filter: ItemFilter = {}): Promise<RunItem[]> {
    const keys = Object.keys(filter) as (keyof RunItem)[];
    const names: Record<string, string> = {};
    const values: Record<string, unknown> = {};
    const terms = keys.map((k, i) => {
      names[`#k${i}`] = k;
      values[`:v${i}`] = filter[k];
      return `#k${i} = :v${i}`;
    });
    const items = await this.scan(terms.length ? terms.join(' AND ') : undefined, {
      names,
      values,
    });
    return items.sort((a, b) =>
      a.StartTime < b.StartTime ? 1 : a.StartTime > b.StartTime ? -1 : 0,
    );
  }

  /**
   * Creates the item unless one with its BackupId exists; false when one does (a redelivered
   * event, or a race lost).
   */
  async create(item: RunItem): Promise<boolean> {
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.tableName,
          Item: item,
          ConditionExpression: 'attribute_not_exists(BackupId)',
        }),
      );
      return true;
    } catch (e) {
      if (e instanceof ConditionalCheckFailedException) return false;
      throw e;
    }
  }

  /**
   * Sets attributes of an existing item (an absent value removes the attribute). With `when`,
   * only if the item's attributes equal it; false when they do not (or the item is gone).
   */
  async update(
    backupId: string,
    attributes: Partial<RunItem>,
    when?: Partial<Record<keyof RunItem, string | number | boolean | null>>,
  ): Promise<boolean> {
    return this.write(backupId, attributes, true, when);
  }

  /** An update expression of the attributes; `mustExist` false creates the item if need be. */
  private async write(
    backupId: string,
    attributes: Partial<RunItem>,
    mustExist: boolean,
    when?: Partial<Record<keyof RunItem, string | number | boolean | null>>,
  ): Promise<boolean> {
    const names: Record<string, string> = {};
    const values: Record<string, unknown> = {};
    const set: string[] = [];
    const remove: string[] = [];
    Object.entries(attributes).forEach(([k, v], i) => {
      names[`#a${i}`] = k;
      if (v === undefined) remove.push(`#a${i}`);
      else {
        values[`:a${i}`] = v;
        set.push(`#a${i} = :a${i}`);
      }
    });
    const conditions = mustExist ? ['attribute_exists(BackupId)'] : [];
    Object.entries(when ?? {}).forEach(([k, v], i) => {
      names[`#c${i}`] = k;
      if (v === null) conditions.push(`attribute_not_exists(#c${i})`);
      else {
        values[`:c${i}`] = v;
        conditions.push(`#c${i} = :c${i}`);
      }
    });
    const expression = [
      set.length ? `SET ${set.join(', ')}` : '',
      remove.length ? `REMOVE ${remove.join(', ')}` : '',
    ]
      .filter(Boolean)
      .join(' ');
    if (!expression) return true;
    try {
      await this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { BackupId: backupId },
          UpdateExpression: expression,
          ...(conditions.length ? { ConditionExpression: conditions.join(' AND ') } : {}),
          ExpressionAttributeNames: names,
          ...(Object.keys(values).length ? { ExpressionAttributeValues: values } : {}),
        }),
      );
      return true;
    } catch (e) {
      if (e instanceof ConditionalCheckFailedException) return false;
      throw e;
    }
  }

  private async scan(
    filter: string | undefined,
    expr: { names: Record<string, string>; values: Record<string, unknown> },
  ): Promise<RunItem[]> {
    const out: RunItem[] = [];
    let start: Record<string, unknown> | undefined;
    do {
      const r = await this.doc.send(
        new ScanCommand({
          TableName: this.tableName,
          ConsistentRead: true,
          ...(filter
            ? {
                FilterExpression: filter,
                ExpressionAttributeNames: expr.names,
                ExpressionAttributeValues: expr.values,
              }
            : {}),
          ...(start ? { ExclusiveStartKey: start } : {}),
        }),
      );
      out.push(...((r.Items ?? []) as RunItem[]).map(withDefaults));
      start = r.LastEvaluatedKey;
    } while (start);
    return out;
  }
}

/**
 * Fields added to the record after items were written without them, and what they read as in
 * an older item: every item before restores were recorded is a backup's.
 */
const LATER_DEFAULTS: Partial<Record<(typeof RECORD_FIELDS)[number], unknown>> = {
  NumberOfFilesCopiedForLinkLimit: 0,
  NumberOfFilesRepaired: 0,
  NumberOfFilesChangedByChecksum: 0,
  Kind: 'backup',
  // Every run had one worker before runs could be shared.
  Workers: 1,
};

/** Fields added later that only a backup has: an older backup's item left nothing out. */
const LATER_BACKUP_DEFAULTS: Partial<Record<(typeof RECORD_FIELDS)[number], () => unknown>> = {
  Exclude: () => [],
  ExcludeIfPresent: () => [],
};

/** An item as read, with the fields added later that it lacks at their defaults. */
function withDefaults(item: RunItem): RunItem {
  const out: Record<string, unknown> = { ...item };
  for (const [f, v] of Object.entries(LATER_DEFAULTS)) out[f] ??= v;
  if (out.Kind === 'backup')
    for (const [f, v] of Object.entries(LATER_BACKUP_DEFAULTS)) out[f] ??= v();
  return out as unknown as RunItem;
}

/** The record's fields of an item (a missing field reads as null, or as LATER_DEFAULTS say). */
export function recordOf(item: RunItem): RunRecord {
  const full = withDefaults(item);
  const out: Record<string, unknown> = {};
  for (const f of RECORD_FIELDS) out[f] = full[f] ?? null;
  return out as unknown as RunRecord;
}

/** The workflow's attributes of an item. */
export function attributesOf(item: RunItem): RunAttributes {
  const out: Record<string, unknown> = {};
  for (const a of RUN_ATTRIBUTES) if (item[a] !== undefined) out[a] = item[a];
  return out as RunAttributes;
}
