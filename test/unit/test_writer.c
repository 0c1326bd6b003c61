/* SPDX-License-Identifier: MIT */
/* The writer on its own, with a commit function of the test's: batches, the outcome
 * every body of a batch gets, and stopping. No file is written. */
#include "storage/internal.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define BODIES 5

/* The test's commit function: records what it was given, and holds the first commit
 * until released, so that the bodies handed over meanwhile form one batch. */
struct fake {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool hold; /* the first commit waits while this is set */
	bool holding; /* the first commit has started and waits */
	unsigned calls;
	char last[16]; /* the body of the latest commit */
	enum storage_result res; /* what every commit answers */
};

static void fake_commit(void *ctx, char *body, size_t len, struct storage_outcome *o)
{
	struct fake *f = ctx;

	(void)pthread_mutex_lock(&f->mu);
	f->calls++;
	f->holding = true;
	(void)pthread_cond_broadcast(&f->cv);
	while (f->hold) {
		(void)pthread_cond_wait(&f->cv, &f->mu);
	}
	(void)snprintf(f->last, sizeof(f->last), "%.*s", (int)len, body);
	o->res = f->res;
	(void)pthread_mutex_unlock(&f->mu);
	free(body); /* taken over, as storage.c's commit takes it into the blob */
}

/* What each submission's done callback was told. */
struct answer {
	int calls;
	struct storage_outcome o;
};

static void on_done(void *ctx, const struct storage_outcome *o)
{
	struct answer *a = ctx;

	a->calls++;
	a->o = *o;
}

static char *body(const char *text)
{
	char *b = malloc(strlen(text) + 1);

	assert_non_null(b);
	memcpy(b, text, strlen(text) + 1);
	return b;
}

static void fake_init(struct fake *f, bool hold)
{
	memset(f, 0, sizeof(*f));
	assert_int_equal(pthread_mutex_init(&f->mu, NULL), 0);
	assert_int_equal(pthread_cond_init(&f->cv, NULL), 0);
	f->hold = hold;
	f->res = STORAGE_OK;
}

static void fake_destroy(struct fake *f)
{
	(void)pthread_cond_destroy(&f->cv);
	(void)pthread_mutex_destroy(&f->mu);
}

/* Bodies handed over while a commit runs are the next batch: its last body is the one
 * committed, and every body of it gets that commit's outcome, batch size included. */
static void test_batch_commits_the_last_body_and_answers_all(void **state)
{
	struct writer w;
	struct fake f;
	struct answer first = {0};
	struct answer later[BODIES];
	char err[128];

	(void)state;
	memset(&w, 0, sizeof(w));
	memset(later, 0, sizeof(later));
	fake_init(&f, true);
	assert_true(writer_start(&w, fake_commit, &f, err, sizeof(err)));
	assert_true(writer_submit(&w, body("first"), 5, on_done, &first));
	(void)pthread_mutex_lock(&f.mu);
	while (!f.holding) {
		(void)pthread_cond_wait(&f.cv, &f.mu);
	}
	(void)pthread_mutex_unlock(&f.mu);
	for (int i = 0; i < BODIES; i++) {
		char text[8];

		(void)snprintf(text, sizeof(text), "b%d", i);
		assert_true(writer_submit(&w, body(text), strlen(text), on_done, &later[i]));
	}
	(void)pthread_mutex_lock(&f.mu);
	f.hold = false;
	(void)pthread_cond_broadcast(&f.cv);
	(void)pthread_mutex_unlock(&f.mu);
	writer_stop(&w); /* commits what is queued, then returns */
	assert_int_equal(f.calls, 2);
	assert_string_equal(f.last, "b4");
	assert_int_equal(writer_commits(&w), 2);
	assert_int_equal(first.calls, 1);
	assert_int_equal(first.o.batch, 1);
	for (int i = 0; i < BODIES; i++) {
		assert_int_equal(later[i].calls, 1);
		assert_int_equal(later[i].o.batch, BODIES);
		assert_int_equal(later[i].o.res, STORAGE_OK);
	}
	writer_destroy(&w);
	fake_destroy(&f);
}

/* A failed commit's outcome reaches every body of its batch. */
static void test_failure_reaches_every_body(void **state)
{
	struct writer w;
	struct fake f;
	struct answer a = {0};
	char err[128];

	(void)state;
	memset(&w, 0, sizeof(w));
	fake_init(&f, false);
	f.res = STORAGE_ENOSPC;
	assert_true(writer_start(&w, fake_commit, &f, err, sizeof(err)));
	assert_true(writer_submit(&w, body("x"), 1, on_done, &a));
	writer_stop(&w);
	assert_int_equal(a.calls, 1);
	assert_int_equal(a.o.res, STORAGE_ENOSPC);
	writer_destroy(&w);
	fake_destroy(&f);
}

/* Once stopped, the writer takes nothing more and keeps nothing of what it refused;
 * stopping twice, and destroying after, are harmless. */
static void test_stopped_writer_refuses(void **state)
{
	struct writer w;
	struct fake f;
	struct answer a = {0};
	char err[128];
	char *b = body("late");

	(void)state;
	memset(&w, 0, sizeof(w));
	fake_init(&f, false);
	assert_true(writer_start(&w, fake_commit, &f, err, sizeof(err)));
	writer_stop(&w);
	writer_stop(&w);
	assert_false(writer_submit(&w, b, 4, on_done, &a));
	free(b); /* still the caller's */
	assert_int_equal(a.calls, 0);
	assert_int_equal(f.calls, 0);
	assert_int_equal(writer_commits(&w), 0);
	writer_destroy(&w);
	writer_destroy(&w);
	fake_destroy(&f);
}

/* A writer that never started can be destroyed. */
static void test_destroy_unstarted(void **state)
{
	struct writer w;

	(void)state;
	memset(&w, 0, sizeof(w));
	writer_stop(&w);
	writer_destroy(&w);
	assert_false(w.init);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_batch_commits_the_last_body_and_answers_all),
		cmocka_unit_test(test_failure_reaches_every_body),
		cmocka_unit_test(test_stopped_writer_refuses),
		cmocka_unit_test(test_destroy_unstarted),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
