/* SPDX-License-Identifier: MIT */
/*
 * The writer: the one thread that changes the data file after start-up. Bodies are
 * handed over from any thread and queued; the writer takes the whole queue as one batch,
 * commits only its last body (the last one handed over wins, so the others would be
 * overwritten at once anyway) through the commit function it was started with, and
 * answers every body of the batch with that one outcome. Bodies that arrive while a
 * commit runs wait for the next one, so under load one pair of fsyncs serves many
 * POSTs, and a client is never told "stored" before its commit is durable.
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
		free(batch->body); /* NULL for the body that was committed: the commit took it */
		free(batch);
		batch = next;
	}
}

static void commit_batch(struct writer *w, struct submission *batch)
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
	w->commit(w->ctx, last->body, last->len, &o);
	last->body = NULL;
	o.batch = n;
	atomic_fetch_add_explicit(&w->commits, 1, memory_order_relaxed);
	metrics_commit(o.res == STORAGE_OK, monotonic_ns() - t0, n);
	answer_batch(batch, &o);
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;

	(void)pthread_mutex_lock(&w->mu);
	for (;;) {
		struct submission *batch;

		while (w->head == NULL && !w->stop) {
			(void)pthread_cond_wait(&w->cv, &w->mu);
		}
		if (w->head == NULL) {
			break; /* stopping, and nothing left to commit */
		}
		batch = w->head;
		w->head = NULL;
		w->tail = NULL;
		(void)pthread_mutex_unlock(&w->mu);
		commit_batch(w, batch);
		(void)pthread_mutex_lock(&w->mu);
	}
	(void)pthread_mutex_unlock(&w->mu);
	return NULL;
}

bool writer_start(struct writer *w, writer_commit_fn commit, void *ctx, char *err, size_t errlen)
{
	int rc;

	w->commit = commit;
	w->ctx = ctx;
	if (pthread_mutex_init(&w->mu, NULL) != 0) {
		errtext_set(err, errlen, "cannot create a mutex");
		return false;
	}
	if (pthread_cond_init(&w->cv, NULL) != 0) {
		(void)pthread_mutex_destroy(&w->mu);
		errtext_set(err, errlen, "cannot create a condition variable");
		return false;
	}
	w->init = true;
	rc = pthread_create(&w->thread, NULL, writer_main, w);
	if (rc != 0) {
		errtext_set(err, errlen, "cannot start the writer thread: %s", strerror(rc));
		return false;
	}
	w->running = true;
	return true;
}

void writer_stop(struct writer *w)
{
	bool join;

	if (!w->init) {
		return;
	}
	(void)pthread_mutex_lock(&w->mu);
	w->stop = true;
	join = w->running;
	w->running = false;
	(void)pthread_cond_signal(&w->cv);
	(void)pthread_mutex_unlock(&w->mu);
	if (join) {
		(void)pthread_join(w->thread, NULL);
	}
}

void writer_destroy(struct writer *w)
{
	writer_stop(w);
	if (w->init) {
		(void)pthread_cond_destroy(&w->cv);
		(void)pthread_mutex_destroy(&w->mu);
		w->init = false;
	}
}

bool writer_submit(struct writer *w, char *body, size_t len, storage_done_fn done, void *done_ctx)
{
	struct submission *s = malloc(sizeof(*s));
	bool ok;

	if (s == NULL) {
		return false;
	}
	s->next = NULL;
	s->body = body;
	s->len = len;
	s->done = done;
	s->ctx = done_ctx;
	(void)pthread_mutex_lock(&w->mu);
	ok = !w->stop;
	if (ok) {
		if (w->tail != NULL) {
			w->tail->next = s;
		} else {
			w->head = s;
		}
		w->tail = s;
		(void)pthread_cond_signal(&w->cv);
	}
	(void)pthread_mutex_unlock(&w->mu);
	if (!ok) {
		free(s);
	}
	return ok;
}

uint64_t writer_commits(const struct writer *w)
{
	return atomic_load_explicit(&w->commits, memory_order_relaxed);
}
