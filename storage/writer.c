/* SPDX-License-Identifier: MIT */
/*
 * The writer: the one thread that changes the data file after start-up. Bodies are
 * handed over from any thread and queued; the writer takes the whole queue as one batch,
 * writes only its last body (the last one handed over wins, so the others would be
 * overwritten at once anyway), makes it durable and answers every body of the batch
 * with that one outcome. Bodies that arrive while a commit runs wait for the next one,
 * so under load one pair of fsyncs serves many POSTs, and a client is never told
 * "stored" before its commit is durable.
 */
#include "storage/internal.h"

#include "common/metrics.h"
#include "common/monotonic.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Answers every submission of a batch with o and frees them. */
static void answer_batch(struct submission *batch, const struct storage_outcome *o)
{
	while (batch != NULL) {
		struct submission *next = batch->next;

		batch->done(batch->ctx, o);
		free(batch->body); /* NULL for the body that was written: the blob took it */
		free(batch);
		batch = next;
	}
}

static void commit_batch(struct storage *st, struct submission *batch)
{
	struct storage_outcome o;
	struct submission *last = batch;
	size_t n = 1;
	uint64_t t0 = monotonic_ns();

	while (last->next != NULL) {
		last = last->next;
		n++;
	}
	memset(&o, 0, sizeof(o));
	storage_commit(st, last->body, last->len, &o);
	last->body = NULL;
	o.batch = n;
	atomic_fetch_add_explicit(&st->commits, 1, memory_order_relaxed);
	metrics_commit(o.res == STORAGE_OK, monotonic_ns() - t0, n);
	answer_batch(batch, &o);
}

static void *writer_main(void *arg)
{
	struct storage *st = arg;

	(void)pthread_mutex_lock(&st->q_mu);
	for (;;) {
		struct submission *batch;

		while (st->q_head == NULL && !st->q_stop) {
			(void)pthread_cond_wait(&st->q_cv, &st->q_mu);
		}
		if (st->q_head == NULL) {
			break; /* stopping, and nothing left to commit */
		}
		batch = st->q_head;
		st->q_head = NULL;
		st->q_tail = NULL;
		(void)pthread_mutex_unlock(&st->q_mu);
		commit_batch(st, batch);
		(void)pthread_mutex_lock(&st->q_mu);
	}
	(void)pthread_mutex_unlock(&st->q_mu);
	return NULL;
}

bool writer_start(struct storage *st, char *err, size_t errlen)
{
	int rc;

	if (pthread_mutex_init(&st->q_mu, NULL) != 0) {
		errtext_set(err, errlen, "cannot create a mutex");
		return false;
	}
	if (pthread_cond_init(&st->q_cv, NULL) != 0) {
		(void)pthread_mutex_destroy(&st->q_mu);
		errtext_set(err, errlen, "cannot create a condition variable");
		return false;
	}
	st->q_init = true;
	rc = pthread_create(&st->writer, NULL, writer_main, st);
	if (rc != 0) {
		errtext_set(err, errlen, "cannot start the writer thread: %s", strerror(rc));
		return false;
	}
	st->writer_running = true;
	return true;
}

void writer_stop(struct storage *st)
{
	bool join;

	if (!st->q_init) {
		return;
	}
	(void)pthread_mutex_lock(&st->q_mu);
	st->q_stop = true;
	join = st->writer_running;
	st->writer_running = false;
	(void)pthread_cond_signal(&st->q_cv);
	(void)pthread_mutex_unlock(&st->q_mu);
	if (join) {
		(void)pthread_join(st->writer, NULL);
	}
}

void storage_stop(struct storage *st)
{
	if (st != NULL) {
		writer_stop(st);
	}
}

bool storage_submit(struct storage *st, char *body, size_t len, storage_done_fn done, void *ctx)
{
	struct submission *s;
	bool ok;

	if (st == NULL || body == NULL || done == NULL || len > st->max_size) {
		return false;
	}
	s = malloc(sizeof(*s));
	if (s == NULL) {
		return false;
	}
	s->next = NULL;
	s->body = body;
	s->len = len;
	s->done = done;
	s->ctx = ctx;
	(void)pthread_mutex_lock(&st->q_mu);
	ok = !st->q_stop;
	if (ok) {
		if (st->q_tail != NULL) {
			st->q_tail->next = s;
		} else {
			st->q_head = s;
		}
		st->q_tail = s;
		(void)pthread_cond_signal(&st->q_cv);
	}
	(void)pthread_mutex_unlock(&st->q_mu);
	if (!ok) {
		free(s);
	}
	return ok;
}

uint64_t storage_commits(const struct storage *st)
{
	return atomic_load_explicit(&st->commits, memory_order_relaxed);
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
