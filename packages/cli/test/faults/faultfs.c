/*
 * faultfs: an LD_PRELOAD library that fails or delays chosen libc calls by path.
 *
 * Rules come from the environment variable FAULTFS, separated by ';':
 *
 *   call:substring:action[:skip=N][:times=M]
 *
 *   call       open    open open64 openat openat64 creat creat64 __open_2 __open64_2
 *                      __openat_2 __openat64_2
 *              write   write pwrite pwrite64 writev pwritev pwritev64 pwritev2 pwritev64v2
 *                      sendfile sendfile64 copy_file_range (by the path the fd was opened with;
 *                      copy_file_range and sendfile by their output fd)
 *              fsync   fsync fdatasync (by fd path)
 *              rename  rename renameat renameat2 (either path)
 *              link    link linkat (either path)
 *              mkdir   mkdir mkdirat
 *              symlink symlink symlinkat (the link's own path)
 *              unlink  unlink unlinkat
 *              rmdir   rmdir
 *              statx   syscall(__NR_statx, ...) as libuv calls it, and glibc's statx()
 *   substring  the rule applies when the call's path contains it (fd calls: the path at open)
 *   action     an errno name (EIO, ENOSPC, EPERM, EMLINK, ENAMETOOLONG, EACCES, ...): fail the
 *              call with it without calling the real function; or delay=MS: sleep MS
 *              milliseconds, then call the real function
 *   skip=N     let the first N matching calls through
 *   times=M    act on at most M calls (default: no limit)
 *
 * The first rule whose call and substring match decides; every matching rule counts the call.
 * Set FAULTFS_LOG=1 to have every acted-on call reported on stderr ("faultfs: ...").
 * Paths given relative to a dirfd are matched as given. Run with UV_USE_IO_URING=0, or libuv
 * may reach the kernel without libc.
 *
 * Build: cc -shared -fPIC -O2 -o faultfs.so faultfs.c -ldl -lpthread
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum call { C_OPEN, C_WRITE, C_FSYNC, C_RENAME, C_LINK, C_MKDIR, C_SYMLINK, C_UNLINK, C_RMDIR,
            C_STATX, C_COUNT };
static const char *const call_names[C_COUNT] = {"open",    "write",  "fsync", "rename",
                                                "link",    "mkdir",  "symlink", "unlink",
                                                "rmdir",   "statx"};

struct rule {
  enum call call;
  char *substring;
  int err;      /* errno to fail with, or 0 */
  long delayMs; /* when err == 0 */
  long skip;
  long times; /* -1: unlimited */
  long matched;
  long acted;
};

#define MAX_RULES 64
static struct rule rules[MAX_RULES];
static int nrules;
static int log_on;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;

#define MAX_FD 65536
static char *fd_paths[MAX_FD];

/* ---- errno names ---------------------------------------------------------------------------- */

static const struct {
  const char *name;
  int value;
} errnos[] = {
    {"EPERM", EPERM},         {"ENOENT", ENOENT},   {"EINTR", EINTR},
    {"EIO", EIO},             {"ENXIO", ENXIO},     {"E2BIG", E2BIG},
    {"EBADF", EBADF},         {"EAGAIN", EAGAIN},   {"ENOMEM", ENOMEM},
    {"EACCES", EACCES},       {"EFAULT", EFAULT},   {"EBUSY", EBUSY},
    {"EEXIST", EEXIST},       {"EXDEV", EXDEV},     {"ENODEV", ENODEV},
    {"ENOTDIR", ENOTDIR},     {"EISDIR", EISDIR},   {"EINVAL", EINVAL},
    {"ENFILE", ENFILE},       {"EMFILE", EMFILE},   {"ETXTBSY", ETXTBSY},
    {"EFBIG", EFBIG},         {"ENOSPC", ENOSPC},   {"ESPIPE", ESPIPE},
    {"EROFS", EROFS},         {"EMLINK", EMLINK},   {"ENAMETOOLONG", ENAMETOOLONG},
    {"ENOTEMPTY", ENOTEMPTY}, {"ELOOP", ELOOP},     {"EDQUOT", EDQUOT},
    {"ESTALE", ESTALE},       {"ENOSYS", ENOSYS},   {"EOPNOTSUPP", EOPNOTSUPP},
    {"ENOTSUP", ENOTSUP},     {"ETIMEDOUT", ETIMEDOUT}, {"ENOLCK", ENOLCK},
};

static int errno_by_name(const char *s) {
  for (size_t i = 0; i < sizeof errnos / sizeof errnos[0]; i++)
    if (strcmp(errnos[i].name, s) == 0) return errnos[i].value;
  return 0;
}

/* ---- real functions ------------------------------------------------------------------------- */

#define REAL(type, name, args)                                                                    \
  static type(*real_##name) args;                                                                 \
  static type(*get_##name(void)) args {                                                           \
    if (!real_##name) real_##name = (type(*) args)dlsym(RTLD_NEXT, #name);                      \
    return real_##name;                                                                           \
  }

REAL(int, open, (const char *, int, ...))
REAL(int, open64, (const char *, int, ...))
REAL(int, openat, (int, const char *, int, ...))
REAL(int, openat64, (int, const char *, int, ...))
REAL(int, __open_2, (const char *, int))
REAL(int, __open64_2, (const char *, int))
REAL(int, __openat_2, (int, const char *, int))
REAL(int, __openat64_2, (int, const char *, int))
REAL(int, creat, (const char *, mode_t))
REAL(int, creat64, (const char *, mode_t))
REAL(int, close, (int))
REAL(ssize_t, write, (int, const void *, size_t))
REAL(ssize_t, pwrite, (int, const void *, size_t, off_t))
REAL(ssize_t, pwrite64, (int, const void *, size_t, off64_t))
REAL(ssize_t, writev, (int, const struct iovec *, int))
REAL(ssize_t, pwritev, (int, const struct iovec *, int, off_t))
REAL(ssize_t, pwritev64, (int, const struct iovec *, int, off64_t))
REAL(ssize_t, pwritev2, (int, const struct iovec *, int, off_t, int))
REAL(ssize_t, pwritev64v2, (int, const struct iovec *, int, off64_t, int))
REAL(ssize_t, sendfile, (int, int, off_t *, size_t))
REAL(ssize_t, sendfile64, (int, int, off64_t *, size_t))
REAL(ssize_t, copy_file_range, (int, off64_t *, int, off64_t *, size_t, unsigned int))
REAL(int, fsync, (int))
REAL(int, fdatasync, (int))
REAL(int, rename, (const char *, const char *))
REAL(int, renameat, (int, const char *, int, const char *))
REAL(int, renameat2, (int, const char *, int, const char *, unsigned int))
REAL(int, link, (const char *, const char *))
REAL(int, linkat, (int, const char *, int, const char *, int))
REAL(int, mkdir, (const char *, mode_t))
REAL(int, mkdirat, (int, const char *, mode_t))
REAL(int, symlink, (const char *, const char *))
REAL(int, symlinkat, (const char *, int, const char *))
REAL(int, unlink, (const char *))
REAL(int, unlinkat, (int, const char *, int))
REAL(int, rmdir, (const char *))
REAL(long, syscall, (long, ...))
REAL(int, statx, (int, const char *, int, unsigned int, struct statx *))

/* ---- rules ---------------------------------------------------------------------------------- */

static void say(const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
  ssize_t (*w)(int, const void *, size_t) = get_write();
  if (w) (void)w(2, buf, (size_t)n);
}

static void parse_rule(char *text) {
  if (*text == '\0') return;
  if (nrules == MAX_RULES) {
    say("faultfs: more than %d rules, ignoring '%s'\n", MAX_RULES, text);
    return;
  }
  char *fields[8];
  int nf = 0;
  char *save = NULL;
  for (char *f = strtok_r(text, ":", &save); f && nf < 8; f = strtok_r(NULL, ":", &save))
    fields[nf++] = f;
  if (nf < 3) {
    say("faultfs: rule needs call:substring:action, ignoring it\n");
    return;
  }
  struct rule r = {.skip = 0, .times = -1};
  int c;
  for (c = 0; c < C_COUNT; c++)
    if (strcmp(fields[0], call_names[c]) == 0) break;
  if (c == C_COUNT) {
    say("faultfs: unknown call '%s', ignoring the rule\n", fields[0]);
    return;
  }
  r.call = (enum call)c;
  r.substring = strdup(fields[1]);
  if (strncmp(fields[2], "delay=", 6) == 0) {
    r.delayMs = strtol(fields[2] + 6, NULL, 10);
  } else {
    r.err = errno_by_name(fields[2]);
    if (r.err == 0) {
      say("faultfs: unknown action '%s', ignoring the rule\n", fields[2]);
      return;
    }
  }
  for (int i = 3; i < nf; i++) {
    if (strncmp(fields[i], "skip=", 5) == 0) r.skip = strtol(fields[i] + 5, NULL, 10);
    else if (strncmp(fields[i], "times=", 6) == 0) r.times = strtol(fields[i] + 6, NULL, 10);
    else say("faultfs: unknown option '%s', ignored\n", fields[i]);
  }
  rules[nrules++] = r;
}

static void init(void) {
  const char *l = getenv("FAULTFS_LOG");
  log_on = l && *l && strcmp(l, "0") != 0;
  const char *env = getenv("FAULTFS");
  if (!env) return;
  char *copy = strdup(env);
  if (!copy) return;
  char *save = NULL;
  for (char *r = strtok_r(copy, ";", &save); r; r = strtok_r(NULL, ";", &save)) parse_rule(r);
  free(copy);
}

__attribute__((constructor)) static void faultfs_init(void) { pthread_once(&once, init); }

static int contains(const char *path, const char *sub) {
  return path && strstr(path, sub) != NULL;
}

/*
 * Decides one call: 0 to call the real function, or an errno to fail with. Sleeps for a delay.
 * `a` and `b` are the paths of the call (b may be NULL).
 */
static int decide(enum call call, const char *fn, const char *a, const char *b) {
  pthread_once(&once, init);
  if (nrules == 0) return 0;
  int err = 0;
  long delay = 0;
  int acted = -1;
  pthread_mutex_lock(&mu);
  for (int i = 0; i < nrules; i++) {
    struct rule *r = &rules[i];
    if (r->call != call) continue;
    if (!contains(a, r->substring) && !contains(b, r->substring)) continue;
    r->matched++;
    if (acted >= 0) continue;
    if (r->matched <= r->skip) continue;
    if (r->times >= 0 && r->acted >= r->times) continue;
    r->acted++;
    acted = i;
    err = r->err;
    delay = r->delayMs;
  }
  pthread_mutex_unlock(&mu);
  if (acted < 0) return 0;
  if (log_on) {
    if (err)
      say("faultfs: %s(%s%s%s) -> %s (rule %d)\n", fn, a ? a : "?", b ? ", " : "", b ? b : "",
          strerror(err), acted + 1);
    else
      say("faultfs: %s(%s%s%s) delayed %ld ms (rule %d)\n", fn, a ? a : "?", b ? ", " : "",
          b ? b : "", delay, acted + 1);
  }
  if (err) return err;
  if (delay > 0) {
    struct timespec ts = {delay / 1000, (delay % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
  }
  return 0;
}

/* The path an fd was opened with, copied into buf (empty when unknown). */
static const char *fd_path(int fd, char *buf, size_t size) {
  buf[0] = '\0';
  if (fd < 0 || fd >= MAX_FD) return NULL;
  pthread_mutex_lock(&mu);
  if (fd_paths[fd]) {
    strncpy(buf, fd_paths[fd], size - 1);
    buf[size - 1] = '\0';
  }
  pthread_mutex_unlock(&mu);
  return buf[0] ? buf : NULL;
}

static void remember(int fd, const char *path) {
  if (fd < 0 || fd >= MAX_FD || !path) return;
  char *copy = strdup(path);
  pthread_mutex_lock(&mu);
  free(fd_paths[fd]);
  fd_paths[fd] = copy;
  pthread_mutex_unlock(&mu);
}

static void forget(int fd) {
  if (fd < 0 || fd >= MAX_FD) return;
  pthread_mutex_lock(&mu);
  free(fd_paths[fd]);
  fd_paths[fd] = NULL;
  pthread_mutex_unlock(&mu);
}

/* Only worth the lock when some rule is about fds. */
static int track_fds(void) {
  pthread_once(&once, init);
  for (int i = 0; i < nrules; i++)
    if (rules[i].call == C_WRITE || rules[i].call == C_FSYNC) return 1;
  return 0;
}

#define FAIL_IF(call, fn, a, b)                                                                   \
  do {                                                                                            \
    int e_ = decide(call, fn, a, b);                                                              \
    if (e_) {                                                                                     \
      errno = e_;                                                                                 \
      return -1;                                                                                  \
    }                                                                                             \
  } while (0)

#define FD_FAIL_IF(call, fn, fd)                                                                  \
  do {                                                                                            \
    if (nrules) {                                                                                 \
      char b_[4096];                                                                              \
      const char *p_ = fd_path(fd, b_, sizeof b_);                                                \
      if (p_) FAIL_IF(call, fn, p_, NULL);                                                        \
    }                                                                                             \
  } while (0)

/* ---- open ----------------------------------------------------------------------------------- */

static int needs_mode(int flags) { return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE; }

#define OPEN_BODY(fn, realcall)                                                                   \
  mode_t mode = 0;                                                                                \
  if (needs_mode(flags)) {                                                                        \
    va_list ap;                                                                                   \
    va_start(ap, flags);                                                                          \
    mode = va_arg(ap, mode_t);                                                                    \
    va_end(ap);                                                                                   \
  }                                                                                               \
  FAIL_IF(C_OPEN, fn, path, NULL);                                                                \
  int fd = realcall;                                                                              \
  if (fd >= 0 && track_fds()) remember(fd, path);                                                 \
  return fd;

int open(const char *path, int flags, ...) { OPEN_BODY("open", get_open()(path, flags, mode)) }
int open64(const char *path, int flags, ...) {
  OPEN_BODY("open64", get_open64()(path, flags, mode))
}
int openat(int dirfd, const char *path, int flags, ...) {
  OPEN_BODY("openat", get_openat()(dirfd, path, flags, mode))
}
int openat64(int dirfd, const char *path, int flags, ...) {
  OPEN_BODY("openat64", get_openat64()(dirfd, path, flags, mode))
}

#define OPEN2_BODY(fn, realcall)                                                                  \
  FAIL_IF(C_OPEN, fn, path, NULL);                                                                \
  int fd = realcall;                                                                              \
  if (fd >= 0 && track_fds()) remember(fd, path);                                                 \
  return fd;

int __open_2(const char *path, int flags) { OPEN2_BODY("__open_2", get___open_2()(path, flags)) }
int __open64_2(const char *path, int flags) {
  OPEN2_BODY("__open64_2", get___open64_2()(path, flags))
}
int __openat_2(int dirfd, const char *path, int flags) {
  OPEN2_BODY("__openat_2", get___openat_2()(dirfd, path, flags))
}
int __openat64_2(int dirfd, const char *path, int flags) {
  OPEN2_BODY("__openat64_2", get___openat64_2()(dirfd, path, flags))
}
int creat(const char *path, mode_t mode) { OPEN2_BODY("creat", get_creat()(path, mode)) }
int creat64(const char *path, mode_t mode) { OPEN2_BODY("creat64", get_creat64()(path, mode)) }

int close(int fd) {
  if (fd >= 0 && fd < MAX_FD && fd_paths[fd]) forget(fd);
  return get_close()(fd);
}

/* ---- write ---------------------------------------------------------------------------------- */

ssize_t write(int fd, const void *buf, size_t n) {
  FD_FAIL_IF(C_WRITE, "write", fd);
  return get_write()(fd, buf, n);
}
ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
  FD_FAIL_IF(C_WRITE, "pwrite", fd);
  return get_pwrite()(fd, buf, n, off);
}
ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off) {
  FD_FAIL_IF(C_WRITE, "pwrite64", fd);
  return get_pwrite64()(fd, buf, n, off);
}
ssize_t writev(int fd, const struct iovec *iov, int cnt) {
  FD_FAIL_IF(C_WRITE, "writev", fd);
  return get_writev()(fd, iov, cnt);
}
ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off) {
  FD_FAIL_IF(C_WRITE, "pwritev", fd);
  return get_pwritev()(fd, iov, cnt, off);
}
ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off64_t off) {
  FD_FAIL_IF(C_WRITE, "pwritev64", fd);
  return get_pwritev64()(fd, iov, cnt, off);
}
ssize_t pwritev2(int fd, const struct iovec *iov, int cnt, off_t off, int flags) {
  FD_FAIL_IF(C_WRITE, "pwritev2", fd);
  return get_pwritev2()(fd, iov, cnt, off, flags);
}
ssize_t pwritev64v2(int fd, const struct iovec *iov, int cnt, off64_t off, int flags) {
  FD_FAIL_IF(C_WRITE, "pwritev64v2", fd);
  return get_pwritev64v2()(fd, iov, cnt, off, flags);
}
ssize_t sendfile(int out, int in, off_t *off, size_t n) {
  FD_FAIL_IF(C_WRITE, "sendfile", out);
  return get_sendfile()(out, in, off, n);
}
ssize_t sendfile64(int out, int in, off64_t *off, size_t n) {
  FD_FAIL_IF(C_WRITE, "sendfile64", out);
  return get_sendfile64()(out, in, off, n);
}
ssize_t copy_file_range(int in, off64_t *inoff, int out, off64_t *outoff, size_t n,
                        unsigned int flags) {
  FD_FAIL_IF(C_WRITE, "copy_file_range", out);
  return get_copy_file_range()(in, inoff, out, outoff, n, flags);
}

/* ---- fsync ---------------------------------------------------------------------------------- */

int fsync(int fd) {
  FD_FAIL_IF(C_FSYNC, "fsync", fd);
  return get_fsync()(fd);
}
int fdatasync(int fd) {
  FD_FAIL_IF(C_FSYNC, "fdatasync", fd);
  return get_fdatasync()(fd);
}

/* ---- path calls ----------------------------------------------------------------------------- */

int rename(const char *a, const char *b) {
  FAIL_IF(C_RENAME, "rename", a, b);
  return get_rename()(a, b);
}
int renameat(int da, const char *a, int db, const char *b) {
  FAIL_IF(C_RENAME, "renameat", a, b);
  return get_renameat()(da, a, db, b);
}
int renameat2(int da, const char *a, int db, const char *b, unsigned int flags) {
  FAIL_IF(C_RENAME, "renameat2", a, b);
  return get_renameat2()(da, a, db, b, flags);
}
int link(const char *a, const char *b) {
  FAIL_IF(C_LINK, "link", a, b);
  return get_link()(a, b);
}
int linkat(int da, const char *a, int db, const char *b, int flags) {
  FAIL_IF(C_LINK, "linkat", a, b);
  return get_linkat()(da, a, db, b, flags);
}
int mkdir(const char *p, mode_t mode) {
  FAIL_IF(C_MKDIR, "mkdir", p, NULL);
  return get_mkdir()(p, mode);
}
int mkdirat(int d, const char *p, mode_t mode) {
  FAIL_IF(C_MKDIR, "mkdirat", p, NULL);
  return get_mkdirat()(d, p, mode);
}
int symlink(const char *target, const char *p) {
  FAIL_IF(C_SYMLINK, "symlink", p, NULL);
  return get_symlink()(target, p);
}
int symlinkat(const char *target, int d, const char *p) {
  FAIL_IF(C_SYMLINK, "symlinkat", p, NULL);
  return get_symlinkat()(target, d, p);
}
int unlink(const char *p) {
  FAIL_IF(C_UNLINK, "unlink", p, NULL);
  return get_unlink()(p);
}
int unlinkat(int d, const char *p, int flags) {
  FAIL_IF(C_UNLINK, "unlinkat", p, NULL);
  return get_unlinkat()(d, p, flags);
}
int rmdir(const char *p) {
  FAIL_IF(C_RMDIR, "rmdir", p, NULL);
  return get_rmdir()(p);
}

/* ---- statx ---------------------------------------------------------------------------------- */

int statx(int d, const char *p, int flags, unsigned int mask, struct statx *buf) {
  FAIL_IF(C_STATX, "statx", p, NULL);
  return get_statx()(d, p, flags, mask, buf);
}

/* libuv calls syscall(__NR_statx, dirfd, path, flags, mask, buf) itself. */
long syscall(long number, ...) {
  va_list ap;
  va_start(ap, number);
  long a1 = va_arg(ap, long), a2 = va_arg(ap, long), a3 = va_arg(ap, long);
  long a4 = va_arg(ap, long), a5 = va_arg(ap, long), a6 = va_arg(ap, long);
  va_end(ap);
#ifdef SYS_statx
  if (number == SYS_statx) FAIL_IF(C_STATX, "syscall(statx)", (const char *)a2, NULL);
#endif
  return get_syscall()(number, a1, a2, a3, a4, a5, a6);
}
