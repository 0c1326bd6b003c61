/* SPDX-License-Identifier: MIT */
#include "storage/storage.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#define MAX_SIZE ((size_t)1024 * 1024)
#define BIG ((size_t)256 * 1024)
#define THREADS 8

struct fixture {
	char dir[64];
	char path[128];
	struct storage *st;
};

/* Removes a test directory and what is in it (one level: tests create no deeper trees,
 * except where they remove subdirectories themselves). */
static void remove_tree(const char *dir)
{
	DIR *d = opendir(dir);
	const struct dirent *de;
	char p[PATH_MAX];

	if (d == NULL) {
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
			continue;
		}
		(void)snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		if (unlink(p) < 0 && errno == EISDIR) {
			remove_tree(p);
		}
	}
	(void)closedir(d);
	(void)rmdir(dir);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL) {
		return -1;
	}
	(void)snprintf(f->dir, sizeof(f->dir), "/tmp/test_storage.XXXXXX");
	if (mkdtemp(f->dir) == NULL) {
		free(f);
		return -1;
	}
	(void)snprintf(f->path, sizeof(f->path), "%s/kubia.txt", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	storage_close(f->st);
	(void)chmod(f->dir, 0755);
	remove_tree(f->dir);
	free(f);
	return 0;
}

static struct storage *open_ok(const char *path)
{
	char err[256] = "";
	bool locked = true;
	struct storage *st = storage_open(path, MAX_SIZE, &locked, err, sizeof(err));

	if (st == NULL) {
		fail_msg("storage_open(%s): %s", path, err);
	}
	assert_false(locked);
	return st;
}

static void replace_ok(struct storage *st, const void *data, size_t len)
{
	char err[256] = "";
	bool kept = true;
	enum storage_result r = storage_replace(st, data, len, &kept, err, sizeof(err));

	if (r != STORAGE_OK) {
		fail_msg("storage_replace: %d %s", (int)r, err);
	}
	assert_false(kept);
}

static void write_file(const char *path, const void *data, size_t len)
{
	FILE *fp = fopen(path, "wb");

	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
}

/* Reads a whole file into a malloc'd buffer; *len gets its size. */
static char *read_file(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	char *buf = malloc(MAX_SIZE + 1);
	size_t n;

	assert_non_null(fp);
	assert_non_null(buf);
	n = fread(buf, 1, MAX_SIZE + 1, fp);
	assert_int_equal(fclose(fp), 0);
	*len = n;
	return buf;
}

static bool exists(const char *dir, const char *name)
{
	char p[PATH_MAX];

	(void)snprintf(p, sizeof(p), "%s/%s", dir, name);
	return access(p, F_OK) == 0;
}

static int count_tmp(const char *dir)
{
	DIR *d = opendir(dir);
	const struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		if (strstr(de->d_name, ".tmp.") != NULL) {
			n++;
		}
	}
	(void)closedir(d);
	return n;
}

static void test_open_empty(void **state)
{
	struct fixture *f = *state;
	const struct storage_blob *b;

	f->st = open_ok(f->path);
	assert_int_equal(storage_generation(f->st), 1);
	b = storage_acquire(f->st);
	assert_false(b->present);
	assert_int_equal(b->len, 0);
	assert_string_equal(b->data, "");
	assert_int_equal(b->generation, 1);
	storage_release(b);
	storage_release(NULL);
	assert_false(exists(f->dir, "kubia.txt"));
	assert_true(storage_ready(f->st, NULL, 0));
}

static void test_creates_missing_dir(void **state)
{
	struct fixture *f = *state;
	char path[PATH_MAX];
	char sub[PATH_MAX];
	struct stat sb;

	(void)snprintf(sub, sizeof(sub), "%s/a", f->dir);
	(void)snprintf(path, sizeof(path), "%s/a/b/kubia.txt", f->dir);
	f->st = open_ok(path);
	replace_ok(f->st, "x", 1);
	(void)snprintf(path, sizeof(path), "%s/a/b", f->dir);
	assert_int_equal(stat(path, &sb), 0);
	assert_true(S_ISDIR(sb.st_mode));
	storage_close(f->st);
	f->st = NULL;
	remove_tree(sub);
}

static void test_replace_acquire_reopen(void **state)
{
	struct fixture *f = *state;
	const struct storage_blob *b;
	size_t len;
	char *disk;

	f->st = open_ok(f->path);
	replace_ok(f->st, "hello\n", 6);
	assert_int_equal(storage_generation(f->st), 2);
	b = storage_acquire(f->st);
	assert_true(b->present);
	assert_int_equal(b->len, 6);
	assert_string_equal(b->data, "hello\n");
	assert_int_equal(b->generation, 2);
	storage_release(b);

	disk = read_file(f->path, &len);
	assert_int_equal(len, 6);
	assert_memory_equal(disk, "hello\n", 6);
	free(disk);

	replace_ok(f->st, "world", 5);
	assert_int_equal(storage_generation(f->st), 3);
	storage_close(f->st);
	f->st = open_ok(f->path);
	assert_int_equal(storage_generation(f->st), 1);
	b = storage_acquire(f->st);
	assert_true(b->present);
	assert_int_equal(b->len, 5);
	assert_string_equal(b->data, "world");
	storage_release(b);
}

static void test_empty_body(void **state)
{
	struct fixture *f = *state;
	const struct storage_blob *b;
	struct stat sb;

	f->st = open_ok(f->path);
	replace_ok(f->st, NULL, 0);
	b = storage_acquire(f->st);
	assert_true(b->present);
	assert_int_equal(b->len, 0);
	assert_string_equal(b->data, "");
	storage_release(b);
	assert_int_equal(stat(f->path, &sb), 0);
	assert_int_equal(sb.st_size, 0);

	storage_close(f->st);
	f->st = open_ok(f->path);
	b = storage_acquire(f->st);
	assert_true(b->present);
	assert_int_equal(b->len, 0);
	storage_release(b);
}

static void test_binary_round_trip(void **state)
{
	struct fixture *f = *state;
	const struct storage_blob *b;
	unsigned char data[1024];

	for (size_t i = 0; i < sizeof(data); i++) {
		data[i] = (unsigned char)(i * 7);
	}
	data[0] = 0;
	f->st = open_ok(f->path);
	replace_ok(f->st, data, sizeof(data));
	b = storage_acquire(f->st);
	assert_int_equal(b->len, sizeof(data));
	assert_memory_equal(b->data, data, sizeof(data));
	assert_int_equal(b->data[b->len], '\0');
	storage_release(b);

	storage_close(f->st);
	f->st = open_ok(f->path);
	b = storage_acquire(f->st);
	assert_int_equal(b->len, sizeof(data));
	assert_memory_equal(b->data, data, sizeof(data));
	storage_release(b);
}

static void test_lock_same_process(void **state)
{
	struct fixture *f = *state;
	char err[256] = "";
	bool locked = false;
	struct storage *second;

	f->st = open_ok(f->path);
	second = storage_open(f->path, MAX_SIZE, &locked, err, sizeof(err));
	assert_null(second);
	assert_true(locked);
	assert_non_null(strstr(err, "is locked by another process"));
	assert_non_null(strstr(err, f->dir));

	/* Another file in the same directory is the same volume: refused as well. */
	locked = false;
	(void)snprintf(err, sizeof(err), "%s/other.txt", f->dir);
	second = storage_open(err, MAX_SIZE, &locked, NULL, 0);
	assert_null(second);
	assert_true(locked);

	storage_close(f->st);
	f->st = open_ok(f->path);
}

static void test_lock_other_process(void **state)
{
	struct fixture *f = *state;
	int status;
	pid_t pid;

	f->st = open_ok(f->path);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		bool locked = false;
		struct storage *st = storage_open(f->path, MAX_SIZE, &locked, NULL, 0);

		_exit(st == NULL && locked ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);

	storage_close(f->st);
	f->st = NULL;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		bool locked = true;
		struct storage *st = storage_open(f->path, MAX_SIZE, &locked, NULL, 0);
		int ok = st != NULL && !locked;

		storage_close(st);
		_exit(ok ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_stale_tmp_removed(void **state)
{
	struct fixture *f = *state;
	static const char *const removed[] = {".kubia.txt.tmp.AbC123", ".kubia.txt.tmp.zzzzzz"};
	static const char *const kept[] = {
		"other.txt",
		".other.txt.tmp.AbC123",
		".kubia.txt.tmp.AbC12",
		".kubia.txt.tmp.AbC1234",
		"kubia.txt.tmp.AbC123",
		".kubia.txt.tmp.AbC-23",
	};
	char p[PATH_MAX];

	for (size_t i = 0; i < sizeof(removed) / sizeof(removed[0]); i++) {
		(void)snprintf(p, sizeof(p), "%s/%s", f->dir, removed[i]);
		write_file(p, "torn", 4);
	}
	for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
		(void)snprintf(p, sizeof(p), "%s/%s", f->dir, kept[i]);
		write_file(p, "keep", 4);
	}
	write_file(f->path, "data", 4);
	f->st = open_ok(f->path);
	for (size_t i = 0; i < sizeof(removed) / sizeof(removed[0]); i++) {
		assert_false(exists(f->dir, removed[i]));
	}
	for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++) {
		assert_true(exists(f->dir, kept[i]));
	}
	assert_true(exists(f->dir, "kubia.txt"));
}

static void test_no_tmp_left(void **state)
{
	struct fixture *f = *state;
	char body[64];

	f->st = open_ok(f->path);
	for (int i = 0; i < 200; i++) {
		int n = snprintf(body, sizeof(body), "body %d", i);

		replace_ok(f->st, body, (size_t)n);
	}
	assert_int_equal(count_tmp(f->dir), 0);
	assert_int_equal(storage_generation(f->st), 201);
}

/*
 * Writers and readers run at once. Each writer stores its own body (BIG bytes of one
 * letter) ROUNDS + 2i times, so that the last writers tend to go on alone at the end;
 * readers acquire in a loop until every writer is done. A writer takes a number from
 * one sequence just before and just after each storage_replace(), so that the order of
 * the replacements as seen from outside can be checked against what stays stored.
 */
#define ROUNDS 3
#define READERS 3

struct race {
	struct storage *st;
	pthread_barrier_t go;
	pthread_mutex_t seq_lock; /* guards seq and active */
	uint64_t seq;
	int active; /* replacements begun and not yet returned */
	atomic_bool writers_done;
};

struct writer {
	struct race *race;
	unsigned char byte;
	int rounds;
	int rc;
	const char *failure; /* what the writer saw go wrong, or NULL */
	uint64_t last_start; /* sequence numbers around its last replacement */
	uint64_t last_end;
};

struct reader {
	struct race *race;
	const char *failure; /* what the reader saw go wrong, or NULL */
	unsigned long changes; /* how often a newer generation appeared while it read */
};

/* Numbers the start of a replacement; *alone tells whether no other was under way. */
static uint64_t begin_replace(struct race *r, bool *alone)
{
	uint64_t n;

	(void)pthread_mutex_lock(&r->seq_lock);
	n = ++r->seq;
	*alone = r->active++ == 0;
	(void)pthread_mutex_unlock(&r->seq_lock);
	return n;
}

/* Numbers the end of w's replacement begun at start. When nothing else began or ended
 * meanwhile, this replacement was the last to complete, and until the next one begins
 * (which the lock holds off) its body must be the one served. */
static uint64_t end_replace(struct writer *w, uint64_t start, bool alone)
{
	struct race *r = w->race;
	uint64_t n;

	(void)pthread_mutex_lock(&r->seq_lock);
	n = ++r->seq;
	r->active--;
	if (alone && n == start + 1) {
		const struct storage_blob *b = storage_acquire(r->st);

		if (!b->present || b->data[0] != (char)w->byte) {
			w->failure = "the last completed replacement is not the one served";
		}
		storage_release(b);
	}
	(void)pthread_mutex_unlock(&r->seq_lock);
	return n;
}

/* A body is whole when it has the full size and one byte value throughout. */
static bool whole(const char *data, size_t len)
{
	if (len != BIG) {
		return false;
	}
	for (size_t i = 1; i < len; i++) {
		if (data[i] != data[0]) {
			return false;
		}
	}
	return data[0] >= 'A' && data[0] < 'A' + THREADS;
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	char *body = malloc(BIG);

	if (body != NULL) {
		memset(body, w->byte, BIG);
	}
	(void)pthread_barrier_wait(&w->race->go);
	if (body == NULL) {
		w->rc = -1;
		return NULL;
	}
	for (int i = 0; i < w->rounds && w->failure == NULL; i++) {
		bool alone;
		uint64_t start = begin_replace(w->race, &alone);
		enum storage_result res = storage_replace(w->race->st, body, BIG, NULL, NULL, 0);

		w->last_end = end_replace(w, start, alone);
		w->last_start = start;
		if (res != STORAGE_OK) {
			w->rc = -1;
			break;
		}
	}
	free(body);
	return NULL;
}

static void *reader_main(void *arg)
{
	struct reader *rd = arg;
	struct storage *st = rd->race->st;
	uint64_t last_gen = 0;
	char last_byte = 0;
	bool done;

	(void)pthread_barrier_wait(&rd->race->go);
	do {
		/* Read the flag first: the last round then sees the final state. */
		const struct storage_blob *b;

		done = atomic_load(&rd->race->writers_done);
		b = storage_acquire(st);
		if (b->generation < last_gen) {
			rd->failure = "the generation went backwards";
		} else if (!b->present && b->generation != 1) {
			rd->failure = "nothing stored after a replacement";
		} else if (b->present && !whole(b->data, b->len)) {
			rd->failure = "a torn body";
		} else if (b->present && b->generation == last_gen && b->data[0] != last_byte) {
			rd->failure = "two bodies with one generation";
		} else if (storage_generation(st) < b->generation) {
			rd->failure = "storage_generation() behind the body it serves";
		} else {
			if (last_gen != 0 && b->generation > last_gen) {
				rd->changes++;
			}
			last_gen = b->generation;
			last_byte = b->present ? b->data[0] : 0;
		}
		storage_release(b);
	} while (!done && rd->failure == NULL);
	return NULL;
}

static void test_concurrent_replace(void **state)
{
	struct fixture *f = *state;
	struct race race = {.seq = 0};
	struct writer w[THREADS];
	struct reader rd[READERS];
	pthread_t wt[THREADS];
	pthread_t rt[READERS];
	const struct storage_blob *b;
	const struct writer *last = NULL;
	const struct writer *stored = NULL;
	unsigned long changes = 0;
	int total = 0;
	size_t len;
	char *disk;

	f->st = open_ok(f->path);
	race.st = f->st;
	atomic_init(&race.writers_done, false);
	assert_int_equal(pthread_mutex_init(&race.seq_lock, NULL), 0);
	assert_int_equal(pthread_barrier_init(&race.go, NULL, THREADS + READERS), 0);
	for (int i = 0; i < READERS; i++) {
		rd[i] = (struct reader){.race = &race};
		assert_int_equal(pthread_create(&rt[i], NULL, reader_main, &rd[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct writer){.race = &race, .rounds = ROUNDS + 2 * i};
		w[i].byte = (unsigned char)('A' + i);
		total += w[i].rounds;
		assert_int_equal(pthread_create(&wt[i], NULL, writer_main, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		assert_int_equal(pthread_join(wt[i], NULL), 0);
	}
	atomic_store(&race.writers_done, true);
	for (int i = 0; i < READERS; i++) {
		assert_int_equal(pthread_join(rt[i], NULL), 0);
	}
	(void)pthread_barrier_destroy(&race.go);
	(void)pthread_mutex_destroy(&race.seq_lock);

	for (int i = 0; i < READERS; i++) {
		if (rd[i].failure != NULL) {
			fail_msg("reader %d: %s", i, rd[i].failure);
		}
		changes += rd[i].changes;
	}
	/* Otherwise the readers proved nothing: they never ran during a replacement. */
	if (changes == 0) {
		fail_msg("no reader saw a replacement happen while it was reading");
	}
	for (int i = 0; i < THREADS; i++) {
		assert_int_equal(w[i].rc, 0);
		if (w[i].failure != NULL) {
			fail_msg("writer %c: %s", w[i].byte, w[i].failure);
		}
		if (last == NULL || w[i].last_end > last->last_end) {
			last = &w[i];
		}
	}
	/* One generation per commit, and a commit may answer several replacements. */
	assert_int_equal(storage_generation(f->st), 1 + storage_commits(f->st));
	assert_true(storage_commits(f->st) <= (uint64_t)total);
	b = storage_acquire(f->st);
	assert_true(whole(b->data, b->len));
	stored = &w[b->data[0] - 'A'];
	/*
	 * The last writer to complete must win. Completion is observed just after
	 * storage_replace() returns, so when two last replacements overlapped either may
	 * rightly have finished last; a body whose replacement returned before the last
	 * completed one even started must have been overwritten by it.
	 */
	if (stored != last && stored->last_end < last->last_start) {
		fail_msg("%c is stored, but its last replacement ended (%" PRIu64
			 ") before %c's started (%" PRIu64 ") and completed last (%" PRIu64 ")",
			 stored->byte, stored->last_end, last->byte, last->last_start,
			 last->last_end);
	}
	disk = read_file(f->path, &len);
	assert_int_equal(len, b->len);
	assert_memory_equal(disk, b->data, len);
	free(disk);
	storage_release(b);
	assert_int_equal(count_tmp(f->dir), 0);
}

static void test_blob_outlives_replace_and_close(void **state)
{
	struct fixture *f = *state;
	const struct storage_blob *old;
	const struct storage_blob *cur;

	f->st = open_ok(f->path);
	replace_ok(f->st, "old", 3);
	old = storage_acquire(f->st);
	replace_ok(f->st, "new body", 8);
	cur = storage_acquire(f->st);
	assert_string_equal(old->data, "old");
	assert_int_equal(old->generation, 2);
	assert_string_equal(cur->data, "new body");
	assert_int_equal(cur->generation, 3);
	storage_close(f->st);
	f->st = NULL;
	assert_string_equal(old->data, "old");
	assert_string_equal(cur->data, "new body");
	storage_release(old);
	storage_release(cur);
}

static void test_too_large(void **state)
{
	struct fixture *f = *state;
	const struct storage_blob *b;
	char err[256] = "";
	bool locked = true;
	bool kept = false;

	write_file(f->path, "0123456789", 10);
	f->st = storage_open(f->path, 9, &locked, err, sizeof(err));
	assert_null(f->st);
	assert_false(locked);
	assert_non_null(strstr(err, f->path));
	assert_non_null(strstr(err, "over the limit"));

	/* Exactly at the limit is fine; a larger body through replace is refused and
	 * changes nothing. */
	f->st = storage_open(f->path, 10, &locked, err, sizeof(err));
	assert_non_null(f->st);
	assert_int_equal(storage_replace(f->st, "0123456789X", 11, &kept, err, sizeof(err)),
			 STORAGE_EIO);
	assert_non_null(strstr(err, "over the limit"));
	assert_true(kept);
	b = storage_acquire(f->st);
	assert_string_equal(b->data, "0123456789");
	storage_release(b);
	assert_int_equal(storage_generation(f->st), 1);
}

static void test_data_file_is_dir(void **state)
{
	struct fixture *f = *state;
	char err[256] = "";

	assert_int_equal(mkdir(f->path, 0755), 0);
	f->st = storage_open(f->path, MAX_SIZE, NULL, err, sizeof(err));
	assert_null(f->st);
	assert_non_null(strstr(err, f->path));
	assert_non_null(strstr(err, "is a directory"));
}

static void test_dir_is_file(void **state)
{
	struct fixture *f = *state;
	char path[PATH_MAX];
	char err[256] = "";
	bool locked = true;

	write_file(f->path, "x", 1);
	(void)snprintf(path, sizeof(path), "%s/kubia.txt/data", f->dir);
	f->st = storage_open(path, MAX_SIZE, &locked, err, sizeof(err));
	assert_null(f->st);
	assert_false(locked);
	assert_non_null(strstr(err, f->path));
	assert_non_null(strstr(err, "Not a directory"));

	(void)snprintf(path, sizeof(path), "%s/kubia.txt/sub/data", f->dir);
	f->st = storage_open(path, MAX_SIZE, &locked, err, sizeof(err));
	assert_null(f->st);
	assert_non_null(strstr(err, f->path));

	(void)snprintf(path, sizeof(path), "%s/", f->dir);
	f->st = storage_open(path, MAX_SIZE, &locked, err, sizeof(err));
	assert_null(f->st);
	assert_non_null(strstr(err, "does not name a file"));
}

static void test_ready_after_dir_removed(void **state)
{
	struct fixture *f = *state;
	char err[256] = "";
	bool kept = true;
	struct stat sb;

	f->st = open_ok(f->path);
	assert_true(storage_ready(f->st, err, sizeof(err)));
	assert_int_equal(rmdir(f->dir), 0);
	assert_false(storage_ready(f->st, err, sizeof(err)));
	assert_non_null(strstr(err, f->dir));
	assert_int_equal(storage_replace(f->st, "x", 1, &kept, err, sizeof(err)), STORAGE_GONE);
	assert_false(kept);
	assert_non_null(strstr(err, "was removed"));

	/* A new directory at the same path is not ours: still not ready, and nothing is
	 * written into it. */
	assert_int_equal(mkdir(f->dir, 0755), 0);
	assert_false(storage_ready(f->st, err, sizeof(err)));
	assert_non_null(strstr(err, f->dir));
	assert_int_equal(storage_replace(f->st, "x", 1, &kept, err, sizeof(err)), STORAGE_GONE);
	assert_non_null(strstr(err, "was removed"));
	assert_int_equal(stat(f->path, &sb), -1);
	assert_int_equal(storage_generation(f->st), 1);
}

/* Checks, in the calling process, what a read-only data directory does: opening still
 * works (the pod serves what it has), readiness fails, a replacement fails with the
 * expected result and leaves the data alone. Returns a failure description or NULL. */
static const char *check_read_only(const char *path, enum storage_result expect)
{
	const struct storage_blob *b;
	char err[256] = "";
	struct storage *st = storage_open(path, MAX_SIZE, NULL, err, sizeof(err));
	const char *why = NULL;
	bool kept = false;

	if (st == NULL) {
		return "open failed";
	}
	if (storage_ready(st, err, sizeof(err))) {
		why = "ready on a read-only directory";
	} else if (storage_replace(st, "new", 3, &kept, err, sizeof(err)) != expect) {
		why = "unexpected replace result";
	} else if (!kept) {
		why = "previous data not reported kept";
	} else if (expect == STORAGE_EROFS && strstr(err, "read-only") == NULL) {
		why = "error text does not say read-only";
	} else {
		b = storage_acquire(st);
		if (strcmp(b->data, "old") != 0 || storage_generation(st) != 1) {
			why = "data changed";
		}
		storage_release(b);
	}
	storage_close(st);
	return why;
}

static void test_read_only(void **state)
{
	struct fixture *f = *state;
	const char *why;
	int status;
	pid_t pid;

	write_file(f->path, "old", 3);
	if (geteuid() != 0) {
		assert_int_equal(chmod(f->dir, 0555), 0);
		why = check_read_only(f->path, STORAGE_EIO);
		if (why != NULL) {
			fail_msg("%s", why);
		}
		assert_int_equal(count_tmp(f->dir), 0);
		return;
	}
	/* As root permissions do not apply: bind the directory read-only in a private
	 * mount namespace of a child, which gives the real EROFS. */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* "none" where the kernel ignores the argument: valgrind flags NULL. */
		if (unshare(CLONE_NEWNS) < 0 ||
		    mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) < 0 ||
		    mount(f->dir, f->dir, "none", MS_BIND, NULL) < 0 ||
		    mount("none", f->dir, "none", MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) < 0) {
			_exit(77);
		}
		why = check_read_only(f->path, STORAGE_EROFS);
		if (why != NULL) {
			(void)fprintf(stderr, "read-only child: %s\n", why);
		}
		_exit(why == NULL ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 77) {
		skip();
	}
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(count_tmp(f->dir), 0);
}

static void test_bad_arguments(void **state)
{
	char err[256] = "";

	(void)state;
	assert_null(storage_open(NULL, MAX_SIZE, NULL, err, sizeof(err)));
	assert_null(storage_open("", MAX_SIZE, NULL, NULL, 0));
	assert_int_equal(storage_replace(NULL, "x", 1, NULL, err, sizeof(err)), STORAGE_EIO);
	storage_close(NULL);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_open_empty),
		T(test_creates_missing_dir),
		T(test_replace_acquire_reopen),
		T(test_empty_body),
		T(test_binary_round_trip),
		T(test_lock_same_process),
		T(test_lock_other_process),
		T(test_stale_tmp_removed),
		T(test_no_tmp_left),
		T(test_concurrent_replace),
		T(test_blob_outlives_replace_and_close),
		T(test_too_large),
		T(test_data_file_is_dir),
		T(test_dir_is_file),
		T(test_ready_after_dir_removed),
		T(test_read_only),
		cmocka_unit_test(test_bad_arguments),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
