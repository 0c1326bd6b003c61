/* SPDX-License-Identifier: MIT */
/*
 * faultfs: an LD_PRELOAD shim that makes file system calls fail on demand, so that tests
 * can check what kubia does when its volume misbehaves. Nothing is faulted unless asked
 * for; the environment is read once, when the shim is loaded.
 *
 *   FAULTFS_PATH=DIR             only files and directories at or under DIR (an absolute,
 *                                canonical path) are faulted; unset: all of them
 *   FAULTFS_DIR_FSYNC_EIO=WHEN   fsync()/fdatasync() of a directory fails with EIO
 *   FAULTFS_FILE_FSYNC_EIO=WHEN  fsync()/fdatasync() of a regular file fails with EIO
 *   FAULTFS_DIR_FSYNC_SKIP=WHEN  fsync()/fdatasync() of a directory returns 0 without
 *                                reaching the file system: the process behaves as if
 *                                built without that fsync (for the power-cut tests)
 *   FAULTFS_FILE_FSYNC_SKIP=WHEN the same for fsync()/fdatasync() of a regular file
 *   FAULTFS_RENAME_EIO=WHEN      rename()/renameat()/renameat2() fails with EIO, judged
 *                                by where the new name is
 *   FAULTFS_WRITE_ENOSPC=WHEN    write() to a regular file fails with ENOSPC
 *   FAULTFS_WRITE_SHORT=WHEN     write() of more than one byte to a regular file
 *                                writes only the first half (rounded up) of them
 *   FAULTFS_FSYNC_DELAY_MS=N     every fsync()/fdatasync() in scope, of files and of
 *                                directories, first sleeps N milliseconds (reported
 *                                as it starts, so a test can tell a commit is under way)
 *
 * WHEN is "all" (every call), "N" (the first N calls) or "S:N" (let S calls through,
 * then fault N). Only calls the fault applies to are counted: a write to a socket is
 * not a write to a regular file, and a file outside FAULTFS_PATH is never counted.
 *
 * Every fault injected is reported on standard error as one line starting with
 * "faultfs: ", so a test can tell that the fault it set up was hit. A malformed
 * variable is reported there too and the process exits with status 98: a test must
 * not pass because its fault was silently never armed.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The project builds with hidden visibility; the hooks must be seen to interpose. */
#define HOOK __attribute__((visibility("default")))

#define BAD_CONFIG_STATUS 98

struct fault {
	const char *var;
	bool on;
	bool all;
	uint64_t skip;
	uint64_t count;
	atomic_uint_fast64_t seen;
};

static struct fault dir_fsync_eio = {.var = "FAULTFS_DIR_FSYNC_EIO"};
static struct fault file_fsync_eio = {.var = "FAULTFS_FILE_FSYNC_EIO"};
static struct fault dir_fsync_skip = {.var = "FAULTFS_DIR_FSYNC_SKIP"};
static struct fault file_fsync_skip = {.var = "FAULTFS_FILE_FSYNC_SKIP"};
static struct fault rename_eio = {.var = "FAULTFS_RENAME_EIO"};
static struct fault write_enospc = {.var = "FAULTFS_WRITE_ENOSPC"};
static struct fault write_short = {.var = "FAULTFS_WRITE_SHORT"};

static char scope[PATH_MAX]; /* empty: everywhere */
static unsigned long fsync_delay_ms;

static ssize_t (*real_write)(int, const void *, size_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_rename)(const char *, const char *);
static int (*real_renameat)(int, const char *, int, const char *);
static int (*real_renameat2)(int, const char *, int, const char *, unsigned int);

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
	char line[PATH_MAX + 128];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0) {
		return;
	}
	if ((size_t)n > sizeof(line) - 2) {
		n = (int)sizeof(line) - 2;
	}
	line[n++] = '\n';
	(void)real_write(STDERR_FILENO, line, (size_t)n);
}

static void bad_config(const char *var, const char *value)
{
	say("faultfs: %s=\"%s\" is not valid (see faultfs.c)", var, value);
	_exit(BAD_CONFIG_STATUS);
}

static bool parse_u64(const char *s, const char *end, uint64_t *out)
{
	uint64_t v = 0;

	if (s == end) {
		return false;
	}
	for (; s < end; s++) {
		if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10) {
			return false;
		}
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return true;
}

static void parse_when(struct fault *f)
{
	const char *v = getenv(f->var);
	const char *colon;
	const char *count;

	if (v == NULL || *v == '\0') {
		return;
	}
	colon = strchr(v, ':');
	count = colon != NULL ? colon + 1 : v;
	if (colon != NULL && !parse_u64(v, colon, &f->skip)) {
		bad_config(f->var, v);
	}
	if (strcmp(count, "all") == 0) {
		f->all = true;
	} else if (!parse_u64(count, count + strlen(count), &f->count)) {
		bad_config(f->var, v);
	}
	f->on = true;
}

/* Looks up the next definition of a function into *fn (a function pointer). ISO C has
 * no cast from dlsym()'s object pointer to a function pointer; POSIX makes the
 * representations the same, so the bytes are copied. */
static bool next(void *fn, const char *name)
{
	void *sym = dlsym(RTLD_NEXT, name);

	_Static_assert(sizeof(sym) == sizeof(real_write), "function pointers are not pointers");
	memcpy(fn, &sym, sizeof(sym));
	return sym != NULL;
}

static void init(void)
{
	const char *p = getenv("FAULTFS_PATH");
	const char *d = getenv("FAULTFS_FSYNC_DELAY_MS");
	uint64_t ms = 0;

	if (!next(&real_write, "write") || !next(&real_fsync, "fsync") ||
	    !next(&real_fdatasync, "fdatasync") || !next(&real_rename, "rename") ||
	    !next(&real_renameat, "renameat") || !next(&real_renameat2, "renameat2")) {
		_exit(BAD_CONFIG_STATUS);
	}
	if (p != NULL && *p != '\0') {
		size_t n = strlen(p);

		if (p[0] != '/' || n >= sizeof(scope)) {
			bad_config("FAULTFS_PATH", p);
		}
		memcpy(scope, p, n + 1);
		while (n > 1 && scope[n - 1] == '/') {
			scope[--n] = '\0';
		}
	}
	if (d != NULL && *d != '\0') {
		if (!parse_u64(d, d + strlen(d), &ms) || ms > 600000) {
			bad_config("FAULTFS_FSYNC_DELAY_MS", d);
		}
		fsync_delay_ms = (unsigned long)ms;
	}
	parse_when(&dir_fsync_eio);
	parse_when(&file_fsync_eio);
	parse_when(&dir_fsync_skip);
	parse_when(&file_fsync_skip);
	parse_when(&rename_eio);
	parse_when(&write_enospc);
	parse_when(&write_short);
}

static void setup(void)
{
	(void)pthread_once(&once, init);
}

/* At load, so that a malformed variable stops the process before it does anything;
 * the hooks call setup() too, as another library's constructor may run first. */
__attribute__((constructor)) static void setup_at_load(void)
{
	setup();
}

/* Counts a call the fault applies to; true when this one is to be faulted. */
static bool fire(struct fault *f)
{
	uint64_t n;

	if (!f->on) {
		return false;
	}
	n = atomic_fetch_add(&f->seen, 1);
	return n >= f->skip && (f->all || n - f->skip < f->count);
}

static bool in_scope(const char *path)
{
	size_t n = strlen(scope);

	if (n == 0) {
		return true;
	}
	if (strcmp(scope, "/") == 0) {
		return path[0] == '/';
	}
	return strncmp(path, scope, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

/* The path behind a descriptor, as the kernel names it; false when there is none. */
static bool fd_path(int fd, char *out, size_t size)
{
	char link[64];
	ssize_t n;

	(void)snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, out, size - 1);
	if (n < 0) {
		return false;
	}
	out[n] = '\0';
	return true;
}

/* True when fd is a file of the given type (S_IFDIR, S_IFREG) inside the scope. */
static bool fd_in_scope(int fd, mode_t type, char *path, size_t size)
{
	struct stat sb;

	if (fstat(fd, &sb) < 0 || (sb.st_mode & S_IFMT) != type) {
		return false;
	}
	return fd_path(fd, path, size) && in_scope(path);
}

/* Where a name given relative to dirfd is, for the scope check. */
static bool at_path(int dirfd, const char *name, char *out, size_t size)
{
	char base[PATH_MAX];
	int n;

	if (name[0] == '/') {
		n = snprintf(out, size, "%s", name);
		return n >= 0 && (size_t)n < size;
	}
	if (dirfd == AT_FDCWD) {
		if (getcwd(base, sizeof(base)) == NULL) {
			return false;
		}
	} else if (!fd_path(dirfd, base, sizeof(base))) {
		return false;
	}
	n = snprintf(out, size, "%s/%s", base, name);
	return n >= 0 && (size_t)n < size;
}

static void delay(void)
{
	struct timespec ts = {
		.tv_sec = (time_t)(fsync_delay_ms / 1000),
		.tv_nsec = (long)(fsync_delay_ms % 1000) * 1000000L,
	};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
	}
}

static int sync_hook(int fd, int (*real)(int), const char *name)
{
	char path[PATH_MAX];
	struct stat sb;
	bool dir;
	struct fault *eio;
	struct fault *skip;

	if (fstat(fd, &sb) < 0 || (!S_ISDIR(sb.st_mode) && !S_ISREG(sb.st_mode))) {
		return real(fd);
	}
	dir = S_ISDIR(sb.st_mode);
	eio = dir ? &dir_fsync_eio : &file_fsync_eio;
	skip = dir ? &dir_fsync_skip : &file_fsync_skip;
	if ((fsync_delay_ms > 0 || eio->on || skip->on) && fd_path(fd, path, sizeof(path)) &&
	    in_scope(path)) {
		if (fsync_delay_ms > 0) {
			say("faultfs: %s(%d) of %s %s: delayed %lu ms", name, fd,
			    dir ? "directory" : "file", path, fsync_delay_ms);
			delay();
		}
		if (fire(eio)) {
			say("faultfs: %s(%d) of %s %s: EIO", name, fd, dir ? "directory" : "file",
			    path);
			errno = EIO;
			return -1;
		}
		if (fire(skip)) {
			say("faultfs: %s(%d) of %s %s: skipped", name, fd,
			    dir ? "directory" : "file", path);
			return 0;
		}
	}
	return real(fd);
}

HOOK int fsync(int fd)
{
	setup();
	return sync_hook(fd, real_fsync, "fsync");
}

HOOK int fdatasync(int fd)
{
	setup();
	return sync_hook(fd, real_fdatasync, "fdatasync");
}

/* Shared by the rename family: true when this rename is to fail. */
static bool rename_fails(int newdirfd, const char *newpath)
{
	char path[PATH_MAX];

	if (!rename_eio.on || newpath == NULL || !at_path(newdirfd, newpath, path, sizeof(path)) ||
	    !in_scope(path) || !fire(&rename_eio)) {
		return false;
	}
	say("faultfs: rename to %s: EIO", path);
	errno = EIO;
	return true;
}

HOOK int rename(const char *oldpath, const char *newpath)
{
	setup();
	if (rename_fails(AT_FDCWD, newpath)) {
		return -1;
	}
	return real_rename(oldpath, newpath);
}

HOOK int renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath)
{
	setup();
	if (rename_fails(newdirfd, newpath)) {
		return -1;
	}
	return real_renameat(olddirfd, oldpath, newdirfd, newpath);
}

HOOK int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
		   unsigned int flags)
{
	setup();
	if (rename_fails(newdirfd, newpath)) {
		return -1;
	}
	return real_renameat2(olddirfd, oldpath, newdirfd, newpath, flags);
}

HOOK ssize_t write(int fd, const void *buf, size_t count)
{
	char path[PATH_MAX];

	setup();
	if ((!write_enospc.on && !write_short.on) ||
	    !fd_in_scope(fd, S_IFREG, path, sizeof(path))) {
		return real_write(fd, buf, count);
	}
	if (fire(&write_enospc)) {
		say("faultfs: write of %zu bytes to %s: ENOSPC", count, path);
		errno = ENOSPC;
		return -1;
	}
	if (count > 1 && fire(&write_short)) {
		size_t part = count - count / 2;

		say("faultfs: write to %s cut short: %zu of %zu bytes", path, part, count);
		return real_write(fd, buf, part);
	}
	return real_write(fd, buf, count);
}
