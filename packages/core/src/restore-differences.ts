import type fs from 'node:fs';
import { kindOfMode } from './change.js';
import type { ManifestEntry } from './manifest.js';

/**
 * What differs between a manifest entry and what a tree holds at its name (`st`, and for a
 * symlink its target): restore's rule for "unchanged" in the target, and verify's check of a
 * snapshot or a source against a manifest.
 */
export function differences(
  e: ManifestEntry,
  st: fs.BigIntStats,
  linkTarget: string | null,
): string[] {
  const mode = Number(st.mode);
  const kind = kindOfMode(mode) ?? '?';
  if (kind !== e.kind) return ['type'];
  const out: string[] = [];
  if (e.kind === 'f' && Number(st.size) !== e.size) out.push('size');
  if (e.kind === 'l' && linkTarget !== e.data) out.push('target');
  if (e.kind !== 'l' && (mode & 0o7777) !== (e.mode & 0o7777)) out.push('mode');
  if (Number(st.uid) !== e.uid || Number(st.gid) !== e.gid) out.push('owner');
  const ns = BigInt(e.mtimeSec) * 1_000_000_000n + BigInt(e.mtimeNsec);
  if (st.mtimeNs / 1000n !== ns / 1000n) out.push('mtime');
  return out;
}
