/* SPDX-License-Identifier: MIT */
/*
 * The per-peer fetch table (fetch.c) against a fake transfer.c: which fetch a view's line
 * joins (the read-after-arrival rule), the cap on fetches running per peer and the one
 * queued fetch later views join, the order of a fetch's end (the queued fetch starts
 * before the waiting lines are answered), refused transfers, and shutdown.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <sys/socket.h>

#include "discovery/internal.h"

#include "common/monotonic.h"

/* ---- a fake transfer.c -------------------------------------------------------------- */

struct xfer {
	const struct peer_key *key;
	transfer_done_fn on_done;
	void *arg;
	bool running;
	bool aborted;
};

#define MAX_XFERS 16

static struct xfer xfers[MAX_XFERS];
static int nxfers;
static bool refuse; /* transfer_start() fails, as when curl refuses the handle */

struct xfer *transfer_start(struct transfers *tr, const struct peer_key *k,
			    transfer_done_fn on_done, void *arg)
{
	struct xfer *x;

	(void)tr;
	if (refuse) {
		return NULL;
	}
	assert_true(nxfers < MAX_XFERS);
	x = &xfers[nxfers++];
	x->key = k;
	x->on_done = on_done;
	x->arg = arg;
	x->running = true;
	return x;
}

void transfer_abort(struct transfers *tr, struct xfer *x)
{
	(void)tr;
	assert_true(x->running);
	x->running = false;
	x->aborted = true;
}

/* Transfer i ends with text. */
static void finish(int i, const char *text)
{
	struct xfer *x = &xfers[i];

	assert_true(x->running);
	x->running = false;
	x->on_done(x->arg, render_answer_copy(text, strlen(text)));
}

/* ---- views and what their lines got ------------------------------------------------- */

#define MAX_DONE 32

struct done {
	struct view *view;
	size_t line;
	int xfers_started; /* how many transfers had started when the line was answered */
};

static struct done dones[MAX_DONE];
static int ndone;

static void on_line(void *arg, struct view *v, struct render_line *l)
{
	(void)arg;
	assert_true(ndone < MAX_DONE);
	assert_true(l->done);
	dones[ndone].view = v;
	dones[ndone].line = (size_t)(l - v->lines);
	dones[ndone].xfers_started = nxfers;
	ndone++;
	v->nleft--;
}

/* A view of one line per port in ports (one peer each, all named kubia-1), arrived at
 * arrival. */
static void view_make(struct view *v, uint64_t arrival, const uint16_t *ports, size_t n)
{
	memset(v, 0, sizeof(*v));
	v->arrival_ns = arrival;
	v->lines = calloc(n, sizeof(*v->lines));
	assert_non_null(v->lines);
	v->nlines = n;
	v->nleft = n;
	for (size_t i = 0; i < n; i++) {
		struct render_line *l = &v->lines[i];

		snprintf(l->name, sizeof(l->name), "kubia-1.kubia");
		l->family = AF_INET;
		l->addr[0] = 10;
		l->addr[3] = 1;
		l->port = ports[i];
	}
}

static void view_free(struct view *v)
{
	render_lines_free(v->lines, v->nlines);
}

static const char *text_of(const struct view *v, size_t line)
{
	const struct render_answer *a = v->lines[line].ans;

	assert_true(v->lines[line].done);
	assert_non_null(a);
	return a->data;
}

static struct discovery_config cfg;
static struct fetches ft;

static int setup(void **state)
{
	(void)state;
	memset(xfers, 0, sizeof(xfers));
	nxfers = 0;
	ndone = 0;
	refuse = false;
	memset(&cfg, 0, sizeof(cfg));
	cfg.peer_max_connections = 4;
	fetch_init(&ft, &cfg, NULL, on_line, NULL);
	return 0;
}

static const uint16_t port8080[] = {8080};

/* Views that arrived before a fetch started share it; one that arrived after it started
 * does not (the fetch may have left before a POST the view must see). */
static void test_views_share_a_fetch_that_started_after_they_arrived(void **state)
{
	struct view a;
	struct view b;
	struct view late;

	(void)state;
	view_make(&a, 0, port8080, 1);
	view_make(&b, 0, port8080, 1);
	assert_true(fetch_join(&ft, &a, 0));
	assert_int_equal(nxfers, 1);
	assert_true(fetch_join(&ft, &b, 0));
	assert_int_equal(nxfers, 1);
	/* Never answered inside fetch_join(). */
	assert_int_equal(ndone, 0);
	view_make(&late, monotonic_ns() + 1, port8080, 1);
	assert_true(fetch_join(&ft, &late, 0));
	assert_int_equal(nxfers, 2);

	finish(0, "old");
	assert_int_equal(ndone, 2);
	assert_string_equal(text_of(&a, 0), "old");
	assert_string_equal(text_of(&b, 0), "old");
	/* One answer, shared: the same bytes, not a copy. */
	assert_ptr_equal(a.lines[0].ans, b.lines[0].ans);
	assert_true(a.lines[0].ans->fetched);
	assert_false(late.lines[0].done);
	finish(1, "new");
	assert_int_equal(ndone, 3);
	assert_string_equal(text_of(&late, 0), "new");
	view_free(&a);
	view_free(&b);
	view_free(&late);
}

/* Different ports are different peers: no sharing between them. */
static void test_peers_do_not_share(void **state)
{
	static const uint16_t ports[] = {8080, 8081};
	struct view v;

	(void)state;
	view_make(&v, 0, ports, 2);
	assert_true(fetch_join(&ft, &v, 0));
	assert_true(fetch_join(&ft, &v, 1));
	assert_int_equal(nxfers, 2);
	assert_int_equal(xfers[0].key->port, 8080);
	assert_int_equal(xfers[1].key->port, 8081);
	finish(1, "b");
	finish(0, "a");
	assert_string_equal(text_of(&v, 0), "a");
	assert_string_equal(text_of(&v, 1), "b");
	assert_int_equal(v.nleft, 0);
	view_free(&v);
}

/* At the cap a new fetch waits, queued, and every later view joins it; when a running
 * fetch ends the queued one starts before the ended one's lines are answered. */
static void test_the_cap_queues_one_fetch_that_later_views_join(void **state)
{
	struct view first;
	struct view queued[3];

	(void)state;
	cfg.peer_max_connections = 1;
	view_make(&first, 0, port8080, 1);
	assert_true(fetch_join(&ft, &first, 0));
	for (int i = 0; i < 3; i++) {
		view_make(&queued[i], monotonic_ns() + 1, port8080, 1);
		assert_true(fetch_join(&ft, &queued[i], 0));
	}
	assert_int_equal(nxfers, 1);
	finish(0, "before");
	assert_int_equal(nxfers, 2);
	assert_int_equal(ndone, 1);
	assert_ptr_equal(dones[0].view, &first);
	assert_int_equal(dones[0].xfers_started, 2);
	finish(1, "after");
	assert_int_equal(ndone, 4);
	for (int i = 0; i < 3; i++) {
		assert_string_equal(text_of(&queued[i], 0), "after");
		view_free(&queued[i]);
	}
	assert_int_equal(nxfers, 2);
	view_free(&first);
}

/* A transfer that cannot start: false, the line untouched, nothing left in the table (the
 * next view starts afresh). */
static void test_a_refused_transfer_leaves_nothing(void **state)
{
	struct view v;

	(void)state;
	view_make(&v, 0, port8080, 1);
	refuse = true;
	assert_false(fetch_join(&ft, &v, 0));
	assert_false(v.lines[0].done);
	refuse = false;
	assert_true(fetch_join(&ft, &v, 0));
	assert_int_equal(nxfers, 1);
	finish(0, "x");
	assert_string_equal(text_of(&v, 0), "x");
	view_free(&v);
}

/* Once stopped, a queued fetch does not start; ending all answers the running and the
 * queued fetches' lines with "shutting down" and aborts the running transfers. */
static void test_stop_and_end_all(void **state)
{
	struct view running;
	struct view waiting;
	struct view after_stop;

	(void)state;
	cfg.peer_max_connections = 1;
	view_make(&running, 0, port8080, 1);
	view_make(&waiting, monotonic_ns() + 1, port8080, 1);
	assert_true(fetch_join(&ft, &running, 0));
	assert_true(fetch_join(&ft, &waiting, 0));
	view_make(&after_stop, 0, port8080, 1);
	assert_true(fetch_join(&ft, &after_stop, 0)); /* joins the running one */
	fetch_stop(&ft);
	assert_int_equal(nxfers, 1);
	fetch_end_all(&ft);
	assert_true(xfers[0].aborted);
	assert_int_equal(nxfers, 1);
	assert_int_equal(ndone, 3);
	assert_string_equal(text_of(&running, 0), "Error: " SHUTDOWN_TEXT);
	assert_string_equal(text_of(&after_stop, 0), "Error: " SHUTDOWN_TEXT);
	assert_string_equal(text_of(&waiting, 0), "Error: " SHUTDOWN_TEXT);
	assert_true(running.lines[0].ans->error);
	view_free(&running);
	view_free(&waiting);
	view_free(&after_stop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_views_share_a_fetch_that_started_after_they_arrived,
				       setup),
		cmocka_unit_test_setup(test_peers_do_not_share, setup),
		cmocka_unit_test_setup(test_the_cap_queues_one_fetch_that_later_views_join, setup),
		cmocka_unit_test_setup(test_a_refused_transfer_leaves_nothing, setup),
		cmocka_unit_test_setup(test_stop_and_end_all, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
