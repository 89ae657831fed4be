import fs from 'node:fs';
import path from 'node:path';
import type { BackupSet } from './layout.js';
import { fsPath } from './names.js';

/**
 * What `verify` found damaged in a set's snapshots, kept in the set's `.efs-backup/damage.json`
 * so that the next backup never links to a damaged inode (it copies that entry from the
 * source instead) and `verify --repair` knows what to heal. Written whole under a temporary
 * name and renamed, so a reader sees the old list or the new one.
 */
export interface DamageRecord {
  /** The snapshot's interval and stamp. */
  interval: string;
  snapshot: string;
  /** The entry's path in the snapshot. */
  path: string;
  /** The damaged inode's number in the snapshot (decimal): every snapshot sharing it shares the damage. */
  ino: string;
  /** `content`: its bytes differ from the digest; `metadata`: its mode, owner or times differ. */
  what: 'content' | 'metadata';
  /** The manifest's digest of the entry (content damage). */
  digest: string;
  /** When verify found it (ISO 8601). */
  found: string;
}

interface DamageFile {
  format: 'efs-backup-damage';
  version: 1;
  damage: DamageRecord[];
}

export function damageFile(set: BackupSet): string {
  return path.join(set.dataDir, 'damage.json');
}

/** Every damage record of the set; none when the file is missing or unreadable. */
export function readDamage(set: BackupSet): DamageRecord[] {
  let text: string;
  try {
    text = fs.readFileSync(damageFile(set), 'utf8');
  } catch {
    return [];
  }
  try {
    const f = JSON.parse(text) as DamageFile;
    return f.format === 'efs-backup-damage' && Array.isArray(f.damage) ? f.damage : [];
  } catch {
    return [];
  }
}

/**
 * Replaces what is known about one snapshot (`interval/snapshot`) with `found`; records of
 * snapshots that no longer exist are dropped.
 */
export function recordDamage(
  set: BackupSet,
  interval: string,
  snapshot: string,
  found: DamageRecord[],
): void {
  const keep = readDamage(set).filter(
    (d) =>
      !(d.interval === interval && d.snapshot === snapshot) &&
      fs.existsSync(set.snapshotDir(d.interval, d.snapshot)),
  );
  const all = [...keep, ...found];
  const file = damageFile(set);
  if (all.length === 0) {
    fs.rmSync(file, { force: true });
    return;
  }
  const body: DamageFile = { format: 'efs-backup-damage', version: 1, damage: all };
  const tmp = `${file}.tmp.${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify(body, null, 1) + '\n', { mode: 0o600 });
  fs.renameSync(tmp, file);
}

/**
 * The paths of `snapshotDir` (relative) whose inode is one of the damaged ones: the entries a
 * backup based on that snapshot must copy from the source rather than link. One lstat per
 * damage record, at the start of a run.
 */
export function damagedPaths(snapshotDir: string, damage: DamageRecord[]): Set<string> {
  const out = new Set<string>();
  const inodes = new Set(damage.map((d) => d.ino));
  for (const p of new Set(damage.map((d) => d.path))) {
    try {
      const st = fs.lstatSync(fsPath(path.join(snapshotDir, p)), { bigint: true });
      if (inodes.has(String(st.ino))) out.add(p);
    } catch {
      /* not in this snapshot */
    }
  }
  return out;
}
