/**
 * The lease store in files, for workers on several hosts that mount one destination. SQLite's
 * locking is unreliable over NFS, so this store needs only the two calls NFSv4 and EFS make
 * atomic on the server: `link()`, which fails when its new name exists, and `rename()`, which
 * fails when its source is gone.
 *
 * Each unit, and the commit claim, is a cell: a gate, linked once (of two processes publishing
 * one unit, one makes it), and exactly one state file whose NAME is the cell's whole mutable
 * state (status, attempt, expiry, holder) and which only `rename()` changes. A rename from the
 * name a process listed succeeds for one process only, and only while the state is still that
 * one: a compare-and-swap. Acquire, take-over, renew, complete and release are each one rename;
 * counts() is one readdir.
 *
 *   <dir>/run.<g>                   the run of generation g, JSON; the highest g is the scope's
 *                                   (after clear(), a tombstone)
 *   <dir>/workers/<w>               a worker's id, named by its token (16 chars of its sha256)
 *   <dir>/u<n>/ids/<key>            a unit's gate: its id, JSON
 *   <dir>/u<n>/states/<key>.<state> o.<attempt> | l.<attempt>.<expires>.<w> | d.<attempt>.<w>
 *   <dir>/u<n>/states/<key>.p.<nonce>
 *                                   a cell being made: linked as its gate, then renamed to its
 *                                   first state, by its maker or by whoever finds it gated
 *   <dir>/u<n>/done/<key>.<attempt> that attempt's UnitDone, written before its state says done
 *   <dir>/u<n>/claim/{ids,states}/  the commit claim's cell: claim.f | claim.h.<g>.<expires>.<w>
 *                                   (g: the generation of the run it was taken in; a claim of
 *                                   an earlier run is free)
 *   <dir>/tmp/                      files being written
 *
 * A unit's key is the base64url sha256 of its id's bytes: fixed length, any name. The units of
 * one partial live in one `u<n>` (n: the generation of the run that began that partial), so a
 * run of another partial starts an empty one and removes the older ones after its run is
 * written; nothing published under the new run is ever removed by a late begin.
 *
 * Listings on NFS may lag another host's changes by the client's attribute cache; that never
 * breaks exclusivity (every change is a rename checked by the server), it only delays seeing
 * new units.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { isSystemError } from './errors.js';
import { asyncOps } from './fs-ops.js';
import {
  eachLimited,
  leaseOf,
  shuffle,
  skewFrom,
  type ClockSkew,
  type LeaseRun,
  type LeaseStore,
  type UnitCounts,
  type UnitDone,
  type UnitLease,
  type UnitState,
} from './leases.js';
import { bytesOfName } from './names.js';
import { removedAll } from './remove-tree.js';

const CLAIM = 'claim';
/** Rounds of list-and-rename before a call gives up on a cell that keeps changing. */
const ROUNDS = 1000;
type RunFile = { run: LeaseRun; units: number } | { cleared: true };

/** A state file's name after `<key>.`, parsed. */
type State =
  | { kind: 'o'; attempt: number }
  | { kind: 'l'; attempt: number; expires: number; worker: string }
  | { kind: 'd'; attempt: number; worker: string }
  | { kind: 'f' }
  | { kind: 'h'; run: number; expires: number; worker: string };

/** One listing of a cell folder's states. */
interface Listing {
  /** The state files' names (`<key>.<state>`), one per cell. */
  states: string[];
  /** Keys with no state yet → their cells being made (rare: a maker stopped, or is between). */
  pending: Map<string, string[]>;
}

const NO_PENDING: ReadonlyMap<string, string[]> = new Map();

export class FileLeaseStore implements LeaseStore {
  /** The units folder of the run this instance follows; read from the run when unknown. */
  private units_: number | null = null;
  /** Earlier runs' leftovers being removed (begin starts it, close waits for it). */
  private sweeping: Promise<void> = Promise.resolve();
  /** Unit keys to ids (a key is a function of its id). */
  private readonly ids = new Map<string, string>();
  private readonly registered = new Set<string>();
  /** Worker tokens to ids. */
  private readonly workers = new Map<string, string>();
  /** `<key>.<attempt>.<token>` → the state file this instance last renamed it to. */
  private readonly held = new Map<string, string>();

  /** `dir`: the scope's folder (created by begin()). */
  constructor(readonly dir: string) {}

  async begin(run: LeaseRun): Promise<LeaseRun> {
    // Each step below is a round trip on NFS: what does not depend on another goes at once.
    let [, cur] = await Promise.all([
      fs.mkdir(path.join(this.dir, 'tmp'), { recursive: true, mode: 0o700 }),
      this.readRun(),
    ]);
    for (let round = 0; round < ROUNDS; round++) {
      const stored = cur && 'run' in cur.file ? cur.file : null;
      if (stored && stored.run.runId === run.runId) return this.follow(stored);
      const g = (cur?.g ?? 0) + 1;
      const reopened = stored !== null && stored.run.partialStamp === run.partialStamp;
      const units = reopened ? stored.units : g;
      // Before the run is written: a begin that stops here has changed nothing a rerun won't.
      // A new folder gets its root unit before the run names it, so whoever reads the run finds
      // the root (two begins of one generation share the folder: the root's gate lets one make
      // it); the run's file is written meanwhile.
      const [written] = await Promise.all([
        this.writeTemp(JSON.stringify({ run, units })),
        reopened
          ? this.reopen(this.unitsDir(units))
          : this.makeUnitsDir(units).then(() => this.makeRoot(this.unitsDir(units))),
      ]);
      if (!(await linkTemp(written, path.join(this.dir, `run.${g}`)))) {
        // Another begin wrote this generation first: the loser takes the winner's run.
        cur = await this.readRun();
        if (cur && 'run' in cur.file) return this.follow(cur.file);
        continue;
      }
      if (reopened) await this.follow({ run, units });
      else this.units_ = units;
      // What earlier runs left (a committed run's units among it) goes while this run works:
      // a few calls per unit, serial in each folder on NFS. close() waits for it; should it
      // not finish, the next begin removes the rest.
      this.sweeping = this.removeBefore(g, units).catch(() => {});
      return run;
    }
    throw this.busy('begin its run');
  }

  async run(): Promise<LeaseRun | null> {
    const cur = await this.readRun();
    if (!cur || !('run' in cur.file)) {
      this.units_ = null;
      return null;
    }
    this.units_ = cur.file.units;
    return cur.file.run;
  }

  async publish(units: readonly string[]): Promise<void> {
    const dir = await this.unitsOrThrow();
    const fresh = [...new Set(units)];
    // A batch asks the gates once, so units already known cost nothing more.
    const known = new Set(fresh.length > 4 ? await fs.readdir(path.join(dir, 'ids')) : []);
    await eachLimited(fresh, async (unit) => {
      const key = unitKey(unit);
      if (known.has(key)) return;
      this.ids.set(key, unit);
      await this.makeCell(dir, key, JSON.stringify(unit));
    });
  }

  async acquire(worker: string, now: number, ttlMs: number): Promise<UnitLease | null> {
    if ((await this.unitsDirNow()) === null) return null;
    // The worker's first call: registered while the units are listed.
    const [w, first] = await Promise.all([this.register(worker), this.listNow()]);
    const expires = msCeil(now + ttlMs);
    for (let round = 0; round < ROUNDS; round++) {
      const found = round === 0 ? first : await this.listNow();
      if (found === null) return null;
      const { dir, listing } = found;
      const free: Array<{ key: string; name: string | null }> = [];
      for (const name of listing.states) {
        const kind = kindOf(name);
        if (kind === 'o' || (kind === 'l' && expiresOf(name) <= now))
          free.push({ key: keyOf(name), name });
      }
      for (const key of listing.pending.keys()) free.push({ key, name: null });
      if (free.length === 0) return null;
      shuffle(free); // many workers listing at once try the units in different orders
      for (const c of free) {
        let name = c.name;
        if (name === null) {
          if (!(await this.finishCell(dir, c.key, listing.pending.get(c.key)!))) continue;
          name = `${c.key}.o.0`;
        }
        const was = parseState(name) as State & { attempt: number };
        const attempt = was.attempt + 1;
        const next = `${c.key}.l.${attempt}.${expires}.${w}`;
        if (!(await renameIfThere(path.join(dir, 'states', name), path.join(dir, 'states', next))))
          continue;
        this.held.set(`${c.key}.${attempt}.${w}`, next);
        const from =
          was.kind === 'l' ? await this.workerOf(was.worker).catch(() => was.worker) : null;
        return leaseOf(await this.idOf(dir, c.key), attempt, from);
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
    const dir = await this.unitsDirNow();
    if (dir === null) return leases.map((l) => l.unit);
    const w = workerToken(worker);
    const expires = msCeil(now + ttlMs);
    const lost: string[] = [];
    for (const lease of leases) {
      const key = unitKey(lease.unit);
      const held = `${key}.${lease.attempt}.${w}`;
      const r = await this.change(dir, key, this.held.get(held), (s) =>
        s.kind === 'l' && s.attempt === lease.attempt && s.worker === w
          ? `l.${lease.attempt}.${expires}.${w}`
          : null,
      );
      if (typeof r === 'string') this.held.set(held, r);
      else {
        this.held.delete(held);
        lost.push(lease.unit);
      }
    }
    return lost;
  }

  async complete(worker: string, lease: UnitLease, done: UnitDone): Promise<boolean> {
    const dir = await this.unitsDirNow();
    if (dir === null) return false;
    const w = workerToken(worker);
    const key = unitKey(lease.unit);
    const held = `${key}.${lease.attempt}.${w}`;
    const report = path.join(dir, 'done', `${key}.${lease.attempt}`);
    // The report first: a state that says done always has its report.
    const written = await this.writeTemp(JSON.stringify(done));
    if (!(await renameIfThere(written, report))) {
      await removeFile(written);
      return false; // the folder is gone: the run was cleared, or replaced by another partial's
    }
    const r = await this.change(dir, key, this.held.get(held), (s) => {
      if (s.kind !== 'l' && s.kind !== 'd') return null;
      if (s.attempt !== lease.attempt || s.worker !== w) return null;
      return s.kind === 'd' ? true : `d.${s.attempt}.${w}`;
    });
    this.held.delete(held);
    if (r === null) await removeFile(report);
    return r !== null;
  }

  async release(worker: string, lease: UnitLease): Promise<void> {
    const dir = await this.unitsDirNow();
    if (dir === null) return;
    const w = workerToken(worker);
    const key = unitKey(lease.unit);
    const held = `${key}.${lease.attempt}.${w}`;
    await this.change(dir, key, this.held.get(held), (s) =>
      s.kind === 'l' && s.attempt === lease.attempt && s.worker === w ? `o.${s.attempt}` : null,
    );
    this.held.delete(held);
  }

  async counts(now: number): Promise<UnitCounts> {
    const out: UnitCounts = { open: 0, leased: 0, done: 0 };
    const found = await this.listNow();
    if (found === null) return out;
    const { dir, listing } = found;
    // One pass over the names, no parsing but a leased unit's expiry.
    for (const name of listing.states) {
      const kind = kindOf(name);
      if (kind === 'o') out.open++;
      else if (kind === 'd') out.done++;
      else if (kind === 'l') out[expiresOf(name) <= now ? 'open' : 'leased']++;
    }
    for (const [key, names] of listing.pending) if (await this.gated(dir, key, names)) out.open++;
    return out;
  }

  async units(): Promise<UnitState[]> {
    const found = await this.listNow();
    if (found === null) return [];
    const { dir, listing } = found;
    const out: UnitState[] = [];
    // Each unit's id and report are files: read many at once (one call is a round trip on NFS).
    await eachLimited(listing.states, async (name) => {
      const key = keyOf(name);
      const s = parseState(name);
      if (s?.kind !== 'o' && s?.kind !== 'l' && s?.kind !== 'd') return;
      const unit = await this.idOf(dir, key);
      if (s.kind === 'o') {
        out.push({ unit, status: 'open', owner: '', expires: 0, attempt: s.attempt, done: null });
        return;
      }
      const done =
        s.kind === 'd'
          ? (JSON.parse(
              await fs.readFile(path.join(dir, 'done', `${key}.${s.attempt}`), 'utf8'),
            ) as UnitDone)
          : null;
      out.push({
        unit,
        status: s.kind === 'l' ? 'leased' : 'done',
        owner: await this.workerOf(s.worker),
        expires: s.kind === 'l' ? s.expires : 0,
        attempt: s.attempt,
        done,
      });
    });
    for (const [key, names] of listing.pending) {
      if (!(await this.gated(dir, key, names))) continue;
      const unit = await this.idOf(dir, key);
      out.push({ unit, status: 'open', owner: '', expires: 0, attempt: 0, done: null });
    }
    return byBytes(out);
  }

  async claimCommit(worker: string, now: number, ttlMs: number): Promise<boolean> {
    // The run read again: a claim is judged against the scope's run as it is now.
    const cur = await this.readRun();
    if (!cur || !('run' in cur.file))
      throw new Error(`no run was begun in the lease folder ${this.dir}`);
    this.units_ = cur.file.units;
    const dir = path.join(this.unitsDir(cur.file.units), 'claim');
    const w = await this.register(worker);
    const mine = `${CLAIM}.h.${cur.g}.${msCeil(now + ttlMs)}.${w}`;
    for (let round = 0; round < ROUNDS; round++) {
      const listing = await this.list(dir);
      if (listing === null) return false; // cleared meanwhile
      const name = stateIn(listing, CLAIM);
      if (name === undefined) {
        const pending = listing.pending.get(CLAIM);
        if (!pending || !(await this.finishCell(dir, CLAIM, pending)))
          await this.makeCell(dir, CLAIM, '');
        continue;
      }
      const s = parseState(name);
      const free =
        s?.kind === 'f' ||
        (s?.kind === 'h' && (s.run !== cur.g || s.worker === w || s.expires <= now));
      if (!free) return false;
      if (await renameIfThere(path.join(dir, 'states', name), path.join(dir, 'states', mine)))
        return true;
    }
    throw this.busy('take the commit claim');
  }

  async clear(): Promise<void> {
    for (let round = 0; round < ROUNDS; round++) {
      const cur = await this.readRun();
      let g = cur?.g ?? 0;
      // A tombstone, not nothing: generations keep counting up, so a late cleanup of an older
      // begin can never take a newer run's folder.
      if (cur && 'run' in cur.file) {
        g++;
        if (!(await this.writeNew(`run.${g}`, JSON.stringify({ cleared: true })))) continue;
      }
      this.units_ = null;
      this.held.clear();
      let names: string[];
      try {
        names = await fs.readdir(this.dir);
      } catch (e) {
        if (isSystemError(e, 'ENOENT')) return;
        throw e;
      }
      // The units' folder stays for the next run's begin to remove while that run works (a
      // few names per unit, each removal serial in its folder on NFS: about a second for a few
      // hundred units, which the commit would otherwise wait for). Nothing reads it any more:
      // the tombstone says there is no run.
      await Promise.all(
        names
          .filter((n) => n !== `run.${g}` && !/^u\d+$/.test(n))
          .map((n) =>
            removedAll(asyncOps, path.join(this.dir, n)).catch((e: unknown) => {
              // Another worker of the run still writing there (a temp file on its way, a last
              // heartbeat): what it writes means nothing now (the tombstone says there is no
              // run), and the folder stays, as the units' does.
              if (!isSystemError(e, 'ENOTEMPTY')) throw e;
            }),
          ),
      );
      return;
    }
    throw this.busy('clear it');
  }

  async close(): Promise<void> {
    await this.sweeping;
  }

  // --- the run and its folders

  private unitsDir(n: number): string {
    return path.join(this.dir, `u${n}`);
  }

  private async follow(stored: { run: LeaseRun; units: number }): Promise<LeaseRun> {
    this.units_ = stored.units;
    const dir = this.unitsDir(stored.units);
    try {
      await fs.access(path.join(dir, 'ids', unitKey('')));
    } catch {
      await this.makeRoot(dir);
    }
    return stored.run;
  }

  /** The root unit's cell (every run's first unit). */
  private async makeRoot(dir: string): Promise<void> {
    const root = unitKey('');
    this.ids.set(root, '');
    await this.makeCell(dir, root, JSON.stringify(''));
  }

  /** A new units folder: the folder, then its sub-folders, level by level, each level at once. */
  private async makeUnitsDir(units: number): Promise<void> {
    const dir = this.unitsDir(units);
    const mkdir = (sub: string) => fs.mkdir(path.join(dir, sub), { recursive: true, mode: 0o700 });
    await mkdir('');
    await Promise.all(['ids', 'states', 'done', CLAIM].map(mkdir));
    await Promise.all([`${CLAIM}/ids`, `${CLAIM}/states`].map(mkdir));
  }

  /** The highest generation's run file, or null when there is none. */
  private async readRun(): Promise<{ g: number; file: RunFile } | null> {
    for (let round = 0; round < ROUNDS; round++) {
      let names: string[];
      try {
        names = await fs.readdir(this.dir);
      } catch (e) {
        if (isSystemError(e, 'ENOENT')) return null;
        throw e;
      }
      let g = 0;
      for (const n of names) {
        const m = /^run\.(\d+)$/.exec(n);
        if (m) g = Math.max(g, Number(m[1]));
      }
      if (g === 0) return null;
      try {
        const text = await fs.readFile(path.join(this.dir, `run.${g}`), 'utf8');
        return { g, file: JSON.parse(text) as RunFile };
      } catch (e) {
        // Replaced by a newer generation and removed meanwhile: list again.
        if (!isSystemError(e, 'ENOENT')) throw e;
      }
    }
    throw this.busy('read its run');
  }

  /** The folder of the run's units, or null when no run was begun. */
  private async unitsDirNow(): Promise<string | null> {
    if (this.units_ === null) await this.run();
    return this.units_ === null ? null : this.unitsDir(this.units_);
  }

  private async unitsOrThrow(): Promise<string> {
    const dir = await this.unitsDirNow();
    if (dir === null) throw new Error(`no run was begun in the lease folder ${this.dir}`);
    return dir;
  }

  /** Removes the run files before generation `g` and the units folders before `units`. */
  private async removeBefore(g: number, units: number): Promise<void> {
    const old = (await fs.readdir(this.dir)).filter((n) => {
      const run = /^run\.(\d+)$/.exec(n);
      const u = /^u(\d+)$/.exec(n);
      return (run !== null && Number(run[1]) < g) || (u !== null && Number(u[1]) < units);
    });
    await Promise.all(old.map((n) => removedAll(asyncOps, path.join(this.dir, n))));
  }

  /** A new run over the same partial: every done or leased unit open again. */
  private async reopen(dir: string): Promise<void> {
    const listing = await this.list(dir);
    if (listing === null) return;
    await eachLimited(listing.states, async (name) => {
      const key = keyOf(name);
      const s = parseState(name);
      if (s?.kind === 'l' || s?.kind === 'd')
        await renameIfThere(
          path.join(dir, 'states', name),
          path.join(dir, 'states', `${key}.o.${s.attempt}`),
        );
    });
  }

  /**
   * The skew against the file server's clock: a file written here takes the server's time,
   * compared with this host's before and after the write (a network round trip apart).
   */
  async clockSkew(): Promise<ClockSkew> {
    const before = Date.now();
    const probe = await this.writeTemp('clock');
    const after = Date.now();
    try {
      const server = (await fs.stat(probe)).mtimeMs;
      return { ms: skewFrom(before, after, server, server), against: "the file server's" };
    } finally {
      await removeFile(probe);
    }
  }

  // --- cells

  /** The run's units folder and its listing, the run read again if its folder is gone. */
  private async listNow(): Promise<{ dir: string; listing: Listing } | null> {
    for (let round = 0; round < 2; round++) {
      const dir = await this.unitsDirNow();
      if (dir === null) return null;
      const listing = await this.list(dir);
      if (listing) return { dir, listing };
    }
    return null;
  }

  /** The states of a cell folder; null when it is gone (the run cleared, or another partial's). */
  private async list(dir: string): Promise<Listing | null> {
    let names: string[];
    try {
      names = await fs.readdir(path.join(dir, 'states'));
    } catch (e) {
      if (!isSystemError(e, 'ENOENT')) throw e;
      this.units_ = null;
      return null;
    }
    const states: string[] = [];
    let pending: Map<string, string[]> | null = null;
    for (const n of names) {
      const dot = n.indexOf('.');
      if (dot < 0) continue;
      if (!n.startsWith('p.', dot + 1)) {
        states.push(n);
        continue;
      }
      pending ??= new Map();
      const key = n.slice(0, dot);
      const list = pending.get(key);
      if (list) list.push(n);
      else pending.set(key, [n]);
    }
    if (pending) for (const n of states) pending.delete(keyOf(n));
    return { states, pending: pending ?? (NO_PENDING as Map<string, string[]>) };
  }

  /**
   * Makes the cell `key` in `dir` (its gate holding `content`), unless it exists; true when
   * this call made it. The cell is first a pending file, linked as the gate, then renamed to
   * its first state: a maker that stops in between leaves a gated pending file, which
   * finishCell() completes, so a gate always comes to have exactly one state.
   */
  private async makeCell(dir: string, key: string, content: string): Promise<boolean> {
    const pending = path.join(dir, 'states', `${key}.p.${nonce()}`);
    await writeDurable(pending, content);
    let made = false;
    try {
      made = await linkNew(pending, path.join(dir, 'ids', key));
    } finally {
      if (!made) await removeFile(pending);
    }
    if (made) await renameIfThere(pending, path.join(dir, 'states', `${key}.${firstState(key)}`));
    return made;
  }

  /** Completes a cell whose maker stopped between its gate and its first state; true when made. */
  private async finishCell(dir: string, key: string, pending: string[]): Promise<boolean> {
    for (const n of pending) {
      const file = path.join(dir, 'states', n);
      if (!(await sameFile(file, path.join(dir, 'ids', key)))) continue;
      await renameIfThere(file, path.join(dir, 'states', `${key}.${firstState(key)}`));
      return true;
    }
    return false;
  }

  /** True when one of the pending files is the cell's gate (it is published). */
  private async gated(dir: string, key: string, pending: string[]): Promise<boolean> {
    for (const n of pending)
      if (await sameFile(path.join(dir, 'states', n), path.join(dir, 'ids', key))) return true;
    return false;
  }

  /**
   * Renames the cell `key` from its state to the one `next` gives for it (a state after
   * `<key>.`), starting from the name this instance last gave it; `next` says true for "already
   * so, nothing to do" and null for "not this caller's to change". A rename that finds its
   * source gone (a concurrent change: this worker's own renew, a take-over) lists again.
   * Returns the new state file's name, true, or null.
   */
  private async change(
    dir: string,
    key: string,
    last: string | undefined,
    next: (s: State) => string | true | null,
  ): Promise<string | true | null> {
    let name = last;
    for (let round = 0; round < ROUNDS; round++) {
      if (name === undefined) {
        const listing = await this.list(dir);
        name = listing ? stateIn(listing, key) : undefined;
      }
      const s = name === undefined ? null : parseState(name);
      if (name === undefined || s === null) return null;
      const to = next(s);
      if (to === null || to === true) return to;
      const target = `${key}.${to}`;
      if (await renameIfThere(path.join(dir, 'states', name), path.join(dir, 'states', target)))
        return target;
      name = undefined;
    }
    return null;
  }

  private async idOf(dir: string, key: string): Promise<string> {
    let id = this.ids.get(key);
    if (id === undefined) {
      id = JSON.parse(await fs.readFile(path.join(dir, 'ids', key), 'utf8')) as string;
      this.ids.set(key, id);
    }
    return id;
  }

  // --- workers

  /** The worker's token, its id written once under `workers/`. */
  private async register(worker: string): Promise<string> {
    const w = workerToken(worker);
    if (this.registered.has(w)) return w;
    const workers = path.join(this.dir, 'workers');
    await fs.mkdir(workers, { recursive: true, mode: 0o700 });
    await linkTemp(await this.writeTemp(JSON.stringify(worker)), path.join(workers, w));
    this.registered.add(w);
    return w;
  }

  private async workerOf(token: string): Promise<string> {
    let id = this.workers.get(token);
    if (id === undefined) {
      id = JSON.parse(await fs.readFile(path.join(this.dir, 'workers', token), 'utf8')) as string;
      this.workers.set(token, id);
    }
    return id;
  }

  // --- files

  private async writeTemp(content: string): Promise<string> {
    const file = path.join(this.dir, 'tmp', nonce());
    try {
      await writeDurable(file, content);
    } catch (e) {
      if (!isSystemError(e, 'ENOENT')) throw e;
      await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
      await writeDurable(file, content);
    }
    return file;
  }

  /** Writes `<dir>/<name>` whole unless it exists; true when this call wrote it. */
  private async writeNew(name: string, content: string): Promise<boolean> {
    return linkTemp(await this.writeTemp(content), path.join(this.dir, name));
  }

  private busy(what: string): Error {
    return new Error(`the lease folder ${this.dir} kept changing: could not ${what}`);
  }
}

/** A unit's key: the base64url sha256 of its id's bytes (43 characters, no dot). */
function unitKey(unit: string): string {
  return createHash('sha256').update(bytesOfName(unit)).digest('base64url');
}

/** Units in the order of their ids' bytes (as SQLite and DynamoDB list them). */
function byBytes(units: UnitState[]): UnitState[] {
  const keyed = units.map((u) => ({ u, b: bytesOfName(u.unit) }));
  return keyed.sort((x, y) => Buffer.compare(x.b, y.b)).map((x) => x.u);
}

function workerToken(worker: string): string {
  // JSON keeps any string apart, lone surrogates included.
  return createHash('sha256').update(JSON.stringify(worker)).digest('base64url').slice(0, 16);
}

function keyOf(name: string): string {
  return name.slice(0, name.indexOf('.'));
}

/** The letter of a state file's state (o, l, d, f, h). */
function kindOf(name: string): string {
  return name.charAt(name.indexOf('.') + 1);
}

/** A lease's expiry, from its state file's name (`<key>.l.<attempt>.<expires>.<w>`). */
function expiresOf(name: string): number {
  const a = name.indexOf('.', name.indexOf('.') + 3);
  return Number(name.slice(a + 1, name.indexOf('.', a + 1)));
}

function stateIn(listing: Listing, key: string): string | undefined {
  const prefix = `${key}.`;
  return listing.states.find((n) => n.startsWith(prefix));
}

function firstState(key: string): string {
  return key === CLAIM ? 'f' : 'o.0';
}

function parseState(name: string): State | null {
  const p = name.split('.').slice(1);
  const n = (i: number): number => Number(p[i]);
  switch (p[0]) {
    case 'o':
      return p.length === 2 ? { kind: 'o', attempt: n(1) } : null;
    case 'l':
      return p.length === 4 ? { kind: 'l', attempt: n(1), expires: n(2), worker: p[3]! } : null;
    case 'd':
      return p.length === 3 ? { kind: 'd', attempt: n(1), worker: p[2]! } : null;
    case 'f':
      return p.length === 1 ? { kind: 'f' } : null;
    case 'h':
      return p.length === 4 ? { kind: 'h', run: n(1), expires: n(2), worker: p[3]! } : null;
    default:
      return null;
  }
}

/** Expiries are whole milliseconds in names; rounded up, a lease is never shortened. */
function msCeil(t: number): number {
  return Math.ceil(t);
}

function nonce(): string {
  return `${process.pid}-${randomBytes(8).toString('hex')}`;
}

async function writeDurable(file: string, content: string): Promise<void> {
  const h = await fs.open(file, 'wx', 0o600);
  try {
    await h.writeFile(content + '\n');
    await h.sync();
  } finally {
    await h.close();
  }
}

/**
 * Links `from` as `to` unless `to` exists; true when this call made it. An EEXIST naming the
 * same file is a link that succeeded and was answered twice (a retransmitted NFS request).
 */
async function linkNew(from: string, to: string): Promise<boolean> {
  try {
    await fs.link(from, to);
    return true;
  } catch (e) {
    if (isSystemError(e, 'EEXIST')) return sameFile(from, to);
    throw e;
  }
}

/** `linkNew` of a temporary file, which goes then whatever the link did. */
async function linkTemp(temp: string, to: string): Promise<boolean> {
  try {
    return await linkNew(temp, to);
  } finally {
    await removeFile(temp);
  }
}

/** The compare-and-swap: false when `from` is gone (another process changed it first). */
async function renameIfThere(from: string, to: string): Promise<boolean> {
  try {
    await fs.rename(from, to);
    return true;
  } catch (e) {
    if (isSystemError(e, 'ENOENT')) return false;
    throw e;
  }
}

/** Removes a file unless it is gone: one call (`fs.rm` looks at it first, a round trip more). */
async function removeFile(file: string): Promise<void> {
  try {
    await fs.unlink(file);
  } catch (e) {
    if (!isSystemError(e, 'ENOENT')) throw e;
  }
}

async function sameFile(a: string, b: string): Promise<boolean> {
  try {
    const [x, y] = await Promise.all([fs.stat(a, { bigint: true }), fs.stat(b, { bigint: true })]);
    return x.ino === y.ino && x.dev === y.dev;
  } catch (e) {
    if (isSystemError(e, 'ENOENT')) return false;
    throw e;
  }
}
