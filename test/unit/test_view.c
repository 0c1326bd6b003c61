/* SPDX-License-Identifier: MIT */
/*
 * A view from its start to its done callback (view.c), against a fake lookup.c and a fake
 * fetch.c: waiting for the lookup (one for every view that arrives meanwhile) or served
 * from the cache, this pod's line read locally, the other lines answered by their
 * fetches, the whole text made once with its head, the peers that could not be read, the
 * DNS error and "no peers" views, refused fetches, shutdown, and one body for the views
 * of the same bytes.
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

#include "common/budget.h"
#include "common/metrics.h"
#include "discovery/internal.h"

#define SUFFIX ".kubia.default.svc.cluster.local"
#define HEAD "You've hit kubia-0\nData stored in the cluster:\n"

/* ---- a fake lookup.c ---------------------------------------------------------------- */

static int lookups_begun;
static int lookups_cancelled;
static lookup_done_fn lookup_cb;
static void *lookup_arg;
static const struct srv_cache *cached; /* what lookup_cached() gives */

const struct srv_cache *lookup_cached(const struct lookup *lu, uint64_t now)
{
	(void)lu;
	(void)now;
	return cached;
}

void lookup_begin(struct lookup *lu, lookup_done_fn on_done, void *arg)
{
	(void)lu;
	lookups_begun++;
	lookup_cb = on_done;
	lookup_arg = arg;
}

void lookup_cancel(struct lookup *lu, bool timed_out)
{
	(void)lu;
	assert_false(timed_out);
	lookups_cancelled++;
}

/* ---- a fake fetch.c ----------------------------------------------------------------- */

#define MAX_JOINED 16

static fetch_line_fn line_done;
static void *line_arg;
static struct {
	struct view *v;
	size_t idx;
} joined[MAX_JOINED];
static int njoined;
static bool refuse_fetch;
static bool fetch_stopped;
static int fetch_ended;

void fetch_init(struct fetches *ft, const struct discovery_config *cfg, struct transfers *tr,
		fetch_line_fn cb, void *arg)
{
	(void)ft;
	(void)cfg;
	(void)tr;
	line_done = cb;
	line_arg = arg;
}

bool fetch_join(struct fetches *ft, struct view *v, size_t idx)
{
	(void)ft;
	if (refuse_fetch) {
		return false;
	}
	assert_true(njoined < MAX_JOINED);
	joined[njoined].v = v;
	joined[njoined].idx = idx;
	njoined++;
	return true;
}

void fetch_stop(struct fetches *ft)
{
	(void)ft;
	fetch_stopped = true;
}

void fetch_end_all(struct fetches *ft)
{
	(void)ft;
	fetch_ended++;
}

/* The fetch of joined line i answers text (an error when it starts with "Error: "). */
static void answer(int i, const char *text)
{
	struct render_line *l = &joined[i].v->lines[joined[i].idx];
	struct render_answer *a = render_answer_copy(text, strlen(text));

	assert_non_null(a);
	a->error = strncmp(text, "Error: ", 7) == 0;
	render_line_share(l, a);
	render_answer_unref(a);
	line_done(line_arg, joined[i].v, l);
}

/* ---- this pod's data and the done callback ------------------------------------------ */

static int local_held;

static void local_get(void *ctx, const char **data, size_t *len, void **hold)
{
	(void)ctx;
	*data = "mine";
	*len = 4;
	*hold = &local_held;
	local_held++;
}

static void local_release(void *ctx, void *hold)
{
	(void)ctx;
	assert_ptr_equal(hold, &local_held);
	local_held--;
}

static const struct discovery_local local = {local_get, local_release, NULL};

struct outcome {
	int calls;
	int finished_before; /* finished() calls seen when done ran */
	char *body;
	size_t len;
	unsigned peer_errors;
};

static int finished_calls;

static void on_finished(void *arg)
{
	(void)arg;
	finished_calls++;
}

static void on_done(void *ctx, const struct discovery_view *view)
{
	struct outcome *o = ctx;

	o->calls++;
	o->finished_before = finished_calls;
	render_body_free(o->body);
	o->body = view->body;
	o->len = view->len;
	o->peer_errors = view->peer_errors;
}

static struct discovery_config cfg;
static struct budget budget;
static struct views vs;
static struct fetches ft;

static int setup(void **state)
{
	(void)state;
	lookups_begun = 0;
	lookups_cancelled = 0;
	lookup_cb = NULL;
	cached = NULL;
	njoined = 0;
	refuse_fetch = false;
	fetch_stopped = false;
	fetch_ended = 0;
	finished_calls = 0;
	local_held = 0;
	memset(&cfg, 0, sizeof(cfg));
	cfg.hostname = "kubia-0";
	cfg.max_peers = 16;
	budget_init(&budget, 1 << 20);
	cfg.budget = &budget;
	view_init(&vs, &cfg, &local, NULL, NULL, &ft, NULL, on_finished, NULL);
	return 0;
}

static struct view *view_new(struct outcome *o, enum discovery_format format)
{
	struct view *v = calloc(1, sizeof(*v));

	assert_non_null(v);
	memset(o, 0, sizeof(*o));
	v->done = on_done;
	v->ctx = o;
	v->format = format;
	return v;
}

static void outcome_free(struct outcome *o)
{
	render_body_free(o->body);
	o->body = NULL;
}

/* An SRV answer of kubia-<i> for each i in ords, every one with an address. */
static struct srv_answer answer_of(const int *ords, size_t n)
{
	struct srv_answer a = {0};

	a.npeers = n;
	a.peers = calloc(n, sizeof(*a.peers));
	assert_non_null(a.peers);
	a.ttl = 5;
	for (size_t i = 0; i < n; i++) {
		snprintf(a.peers[i].name, sizeof(a.peers[i].name), "kubia-%d" SUFFIX, ords[i]);
		a.peers[i].family = AF_INET;
		a.peers[i].addr[0] = 10;
		a.peers[i].addr[3] = (unsigned char)ords[i];
		a.peers[i].port = 8080;
	}
	return a;
}

static void expect_body(const struct outcome *o, const char *want)
{
	assert_int_equal(o->calls, 1);
	assert_non_null(o->body);
	if (strcmp(o->body, want) != 0) {
		print_error("got:\n%s\nwant:\n%s\n", o->body, want);
	}
	assert_string_equal(o->body, want);
	assert_int_equal(o->len, strlen(want));
}

/* Two views wait for one lookup; its answer plans their lines, this pod's is read
 * locally, the others wait for fetches; the last answer renders the whole text once. */
static void test_views_wait_for_one_lookup_and_their_fetches(void **state)
{
	static const int ords[] = {0, 1, 2};
	struct srv_answer a = answer_of(ords, 3);
	struct outcome o1;
	struct outcome o2;

	(void)state;
	view_start(&vs, view_new(&o1, DISCOVERY_FORMAT_TEXT));
	view_start(&vs, view_new(&o2, DISCOVERY_FORMAT_TEXT));
	assert_int_equal(lookups_begun, 2); /* the lookup ignores a second begin itself */
	assert_non_null(lookup_cb);
	lookup_cb(lookup_arg, SRV_PEERS, &a, NULL);
	srv_answer_free(&a);
	assert_int_equal(njoined, 4); /* kubia-1 and kubia-2 for each view */
	assert_int_equal(local_held, 2); /* borrowed, not copied, until rendered */
	answer(0, "one");
	answer(1, "Error: HTTP 500");
	assert_int_equal(o1.calls, 1);
	assert_int_equal(o1.finished_before, 1); /* the slot is given back first */
	expect_body(&o1, HEAD "- kubia-0" SUFFIX ": mine\n"
			      "- kubia-1" SUFFIX ": one\n"
			      "- kubia-2" SUFFIX ": Error: HTTP 500\n");
	assert_int_equal(o1.peer_errors, 1);
	assert_int_equal(o2.calls, 0);
	answer(2, "one");
	answer(3, "two");
	expect_body(&o2, HEAD "- kubia-0" SUFFIX ": mine\n"
			      "- kubia-1" SUFFIX ": one\n"
			      "- kubia-2" SUFFIX ": two\n");
	assert_int_equal(o2.peer_errors, 0);
	assert_int_equal(local_held, 0);
	/* Each body holds its bytes and a NUL of the budget; nothing else is left. */
	assert_int_equal(budget_used(&budget), o1.len + 1 + o2.len + 1);
	outcome_free(&o1);
	outcome_free(&o2);
	assert_int_equal(budget_used(&budget), 0);
}

/* A fresh cached outcome serves the view at once: no lookup. */
static void test_a_cached_outcome_serves_at_once(void **state)
{
	static const int ords[] = {0};
	struct srv_cache c = {.kind = SRV_PEERS, .ans = answer_of(ords, 1)};
	struct outcome o;

	(void)state;
	cached = &c;
	view_start(&vs, view_new(&o, DISCOVERY_FORMAT_TEXT));
	assert_int_equal(lookups_begun, 0);
	expect_body(&o, HEAD "- kubia-0" SUFFIX ": mine\n");
	outcome_free(&o);
	srv_answer_free(&c.ans);
}

static void test_dns_error_and_no_peers(void **state)
{
	struct outcome err;
	struct outcome none;
	struct outcome json;

	(void)state;
	view_start(&vs, view_new(&err, DISCOVERY_FORMAT_TEXT));
	view_start(&vs, view_new(&json, DISCOVERY_FORMAT_JSON));
	lookup_cb(lookup_arg, SRV_ERROR, NULL, "kubia.default.svc.cluster.local: no way");
	expect_body(&err, HEAD "Could not look up DNS SRV records: "
			       "kubia.default.svc.cluster.local: no way\n");
	assert_int_equal(err.peer_errors, 0);
	assert_int_equal(json.calls, 1);
	assert_non_null(strstr(json.body, "\"error\""));
	assert_null(strstr(json.body, "You've hit"));
	view_start(&vs, view_new(&none, DISCOVERY_FORMAT_TEXT));
	lookup_cb(lookup_arg, SRV_EMPTY, NULL, NULL);
	expect_body(&none, HEAD "No peers discovered.\n");
	outcome_free(&err);
	outcome_free(&none);
	outcome_free(&json);
	assert_int_equal(budget_used(&budget), 0);
}

/* A fetch that cannot be had: the line says so and counts as a peer not read. */
static void test_a_refused_fetch_is_an_error_line(void **state)
{
	static const int ords[] = {0, 1};
	struct srv_answer a = answer_of(ords, 2);
	struct outcome o;

	(void)state;
	refuse_fetch = true;
	view_start(&vs, view_new(&o, DISCOVERY_FORMAT_TEXT));
	lookup_cb(lookup_arg, SRV_PEERS, &a, NULL);
	srv_answer_free(&a);
	expect_body(&o, HEAD "- kubia-0" SUFFIX ": mine\n"
			     "- kubia-1" SUFFIX
			     ": Error: could not start the request (out of memory)\n");
	assert_int_equal(o.peer_errors, 1);
	outcome_free(&o);
}

/* Once stopped, a view that would wait for DNS ends at once, lines not yet asked say
 * "shutting down", and ending all cancels the lookup and ends the fetches. */
static void test_stop(void **state)
{
	static const int ords[] = {0, 1};
	struct srv_answer a = answer_of(ords, 2);
	struct outcome waiting;
	struct outcome late;

	(void)state;
	view_start(&vs, view_new(&waiting, DISCOVERY_FORMAT_TEXT));
	view_stop(&vs);
	assert_true(fetch_stopped);
	view_start(&vs, view_new(&late, DISCOVERY_FORMAT_TEXT));
	expect_body(&late, HEAD "Could not look up DNS SRV records: " SHUTDOWN_TEXT "\n");
	assert_int_equal(lookups_begun, 1);
	/* The lookup in flight still ends (here with peers): no fetch starts any more. */
	lookup_cb(lookup_arg, SRV_PEERS, &a, NULL);
	srv_answer_free(&a);
	assert_int_equal(njoined, 0);
	expect_body(&waiting, HEAD "- kubia-0" SUFFIX ": mine\n"
				   "- kubia-1" SUFFIX ": Error: " SHUTDOWN_TEXT "\n");
	view_end_all(&vs);
	assert_int_equal(lookups_cancelled, 1);
	assert_int_equal(fetch_ended, 1);
	outcome_free(&waiting);
	outcome_free(&late);
}

static uint64_t bodies(const _Atomic uint64_t *counter)
{
	return atomic_load(counter);
}

/* Views whose bytes are the same get one body, rendered and charged once: the views of
 * one batch, and a later view of the latest body while it is still held; text and JSON
 * never share, nor do views of other answers; once no one holds a body, a view of its
 * bytes renders anew. */
static void test_views_of_the_same_bytes_share_one_body(void **state)
{
	static const int ords[] = {0, 1};
	struct srv_answer a = answer_of(ords, 2);
	struct srv_cache c = {.kind = SRV_PEERS, .ans = answer_of(ords, 2)};
	struct outcome t1, t2, t3, j1, j2, later, again;
	uint64_t rendered = bodies(&metrics.view_bodies_rendered);
	uint64_t shared = bodies(&metrics.view_bodies_shared);
	size_t text_len;

	(void)state;
	view_start(&vs, view_new(&t1, DISCOVERY_FORMAT_TEXT));
	view_start(&vs, view_new(&j1, DISCOVERY_FORMAT_JSON));
	view_start(&vs, view_new(&t2, DISCOVERY_FORMAT_TEXT));
	view_start(&vs, view_new(&j2, DISCOVERY_FORMAT_JSON));
	view_start(&vs, view_new(&t3, DISCOVERY_FORMAT_TEXT));
	lookup_cb(lookup_arg, SRV_PEERS, &a, NULL);
	srv_answer_free(&a);
	assert_int_equal(njoined, 5);
	/* Each line gets an answer of its own (other objects, the same bytes). */
	answer(0, "one");
	answer(1, "one");
	answer(2, "one");
	answer(3, "one");
	answer(4, "two");
	expect_body(&t1, HEAD "- kubia-0" SUFFIX ": mine\n"
			      "- kubia-1" SUFFIX ": one\n");
	expect_body(&t3, HEAD "- kubia-0" SUFFIX ": mine\n"
			      "- kubia-1" SUFFIX ": two\n");
	assert_ptr_equal(t2.body, t1.body);
	assert_int_equal(t2.len, t1.len);
	assert_ptr_equal(j2.body, j1.body);
	assert_ptr_not_equal(j1.body, t1.body);
	assert_ptr_not_equal(t3.body, t1.body);
	text_len = t1.len;
	/* Three renderings, each charged once. */
	assert_int_equal(budget_used(&budget), (t1.len + 1) + (t3.len + 1) + (j1.len + 1));
	if (METRICS_ENABLED) {
		assert_int_equal(bodies(&metrics.view_bodies_rendered) - rendered, 3);
		assert_int_equal(bodies(&metrics.view_bodies_shared) - shared, 2);
	}
	/* The body stays while one view still holds it. */
	outcome_free(&t1);
	outcome_free(&j1);
	assert_int_equal(budget_used(&budget), (t2.len + 1) + (t3.len + 1) + (j2.len + 1));
	/* A later view (another batch) of the latest text, "two", while t3 still holds it:
	 * the same body. */
	cached = &c;
	view_start(&vs, view_new(&later, DISCOVERY_FORMAT_TEXT));
	answer(5, "two");
	assert_ptr_equal(later.body, t3.body);
	outcome_free(&later);
	outcome_free(&t2);
	assert_int_equal(budget_used(&budget), (t3.len + 1) + (j2.len + 1));
	/* No one holds the text of "one" any more: a view of it renders again. */
	view_start(&vs, view_new(&again, DISCOVERY_FORMAT_TEXT));
	answer(6, "one");
	assert_ptr_not_equal(again.body, t3.body);
	assert_int_equal(again.len, text_len);
	if (METRICS_ENABLED) {
		assert_int_equal(bodies(&metrics.view_bodies_rendered) - rendered, 4);
		assert_int_equal(bodies(&metrics.view_bodies_shared) - shared, 3);
	}
	outcome_free(&again);
	outcome_free(&t3);
	outcome_free(&j2);
	srv_answer_free(&c.ans);
	assert_int_equal(budget_used(&budget), 0);
	assert_int_equal(local_held, 0);
}

static int teardown(void **state)
{
	(void)state;
	view_destroy(&vs);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_views_wait_for_one_lookup_and_their_fetches,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_cached_outcome_serves_at_once, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_dns_error_and_no_peers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_refused_fetch_is_an_error_line, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_stop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_views_of_the_same_bytes_share_one_body, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
