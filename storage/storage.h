/* SPDX-License-Identifier: MIT */
#ifndef KUBIA_STORAGE_H
#define KUBIA_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * storage: the pod's one piece of data, kept durable on its volume.
 *
 * The data file is replaced atomically and durably (temporary file in the same
 * directory, fsync, rename, fsync of the directory) before storage_replace() returns,
 * so a reader of the file after a crash at any instant sees exactly one complete body.
 * The current contents are kept in memory as an immutable, reference-counted blob, so
 * reading costs no system call. The data directory is locked (flock) for the life of
 * the storage object: a second process on the same directory cannot open it.
 *
 * All functions are thread-safe. Replacements are serialised: the last one to
 * complete wins, whole.
 */

struct storage;

/* An immutable snapshot of the stored body. Never modify; release when done. */
struct storage_blob {
	const char *data; /* NUL-terminated for convenience; len excludes the NUL */
	size_t len;
	bool present; /* false: nothing was ever stored (no data file) */
	uint64_t generation; /* increases with every successful replacement */
};

enum storage_result {
	STORAGE_OK = 0,
	STORAGE_ENOSPC, /* the volume is full (or over quota) */
	STORAGE_EROFS, /* the volume is read-only */
	STORAGE_EIO, /* any other failure: see the error text */
};

/*
 * Opens the data file `path`: creates its directory if missing (mkdir -p, 0755),
 * takes the directory lock, removes stale temporary files left by an earlier crash
 * (best effort: a read-only volume still opens) and loads the current contents.
 * Files larger than max_size are refused, and so is a replacement larger than it.
 * On failure returns NULL and writes one line of explanation into err; a lock held by
 * another process is reported as such (*locked set to true when locked is not NULL).
 */
struct storage *storage_open(const char *path, size_t max_size, bool *locked, char *err,
			     size_t errlen);

/* Releases the lock and frees everything. NULL is a no-op. Outstanding blobs stay
 * valid until released. */
void storage_close(struct storage *st);

/*
 * Durably replaces the stored body. On failure the body in memory (what
 * storage_acquire() returns) is unchanged and err holds one line of explanation.
 *
 * *previous_kept (when not NULL) tells the caller what a failure left on disk. true: the
 * data file durably holds the previous contents (the failure came before the rename, or
 * the directory could not be synced after it and the previous contents were put back
 * and synced). false: the directory could not be synced and putting the previous
 * contents back failed too, so they may be lost: the data file may hold the new body,
 * reported as not stored, now or after a crash. On success it is false: the file holds
 * the new body.
 */
enum storage_result storage_replace(struct storage *st, const void *data, size_t len,
				    bool *previous_kept, char *err, size_t errlen);

/* Returns the current snapshot with a reference taken; never NULL. */
const struct storage_blob *storage_acquire(struct storage *st);

/* Drops a reference taken by storage_acquire(). NULL is a no-op. */
void storage_release(const struct storage_blob *blob);

/* Current generation, without taking a reference (cheap, lock-free). */
uint64_t storage_generation(const struct storage *st);

/* True when the data directory is usable (exists, is writable, volume not read-only);
 * otherwise false with the reason in err. For readiness probes. */
bool storage_ready(struct storage *st, char *err, size_t errlen);

#endif
