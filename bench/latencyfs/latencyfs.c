/*
 * latencyfs: a FUSE passthrough that adds a fixed delay to every call, to imitate a network
 * file system such as Amazon EFS (about a millisecond per metadata call) on one machine.
 *
 *   latencyfs <backing-dir> <mountpoint> [--delay-us=1000] [FUSE options]
 *
 * The kernel keeps FUSE's default one-second entry and attribute caches, as an NFS client
 * caches them (-o attr_timeout=0,entry_timeout=0 makes every path component pay the delay);
 * the loop is multi-threaded (-o max_threads=N,max_idle_threads=N), so many calls are served
 * at once, as a network server would.
 */
#define FUSE_USE_VERSION 31
#define _GNU_SOURCE
#include <fuse.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static struct {
  char *backing;
  unsigned delay_us;
} cfg = {NULL, 1000};

static const struct fuse_opt opts[] = {{"--delay-us=%u", offsetof(typeof(cfg), delay_us), 0}, FUSE_OPT_END};

static void delay(void) {
  if (cfg.delay_us == 0) return;
  struct timespec ts = {cfg.delay_us / 1000000, (long)(cfg.delay_us % 1000000) * 1000};
  while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
  }
}

static void real(char out[PATH_MAX], const char *path) { snprintf(out, PATH_MAX, "%s%s", cfg.backing, path); }

#define REAL(p) \
  char rp[PATH_MAX]; \
  real(rp, p); \
  delay()

static void *lfs_init(struct fuse_conn_info *conn, struct fuse_config *c) {
  (void)conn;
  c->use_ino = 1;
  c->nullpath_ok = 0;
  return NULL;
}
static int lfs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
  if (fi) {
    delay();
    return fstat((int)fi->fh, st) == -1 ? -errno : 0;
  }
  REAL(path);
  return lstat(rp, st) == -1 ? -errno : 0;
}
static int lfs_access(const char *path, int mask) {
  REAL(path);
  return access(rp, mask) == -1 ? -errno : 0;
}
static int lfs_readlink(const char *path, char *buf, size_t size) {
  REAL(path);
  ssize_t n = readlink(rp, buf, size - 1);
  if (n == -1) return -errno;
  buf[n] = '\0';
  return 0;
}
static int lfs_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off, struct fuse_file_info *fi,
                       enum fuse_readdir_flags flags) {
  (void)off;
  (void)fi;
  (void)flags;
  REAL(path);
  DIR *dp = opendir(rp);
  if (!dp) return -errno;
  struct dirent *de;
  while ((de = readdir(dp)) != NULL) {
    struct stat st;
    memset(&st, 0, sizeof st);
    st.st_ino = de->d_ino;
    st.st_mode = (mode_t)de->d_type << 12;
    if (filler(buf, de->d_name, &st, 0, 0)) break;
  }
  closedir(dp);
  return 0;
}
static int lfs_mknod(const char *path, mode_t mode, dev_t rdev) {
  REAL(path);
  int r = S_ISFIFO(mode) ? mkfifo(rp, mode) : mknod(rp, mode, rdev);
  return r == -1 ? -errno : 0;
}
static int lfs_mkdir(const char *path, mode_t mode) {
  REAL(path);
  return mkdir(rp, mode) == -1 ? -errno : 0;
}
static int lfs_unlink(const char *path) {
  REAL(path);
  return unlink(rp) == -1 ? -errno : 0;
}
static int lfs_rmdir(const char *path) {
  REAL(path);
  return rmdir(rp) == -1 ? -errno : 0;
}
static int lfs_symlink(const char *from, const char *to) {
  REAL(to);
  return symlink(from, rp) == -1 ? -errno : 0;
}
static int lfs_rename(const char *from, const char *to, unsigned int flags) {
  if (flags) return -EINVAL;
  char a[PATH_MAX], b[PATH_MAX];
  real(a, from);
  real(b, to);
  delay();
  return rename(a, b) == -1 ? -errno : 0;
}
static int lfs_link(const char *from, const char *to) {
  char a[PATH_MAX], b[PATH_MAX];
  real(a, from);
  real(b, to);
  delay();
  return link(a, b) == -1 ? -errno : 0;
}
static int lfs_chmod(const char *path, mode_t mode, struct fuse_file_info *fi) {
  delay();
  if (fi) return fchmod((int)fi->fh, mode) == -1 ? -errno : 0;
  char rp[PATH_MAX];
  real(rp, path);
  return chmod(rp, mode) == -1 ? -errno : 0;
}
static int lfs_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi) {
  delay();
  if (fi) return fchown((int)fi->fh, uid, gid) == -1 ? -errno : 0;
  char rp[PATH_MAX];
  real(rp, path);
  return lchown(rp, uid, gid) == -1 ? -errno : 0;
}
static int lfs_truncate(const char *path, off_t size, struct fuse_file_info *fi) {
  delay();
  if (fi) return ftruncate((int)fi->fh, size) == -1 ? -errno : 0;
  char rp[PATH_MAX];
  real(rp, path);
  return truncate(rp, size) == -1 ? -errno : 0;
}
static int lfs_utimens(const char *path, const struct timespec ts[2], struct fuse_file_info *fi) {
  delay();
  if (fi) return futimens((int)fi->fh, ts) == -1 ? -errno : 0;
  char rp[PATH_MAX];
  real(rp, path);
  return utimensat(AT_FDCWD, rp, ts, AT_SYMLINK_NOFOLLOW) == -1 ? -errno : 0;
}
static int lfs_create(const char *path, mode_t mode, struct fuse_file_info *fi) {
  REAL(path);
  int fd = open(rp, fi->flags, mode);
  if (fd == -1) return -errno;
  fi->fh = (uint64_t)fd;
  return 0;
}
static int lfs_open(const char *path, struct fuse_file_info *fi) {
  REAL(path);
  int fd = open(rp, fi->flags);
  if (fd == -1) return -errno;
  fi->fh = (uint64_t)fd;
  return 0;
}
static int lfs_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)path;
  delay();
  ssize_t n = pread((int)fi->fh, buf, size, off);
  return n == -1 ? -errno : (int)n;
}
static int lfs_write(const char *path, const char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)path;
  delay();
  ssize_t n = pwrite((int)fi->fh, buf, size, off);
  return n == -1 ? -errno : (int)n;
}
static int lfs_statfs(const char *path, struct statvfs *st) {
  REAL(path);
  return statvfs(rp, st) == -1 ? -errno : 0;
}
static int lfs_release(const char *path, struct fuse_file_info *fi) {
  (void)path;
  close((int)fi->fh);
  return 0;
}
static int lfs_fsync(const char *path, int datasync, struct fuse_file_info *fi) {
  (void)path;
  delay();
  int r = datasync ? fdatasync((int)fi->fh) : fsync((int)fi->fh);
  return r == -1 ? -errno : 0;
}

static const struct fuse_operations ops = {
    .init = lfs_init,
    .getattr = lfs_getattr,
    .access = lfs_access,
    .readlink = lfs_readlink,
    .readdir = lfs_readdir,
    .mknod = lfs_mknod,
    .mkdir = lfs_mkdir,
    .symlink = lfs_symlink,
    .unlink = lfs_unlink,
    .rmdir = lfs_rmdir,
    .rename = lfs_rename,
    .link = lfs_link,
    .chmod = lfs_chmod,
    .chown = lfs_chown,
    .truncate = lfs_truncate,
    .utimens = lfs_utimens,
    .create = lfs_create,
    .open = lfs_open,
    .read = lfs_read,
    .write = lfs_write,
    .statfs = lfs_statfs,
    .release = lfs_release,
    .fsync = lfs_fsync,
};

/* The first plain argument is the backing directory; FUSE sees the rest. */
static int take_backing(void *data, const char *arg, int key, struct fuse_args *outargs) {
  (void)data;
  (void)outargs;
  if (key == FUSE_OPT_KEY_NONOPT && cfg.backing == NULL) {
    cfg.backing = realpath(arg, NULL);
    if (!cfg.backing) {
      perror(arg);
      exit(2);
    }
    return 0;
  }
  return 1;
}

int main(int argc, char *argv[]) {
  struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
  if (fuse_opt_parse(&args, &cfg, opts, take_backing) == -1) return 1;
  if (cfg.backing == NULL) {
    fprintf(stderr, "usage: latencyfs <backing-dir> <mountpoint> [--delay-us=N] [FUSE options]\n");
    return 2;
  }
  umask(0);
  int r = fuse_main(args.argc, args.argv, &ops, NULL);
  fuse_opt_free_args(&args);
  free(cfg.backing);
  return r;
}
