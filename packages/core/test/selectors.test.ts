import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { BackupSet } from '../src/layout.js';
import { resolveSnapshot } from '../src/selectors.js';
import { tmpDir } from './fixtures/tmp.js';

/** A set with complete snapshots (directories) and manifests holding only a header line. */
function setWith(snapshots: Array<[interval: string, stamp: string, backupId: string]>): BackupSet {
  const set = new BackupSet(tmpDir('efs-selectors-'), 'efs-backup');
  fs.mkdirSync(set.manifestsDir, { recursive: true });
  for (const [interval, stamp, backupId] of snapshots) {
    fs.mkdirSync(set.snapshotDir(interval, stamp), { recursive: true });
    fs.writeFileSync(set.manifestPath(stamp), `${JSON.stringify({ BackupId: backupId })}\n`);
  }
  return set;
}

const stampOf = (set: BackupSet, selector: string): string => resolveSnapshot(set, selector).stamp;

const refused = (set: BackupSet, selector: string): { code: string; message: string } => {
  try {
    resolveSnapshot(set, selector);
  } catch (e) {
    const { code, message } = e as { code: string; message: string };
    return { code, message };
  }
  throw new Error(`${selector} resolved`);
};

describe('resolveSnapshot', () => {
  const set = (): BackupSet =>
    setWith([
      ['daily', '20260101T000000Z', 'run-a'],
      ['daily', '20260102T000000Z', 'run-b'],
      ['weekly', '20260103T000000Z', '20260101T000000Z.0'],
      ['daily', '20260104T000000Z', 'daily.5'],
    ]);

  it('takes latest, <interval>.<n> (newest first), a stamp and a BackupId', () => {
    const s = set();
    expect(stampOf(s, 'latest')).toBe('20260104T000000Z');
    expect(stampOf(s, 'daily.0')).toBe('20260104T000000Z');
    expect(stampOf(s, 'daily.2')).toBe('20260101T000000Z');
    expect(stampOf(s, 'weekly.0')).toBe('20260103T000000Z');
    expect(stampOf(s, '20260102T000000Z')).toBe('20260102T000000Z');
    expect(stampOf(s, 'run-a')).toBe('20260101T000000Z');
    expect(resolveSnapshot(s, 'run-b')).toEqual({
      interval: 'daily',
      stamp: '20260102T000000Z',
      path: s.snapshotDir('daily', '20260102T000000Z'),
      manifest: s.manifestPath('20260102T000000Z'),
    });
  });

  it('looks for a BackupId only when the selector names no snapshot otherwise', () => {
    const s = set();
    expect(stampOf(s, 'daily.5')).toBe('20260104T000000Z'); // daily has 3: the BackupId
    expect(stampOf(s, '20260101T000000Z.0')).toBe('20260103T000000Z');
  });

  it('says what is missing, as bad input', () => {
    const s = set();
    expect(refused(s, '20990101T000000Z')).toEqual({
      code: 'BAD_INPUT',
      message: `no snapshot 20990101T000000Z in ${s.dir}`,
    });
    expect(refused(s, 'daily.3')).toEqual({
      code: 'BAD_INPUT',
      message: 'no snapshot daily.3: daily has 3 complete snapshot(s)',
    });
    expect(refused(s, 'monthly.0')).toEqual({
      code: 'BAD_INPUT',
      message: 'no snapshot monthly.0: monthly has 0 complete snapshot(s)',
    });
    expect(refused(s, 'no such run')).toEqual({
      code: 'BAD_INPUT',
      message:
        'snapshot selector "no such run" is not latest, <interval>.<n> or a stamp such as 20261126T020000Z',
    });
    const empty = setWith([]);
    expect(refused(empty, 'latest')).toEqual({
      code: 'BAD_INPUT',
      message: `no complete snapshot in ${empty.dir}`,
    });
  });
});
