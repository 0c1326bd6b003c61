/* SPDX-License-Identifier: MIT */
#ifndef KUBIA_STORAGE_INTERNAL_H
#define KUBIA_STORAGE_INTERNAL_H

/*
 * Private to storage/. storage.c is the API (the blob in memory, loading, committing,
 * the synchronous replace) and uses the two below it, which know nothing of it: volume.c
 * (the directory and the durable file operations) and writer.c (the queue of bodies and
 * the thread that commits them in batches, through the function it is started with).
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

/* Writes body (taken over: malloc()ed, with room for len + 1 bytes) durably and
 * publishes it, or leaves everything as it was and says why in *o. Called on the
 * writer's thread with the batch's last body. */
typedef void (*writer_commit_fn)(void *ctx, char *body, size_t len, struct storage_outcome *o);

/* The writer: the only thread that changes the data file after start-up. */
struct writer {
	writer_commit_fn commit;
	void *ctx;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct submission *head; /* bodies waiting for the next batch, in arrival order */
	struct submission *tail;
	bool stop; /* no more submissions; the thread drains the queue and ends */
	bool init;
	bool running;
	pthread_t thread;
	_Atomic uint64_t commits; /* batches written (or failed) */
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
	struct writer writer;
};

/* Starts the writer's thread, which hands each batch's last body to commit(ctx, ...). */
bool writer_start(struct writer *w, writer_commit_fn commit, void *ctx, char *err, size_t errlen);

/* Queues body for the next batch (taken over on success); done(done_ctx, ...) gets the
 * outcome of the commit that covers it, on the writer's thread, perhaps before this
 * returns. false, keeping nothing, once the writer is stopping. */
bool writer_submit(struct writer *w, char *body, size_t len, storage_done_fn done, void *done_ctx);

/* Commits what is queued, then ends the thread. Idempotent. */
void writer_stop(struct writer *w);

/* Stops the writer and frees what writer_start() made. */
void writer_destroy(struct writer *w);

/* Batches committed (or failed) so far. */
uint64_t writer_commits(const struct writer *w);

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
