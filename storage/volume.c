/* SPDX-License-Identifier: MIT */
/*
 * The volume, as storage sees it: the data directory (created durably when missing,
 * opened and locked for the life of the process), leftovers of an earlier crash, and the
 * one durable way to change the data file: a temporary file in the same directory,
 * written and fsynced, renamed over the data file; the directory's fsync is the caller's
 * to do (storage.c), because undoing a rename whose sync failed is its decision.
 */
#include "storage/internal.h"

#include "common/monotonic.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char tmp_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

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
		errtext_set(err, errlen, "out of memory");
		return -1;
	}
	fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		errtext_set(err, errlen, "cannot open directory %s to make the new %s durable: %s",
			    parent, dir, strerror(errno));
		goto out;
	}
	if (fsync(fd) < 0) {
		errtext_set(err, errlen, "cannot fsync directory %s after creating %s: %s", parent,
			    dir, strerror(errno));
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
		errtext_set(err, errlen, "out of memory");
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
			errtext_set(err, errlen, "cannot create data directory %s: %s", buf,
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

int volume_open_dir(struct storage *st, bool *locked, char *err, size_t errlen)
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
		errtext_set(err, errlen, "cannot open data directory %s: %s", st->dirpath,
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
			errtext_set(err, errlen,
				    "data directory %s is locked by another process "
				    "(is another kubia using this volume?)",
				    st->dirpath);
		} else {
			errtext_set(err, errlen, "cannot lock data directory %s: %s", st->dirpath,
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
void volume_remove_stale_tmp(struct storage *st)
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

static void random_suffix(char out[TMP_RANDOM_LEN + 1])
{
	static atomic_uint_fast64_t counter;
	unsigned char bytes[TMP_RANDOM_LEN];

	/* Uniqueness comes from O_EXCL; randomness only makes a retry unlikely. */
	if (getrandom(bytes, sizeof(bytes), GRND_NONBLOCK) != (ssize_t)sizeof(bytes)) {
		uint64_t x = monotonic_ns() ^
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

int volume_write_and_rename(struct storage *st, const char *data, size_t len, const char **what)
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

int volume_sync_dir(const struct storage *st)
{
	return fsync(st->dirfd) < 0 ? errno : 0;
}
