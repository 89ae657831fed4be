/**
 * Zips a directory for a Lambda's code: the dist script zips the orchestrator's bundle
 * directory with it. Names sorted and times fixed, so the same code makes the same archive.
 */
import { zipSync, type Zippable } from 'fflate';
import fs from 'node:fs';
import path from 'node:path';

/** The files under `dir`, relative, sorted. */
function filesOf(dir: string, rel = ''): string[] {
  return fs
    .readdirSync(path.join(dir, rel), { withFileTypes: true })
    .sort((a, b) => (a.name < b.name ? -1 : 1))
    .flatMap((e) => {
      const r = rel ? `${rel}/${e.name}` : e.name;
      return e.isDirectory() ? filesOf(dir, r) : e.isFile() ? [r] : [];
    });
}

export function zipDirectory(dir: string, outFile: string): void {
  const files: Zippable = {};
  for (const name of filesOf(dir)) files[name] = fs.readFileSync(path.join(dir, name));
  const zip = zipSync(files, {
    level: 9,
    // 1980-01-01 00:00 in local time, which ZIP times are: the format's first moment.
    mtime: new Date(1980, 0, 1),
    // Unix regular files, rw-r--r--.
    os: 3,
    attrs: (0o100644 << 16) >>> 0,
  });
  fs.mkdirSync(path.dirname(outFile), { recursive: true });
  fs.writeFileSync(outFile, zip);
}
