import { BackupSet, ensureDir } from '@efs-backup/core';
import fs from 'node:fs';

/**
 * The set's own folder (`<destination>/<label>/.efs-backup`), made when missing; the destination
 * itself must exist: a folder is never made where a file system should be mounted.
 */
export function setDataDir(destination: string, label: string): string {
  const set = new BackupSet(destination, label);
  try {
    if (fs.statSync(set.dataDir).isDirectory()) return set.dataDir;
  } catch {
    /* made below, once the destination is known to be there */
  }
  let st: fs.Stats;
  try {
    st = fs.statSync(destination);
  } catch {
    throw new Error(`destination ${destination} does not exist (is it mounted?)`);
  }
  if (!st.isDirectory()) throw new Error(`destination ${destination} is not a directory`);
  ensureDir(set.dataDir);
  return set.dataDir;
}
