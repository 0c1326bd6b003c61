/* SPDX-License-Identifier: MIT */
/*
 * The pod's data as the rest of kubia sees it: an immutable, reference-counted blob in
 * memory that readers take without a system call, loaded at start and replaced only
 * once the new body is durable on the volume (volume.c), the old one put back when the
 * directory's sync fails. Bodies go to the writer thread (writer.c), which commits them
 * through commit() here.
 */
#include "storage/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* A blob around buf (malloc()ed, len bytes and room for one more), which it takes over. */
static struct blob *blob_adopt(char *buf, size_t len, bool present, uint64_t generation)
{
	struct blob *b = malloc(sizeof(*b));

	if (b == NULL) {
		return NULL;
	}
	atomic_init(&b->refs, 1);
	buf[len] = '\0';
	b->data = buf;
	b->pub.data = buf;
	b->pub.len = len;
	b->pub.present = present;
	b->pub.generation = generation;
	return b;
}

static struct blob *blob_new(size_t len, bool present, uint64_t generation)
{
	char *buf = len < SIZE_MAX ? malloc(len + 1) : NULL;
	struct blob *b = buf != NULL ? blob_adopt(buf, len, present, generation) : NULL;

	if (b == NULL) {
		free(buf);
	}
	return b;
}

static void blob_unref(struct blob *b)
{
	/* acq_rel: the last owner must see every other owner's use finished before freeing. */
	if (b != NULL && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1) {
		free(b->data);
		free(b);
	}
}

static int split_path(struct storage *st, const char *path, char *err, size_t errlen)
{
	const char *slash = strrchr(path, '/');
	const char *base = slash != NULL ? slash + 1 : path;
	size_t tmp_len;

	if (*base == '\0' || strcmp(base, ".") == 0 || strcmp(base, "..") == 0) {
		errtext_set(err, errlen, "data file path %s does not name a file", path);
		return -1;
	}
	/* The temporary name must fit too, or every replacement would fail later. */
	tmp_len = 1 + strlen(base) + strlen(TMP_INFIX) + TMP_RANDOM_LEN;
	if (tmp_len > NAME_MAX) {
		errtext_set(err, errlen, "data file name in %s is too long", path);
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
		errtext_set(err, errlen, "out of memory");
		return -1;
	}
	return 0;
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
			errtext_set(err, errlen, "out of memory");
			return -1;
		}
		return 0;
	}
	if (fd < 0) {
		errtext_set(err, errlen, "cannot open data file %s/%s: %s", st->dirpath, st->name,
			    strerror(errno));
		return -1;
	}
	if (fstat(fd, &sb) < 0) {
		errtext_set(err, errlen, "cannot stat data file %s/%s: %s", st->dirpath, st->name,
			    strerror(errno));
		goto out;
	}
	if (S_ISDIR(sb.st_mode)) {
		errtext_set(err, errlen, "data file %s/%s is a directory", st->dirpath, st->name);
		goto out;
	}
	if (!S_ISREG(sb.st_mode)) {
		errtext_set(err, errlen, "data file %s/%s is not a regular file", st->dirpath,
			    st->name);
		goto out;
	}
	if ((uintmax_t)sb.st_size > st->max_size) {
		errtext_set(err, errlen,
			    "data file %s/%s is %jd bytes, over the limit of %zu bytes",
			    st->dirpath, st->name, (intmax_t)sb.st_size, st->max_size);
		goto out;
	}
	b = blob_new((size_t)sb.st_size, true, 1);
	if (b == NULL) {
		errtext_set(err, errlen, "out of memory");
		goto out;
	}
	while (got < b->pub.len) {
		ssize_t n = read(fd, b->data + got, b->pub.len - got);

		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n < 0) {
			errtext_set(err, errlen, "cannot read data file %s/%s: %s", st->dirpath,
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

static void commit(void *ctx, char *body, size_t len, struct storage_outcome *o);

static void destroy(struct storage *st)
{
	writer_destroy(&st->writer);
	blob_unref(st->cur);
	if (st->dirfd >= 0) {
		(void)close(st->dirfd); /* also drops the flock */
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
		errtext_set(err, errlen, "no data file path given");
		return NULL;
	}
	st = calloc(1, sizeof(*st));
	if (st == NULL) {
		errtext_set(err, errlen, "out of memory");
		return NULL;
	}
	st->dirfd = -1;
	st->max_size = max_size;
	if (split_path(st, path, err, errlen) < 0 || volume_open_dir(st, locked, err, errlen) < 0) {
		goto fail;
	}
	volume_remove_stale_tmp(st);
	if (load(st, err, errlen) < 0) {
		goto fail;
	}
	atomic_init(&st->generation, st->cur->pub.generation);
	if (pthread_mutex_init(&st->cur_lock, NULL) != 0) {
		errtext_set(err, errlen, "cannot create a mutex");
		goto fail;
	}
	st->cur_lock_init = true;
	if (!writer_start(&st->writer, commit, st, err, errlen)) {
		goto fail;
	}
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

/* After the rename succeeded but the directory sync did not, puts the previous
 * contents back so that disk and memory keep agreeing. Returns 0 once they are back and
 * synced, or an errno value. Writer thread only. */
static int restore_previous(struct storage *st)
{
	const struct blob *old = st->cur;
	const char *what;
	int e;

	if (old->pub.present) {
		e = volume_write_and_rename(st, old->data, old->pub.len, &what);
	} else {
		e = unlinkat(st->dirfd, st->name, 0) == 0 ? 0 : errno;
	}
	return e != 0 ? e : volume_sync_dir(st);
}

static enum storage_result report(const struct storage *st, int e, const char *what,
				  const char *note, char *err, size_t errlen)
{
	switch (e) {
	case ENOSPC:
	case EDQUOT:
		errtext_set(err, errlen, "volume is full: %s%s", strerror(e), note);
		return STORAGE_ENOSPC;
	case EROFS:
		errtext_set(err, errlen, "volume is read-only: %s%s", strerror(e), note);
		return STORAGE_EROFS;
	default:
		errtext_set(err, errlen, "cannot %s %s: %s%s", what, st->dirpath, strerror(e),
			    note);
		return STORAGE_EIO;
	}
}

static bool dir_gone(const struct storage *st, char *err, size_t errlen);

/* A failed commit in a directory that is no longer the volume's is said to be that,
 * rather than the step that failed (creating a file in a removed directory gives
 * ENOENT), when that happened while the commit ran. */
static void tell_if_gone(const struct storage *st, struct storage_outcome *o)
{
	if (dir_gone(st, o->err, sizeof(o->err))) {
		o->res = STORAGE_GONE;
		o->previous_kept = false;
	}
}

/* Publishes nb as the current body: readers see it from now on. Writer thread only. */
static void publish(struct storage *st, struct blob *nb)
{
	uint64_t gen = atomic_load_explicit(&st->generation, memory_order_relaxed) + 1;
	struct blob *old;

	nb->pub.generation = gen;
	(void)pthread_mutex_lock(&st->cur_lock);
	old = st->cur;
	st->cur = nb;
	atomic_store_explicit(&st->generation, gen, memory_order_release);
	(void)pthread_mutex_unlock(&st->cur_lock);
	blob_unref(old);
}

/* The writer's commit function (writer_commit_fn), with the storage as ctx. */
static void commit(void *ctx, char *body, size_t len, struct storage_outcome *o)
{
	struct storage *st = ctx;
	const char *what = "";
	char note[128];
	struct blob *nb;
	int e;

	/* Every failure but one happens before the rename, which leaves the file alone. */
	o->res = STORAGE_OK;
	o->previous_kept = true;
	o->err[0] = '\0';
	/* Made before touching the disk: once the rename is done, memory must follow. */
	nb = blob_adopt(body, len, true, 0);
	if (nb == NULL) {
		free(body);
		o->res = STORAGE_EIO;
		errtext_set(o->err, sizeof(o->err), "out of memory");
		return;
	}
	/* A directory that is no longer the volume's takes nothing more: a body written
	 * there would be acknowledged but never found by the next start. */
	if (dir_gone(st, o->err, sizeof(o->err))) {
		o->res = STORAGE_GONE;
		o->previous_kept = false;
		blob_unref(nb);
		return;
	}
	e = volume_write_and_rename(st, nb->data, len, &what);
	if (e != 0) {
		o->res = report(st, e, what, "", o->err, sizeof(o->err));
		tell_if_gone(st, o);
		blob_unref(nb);
		return;
	}
	e = volume_sync_dir(st);
	if (e != 0) {
		int re = restore_previous(st);

		/* Unsynced, the directory may hold either file after a crash. */
		note[0] = '\0';
		if (re != 0) {
			(void)snprintf(note, sizeof(note),
				       "; putting the previous contents back failed too: %s",
				       strerror(re));
			o->previous_kept = false;
		}
		o->res = report(st, e, "fsync the data directory", note, o->err, sizeof(o->err));
		tell_if_gone(st, o);
		blob_unref(nb);
		return;
	}
	o->previous_kept = false;
	publish(st, nb);
}

const struct storage_blob *storage_acquire(struct storage *st)
{
	struct blob *b;

	(void)pthread_mutex_lock(&st->cur_lock);
	b = st->cur;
	/* relaxed: the mutex orders this against the swap in publish(). */
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

/* True, with the reason in err, when the data directory was removed or replaced (by
 * an unmount, or by a new directory under its name) since it was opened. */
static bool dir_gone(const struct storage *st, char *err, size_t errlen)
{
	struct stat fs;
	struct stat ps;

	if (fstat(st->dirfd, &fs) < 0) {
		errtext_set(err, errlen, "cannot stat data directory %s: %s", st->dirpath,
			    strerror(errno));
		return true;
	}
	if (fs.st_nlink == 0) {
		errtext_set(err, errlen, "data directory %s was removed", st->dirpath);
		return true;
	}
	/* The path must still lead to our directory: an unmounted volume leaves the bare
	 * mount point behind, and writes through our fd would no longer reach the volume
	 * others see. */
	if (stat(st->dirpath, &ps) < 0) {
		errtext_set(err, errlen, "data directory %s is gone: %s", st->dirpath,
			    strerror(errno));
		return true;
	}
	if (ps.st_dev != fs.st_dev || ps.st_ino != fs.st_ino) {
		errtext_set(err, errlen, "data directory %s was replaced (volume unmounted?)",
			    st->dirpath);
		return true;
	}
	return false;
}

bool storage_ready(struct storage *st, char *err, size_t errlen)
{
	struct statvfs vfs;

	if (dir_gone(st, err, errlen)) {
		return false;
	}
	if (faccessat(st->dirfd, ".", W_OK, AT_EACCESS) < 0) {
		errtext_set(err, errlen, "data directory %s is not writable: %s", st->dirpath,
			    strerror(errno));
		return false;
	}
	/* root passes the access check on a read-only mount; the mount flags do not lie. */
	if (fstatvfs(st->dirfd, &vfs) < 0) {
		errtext_set(err, errlen, "cannot statvfs data directory %s: %s", st->dirpath,
			    strerror(errno));
		return false;
	}
	if ((vfs.f_flag & ST_RDONLY) != 0) {
		errtext_set(err, errlen, "data directory %s is on a read-only volume", st->dirpath);
		return false;
	}
	return true;
}

void storage_stop(struct storage *st)
{
	if (st != NULL) {
		writer_stop(&st->writer);
	}
}

bool storage_submit(struct storage *st, char *body, size_t len, storage_done_fn done, void *ctx)
{
	if (st == NULL || body == NULL || done == NULL || len > st->max_size) {
		return false;
	}
	return writer_submit(&st->writer, body, len, done, ctx);
}

uint64_t storage_commits(const struct storage *st)
{
	return writer_commits(&st->writer);
}

/* ---- the synchronous form ---------------------------------------------------------- */

struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	struct storage_outcome o;
};

static void wake(void *ctx, const struct storage_outcome *o)
{
	struct waiter *w = ctx;

	(void)pthread_mutex_lock(&w->mu);
	w->o = *o;
	w->done = true;
	(void)pthread_cond_signal(&w->cv);
	(void)pthread_mutex_unlock(&w->mu);
}

/* Fills err and *previous_kept from an outcome; returns its result. */
static enum storage_result tell(const struct storage_outcome *o, bool *previous_kept, char *err,
				size_t errlen)
{
	if (previous_kept != NULL) {
		*previous_kept = o->previous_kept;
	}
	if (o->res != STORAGE_OK) {
		errtext_set(err, errlen, "%s", o->err);
	}
	return o->res;
}

enum storage_result storage_replace(struct storage *st, const void *data, size_t len,
				    bool *previous_kept, char *err, size_t errlen)
{
	struct waiter w = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
	char *body;

	w.o.res = STORAGE_EIO;
	w.o.previous_kept = true;
	if (st == NULL || (data == NULL && len > 0)) {
		errtext_set(w.o.err, sizeof(w.o.err), "invalid argument");
		return tell(&w.o, previous_kept, err, errlen);
	}
	/* storage_open() refuses a file over the limit, so never write one. */
	if (len > st->max_size) {
		errtext_set(w.o.err, sizeof(w.o.err),
			    "body of %zu bytes is over the limit of %zu bytes", len, st->max_size);
		return tell(&w.o, previous_kept, err, errlen);
	}
	body = malloc(len + 1);
	if (body == NULL) {
		errtext_set(w.o.err, sizeof(w.o.err), "out of memory");
		return tell(&w.o, previous_kept, err, errlen);
	}
	if (len > 0) {
		memcpy(body, data, len);
	}
	if (!storage_submit(st, body, len, wake, &w)) {
		free(body);
		errtext_set(w.o.err, sizeof(w.o.err), "storage is shutting down");
		return tell(&w.o, previous_kept, err, errlen);
	}
	(void)pthread_mutex_lock(&w.mu);
	while (!w.done) {
		(void)pthread_cond_wait(&w.cv, &w.mu);
	}
	(void)pthread_mutex_unlock(&w.mu);
	(void)pthread_cond_destroy(&w.cv);
	(void)pthread_mutex_destroy(&w.mu);
	return tell(&w.o, previous_kept, err, errlen);
}
