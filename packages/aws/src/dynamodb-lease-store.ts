/**
 * The lease store in DynamoDB, for workers on EC2: every claim is one conditional write.
 *
 * The table (LEASE_TABLE_KEYS): partition key `Scope` (S), the scope's name; sort key `Key`
 * (S). A scope's items: `run`, the run (`Run`: the LeaseRun as JSON, `RunId`, `Partial`: its
 * partial's stamp); `claim`, the commit claim (`Owner`, `Expires`, `RunId`: the run it was
 * taken in; a claim of an earlier run is free); `unit#<base64url of the id's bytes>`, one unit
 * (`Status`, `Owner`, `Expires`, `Attempt`, `Done`: the UnitDone as JSON, `Partial`: the
 * partial it belongs to). An id too long for DynamoDB's 1 KiB sort key is keyed
 * `unit#~<base64url sha256 of its bytes>` and its bytes kept in `Unit` (B). A unit of another
 * partial than the run's is a leftover of a dropped partial: never read, replaced when
 * published again, deleted after the new run is written. No TTL: clear() removes a scope's
 * items. Reads are strongly consistent; a scope's units are read with a paginated Query.
 */
import { createHash } from 'node:crypto';
import {
  ConditionalCheckFailedException,
  GetItemCommand,
  type DynamoDBClient,
} from '@aws-sdk/client-dynamodb';
import {
  BatchWriteCommand,
  DeleteCommand,
  DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import {
  bytesOfName,
  eachLimited,
  leaseOf,
  nameFromBytes,
  shuffle,
  skewFrom,
  type ClockSkew,
  type LeaseRun,
  type LeaseStore,
  type UnitCounts,
  type UnitDone,
  type UnitLease,
  type UnitState,
  type UnitStatus,
} from '@efs-backup/core';

/** The lease table's key schema (the backup stack's table is made with it). */
export const LEASE_TABLE_KEYS = {
  partitionKey: { name: 'Scope', type: 'S' },
  sortKey: { name: 'Key', type: 'S' },
} as const;

export interface DynamoDbLeaseStoreOptions {
  tableName: string;
  client: DynamoDBClient;
  /** One backup set's interval, as the caller names it. */
  scope: string;
  /** Items a Query reads per page (the tests read in small pages). @default DynamoDB's 1 MB pages */
  pageSize?: number;
}

const RUN = 'run';
const CLAIM = 'claim';
const UNIT = 'unit#';
/** DynamoDB's limit on a sort key, in bytes (the keys are ASCII). */
const MAX_SORT_KEY = 1024;

/** Every attribute by a placeholder: several are reserved words (Status, Key, Owner). */
const NAMES = {
  '#s': 'Scope',
  '#k': 'Key',
  '#st': 'Status',
  '#o': 'Owner',
  '#e': 'Expires',
  '#a': 'Attempt',
  '#d': 'Done',
  '#p': 'Partial',
  '#r': 'RunId',
  '#u': 'Unit',
} as const;
type Name = keyof typeof NAMES;

interface UnitItem {
  Key: string;
  Unit?: Uint8Array;
  Status: UnitStatus;
  Owner: string;
  Expires: number;
  Attempt: number;
  Done?: string;
  Partial: string;
}

export class DynamoDbLeaseStore implements LeaseStore {
  readonly tableName: string;
  readonly scope: string;
  private readonly client: DynamoDBClient;
  private readonly doc: DynamoDBDocumentClient;
  private readonly pageSize: number | undefined;
  /** The partial of the run this instance follows; read from the run when unknown. */
  private partial: string | null = null;

  constructor(o: DynamoDbLeaseStoreOptions) {
    this.tableName = o.tableName;
    this.scope = o.scope;
    this.pageSize = o.pageSize;
    this.client = o.client;
    this.doc = DynamoDBDocumentClient.from(o.client, {
      marshallOptions: { removeUndefinedValues: true },
    });
  }

  async begin(run: LeaseRun): Promise<LeaseRun> {
    for (let round = 0; round < 10; round++) {
      const stored = await this.run();
      if (stored?.runId === run.runId) return this.follow(stored);
      // Before the run is written: a begin that stops here has changed nothing a rerun won't.
      // Each reopen is conditional on the state it read, so nothing changed since is undone.
      if (stored && stored.partialStamp === run.partialStamp)
        await this.reopen(stored.partialStamp);
      const written = await this.write(
        'put',
        {
          Item: {
            Scope: this.scope,
            Key: RUN,
            Run: JSON.stringify(run),
            RunId: run.runId,
            Partial: run.partialStamp,
          },
        },
        stored ? '#r = :prev' : 'attribute_not_exists(#k)',
        stored ? { ':prev': stored.runId } : {},
      );
      if (!written) {
        // Another begin wrote the run first: the loser takes the winner's run.
        const winner = await this.run();
        if (winner) return this.follow(winner);
        continue;
      }
      // The root first: until it is there, a worker that reads the run finds no unit (the
      // commit waits for the root to be done, so that is never "every unit done").
      const begun = await this.follow(run);
      // Only now: until the run is written they are another partial's units, which no read of
      // the new run takes; dropped before, a begin that lost could drop the winner's units.
      // (The root's item is the new partial's already, which this drop leaves.)
      if (stored && stored.partialStamp !== run.partialStamp) await this.drop(stored.partialStamp);
      return begun;
    }
    throw new Error(`the lease scope ${this.scope} kept changing: could not begin its run`);
  }

  /**
   * The skew against DynamoDB's clock: the Date header of a read of the run's key (to the
   * second), against this host's clock before and after the call. The workers on EC2 keep
   * their clocks by the Amazon Time Sync Service; this catches one that does not.
   */
  async clockSkew(): Promise<ClockSkew> {
    let date: string | undefined;
    const read = new GetItemCommand({
      TableName: this.tableName,
      Key: { Scope: { S: this.scope }, Key: { S: RUN } },
      ProjectionExpression: '#k',
      ExpressionAttributeNames: { '#k': 'Key' },
    });
    read.middlewareStack.add(
      (next) => async (args) => {
        const out = await next(args);
        date = headerOf(out.response, 'date');
        return out;
      },
      { step: 'deserialize', name: 'leaseStoreServerDate' },
    );
    const before = Date.now();
    await this.client.send(read);
    const after = Date.now();
    const server = date === undefined ? NaN : Date.parse(date);
    const against = "DynamoDB's";
    // No date to go by (a proxy that drops it): nothing can be told.
    if (!Number.isFinite(server)) return { ms: 0, against };
    return { ms: skewFrom(before, after, server, server + 999), against };
  }

  async run(): Promise<LeaseRun | null> {
    const r = await this.doc.send(
      new GetCommand({
        TableName: this.tableName,
        Key: { Scope: this.scope, Key: RUN },
        ConsistentRead: true,
      }),
    );
    const run = r.Item ? (JSON.parse(r.Item.Run as string) as LeaseRun) : null;
    this.partial = run?.partialStamp ?? null;
    return run;
  }

  async publish(units: readonly string[]): Promise<void> {
    const partial = await this.partialNow();
    if (partial === null) throw new Error(`no run was begun for the lease scope ${this.scope}`);
    await eachLimited([...new Set(units)], (unit) => this.add(unit, partial));
  }

  async acquire(worker: string, now: number, ttlMs: number): Promise<UnitLease | null> {
    const partial = await this.partialNow();
    if (partial === null) return null;
    const leasable = '(#st = :open OR (#st = :leased AND #e <= :now))';
    for (let round = 0; round < 100; round++) {
      const free = await this.query(`#p = :p AND ${leasable}`, {
        ':p': partial,
        ':open': 'open',
        ':leased': 'leased',
        ':now': now,
      });
      if (free.length === 0) return null;
      shuffle(free); // many workers listing at once try the units in different orders
      for (const item of free) {
        const leased = await this.write(
          'update',
          {
            Key: { Scope: this.scope, Key: item.Key },
            UpdateExpression: 'SET #st = :leased, #o = :w, #e = :exp, #a = #a + :one',
          },
          `#a = :a AND #p = :p AND ${leasable}`,
          {
            ':leased': 'leased',
            ':open': 'open',
            ':w': worker,
            ':exp': now + ttlMs,
            ':one': 1,
            ':a': item.Attempt,
            ':p': partial,
            ':now': now,
          },
        );
        if (leased)
          return leaseOf(
            unitOf(item),
            item.Attempt + 1,
            item.Status === 'leased' ? item.Owner : null,
          );
      }
    }
    return null;
  }

  async renew(
    worker: string,
    leases: readonly UnitLease[],
    now: number,
    ttlMs: number,
  ): Promise<string[]> {
    const lost: string[] = [];
    await eachLimited(leases, async (l) => {
      const renewed = await this.write(
        'update',
        { Key: this.unitKey(l.unit), UpdateExpression: 'SET #e = :exp' },
        '#st = :leased AND #o = :w AND #a = :a',
        { ':exp': now + ttlMs, ':leased': 'leased', ':w': worker, ':a': l.attempt },
      );
      if (!renewed) lost.push(l.unit);
    });
    return leases.map((l) => l.unit).filter((u) => lost.includes(u));
  }

  async complete(worker: string, lease: UnitLease, done: UnitDone): Promise<boolean> {
    // Done again by the same lease (a retried call): still true.
    return this.write(
      'update',
      {
        Key: this.unitKey(lease.unit),
        UpdateExpression: 'SET #st = :done, #d = :report, #e = :zero',
      },
      '(#st = :leased OR #st = :done) AND #o = :w AND #a = :a',
      {
        ':done': 'done',
        ':report': JSON.stringify(done),
        ':zero': 0,
        ':leased': 'leased',
        ':w': worker,
        ':a': lease.attempt,
      },
    );
  }

  async release(worker: string, lease: UnitLease): Promise<void> {
    await this.write(
      'update',
      {
        Key: this.unitKey(lease.unit),
        UpdateExpression: 'SET #st = :open, #o = :none, #e = :zero',
      },
      '#st = :leased AND #o = :w AND #a = :a',
      {
        ':open': 'open',
        ':none': '',
        ':zero': 0,
        ':leased': 'leased',
        ':w': worker,
        ':a': lease.attempt,
      },
    );
  }

  async counts(now: number): Promise<UnitCounts> {
    const out: UnitCounts = { open: 0, leased: 0, done: 0 };
    const partial = await this.partialNow();
    if (partial === null) return out;
    for (const u of await this.query('#p = :p', { ':p': partial }, '#k, #st, #e')) {
      if (u.Status === 'done') out.done++;
      else if (u.Status === 'leased' && u.Expires > now) out.leased++;
      else out.open++;
    }
    return out;
  }

  async units(): Promise<UnitState[]> {
    const partial = await this.partialNow();
    if (partial === null) return [];
    const out = (await this.query('#p = :p', { ':p': partial })).map((item) => ({
      bytes: bytesOf(item),
      state: {
        unit: unitOf(item),
        status: item.Status,
        owner: item.Owner,
        expires: item.Expires,
        attempt: item.Attempt,
        done: item.Done === undefined ? null : (JSON.parse(item.Done) as UnitDone),
      },
    }));
    return out.sort((a, b) => Buffer.compare(a.bytes, b.bytes)).map((x) => x.state);
  }

  async claimCommit(worker: string, now: number, ttlMs: number): Promise<boolean> {
    const run = await this.run();
    if (run === null) throw new Error(`no run was begun for the lease scope ${this.scope}`);
    return this.write(
      'update',
      {
        Key: { Scope: this.scope, Key: CLAIM },
        UpdateExpression: 'SET #o = :w, #e = :exp, #r = :run',
      },
      'attribute_not_exists(#k) OR #r <> :run OR #o = :w OR #e <= :now',
      { ':w': worker, ':exp': now + ttlMs, ':run': run.runId, ':now': now },
    );
  }

  async clear(): Promise<void> {
    const keys = (await this.queryKeys()).filter((k) => k !== RUN);
    for (let i = 0; i < keys.length; i += 25) await this.deleteBatch(keys.slice(i, i + 25));
    // The run last: a clear that stops early leaves a run, whose next begin drops the rest.
    await this.doc.send(
      new DeleteCommand({ TableName: this.tableName, Key: { Scope: this.scope, Key: RUN } }),
    );
    this.partial = null;
  }

  /** The client is shared; nothing to close. */
  async close(): Promise<void> {}

  // --- helpers

  private async follow(run: LeaseRun): Promise<LeaseRun> {
    this.partial = run.partialStamp;
    await this.add('', run.partialStamp);
    return run;
  }

  private async partialNow(): Promise<string | null> {
    if (this.partial === null) await this.run();
    return this.partial;
  }

  private unitKey(unit: string): { Scope: string; Key: string } {
    return { Scope: this.scope, Key: sortKeyOf(bytesOfName(unit)) };
  }

  /** Adds a unit, open, unless it is known in this partial. */
  private async add(unit: string, partial: string): Promise<void> {
    const bytes = bytesOfName(unit);
    const key = sortKeyOf(bytes);
    await this.write(
      'put',
      {
        Item: {
          Scope: this.scope,
          Key: key,
          ...(key.startsWith(`${UNIT}~`) ? { Unit: bytes } : {}),
          Status: 'open',
          Owner: '',
          Expires: 0,
          Attempt: 0,
          Partial: partial,
        },
      },
      'attribute_not_exists(#k) OR #p <> :p',
      { ':p': partial },
    );
  }

  /** Every done or leased unit of the partial open again, its attempt kept. */
  private async reopen(partial: string): Promise<void> {
    const units = await this.query('#p = :p AND (#st = :leased OR #st = :done)', {
      ':p': partial,
      ':leased': 'leased',
      ':done': 'done',
    });
    await eachLimited(units, async (u) => {
      await this.write(
        'update',
        {
          Key: { Scope: this.scope, Key: u.Key },
          UpdateExpression: 'SET #st = :open, #o = :none, #e = :zero REMOVE #d',
        },
        '#st = :was AND #a = :a',
        { ':open': 'open', ':none': '', ':zero': 0, ':was': u.Status, ':a': u.Attempt },
      );
    });
  }

  /** Deletes the units of a dropped partial (each only while it is still of that partial). */
  private async drop(partial: string): Promise<void> {
    const units = await this.query('#p = :p', { ':p': partial }, '#k');
    await eachLimited(units, async (u) => {
      await this.write('delete', { Key: { Scope: this.scope, Key: u.Key } }, '#p = :p', {
        ':p': partial,
      });
    });
  }

  /** One conditional write; false when its condition failed. */
  private async write(
    kind: 'put' | 'update' | 'delete',
    input: {
      Key?: Record<string, string>;
      Item?: Record<string, unknown>;
      UpdateExpression?: string;
    },
    condition: string,
    values: Record<string, unknown>,
  ): Promise<boolean> {
    const common = {
      TableName: this.tableName,
      ConditionExpression: condition,
      ExpressionAttributeNames: namesIn(`${condition} ${input.UpdateExpression ?? ''}`),
      ...(Object.keys(values).length ? { ExpressionAttributeValues: values } : {}),
    };
    try {
      if (kind === 'put') await this.doc.send(new PutCommand({ ...common, Item: input.Item! }));
      else if (kind === 'update')
        await this.doc.send(
          new UpdateCommand({
            ...common,
            Key: input.Key!,
            UpdateExpression: input.UpdateExpression!,
          }),
        );
      else await this.doc.send(new DeleteCommand({ ...common, Key: input.Key! }));
      return true;
    } catch (e) {
      if (e instanceof ConditionalCheckFailedException) return false;
      throw e;
    }
  }

  /** The scope's units that pass `filter`, every page. */
  private async query(
    filter: string,
    values: Record<string, unknown>,
    projection?: string,
  ): Promise<UnitItem[]> {
    const out: UnitItem[] = [];
    const key = '#s = :scope AND begins_with(#k, :unit)';
    let start: Record<string, unknown> | undefined;
    do {
      const r = await this.doc.send(
        new QueryCommand({
          TableName: this.tableName,
          ConsistentRead: true,
          KeyConditionExpression: key,
          FilterExpression: filter,
          ...(projection ? { ProjectionExpression: projection } : {}),
          ExpressionAttributeNames: namesIn(`${key} ${filter} ${projection ?? ''}`),
          ExpressionAttributeValues: { ':scope': this.scope, ':unit': UNIT, ...values },
          ...(this.pageSize ? { Limit: this.pageSize } : {}),
          ...(start ? { ExclusiveStartKey: start } : {}),
        }),
      );
      out.push(...((r.Items ?? []) as UnitItem[]));
      start = r.LastEvaluatedKey;
    } while (start);
    return out;
  }

  /** Every item key of the scope. */
  private async queryKeys(): Promise<string[]> {
    const out: string[] = [];
    let start: Record<string, unknown> | undefined;
    do {
      const r = await this.doc.send(
        new QueryCommand({
          TableName: this.tableName,
          ConsistentRead: true,
          KeyConditionExpression: '#s = :scope',
          ProjectionExpression: '#k',
          ExpressionAttributeNames: { '#s': 'Scope', '#k': 'Key' },
          ExpressionAttributeValues: { ':scope': this.scope },
          ...(this.pageSize ? { Limit: this.pageSize } : {}),
          ...(start ? { ExclusiveStartKey: start } : {}),
        }),
      );
      for (const item of r.Items ?? []) out.push(item.Key as string);
      start = r.LastEvaluatedKey;
    } while (start);
    return out;
  }

  /** Deletes up to 25 items, again for those DynamoDB left unprocessed (with a growing pause). */
  private async deleteBatch(keys: string[]): Promise<void> {
    let requests = keys.map((Key) => ({ DeleteRequest: { Key: { Scope: this.scope, Key } } }));
    for (let round = 0; requests.length > 0; round++) {
      if (round > 0) {
        if (round > 8)
          throw new Error(`DynamoDB kept leaving lease items of ${this.scope} undeleted`);
        await new Promise((r) => setTimeout(r, Math.min(2000, 50 * 2 ** round)));
      }
      const r = await this.doc.send(
        new BatchWriteCommand({ RequestItems: { [this.tableName]: requests } }),
      );
      requests = (r.UnprocessedItems?.[this.tableName] ?? []) as typeof requests;
    }
  }
}

/** A unit's sort key: its bytes in base64url, or their sha256 when that would be too long. */
function sortKeyOf(bytes: Buffer): string {
  const plain = UNIT + bytes.toString('base64url');
  if (plain.length <= MAX_SORT_KEY) return plain;
  return `${UNIT}~${createHash('sha256').update(bytes).digest('base64url')}`;
}

function bytesOf(item: UnitItem): Buffer {
  if (item.Unit) return Buffer.from(item.Unit);
  return Buffer.from(item.Key.slice(UNIT.length), 'base64url');
}

function unitOf(item: UnitItem): string {
  return nameFromBytes(bytesOf(item));
}

/** The placeholders an expression uses, with the attribute each stands for. */
function namesIn(expression: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of expression.matchAll(/#[a-z]+/g)) {
    const n = m[0] as Name;
    if (NAMES[n] === undefined) throw new Error(`no attribute for ${n}`);
    out[n] = NAMES[n];
  }
  return out;
}

/** A header of a raw HTTP response (the SDK's HttpResponse: its headers keyed in lower case). */
function headerOf(response: unknown, name: string): string | undefined {
  if (typeof response !== 'object' || response === null || !('headers' in response)) return;
  const headers = response.headers;
  if (typeof headers !== 'object' || headers === null) return;
  const v: unknown = (headers as Record<string, unknown>)[name];
  return typeof v === 'string' ? v : undefined;
}
