import fs from 'node:fs';
import path from 'node:path';
import { damageFile, recordDamage, type DamageRecord } from './damage.js';
import { badInput } from './errors.js';
import { Excludes } from './excludes.js';
import { existingDirectory, existingSet, type BackupSet, type SnapshotRef } from './layout.js';
import { LabelLock } from './lock.js';
import type { ManifestIndex } from './manifest.js';
import { isGone, openManifest, readHeader, resolveSnapshot } from './selectors.js';
import { repairDamage, type RepairItem } from './verify-repair.js';
import { compareTree, XattrCheck, type FoundDamage, type Problem } from './verify-tree.js';

export interface VerifyOptions {
  destination: string;
  /** @default 'efs-backup' */
  label?: string;
  /** A selector. @default 'latest' (not with `all`) */
  snapshot?: string;
  /** Every complete snapshot of the set. */
  all?: boolean;
  /**
   * A live source: how it differs from each snapshot is reported (metadata; digests too with
   * `checksum`). With `repair`, the source the damaged content is copied from instead.
   */
  source?: string;
  /** With `source`: hash the source's files and compare them with the manifest's digests. */
  checksum?: boolean;
  /**
   * Put each damaged entry of the checked snapshots back in place (needs `source`): content
   * from the source where it still holds the manifest's digest, mode, owner, times and
   * attributes from the manifest. Takes the set's lock for the whole run.
   */
  repair?: boolean;
  /** @default 32 */
  concurrency?: number;
  /** Called as the check of each snapshot begins, its manifest read (awaited). */
  onSnapshot?: (s: SnapshotRef) => void | Promise<void>;
}

export interface SnapshotVerification {
  snapshot: SnapshotRef;
  entries: number;
  bytes: number;
  /** One line per problem: `<kind>: <path>[: detail]`. */
  problems: string[];
  /** With --source: `added|removed|changed: <path>`. */
  sourceDifferences: string[] | null;
  /**
   * The damaged entries recorded for this snapshot in `damageFile` (after a repair: those
   * still damaged). The next backup copies each anew instead of linking to it.
   */
  damage: DamageRecord[];
  /** Where the damage of the set is kept; null when it was not recorded (see `notes`). */
  damageFile: string | null;
  /** With repair: each damaged entry healed, and how (`<path>: content rewritten ...`). */
  repaired?: string[];
  /** With repair: each damaged entry not healed, and why (`<path>: <why>`). */
  notRepaired?: string[];
  /**
   * With repair: the problems still standing after it (those of entries not repaired, and
   * what a repair does not treat: a missing or extra name, a broken hard link).
   */
  remaining?: string[];
  /** What the check could not do (e.g. attributes not checked), each said once. */
  notes: string[];
  /**
   * Why the snapshot was not checked: it was deleted (by a prune) while verify ran. Not damage:
   * its problems are dropped.
   */
  skipped?: string;
}

/**
 * The source holds the part a snapshot was made of (its manifest's prefix), as a backup's
 * source must: a source without it is the wrong source, bad input (not every entry removed).
 */
function checkSourcePrefix(given: string, source: string, s: SnapshotRef): void {
  const prefix = readHeader(s.manifest)?.Prefix;
  if (prefix === undefined || prefix === '/') return;
  let isDir = false;
  try {
    isDir = fs.statSync(path.join(source, prefix)).isDirectory();
  } catch {
    /* said below */
  }
  if (!isDir)
    throw badInput(
      `prefix ${prefix} (of snapshot ${s.interval}/${s.stamp}) does not exist in source ${given}`,
    );
}

function checkOptions(o: VerifyOptions): void {
  if (o.all && o.snapshot !== undefined)
    throw badInput(
      `--all checks every snapshot and --snapshot ${o.snapshot} names one: give one or the other`,
    );
  if (o.repair && o.source === undefined)
    throw badInput(
      '--repair copies damaged content back from the live source: give it with --source <dir>',
    );
  if (o.checksum && o.source === undefined)
    throw badInput("--checksum compares the source's files with the snapshot: it needs --source");
  if (o.checksum && o.repair)
    throw badInput(
      '--checksum compares the source with the snapshot, --repair heals it: one at a time',
    );
}

/** One snapshot's check: its result, and what `--repair` would treat. */
interface Checked {
  v: SnapshotVerification;
  problems: Problem[];
  items: RepairItem[];
  /** Checked in full: its damage records are replaced by what was found. */
  recordable: boolean;
}

/**
 * Re-reads a snapshot and checks every entry against its manifest: type, mode, owner, size,
 * mtime, symlink target, extended attributes, content digest, hard links, and names the
 * manifest does not list. Damaged entries are recorded in the set's damage list (replacing
 * what an earlier verify found in that snapshot) and, with `repair`, put back in place.
 */
export async function verify(o: VerifyOptions): Promise<SnapshotVerification[]> {
  checkOptions(o);
  const set = existingSet(o.destination, o.label ?? 'efs-backup');
  // The source checked as a backup's: there, and a directory.
  const source = o.source === undefined ? null : existingDirectory(o.source, 'source');
  const snapshots = o.all ? set.snapshots() : [resolveSnapshot(set, o.snapshot ?? 'latest')];
  if (snapshots.length === 0) throw badInput(`no complete snapshot in ${set.dir}`);
  if (source) for (const s of snapshots) checkSourcePrefix(o.source!, source, s);
  let lost: string | null = null;
  // No backup, prune or other repair while entries are checked and put back.
  const lock = o.repair
    ? LabelLock.acquire(set.lockFile, `verify-repair-${process.pid}`, {
        onLost: (why) => (lost = why),
      })
    : null;
  try {
    // Notes go to the snapshot being checked; each is told once per run.
    let current: SnapshotVerification | null = null;
    const xattrs = new XattrCheck((m) => current?.notes.push(m));
    const checked: Checked[] = [];
    for (const s of snapshots) {
      const c = await checkSnapshot(s, o, source, xattrs, (v) => (current = v));
      checked.push(c);
      // Kept at once: an --all run stopped half way still leaves what it found.
      if (c.recordable) record(set, c.v);
    }
    if (o.repair) await repair(set, checked, () => lost);
    return checked.map((c) => c.v);
  } finally {
    lock?.release();
  }
}

async function checkSnapshot(
  s: SnapshotRef,
  o: VerifyOptions,
  source: string | null,
  xattrs: XattrCheck,
  begin: (v: SnapshotVerification) => void,
): Promise<Checked> {
  const v: SnapshotVerification = {
    snapshot: s,
    entries: 0,
    bytes: 0,
    problems: [],
    sourceDifferences: null,
    damage: [],
    damageFile: null,
    notes: [],
  };
  begin(v);
  const c: Checked = { v, problems: [], items: [], recordable: false };
  // A prune renames a doomed snapshot `.<stamp>.deleting` and removes its manifest, then
  // deletes the tree: a snapshot listed when verify began may go at any point of its check.
  const skipIfGone = (): boolean => {
    if (!isGone(s)) return false;
    v.skipped = `${s.interval}/${s.stamp} was deleted by a prune while being verified`;
    Object.assign(v, { problems: [], entries: 0, bytes: 0, sourceDifferences: null });
    c.problems = [];
    return true;
  };
  let index: ManifestIndex;
  try {
    index = await openManifest(s);
  } catch (e) {
    // Nothing is known of its entries: what an earlier verify recorded stays.
    if (!skipIfGone()) v.problems.push(`manifest: ${(e as Error).message}`);
    return c;
  }
  const found: FoundDamage[] = [];
  let prefix: string;
  try {
    await o.onSnapshot?.(s);
    const concurrency = o.concurrency ?? 32;
    await compareTree({
      index,
      root: s.path,
      concurrency,
      side: 'snapshot',
      xattrs,
      report: (p) => {
        c.problems.push(p);
        v.problems.push(p.line);
      },
      counts: v,
      onDamage: (d) => found.push(d),
    });
    prefix = index.header!.Prefix;
    // With --repair the source is where damaged content comes from, not a comparison.
    if (source && !o.repair) {
      const differences: string[] = [];
      v.sourceDifferences = differences;
      await compareTree({
        index,
        root: path.join(source, prefix),
        concurrency,
        side: 'source',
        checksum: o.checksum ?? false,
        // What the snapshot left out is not an addition to the source.
        excludes: Excludes.ofHeader(index.header),
        report: (p) => differences.push(p.line),
      });
    }
  } finally {
    index.close();
  }
  if (skipIfGone()) return c;
  c.recordable = true;
  const when = new Date().toISOString();
  for (const d of found) {
    const record: DamageRecord = {
      interval: s.interval,
      snapshot: s.stamp,
      path: d.rel || '.',
      ino: String(d.st.ino),
      what: d.what,
      digest: d.entry.kind === 'f' ? d.entry.data : '',
      found: when,
    };
    v.damage.push(record);
    c.items.push({
      record,
      entry: d.entry,
      path: d.rel === '' ? s.path : `${s.path}/${d.rel}`,
      sourcePath: path.join(source ?? '', prefix, d.rel),
    });
  }
  return c;
}

/** The snapshot's damage into the set's list, replacing what was known of it. */
function record(set: BackupSet, v: SnapshotVerification): void {
  try {
    recordDamage(set, v.snapshot.interval, v.snapshot.stamp, v.damage);
    v.damageFile = damageFile(set);
  } catch (e) {
    v.damageFile = null;
    v.notes.push(`damage not recorded: ${(e as Error).message}`);
  }
}

/** `--repair`: the damage found put back, each outcome told, the records of what healed dropped. */
async function repair(
  set: BackupSet,
  checked: Checked[],
  lost: () => string | null,
): Promise<void> {
  const outcomes = await repairDamage(
    checked.flatMap((c) => c.items),
    lost,
  );
  for (const c of checked) {
    const v = c.v;
    v.repaired = [];
    v.notRepaired = [];
    const healed = new Set<string>();
    for (const it of c.items) {
      const out = outcomes.get(it)!;
      const rel = it.record.path;
      if (out.repaired) {
        healed.add(rel === '.' ? '' : rel);
        v.repaired.push(
          `${rel}: ${it.record.what === 'content' ? 'content rewritten in place from the source' : 'metadata put back from the manifest'}`,
        );
      } else v.notRepaired.push(`${rel}: ${out.why}`);
    }
    if (!c.recordable) {
      v.remaining = [...v.problems];
      continue;
    }
    v.remaining = c.problems.filter((p) => !(p.entry && healed.has(p.rel))).map((p) => p.line);
    v.damage = v.damage.filter((d) => !healed.has(d.path === '.' ? '' : d.path));
    if (v.repaired.length > 0) record(set, v);
  }
}
