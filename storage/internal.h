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
