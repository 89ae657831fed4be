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

  // ---- the workers of a run (scale-out): each change one conditional write ------------------

  /**
   * A worker joins a Running run: the first claims it (`launching` → `running`, its
   * WorkerInstance); the others, while the run has a seat (its Workers less those joined, plus
   * those gone), until it is closed or done. The item as it is after, or null when it may not.
   * A join repeated (an answer lost) finds the instance among the workers.
   */
  async joinRun(backupId: string, instanceId: string): Promise<RunItem | null> {
    const joined = await this.change(backupId, {
      update:
        'SET #WorkerState = :running, #WorkerInstance = if_not_exists(#WorkerInstance, :me) ' +
        'ADD #WorkerInstances :meSet, #Seats :minusOne',
      condition:
        '#Status = :Running AND attribute_not_exists(#Closing) AND #WorkerState <> :done ' +
        'AND NOT contains(#WorkerInstances, :me) ' +
        // An item of before seats were kept: one worker, while it is unclaimed.
        'AND (#Seats > :zero OR (attribute_not_exists(#Seats) AND #WorkerState = :launching))',
      names: ['Status', 'WorkerState', 'WorkerInstance', 'WorkerInstances', 'Seats', 'Closing'],
      values: {
        ':running': 'running',
        ':Running': 'Running',
        ':done': 'done',
        ':launching': 'launching',
        ':me': instanceId,
        ':meSet': new Set([instanceId]),
        ':minusOne': -1,
        ':zero': 0,
      },
    });
    if (joined) return joined;
    const item = await this.getItem(backupId);
    return item?.WorkerInstances?.has(instanceId) && item.Status === 'Running' ? item : null;
  }

  /**
   * The group launched `instanceId` for a run no worker has claimed yet: paired with it, up to
   * its Workers instances. False when the run is claimed, or has its instances already.
   */
  async pairLaunch(backupId: string, instanceId: string, workers: number): Promise<boolean> {
    return !!(await this.change(backupId, {
      update:
        'SET #LaunchedInstance = if_not_exists(#LaunchedInstance, :me) ADD #LaunchedInstances :meSet',
      condition:
        '#WorkerState = :launching AND attribute_not_exists(#WorkerInstance) ' +
        'AND NOT contains(#LaunchedInstances, :me) ' +
        'AND (attribute_not_exists(#LaunchedInstances) OR size(#LaunchedInstances) < :workers)',
      names: ['WorkerState', 'WorkerInstance', 'LaunchedInstance', 'LaunchedInstances'],
      values: {
        ':launching': 'launching',
        ':me': instanceId,
        ':meSet': new Set([instanceId]),
        ':workers': workers,
      },
    }));
  }

  /**
   * An instance launched for a run no worker claimed is gone: taken from its launched
   * instances. The item after; null when it was not one of them (any more).
   */
  async launchGone(backupId: string, instanceId: string): Promise<RunItem | null> {
    return this.change(backupId, {
      update: 'DELETE #LaunchedInstances :meSet',
      condition: 'contains(#LaunchedInstances, :me)',
      names: ['LaunchedInstances'],
      values: { ':me': instanceId, ':meSet': new Set([instanceId]) },
    });
  }

  /**
   * A worker's instance is gone: among the run's WorkersGone, its seat given back (once). The
   * item after, or as it is when this instance was counted gone already; null when it has no
   * such worker.
   */
  async workerGone(backupId: string, instanceId: string): Promise<RunItem | null> {
    const gone = await this.change(backupId, {
      update: 'ADD #WorkersGone :meSet, #Seats :one',
      condition: 'contains(#WorkerInstances, :me) AND NOT contains(#WorkersGone, :me)',
      names: ['WorkerInstances', 'WorkersGone', 'Seats'],
      values: { ':me': instanceId, ':meSet': new Set([instanceId]), ':one': 1 },
    });
    if (gone) return gone;
    const item = await this.getItem(backupId);
    return item && isWorkerOf(item, instanceId) ? item : null;
  }

  /** How one worker's part of a shared run ended, kept on the run for the orchestrator. */
  async addWorkerEnd(backupId: string, instanceId: string, end: RunRecord): Promise<void> {
    await this.change(backupId, {
      update: 'SET #WorkerEnds = if_not_exists(#WorkerEnds, :none)',
      names: ['WorkerEnds'],
      values: { ':none': {} },
    });
    await this.doc.send(
      new UpdateCommand({
        TableName: this.tableName,
        Key: { BackupId: backupId },
        UpdateExpression: 'SET #WorkerEnds.#me = :end',
        ExpressionAttributeNames: { '#WorkerEnds': 'WorkerEnds', '#me': instanceId },
        ExpressionAttributeValues: { ':end': end },
      }),
    );
  }

  /** One update expression on an existing item; the item after, or null when the condition failed. */
  private async change(
    backupId: string,
    u: { update: string; condition?: string; names: string[]; values: Record<string, unknown> },
  ): Promise<RunItem | null> {
    try {
      const r = await this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: { BackupId: backupId },
          UpdateExpression: u.update,
          ConditionExpression: ['attribute_exists(BackupId)', u.condition]
            .filter(Boolean)
            .join(' AND '),
          ExpressionAttributeNames: Object.fromEntries(u.names.map((n) => [`#${n}`, n])),
          ExpressionAttributeValues: u.values,
          ReturnValues: 'ALL_NEW',
        }),
      );
      return withDefaults(r.Attributes as RunItem);
    } catch (e) {
      if (e instanceof ConditionalCheckFailedException) return null;
      throw e;
    }
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

/** Whether `instanceId`'s worker joined the run (an item of before: its one WorkerInstance). */
export function isWorkerOf(item: RunItem, instanceId: string): boolean {
  return item.WorkerInstances?.has(instanceId) ?? item.WorkerInstance === instanceId;
}

/** The workflow's attributes of an item. */
export function attributesOf(item: RunItem): RunAttributes {
  const out: Record<string, unknown> = {};
  for (const a of RUN_ATTRIBUTES) if (item[a] !== undefined) out[a] = item[a];
  return out as RunAttributes;
}
