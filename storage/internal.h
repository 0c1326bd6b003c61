/* SPDX-License-Identifier: MIT */
#ifndef KUBIA_STORAGE_INTERNAL_H
#define KUBIA_STORAGE_INTERNAL_H

/*
 * Private to storage/: the state that storage.c (the API: the blob in memory, loading,
 * replacing) and volume.c (the directory and the durable file operations) share.
 */

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/errtext.h"
#include "storage/storage.h"

/* Temporary files are named ".<name>.tmp.XXXXXX": hidden, in the same directory (so the
 * rename is atomic), and recognisable after a crash so storage_open() can remove them. */
#define TMP_INFIX ".tmp."
#define TMP_RANDOM_LEN 6
#define TMP_ATTEMPTS 100

struct blob {
	struct storage_blob pub; /* first, so a public pointer is the blob's address */
	atomic_size_t refs;
	char *data; /* malloc()ed, owned: a received body becomes a blob without a copy */
};

/* A body handed to the writer, waiting for the next batch. */
struct submission {
	struct submission *next;
	char *body;
	size_t len;
	storage_done_fn done;
	void *ctx;
};

struct storage {
	int dirfd; /* holds the flock; every file operation is relative to it */
	char *dirpath;
	char *name; /* the data file's name inside dirpath */
	size_t max_size;
	pthread_mutex_t cur_lock; /* held only to read cur and take a reference */
	bool cur_lock_init;
	struct blob *cur; /* changed by the writer only, under cur_lock */
	_Atomic uint64_t generation;
	_Atomic uint64_t commits; /* batches written (or failed) */

	/* The writer (writer.c): the only thread that changes the data file. */
	pthread_mutex_t q_mu;
	pthread_cond_t q_cv;
	struct submission *q_head; /* bodies waiting for the next batch, in arrival order */
	struct submission *q_tail;
	bool q_stop; /* no more submissions; the writer drains the queue and ends */
	bool q_init;
	bool writer_running;
	pthread_t writer;
};

/* Writes body (taken over: malloc()ed, with room for len + 1 bytes) as the data file,
 * durably, and publishes it; or leaves everything as it was and says why in *o. Writer
 * thread only. */
void storage_commit(struct storage *st, char *body, size_t len, struct storage_outcome *o);

/* Starts the writer thread (storage_open()). */
bool writer_start(struct storage *st, char *err, size_t errlen);

/* Commits what is queued, then ends the writer thread. Idempotent. */
void writer_stop(struct storage *st);

/* Opens (creating it durably, mkdir -p, when missing) and locks the data directory:
 * st->dirfd. -1 with the reason in err; *locked set when another process holds it. */
int volume_open_dir(struct storage *st, bool *locked, char *err, size_t errlen);

/* Removes temporary files an earlier crash left behind (best effort). */
void volume_remove_stale_tmp(struct storage *st);

/* Writes a temporary file, fsyncs it and renames it over the data file. Returns 0, or
 * an errno value with *what naming the step that failed (the temporary file is then
 * gone). The directory is not synced here. */
int volume_write_and_rename(struct storage *st, const char *data, size_t len, const char **what);

/* fsync of the data directory: 0 or an errno value. */
int volume_sync_dir(const struct storage *st);

#endif
