import { BackupSet } from '@efs-backup/core';
import fs from 'node:fs';

/**
 * The set's own folder (`<destination>/<label>/.efs-backup`), made when missing; the destination
 * itself must exist: a folder is never made where a file system should be mounted.
 */
export function setDataDir(destination: string, label: string): string {
  let st: fs.Stats;
  try {
    st = fs.statSync(destination);
  } catch {
    throw new Error(`destination ${destination} does not exist (is it mounted?)`);
  }
  if (!st.isDirectory()) throw new Error(`destination ${destination} is not a directory`);
  const set = new BackupSet(destination, label);
  fs.mkdirSync(set.dataDir, { recursive: true, mode: 0o700 });
  return set.dataDir;
}
