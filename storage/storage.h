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
 * directory, fsync, rename, fsync of the directory) by one writer thread, before the
 * replacement is reported done, so a reader of the file after a crash at any instant
 * sees exactly one complete body. Bodies handed over while a commit runs are committed
 * together as the next batch: only the last of them is written, and every one of them
 * is answered with that commit's outcome (group commit: one pair of fsyncs serves them
 * all). The current contents are kept in memory as an immutable, reference-counted
 * blob, published only once durable, so reading costs no system call and never sees a
 * body a crash could still lose. The data directory is locked (flock) for the life of
 * the storage object: a second process on the same directory cannot open it.
 *
 * All functions are thread-safe. The last body handed over wins, whole.
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
	STORAGE_GONE, /* the data directory was removed or replaced while in use: nothing
		       * more is stored until a restart, and the previous contents are no
		       * longer in the data directory (previous_kept is false) */
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

/* Commits what was handed over, stops the writer, releases the lock and frees
 * everything. NULL is a no-op. Outstanding blobs stay valid until released. */
void storage_close(struct storage *st);

/* What a commit did. On failure the body in memory (what storage_acquire() returns) is
 * unchanged and err holds one line of explanation.
 *
 * previous_kept tells what a failure left on disk. true: the data file durably holds
 * the previous contents (the failure came before the rename, or the directory could not
 * be synced after it and the previous contents were put back and synced). false: the
 * directory could not be synced and putting the previous contents back failed too, so
 * they may be lost: the data file may hold the new body, reported as not stored, now or
 * after a crash. On success it is false: the file holds the new body. */
struct storage_outcome {
	enum storage_result res;
	bool previous_kept;
	size_t batch; /* how many bodies this commit answered */
	char err[256];
};

/* Receives the outcome of the commit that covered a body handed over with
 * storage_submit(); called on the writer thread, once per submission. */
typedef void (*storage_done_fn)(void *ctx, const struct storage_outcome *o);

/*
 * Hands body over to the writer: malloc()ed, len bytes plus room for one more (the
 * blob's NUL), taken over on success. done(ctx, ...) is called once the commit that
 * covers it is durable or has failed; it may run before this returns. Returns false,
 * and keeps nothing, when the body is over the limit or the writer is stopping.
 */
bool storage_submit(struct storage *st, char *body, size_t len, storage_done_fn done, void *ctx);

/* Commits what was handed over and stops taking more (storage_submit() then returns
 * false); returns when the writer has ended, so every done callback has run. */
void storage_stop(struct storage *st);

/* The synchronous form: copies data, hands it over and waits for the outcome. */
enum storage_result storage_replace(struct storage *st, const void *data, size_t len,
				    bool *previous_kept, char *err, size_t errlen);

/* Batches committed (or failed) so far. */
uint64_t storage_commits(const struct storage *st);

/* Returns the current snapshot with a reference taken; never NULL. */
const struct storage_blob *storage_acquire(struct storage *st);

/* Drops a reference taken by storage_acquire(). NULL is a no-op. */
void storage_release(const struct storage_blob *blob);

/* Current generation, without taking a reference (cheap, lock-free). */
uint64_t storage_generation(const struct storage *st);

/* True when the data directory is usable (still the one opened at start, not removed,
 * writable, volume not read-only); otherwise false with the reason in err. For
 * readiness probes. Once the directory was removed or replaced it stays unusable: the
 * storage object keeps the directory it locked and never follows a new one. */
bool storage_ready(struct storage *st, char *err, size_t errlen);

#endif
