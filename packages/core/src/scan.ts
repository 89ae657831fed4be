import type fs from 'node:fs';
import type { FsOps } from './fs-ops.js';

type Listed = (err: NodeJS.ErrnoException | null, list: fs.Dirent[]) => void;

/** What the scanner knows of one directory it has found. */
interface Slot {
  /** queued: found, not read yet; reading: a call in flight; held: its listing kept for the walk. */
  state: 'queued' | 'reading' | 'held';
  /** The walk asked for this listing while it was being read. */
  waiter: Listed | null;
  list: fs.Dirent[] | null;
}

/**
 * Entries of listings kept for the walk at most (about 100 bytes each: ~20 MB). Past it the
 * scanner goes on counting, but drops what it reads: the walk reads those directories again.
 */
export const MAX_HELD_ENTRIES = 200_000;

/** Main-thread time a slice of direct (sync) reads may take before the walk gets its turn. */
const SLICE_MS = 4;

/** What the run report reads of a count ahead of the walk. */
export interface EntryCount {
  readonly entries: number;
  readonly done: boolean;
}

/**
 * Counts the source ahead of the walk, for a first backup's estimate (restic's scanner): one
 * listing with the types the directory gives (no stat per entry) per directory, depth-first in
 * the walk's order. The walk takes its listings from here (`take`), so a directory is read once
 * for both: the listing the scanner read is kept until the walk asks for it, and a directory the
 * walk asks for before the scanner got to it is read then, for both. Only listings beyond
 * `maxHeld` kept entries cost a second call (the walk reads them itself).
 *
 * Entries counted are every name of every listing: what the walk records, less the sockets and
 * devices it skips and what changes while it runs.
 */
export class Scanner implements EntryCount {
  entries = 0;
  /** Directories listed. */
  dirs = 0;
  /** Listings read and not kept (beyond `maxHeld`): the walk reads those directories again. */
  dropped = 0;
  done = false;
  private held = 0;
  private readonly slots = new Map<string, Slot>();
  /** Directories found and not yet read, in the walk's order (last found, first read). */
  private readonly stack: string[] = [];
  private inFlight = 0;
  private pumping = false;
  private yielding = false;
  private stopped = false;

  constructor(
    private readonly root: string,
    private readonly ops: FsOps,
    /** Listings in flight at once (async calls). */
    private readonly limit: number,
    private readonly maxHeld = MAX_HELD_ENTRIES,
    /**
     * What of the listing of the directory `rel` (relative to the root) the walk takes, when it
     * leaves some out: only that is counted and descended into. The walk gets the whole
     * listing, as if it had read it itself.
     */
    private readonly filter: ((rel: string, list: fs.Dirent[]) => fs.Dirent[]) | null = null,
  ) {
    this.found(root);
  }

  start(): void {
    this.pump();
  }

  /** No more reads; listings held are let go (a read in flight for the walk still reaches it). */
  stop(): void {
    this.stopped = true;
    this.stack.length = 0;
    for (const [p, s] of this.slots) if (s.state !== 'reading') this.slots.delete(p);
    this.held = 0;
  }

  /**
   * The walk's listing of `p`, through `cb`: the one read ahead, or one read now. False when the
   * scanner has none to give (dropped, or never found as a directory): the walk reads it itself.
   */
  take(p: string, cb: Listed): boolean {
    const slot = this.slots.get(p);
    if (!slot) return false;
    if (slot.state === 'held') {
      const list = slot.list!;
      this.slots.delete(p);
      this.held -= list.length;
      cb(null, list);
    } else if (slot.state === 'reading') {
      slot.waiter = cb;
    } else {
      // Not read yet: read now (the walk waits for it), outside the scanner's own limit.
      slot.waiter = cb;
      this.read(p, slot);
    }
    return true;
  }

  private found(p: string): void {
    this.slots.set(p, { state: 'queued', waiter: null, list: null });
    this.stack.push(p);
  }

  private read(p: string, slot: Slot): void {
    slot.state = 'reading';
    this.inFlight++;
    this.ops.readdirTypes(p, (err, list) => this.listed(p, slot, err, list));
  }

  private listed(p: string, slot: Slot, err: NodeJS.ErrnoException | null, list: fs.Dirent[]) {
    this.inFlight--;
    if (!err && !this.stopped) {
      const rel = p === this.root ? '' : p.slice(this.root.length + 1);
      const taken = this.filter ? this.filter(rel, list) : list;
      this.entries += taken.length;
      this.dirs++;
      for (const d of taken) if (d.isDirectory()) this.found(`${p}/${d.name}`);
    }
    const waiter = slot.waiter;
    if (waiter || err || this.stopped) {
      // An unreadable directory is left to the walk, which reports it.
      this.slots.delete(p);
    } else if (this.held + list.length <= this.maxHeld) {
      slot.state = 'held';
      slot.list = list;
      this.held += list.length;
    } else {
      this.slots.delete(p);
      this.dropped++;
    }
    if (waiter) waiter(err, list);
    this.pump();
  }

  private readonly resume = (): void => {
    this.yielding = false;
    this.pump();
  };

  private pump(): void {
    // A direct (sync) read calls back before it returns: the flag makes that recursion this loop.
    if (this.pumping || this.yielding || this.stopped) return;
    this.pumping = true;
    const start = this.ops.mode === 'sync' ? performance.now() : 0;
    while (this.inFlight < this.limit && this.stack.length > 0) {
      // Direct reads hold the main thread: a slice at a time, then the walk runs.
      if (this.ops.mode === 'sync' && performance.now() - start > SLICE_MS) {
        this.yielding = true;
        setImmediate(this.resume);
        break;
      }
      const p = this.stack.pop()!;
      const slot = this.slots.get(p);
      if (slot?.state !== 'queued') continue; // the walk asked for it first
      this.read(p, slot);
    }
    this.pumping = false;
    if (this.inFlight === 0 && this.stack.length === 0) this.done = true;
  }
}
