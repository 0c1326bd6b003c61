/* SPDX-License-Identifier: MIT */
#include "storage/storage.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

/* Temporary files are named ".<name>.tmp.XXXXXX": hidden, in the same directory (so the
 * rename is atomic), and recognisable after a crash so storage_open() can remove them. */
#define TMP_INFIX ".tmp."
#define TMP_RANDOM_LEN 6
#define TMP_ATTEMPTS 100

static const char tmp_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

struct blob {
	struct storage_blob pub; /* first, so a public pointer is the blob's address */
	atomic_size_t refs;
	char data[];
};

struct storage {
	int dirfd; /* holds the flock; every file operation is relative to it */
	char *dirpath;
	char *name; /* the data file's name inside dirpath */
	size_t max_size;
	pthread_mutex_t write_lock; /* serialises replacements (and their temp files) */
	pthread_mutex_t cur_lock; /* held only to read cur and take a reference */
	bool write_lock_init;
	bool cur_lock_init;
	struct blob *cur; /* changed only with both locks held */
	_Atomic uint64_t generation;
};

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen, const char *fmt,
							  ...)
{
	va_list ap;

	if (err == NULL || errlen == 0) {
		return;
	}
	va_start(ap, fmt);
	(void)vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static struct blob *blob_new(size_t len, bool present, uint64_t generation)
{
	struct blob *b;

	if (len > SIZE_MAX - sizeof(*b) - 1) {
		return NULL;
	}
	b = malloc(sizeof(*b) + len + 1);
	if (b == NULL) {
		return NULL;
	}
	atomic_init(&b->refs, 1);
	b->data[len] = '\0';
	b->pub.data = b->data;
	b->pub.len = len;
	b->pub.present = present;
	b->pub.generation = generation;
	return b;
}

static void blob_unref(struct blob *b)
{
	/* acq_rel: the last owner must see every other owner's use finished before freeing. */
	if (b != NULL && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1) {
		free(b);
	}
}

static int split_path(struct storage *st, const char *path, char *err, size_t errlen)
{
	const char *slash = strrchr(path, '/');
	const char *base = slash != NULL ? slash + 1 : path;
	size_t tmp_len;

	if (*base == '\0' || strcmp(base, ".") == 0 || strcmp(base, "..") == 0) {
		set_err(err, errlen, "data file path %s does not name a file", path);
		return -1;
	}
	/* The temporary name must fit too, or every replacement would fail later. */
	tmp_len = 1 + strlen(base) + strlen(TMP_INFIX) + TMP_RANDOM_LEN;
	if (tmp_len > NAME_MAX) {
		set_err(err, errlen, "data file name in %s is too long", path);
		return -1;
	}
	st->name = strdup(base);
	if (slash == NULL) {
		st->dirpath = strdup(".");
	} else if (slash == path) {
		st->dirpath = strdup("/");
	} else {
		st->dirpath = strndup(path, (size_t)(slash - path));
	}
	if (st->name == NULL || st->dirpath == NULL) {
		set_err(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* A new directory entry is durable only once the directory holding it is synced: until
 * then a power cut can take the directory made at start, and the data file in it, away. */
static int sync_parent(const char *dir, char *err, size_t errlen)
{
	const char *slash = strrchr(dir, '/');
	char *parent;
	int fd = -1;
	int ret = -1;

	if (slash == NULL) {
		parent = strdup(".");
	} else if (slash == dir) {
		parent = strdup("/");
	} else {
		parent = strndup(dir, (size_t)(slash - dir));
	}
	if (parent == NULL) {
		set_err(err, errlen, "out of memory");
		return -1;
	}
	fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		set_err(err, errlen, "cannot open directory %s to make the new %s durable: %s",
			parent, dir, strerror(errno));
		goto out;
	}
	if (fsync(fd) < 0) {
		set_err(err, errlen, "cannot fsync directory %s after creating %s: %s", parent, dir,
			strerror(errno));
		goto out;
	}
	ret = 0;
out:
	if (fd >= 0) {
		(void)close(fd);
	}
	free(parent);
	return ret;
}

/* mkdir -p: a missing volume directory is created, as the book's app did with its
 * data file. Existing components are fine; a component that is a file is not. Every
 * directory created is made durable before the next is created inside it. */
static int make_dirs(const char *dirpath, char *err, size_t errlen)
{
	char *buf = strdup(dirpath);
	char *p;
	int ret = -1;

	if (buf == NULL) {
		set_err(err, errlen, "out of memory");
		return -1;
	}
	for (p = buf + 1;; p++) {
		bool end = *p == '\0';

		if (!end && *p != '/') {
			continue;
		}
		*p = '\0';
		if (mkdir(buf, 0755) == 0) {
			if (sync_parent(buf, err, errlen) < 0) {
				goto out;
			}
		} else if (errno != EEXIST) {
			set_err(err, errlen, "cannot create data directory %s: %s", buf,
				strerror(errno));
			goto out;
		}
		if (end) {
			break;
		}
		*p = '/';
	}
	ret = 0;
out:
	free(buf);
	return ret;
}

static int open_dir(struct storage *st, bool *locked, char *err, size_t errlen)
{
	const int flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;

	st->dirfd = open(st->dirpath, flags);
	if (st->dirfd < 0 && errno == ENOENT) {
		if (make_dirs(st->dirpath, err, errlen) < 0) {
			return -1;
		}
		st->dirfd = open(st->dirpath, flags);
	}
	if (st->dirfd < 0) {
		set_err(err, errlen, "cannot open data directory %s: %s", st->dirpath,
			strerror(errno));
		return -1;
	}
	/* flock belongs to this open file description, so it conflicts with any other
	 * open of the directory, in this process or another, and dies with the fd. */
	if (flock(st->dirfd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK) {
			if (locked != NULL) {
				*locked = true;
			}
			set_err(err, errlen,
				"data directory %s is locked by another process "
				"(is another kubia using this volume?)",
				st->dirpath);
		} else {
			set_err(err, errlen, "cannot lock data directory %s: %s", st->dirpath,
				strerror(errno));
		}
		return -1;
	}
	return 0;
}

static bool is_tmp_name(const struct storage *st, const char *n)
{
	size_t name_len = strlen(st->name);
	size_t infix_len = strlen(TMP_INFIX);
	const char *suffix = n + 1 + name_len + infix_len;

	if (strlen(n) != 1 + name_len + infix_len + TMP_RANDOM_LEN || n[0] != '.' ||
	    memcmp(n + 1, st->name, name_len) != 0 ||
	    memcmp(n + 1 + name_len, TMP_INFIX, infix_len) != 0) {
		return false;
	}
	for (size_t i = 0; i < TMP_RANDOM_LEN; i++) {
		if (strchr(tmp_alphabet, suffix[i]) == NULL) {
			return false;
		}
	}
	return true;
}

/* Best effort: a leftover only wastes space, and on a read-only volume it cannot be
 * removed, which must not stop the pod from serving what it has. */
static void remove_stale_tmp(struct storage *st)
{
	/* A second descriptor: closedir() closes the one fdopendir() takes over. */
	int fd = openat(st->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	const struct dirent *de;
	DIR *d;

	if (fd < 0) {
		return;
	}
	d = fdopendir(fd);
	if (d == NULL) {
		(void)close(fd);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (is_tmp_name(st, de->d_name)) {
			(void)unlinkat(st->dirfd, de->d_name, 0);
		}
	}
	(void)closedir(d);
}

static int load(struct storage *st, char *err, size_t errlen)
{
	/* O_NONBLOCK so that a FIFO in the data file's place cannot hang the start. */
	int fd = openat(st->dirfd, st->name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	struct blob *b = NULL;
	struct stat sb;
	size_t got = 0;
	int ret = -1;

	if (fd < 0 && errno == ENOENT) {
		st->cur = blob_new(0, false, 1);
		if (st->cur == NULL) {
			set_err(err, errlen, "out of memory");
			return -1;
		}
		return 0;
	}
	if (fd < 0) {
		set_err(err, errlen, "cannot open data file %s/%s: %s", st->dirpath, st->name,
			strerror(errno));
		return -1;
	}
	if (fstat(fd, &sb) < 0) {
		set_err(err, errlen, "cannot stat data file %s/%s: %s", st->dirpath, st->name,
			strerror(errno));
		goto out;
	}
	if (S_ISDIR(sb.st_mode)) {
		set_err(err, errlen, "data file %s/%s is a directory", st->dirpath, st->name);
		goto out;
	}
	if (!S_ISREG(sb.st_mode)) {
		set_err(err, errlen, "data file %s/%s is not a regular file", st->dirpath,
			st->name);
		goto out;
	}
	if ((uintmax_t)sb.st_size > st->max_size) {
		set_err(err, errlen, "data file %s/%s is %jd bytes, over the limit of %zu bytes",
			st->dirpath, st->name, (intmax_t)sb.st_size, st->max_size);
		goto out;
	}
	b = blob_new((size_t)sb.st_size, true, 1);
	if (b == NULL) {
		set_err(err, errlen, "out of memory");
		goto out;
	}
	while (got < b->pub.len) {
		ssize_t n = read(fd, b->data + got, b->pub.len - got);

		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n < 0) {
			set_err(err, errlen, "cannot read data file %s/%s: %s", st->dirpath,
				st->name, strerror(errno));
			goto out;
		}
		if (n == 0) {
			break;
		}
		got += (size_t)n;
	}
	/* We hold the lock, so a shorter file means someone ignored it; keep what is there. */
	b->pub.len = got;
	b->data[got] = '\0';
	st->cur = b;
	b = NULL;
	ret = 0;
out:
	blob_unref(b);
	(void)close(fd);
	return ret;
}

static void destroy(struct storage *st)
{
	blob_unref(st->cur);
	if (st->dirfd >= 0) {
		(void)close(st->dirfd); /* also drops the flock */
	}
	if (st->write_lock_init) {
		(void)pthread_mutex_destroy(&st->write_lock);
	}
	if (st->cur_lock_init) {
		(void)pthread_mutex_destroy(&st->cur_lock);
	}
	free(st->dirpath);
	free(st->name);
	free(st);
}

struct storage *storage_open(const char *path, size_t max_size, bool *locked, char *err,
			     size_t errlen)
{
	struct storage *st;

	if (locked != NULL) {
		*locked = false;
	}
	if (path == NULL || *path == '\0') {
		set_err(err, errlen, "no data file path given");
		return NULL;
	}
	st = calloc(1, sizeof(*st));
	if (st == NULL) {
		set_err(err, errlen, "out of memory");
		return NULL;
	}
	st->dirfd = -1;
	st->max_size = max_size;
	if (split_path(st, path, err, errlen) < 0 || open_dir(st, locked, err, errlen) < 0) {
		goto fail;
	}
	remove_stale_tmp(st);
	if (load(st, err, errlen) < 0) {
		goto fail;
	}
	atomic_init(&st->generation, st->cur->pub.generation);
	if (pthread_mutex_init(&st->write_lock, NULL) != 0) {
		set_err(err, errlen, "cannot create a mutex");
		goto fail;
	}
	st->write_lock_init = true;
	if (pthread_mutex_init(&st->cur_lock, NULL) != 0) {
		set_err(err, errlen, "cannot create a mutex");
		goto fail;
	}
	st->cur_lock_init = true;
	return st;
fail:
	destroy(st);
	return NULL;
}

void storage_close(struct storage *st)
{
	if (st != NULL) {
		destroy(st);
	}
}

static void random_suffix(char out[TMP_RANDOM_LEN + 1])
{
	static atomic_uint_fast64_t counter;
	unsigned char bytes[TMP_RANDOM_LEN];

	/* Uniqueness comes from O_EXCL; randomness only makes a retry unlikely. */
	if (getrandom(bytes, sizeof(bytes), GRND_NONBLOCK) != (ssize_t)sizeof(bytes)) {
		struct timespec ts;
		uint64_t x;

		(void)clock_gettime(CLOCK_MONOTONIC, &ts);
		x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^
		    (atomic_fetch_add(&counter, 1) * UINT64_C(0x9e3779b97f4a7c15));
		for (size_t i = 0; i < sizeof(bytes); i++) {
			x ^= x >> 29;
			x *= UINT64_C(0xbf58476d1ce4e5b9);
			bytes[i] = (unsigned char)(x >> 56);
		}
	}
	for (size_t i = 0; i < TMP_RANDOM_LEN; i++) {
		out[i] = tmp_alphabet[bytes[i] % (sizeof(tmp_alphabet) - 1)];
	}
	out[TMP_RANDOM_LEN] = '\0';
}

static int make_tmp(const struct storage *st, char *name, size_t size)
{
	for (int i = 0; i < TMP_ATTEMPTS; i++) {
		char suffix[TMP_RANDOM_LEN + 1];
		int fd;

		random_suffix(suffix);
		(void)snprintf(name, size, ".%s" TMP_INFIX "%s", st->name, suffix);
		fd = openat(st->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
			    0644);
		if (fd >= 0 || errno != EEXIST) {
			return fd;
		}
	}
	errno = EEXIST;
	return -1;
}

static int write_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, data, len);

		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n < 0) {
			return -1;
		}
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Writes a temporary file and renames it over the data file. Returns 0, or an errno
 * value with *what naming the step. The directory is not synced here: the caller
 * decides, because a failed directory sync needs undoing the rename.
 */
static int write_and_rename(struct storage *st, const char *data, size_t len, const char **what)
{
	char tmp[NAME_MAX + 1];
	int fd = make_tmp(st, tmp, sizeof(tmp));
	int e;

	if (fd < 0) {
		*what = "create a temporary file in";
		return errno;
	}
	if (write_all(fd, data, len) < 0) {
		e = errno;
		*what = "write a temporary file in";
		goto fail;
	}
	if (fsync(fd) < 0) {
		e = errno;
		*what = "fsync a temporary file in";
		goto fail;
	}
	/* Some file systems (NFS) report deferred write errors only on close. On Linux the
	 * descriptor is gone even when close() fails, so never close it twice. */
	if (close(fd) < 0 && errno != EINTR) {
		e = errno;
		fd = -1;
		*what = "close a temporary file in";
		goto fail;
	}
	fd = -1;
	if (renameat(st->dirfd, tmp, st->dirfd, st->name) < 0) {
		e = errno;
		*what = "rename a temporary file over the data file in";
		goto fail;
	}
	return 0;
fail:
	if (fd >= 0) {
		(void)close(fd);
	}
	(void)unlinkat(st->dirfd, tmp, 0);
	return e;
}

static int sync_dir(const struct storage *st)
{
	return fsync(st->dirfd) < 0 ? errno : 0;
}

/* After the rename succeeded but the directory sync did not, puts the previous
 * contents back so that disk and memory keep agreeing. Returns 0 once they are back and
 * synced, or an errno value. Caller holds write_lock. */
static int restore_previous(struct storage *st)
{
	const struct blob *old = st->cur;
	const char *what;
	int e;

	if (old->pub.present) {
		e = write_and_rename(st, old->data, old->pub.len, &what);
	} else {
		e = unlinkat(st->dirfd, st->name, 0) == 0 ? 0 : errno;
	}
	return e != 0 ? e : sync_dir(st);
}

static enum storage_result report(const struct storage *st, int e, const char *what,
				  const char *note, char *err, size_t errlen)
{
	switch (e) {
	case ENOSPC:
	case EDQUOT:
		set_err(err, errlen, "volume is full: %s%s", strerror(e), note);
		return STORAGE_ENOSPC;
	case EROFS:
		set_err(err, errlen, "volume is read-only: %s%s", strerror(e), note);
		return STORAGE_EROFS;
	default:
		set_err(err, errlen, "cannot %s %s: %s%s", what, st->dirpath, strerror(e), note);
		return STORAGE_EIO;
	}
}

enum storage_result storage_replace(struct storage *st, const void *data, size_t len,
				    bool *previous_kept, char *err, size_t errlen)
{
	enum storage_result res = STORAGE_OK;
	char note[128];
	struct blob *nb;
	struct blob *old;
	const char *what = "";
	uint64_t gen;
	int e;

	/* Every failure but one happens before the rename, which leaves the file alone. */
	if (previous_kept != NULL) {
		*previous_kept = true;
	}
	if (st == NULL || (data == NULL && len > 0)) {
		set_err(err, errlen, "invalid argument");
		return STORAGE_EIO;
	}
	/* storage_open() refuses a file over the limit, so never write one. */
	if (len > st->max_size) {
		set_err(err, errlen, "body of %zu bytes is over the limit of %zu bytes", len,
			st->max_size);
		return STORAGE_EIO;
	}
	/* Allocate before touching the disk: once the rename is done, memory must follow. */
	nb = blob_new(len, true, 0);
	if (nb == NULL) {
		set_err(err, errlen, "out of memory");
		return STORAGE_EIO;
	}
	if (len > 0) {
		memcpy(nb->data, data, len);
	}
	(void)pthread_mutex_lock(&st->write_lock);
	e = write_and_rename(st, nb->data, len, &what);
	if (e != 0) {
		res = report(st, e, what, "", err, errlen);
		goto out;
	}
	e = sync_dir(st);
	if (e != 0) {
		int re = restore_previous(st);

		/* Unsynced, the directory may hold either file after a crash. */
		note[0] = '\0';
		if (re != 0) {
			(void)snprintf(note, sizeof(note),
				       "; putting the previous contents back failed too: %s",
				       strerror(re));
			if (previous_kept != NULL) {
				*previous_kept = false;
			}
		}
		res = report(st, e, "fsync the data directory", note, err, errlen);
		goto out;
	}
	if (previous_kept != NULL) {
		*previous_kept = false;
	}
	gen = atomic_load_explicit(&st->generation, memory_order_relaxed) + 1;
	nb->pub.generation = gen;
	(void)pthread_mutex_lock(&st->cur_lock);
	old = st->cur;
	st->cur = nb;
	atomic_store_explicit(&st->generation, gen, memory_order_release);
	(void)pthread_mutex_unlock(&st->cur_lock);
	nb = NULL;
	blob_unref(old);
out:
	(void)pthread_mutex_unlock(&st->write_lock);
	blob_unref(nb);
	return res;
}

const struct storage_blob *storage_acquire(struct storage *st)
{
	struct blob *b;

	(void)pthread_mutex_lock(&st->cur_lock);
	b = st->cur;
	/* relaxed: the mutex orders this against the swap in storage_replace(). */
	atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
	(void)pthread_mutex_unlock(&st->cur_lock);
	return &b->pub;
}

void storage_release(const struct storage_blob *blob)
{
	/* Readers see the blob as const because its bytes never change; only the reference
	 * count does, hence the cast. pub is the first member, so this is the blob. */
	blob_unref((struct blob *)(uintptr_t)blob);
}

uint64_t storage_generation(const struct storage *st)
{
	return atomic_load_explicit(&st->generation, memory_order_acquire);
}

bool storage_ready(struct storage *st, char *err, size_t errlen)
{
	struct stat fs;
	struct stat ps;
	struct statvfs vfs;

	if (fstat(st->dirfd, &fs) < 0) {
		set_err(err, errlen, "cannot stat data directory %s: %s", st->dirpath,
			strerror(errno));
		return false;
	}
	if (fs.st_nlink == 0) {
		set_err(err, errlen, "data directory %s was removed", st->dirpath);
		return false;
	}
	/* The path must still lead to our directory: an unmounted volume leaves the bare
	 * mount point behind, and writes through our fd would no longer reach the volume
	 * others see. */
	if (stat(st->dirpath, &ps) < 0) {
		set_err(err, errlen, "data directory %s is gone: %s", st->dirpath, strerror(errno));
		return false;
	}
	if (ps.st_dev != fs.st_dev || ps.st_ino != fs.st_ino) {
		set_err(err, errlen, "data directory %s was replaced (volume unmounted?)",
			st->dirpath);
		return false;
	}
	if (faccessat(st->dirfd, ".", W_OK, AT_EACCESS) < 0) {
		set_err(err, errlen, "data directory %s is not writable: %s", st->dirpath,
			strerror(errno));
		return false;
	}
	/* root passes the access check on a read-only mount; the mount flags do not lie. */
	if (fstatvfs(st->dirfd, &vfs) < 0) {
		set_err(err, errlen, "cannot statvfs data directory %s: %s", st->dirpath,
			strerror(errno));
		return false;
	}
	if ((vfs.f_flag & ST_RDONLY) != 0) {
		set_err(err, errlen, "data directory %s is on a read-only volume", st->dirpath);
		return false;
	}
	return true;
}
