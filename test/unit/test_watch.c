/* SPDX-License-Identifier: MIT */
/*
 * The watcher on a real loop, against a fake submission: each round's view is handed
 * back by the test, which checks what the watcher reports of it. Every wait is bounded
 * by a timer of the loop that fails the test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <string.h>

#include "common/budget.h"
#include "common/monotonic.h"
#include "discovery/internal.h"

#define MS 1000000ull
#define GUARD_MS 5000

struct fake {
	struct loop *loop;
	struct loop_timer guard;
	bool refuse;
	int submitted;
	discovery_done_fn done; /* the round waiting for its view */
	void *done_ctx;
	int reports;
	char *body; /* the last change reported */
	size_t len;
	uint64_t changed_at_ms;
};

static bool fake_submit(void *arg, discovery_done_fn done, void *ctx)
{
	struct fake *f = arg;

	f->submitted++;
	loop_quit(f->loop);
	if (f->refuse) {
		return false;
	}
	f->done = done;
	f->done_ctx = ctx;
	return true;
}

static void on_report(void *ctx, struct discovery_watch_event *ev)
{
	struct fake *f = ctx;

	f->reports++;
	discovery_body_free(f->body);
	f->body = ev->body;
	f->len = ev->len;
	f->changed_at_ms = ev->changed_at_ms;
	ev->body = NULL;
}

static void guard_fired(void *arg)
{
	(void)arg;
	fail_msg("the watcher did not start a round in time");
}

/* Runs the loop until the watcher submits its next round. */
static void next_round(struct fake *f)
{
	loop_timer_set(f->loop, &f->guard, monotonic_ns() + GUARD_MS * MS);
	assert_true(loop_run(f->loop));
	loop_timer_set(f->loop, &f->guard, LOOP_NEVER);
}

/* The round's view: a document as view.c renders it (indented), given to the watcher. */
static void answer(struct fake *f, const char *data, double fetch_ms, bool from_cache)
{
	json_t *doc =
		json_pack("{s:{s:s,s:s},s:{s:s,s:b},s:[{s:s,s:s,s:f}]}", "pod", "name", "kubia-0",
			  "data", "zero", "srv", "result", "peers", "from_cache", from_cache,
			  "peers", "name", "kubia-1", "data", data, "fetch_ms", fetch_ms);
	size_t size = json_dumpb(doc, NULL, 0, JSON_INDENT(2));
	char *body = render_body_alloc(NULL, size + 2);
	struct discovery_view v = {.body = body, .len = size + 1};
	discovery_done_fn done = f->done;

	assert_non_null(body);
	assert_int_equal(json_dumpb(doc, body, size, JSON_INDENT(2)), size);
	body[size] = '\n';
	body[size + 1] = '\0';
	json_decref(doc);
	assert_non_null(done);
	f->done = NULL;
	done(f->done_ctx, &v);
}

static void setup(struct fake *f, struct watch *w, struct budget *b)
{
	char err[128];

	memset(f, 0, sizeof(*f));
	f->loop = loop_create(NULL, NULL, err, sizeof(err));
	assert_non_null(f->loop);
	loop_timer_init(&f->guard, guard_fired, f);
	watch_init(w, f->loop, b, fake_submit, f);
}

static void teardown(struct fake *f, struct watch *w)
{
	watch_destroy(w);
	discovery_body_free(f->body);
	loop_destroy(f->loop);
}

static void test_first_round_reports_the_view_as_one_line(void **state)
{
	struct fake f;
	struct watch w;
	struct budget b;
	json_t *doc;

	(void)state;
	budget_init(&b, 1 << 20);
	setup(&f, &w, &b);
	watch_set(&w, true, 100, on_report, &f);
	next_round(&f);
	assert_int_equal(f.submitted, 1);
	answer(&f, "one", 1.5, false);
	assert_int_equal(f.reports, 1);
	assert_non_null(f.body);
	assert_null(memchr(f.body, '\n', f.len));
	assert_int_equal(strlen(f.body), f.len);
	assert_true(f.changed_at_ms > 1700000000000ull);
	doc = json_loadb(f.body, f.len, 0, NULL);
	assert_non_null(doc);
	assert_string_equal(json_string_value(json_object_get(
				    json_array_get(json_object_get(doc, "peers"), 0), "data")),
			    "one");
	json_decref(doc);
	/* The report and the last view are charged while they are held. */
	assert_true(budget_used(&b) > f.len);
	discovery_body_free(f.body);
	f.body = NULL;
	teardown(&f, &w);
	assert_int_equal(budget_used(&b), 0);
}

static void test_only_a_change_is_reported(void **state)
{
	struct fake f;
	struct watch w;

	(void)state;
	setup(&f, &w, NULL);
	watch_set(&w, true, 100, on_report, &f);
	next_round(&f);
	answer(&f, "one", 1.5, false);
	assert_non_null(f.body);
	/* A slower fetch and an SRV answer from the cache say nothing new. */
	next_round(&f);
	answer(&f, "one", 9.25, true);
	assert_int_equal(f.reports, 2);
	assert_null(f.body);
	next_round(&f);
	answer(&f, "two", 9.25, true);
	assert_int_equal(f.reports, 3);
	assert_non_null(f.body);
	assert_non_null(strstr(f.body, "\"two\""));
	teardown(&f, &w);
}

static void test_rounds_follow_the_interval(void **state)
{
	struct fake f;
	struct watch w;
	uint64_t t0;

	(void)state;
	setup(&f, &w, NULL);
	watch_set(&w, true, 200, on_report, &f);
	next_round(&f);
	answer(&f, "one", 1, false);
	t0 = monotonic_ns();
	next_round(&f);
	assert_true(monotonic_ns() - t0 >= 150 * MS);
	answer(&f, "one", 1, false);
	teardown(&f, &w);
}

static void test_a_refused_round_is_reported_unchanged(void **state)
{
	struct fake f;
	struct watch w;

	(void)state;
	setup(&f, &w, NULL);
	f.refuse = true;
	watch_set(&w, true, 100, on_report, &f);
	next_round(&f);
	assert_int_equal(f.reports, 1);
	assert_null(f.body);
	/* The next round is still due. */
	f.refuse = false;
	next_round(&f);
	assert_int_equal(f.submitted, 2);
	answer(&f, "one", 1, false);
	assert_non_null(f.body);
	teardown(&f, &w);
}

static void test_off_forgets_the_last_view(void **state)
{
	struct fake f;
	struct watch w;

	(void)state;
	setup(&f, &w, NULL);
	watch_set(&w, true, 100, on_report, &f);
	next_round(&f);
	answer(&f, "one", 1, false);
	watch_set(&w, false, 0, NULL, NULL);
	watch_set(&w, true, 100, on_report, &f);
	next_round(&f);
	answer(&f, "one", 1, false);
	/* The same view, reported again: a new watcher has a view to send. */
	assert_int_equal(f.reports, 2);
	assert_non_null(f.body);
	teardown(&f, &w);
}

static void test_a_round_ending_after_off_is_not_reported(void **state)
{
	struct fake f;
	struct watch w;

	(void)state;
	setup(&f, &w, NULL);
	watch_set(&w, true, 100, on_report, &f);
	next_round(&f);
	watch_set(&w, false, 0, NULL, NULL);
	answer(&f, "one", 1, false);
	assert_int_equal(f.reports, 0);
	teardown(&f, &w);
}

static void test_normalise_removes_how_the_view_was_got(void **state)
{
	json_t *a =
		json_loads("{\"srv\":{\"ttl\":5,\"from_cache\":true},\"peers\":[{\"data\":\"x\","
			   "\"fetch_ms\":1.5},{\"error\":\"e\"}]}",
			   0, NULL);
	json_t *b =
		json_loads("{\"srv\":{\"ttl\":5,\"from_cache\":false},\"peers\":[{\"data\":\"x\","
			   "\"fetch_ms\":7},{\"error\":\"e\"}]}",
			   0, NULL);
	json_t *c =
		json_loads("{\"srv\":{\"ttl\":6,\"from_cache\":false},\"peers\":[{\"data\":\"x\","
			   "\"fetch_ms\":7},{\"error\":\"e\"}]}",
			   0, NULL);

	(void)state;
	assert_false(json_equal(a, b));
	watch_normalise(a);
	watch_normalise(b);
	watch_normalise(c);
	assert_true(json_equal(a, b));
	/* Anything else still counts: the TTL here. */
	assert_false(json_equal(a, c));
	json_decref(a);
	json_decref(b);
	json_decref(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_first_round_reports_the_view_as_one_line),
		cmocka_unit_test(test_only_a_change_is_reported),
		cmocka_unit_test(test_rounds_follow_the_interval),
		cmocka_unit_test(test_a_refused_round_is_reported_unchanged),
		cmocka_unit_test(test_off_forgets_the_last_view),
		cmocka_unit_test(test_a_round_ending_after_off_is_not_reported),
		cmocka_unit_test(test_normalise_removes_how_the_view_was_got),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
