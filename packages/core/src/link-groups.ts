import type { Meta } from './change.js';
import type { ManifestEntry } from './manifest.js';

/** One inode seen under several names: the first name is written, the others link to it. */
export interface LinkGroup {
  /** The snapshot-relative path of the name written first. */
  first: string;
  /** The first name's metadata: a later name that differs saw the inode change meanwhile. */
  meta: Meta;
  /** Names met so far; at st_nlink the group is dropped, so only open groups are held. */
  seen: number;
  /** The first name's entry once it is written; null until then. */
  record: ManifestEntry | null;
  /** Later names waiting for the first to be written; null once it is. */
  waiters: Array<() => void> | null;
}

/**
 * Hard links inside the source, kept as hard links: the inodes with more than one name met so
 * far and not yet met under all of them. Only entries with st_nlink > 1 come here, so a tree
 * without hard links pays nothing.
 */
export class LinkGroups {
  private readonly open = new Map<string, LinkGroup>();

  /**
   * A name of an inode with several names: the inode's open group, this name counted; or a new
   * group with this name first (then `group.first === rel`).
   */
  meet(m: Meta, rel: string): LinkGroup {
    const group = this.open.get(m.inode);
    if (group) {
      if (++group.seen >= m.nlink) this.open.delete(m.inode);
      return group;
    }
    const fresh: LinkGroup = { first: rel, meta: m, seen: 1, record: null, waiters: [] };
    this.open.set(m.inode, fresh);
    return fresh;
  }

  /**
   * The first name of `own` was written (`rec`) or given up (null: the next name to come
   * becomes first); the names waiting for it go on either way.
   */
  firstWritten(m: Meta, own: LinkGroup, rec: ManifestEntry | null): void {
    const group = this.open.get(m.inode) ?? own;
    const waiters = group.waiters!;
    if (rec) {
      group.record = rec;
      group.waiters = null;
    } else if (this.open.get(m.inode) === group) {
      this.open.delete(m.inode);
    }
    for (const w of waiters) w();
  }
}
