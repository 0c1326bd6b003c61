/* SPDX-License-Identifier: MIT */
/*
 * The view stream's subscribers without HTTP: fake connections that record what the hub
 * does to them (suspend, resume, cut), the watcher's rounds handed in by the test, and
 * what each subscriber reads compared byte for byte with the SSE text it must be.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "common/budget.h"
#include "common/metrics.h"
#include "discovery/discovery.h"
#include "discovery/internal.h"
#include "server/stream.h"

struct conn {
	bool gone;
	int suspends;
	int resumes;
	int cuts;
	int cut_fd;
};

static void fake_suspend(void *c)
{
	((struct conn *)c)->suspends++;
}

static void fake_resume(void *c)
{
	((struct conn *)c)->resumes++;
}

static void fake_cut(void *c, int fd)
{
	((struct conn *)c)->cuts++;
	((struct conn *)c)->cut_fd = fd;
}

static bool fake_gone(void *c, int fd)
{
	(void)fd;
	return ((struct conn *)c)->gone;
}

static const struct stream_io io = {fake_suspend, fake_resume, fake_cut, fake_gone};

static struct stream_limits limits(void)
{
	return (struct stream_limits){.interval_ms = 500,
				      .heartbeat_s = 15,
				      .max_subscribers = 4,
				      .max_pending = 4,
				      .max_pending_bytes = 1 << 20};
}

/* A round of the watcher that saw the view {"v":<v>} change at ms. */
static void round_of(struct stream_hub *h, const char *v, uint64_t ms)
{
	char text[256];
	int n = snprintf(text, sizeof(text), "{\"v\":%s}", v);
	char *body = render_body_alloc(NULL, (size_t)n + 1);
	struct discovery_watch_event ev = {.body = body, .len = (size_t)n, .changed_at_ms = ms};

	assert_non_null(body);
	memcpy(body, text, (size_t)n + 1);
	stream_on_round(h, &ev);
}

static void quiet_round(struct stream_hub *h)
{
	struct discovery_watch_event ev = {NULL, 0, 0};

	stream_on_round(h, &ev);
}

/* Everything the subscriber can read now, NUL-terminated, in small reads. */
static ssize_t read_all(struct stream_sub *s, char *out, size_t cap)
{
	size_t n = 0;
	ssize_t r;

	while ((r = stream_read(s, out + n, 7 < cap - 1 - n ? 7 : cap - 1 - n)) > 0) {
		n += (size_t)r;
	}
	out[n] = '\0';
	return r < 0 ? r : (ssize_t)n;
}

static void test_frame_copy_reads_across_parts(void **state)
{
	struct stream_frame f = {{"ab", "", "cde", "f", "gh"}, {2, 0, 3, 1, 2}};
	char buf[16];

	(void)state;
	assert_int_equal(stream_frame_len(&f), 8);
	assert_int_equal(stream_frame_copy(&f, 0, buf, 16), 8);
	assert_memory_equal(buf, "abcdefgh", 8);
	assert_int_equal(stream_frame_copy(&f, 1, buf, 3), 3);
	assert_memory_equal(buf, "bcd", 3);
	assert_int_equal(stream_frame_copy(&f, 5, buf, 16), 3);
	assert_memory_equal(buf, "fgh", 3);
	assert_int_equal(stream_frame_copy(&f, 8, buf, 16), 0);
}

static void test_events_are_framed_and_numbered(void **state)
{
	struct stream_limits lim = limits();
	struct stream_hub *h = stream_hub_new(&lim, &io, NULL, NULL, "kubia-0");
	struct conn c = {0};
	struct stream_sub *s;
	char buf[1024];
	const char *data;
	json_t *doc;

	(void)state;
	assert_int_equal(stream_open(h, &c, 7, &s), STREAM_OPEN_OK);
	/* Nothing yet: the connection waits, suspended. */
	assert_int_equal(read_all(s, buf, sizeof(buf)), 0);
	assert_int_equal(c.suspends, 1);
	round_of(h, "1", 1234);
	assert_int_equal(c.resumes, 1);
	assert_true(read_all(s, buf, sizeof(buf)) > 0);
	assert_string_equal(buf, "id: 1\nevent: view\ndata: {\"v\":1,\"stream\":{\"served_by\":"
				 "\"kubia-0\",\"seq\":1,\"changed_at_ms\":1234}}\n\n");
	data = strstr(buf, "data: ") + 6;
	doc = json_loadb(data, strcspn(data, "\n"), 0, NULL);
	assert_non_null(doc);
	json_decref(doc);
	round_of(h, "2", 1300);
	round_of(h, "3", 1400);
	read_all(s, buf, sizeof(buf));
	assert_non_null(strstr(buf, "id: 2\nevent: view\ndata: {\"v\":2,"));
	assert_non_null(strstr(buf, "\"seq\":3,\"changed_at_ms\":1400}}\n\n"));
	stream_close(s);
	stream_hub_free(h);
}

static void test_a_new_subscriber_gets_the_last_view_at_once(void **state)
{
	struct stream_limits lim = limits();
	struct stream_hub *h = stream_hub_new(&lim, &io, NULL, NULL, "kubia-0");
	struct conn c1 = {0}, c2 = {0};
	struct stream_sub *s1, *s2;
	char buf[1024];

	(void)state;
	assert_int_equal(stream_open(h, &c1, 7, &s1), STREAM_OPEN_OK);
	round_of(h, "1", 10);
	round_of(h, "2", 20);
	assert_int_equal(stream_open(h, &c2, 8, &s2), STREAM_OPEN_OK);
	read_all(s2, buf, sizeof(buf));
	assert_string_equal(buf, "id: 1\nevent: view\ndata: {\"v\":2,\"stream\":{\"served_by\":"
				 "\"kubia-0\",\"seq\":1,\"changed_at_ms\":20}}\n\n");
	stream_close(s1);
	stream_close(s2);
	stream_hub_free(h);
}

static void test_heartbeat_after_silence_only(void **state)
{
	struct stream_limits lim = limits();
	struct stream_hub *h;
	struct conn c = {0};
	struct stream_sub *s;
	char buf[1024];
	uint64_t before = metrics.stream_heartbeats;

	(void)state;
	lim.heartbeat_s = 0; /* any round without a change is silence enough */
	h = stream_hub_new(&lim, &io, NULL, NULL, "kubia-0");
	assert_int_equal(stream_open(h, &c, 7, &s), STREAM_OPEN_OK);
	quiet_round(h);
	read_all(s, buf, sizeof(buf));
	assert_string_equal(buf, ": hb\n\n");
	assert_int_equal(metrics.stream_heartbeats, before + 1);
	stream_close(s);
	stream_hub_free(h);

	lim.heartbeat_s = 3600;
	h = stream_hub_new(&lim, &io, NULL, NULL, "kubia-0");
	assert_int_equal(stream_open(h, &c, 7, &s), STREAM_OPEN_OK);
	quiet_round(h);
	assert_int_equal(read_all(s, buf, sizeof(buf)), 0);
	stream_close(s);
	stream_hub_free(h);
}

static void test_a_subscriber_behind_by_more_events_is_dropped(void **state)
{
	struct stream_limits lim = limits();
	struct stream_hub *h;
	struct conn c = {0}, ok = {0};
	struct stream_sub *s, *reader;
	char buf[4096];
	uint64_t drops = metrics.stream_drops;

	(void)state;
	lim.max_pending = 2;
	h = stream_hub_new(&lim, &io, NULL, NULL, "kubia-0");
	assert_int_equal(stream_open(h, &c, 9, &s), STREAM_OPEN_OK);
	assert_int_equal(stream_open(h, &ok, 10, &reader), STREAM_OPEN_OK);
	round_of(h, "1", 1);
	read_all(reader, buf, sizeof(buf));
	round_of(h, "2", 2);
	read_all(reader, buf, sizeof(buf));
	assert_int_equal(c.cuts, 0);
	round_of(h, "3", 3);
	/* Never read, not suspended (its socket is full): cut at once. */
	assert_int_equal(c.cuts, 1);
	assert_int_equal(c.cut_fd, 9);
	assert_int_equal(stream_read(s, buf, sizeof(buf)), -2);
	assert_int_equal(metrics.stream_drops, drops + 1);
	/* The one that reads is untouched. */
	assert_true(read_all(reader, buf, sizeof(buf)) > 0);
	assert_int_equal(ok.cuts, 0);
	stream_close(s);
	stream_close(reader);
	stream_hub_free(h);
}

static void test_a_subscriber_behind_by_more_bytes_is_dropped(void **state)
{
	struct stream_limits lim = limits();
	struct stream_hub *h;
	struct conn c = {0};
	struct stream_sub *s;

	(void)state;
	lim.max_pending_bytes = 100;
	h = stream_hub_new(&lim, &io, NULL, NULL, "kubia-0");
	assert_int_equal(stream_open(h, &c, 9, &s), STREAM_OPEN_OK);
	/* One event is taken whatever its size... */
	round_of(h, "\"a long view, longer than the bound of 100 bytes once framed\"", 1);
	assert_int_equal(c.cuts, 0);
	/* ...but not a second one past the bound. */
	round_of(h, "2", 2);
	assert_int_equal(c.cuts, 1);
	stream_close(s);
	stream_hub_free(h);
}

static void test_subscribers_are_bounded_and_charged(void **state)
{
	struct stream_limits lim = limits();
	struct stream_hub *h;
	struct budget b;
	struct conn c = {0};
	struct stream_sub *s1, *s2, *s3;

	(void)state;
	lim.max_subscribers = 2;
	budget_init(&b, 1 << 20);
	h = stream_hub_new(&lim, &io, NULL, &b, "kubia-0");
	assert_int_equal(stream_open(h, &c, 1, &s1), STREAM_OPEN_OK);
	assert_true(budget_used(&b) > 0);
	assert_int_equal(stream_open(h, &c, 2, &s2), STREAM_OPEN_OK);
	assert_int_equal(metrics.stream_subscribers, 2);
	assert_int_equal(stream_open(h, &c, 3, &s3), STREAM_OPEN_FULL);
	stream_close(s1);
	stream_close(s2);
	assert_int_equal(budget_used(&b), 0);
	assert_int_equal(metrics.stream_subscribers, 0);
	stream_hub_free(h);

	budget_init(&b, 16);
	lim.max_subscribers = 2;
	h = stream_hub_new(&lim, &io, NULL, &b, "kubia-0");
	assert_int_equal(stream_open(h, &c, 1, &s1), STREAM_OPEN_OVER_BUDGET);
	assert_int_equal(budget_used(&b), 0);
	stream_hub_free(h);
}

static void test_stop_ends_idle_streams_and_cuts_busy_ones(void **state)
{
	struct stream_limits lim = limits();
	struct stream_hub *h = stream_hub_new(&lim, &io, NULL, NULL, "kubia-0");
	struct conn idle = {0}, busy = {0};
	struct stream_sub *si, *sb;
	char buf[1024];

	(void)state;
	assert_int_equal(stream_open(h, &idle, 1, &si), STREAM_OPEN_OK);
	assert_int_equal(stream_open(h, &busy, 2, &sb), STREAM_OPEN_OK);
	round_of(h, "1", 1);
	read_all(si, buf, sizeof(buf)); /* read all, then suspended */
	stream_stop_all(h);
	assert_int_equal(idle.resumes, 1);
	assert_int_equal(idle.cuts, 0);
	assert_int_equal(stream_read(si, buf, sizeof(buf)), -1);
	assert_int_equal(busy.cuts, 1);
	assert_int_equal(stream_open(h, &idle, 3, &si), STREAM_OPEN_STOPPING);
	stream_close(sb);
	stream_close(si);
	stream_hub_free(h);
}

static void test_a_client_that_left_is_ended_at_the_next_round(void **state)
{
	struct stream_limits lim = limits();
	struct stream_hub *h = stream_hub_new(&lim, &io, NULL, NULL, "kubia-0");
	struct conn c = {0};
	struct stream_sub *s;
	char buf[1024];
	uint64_t drops = metrics.stream_drops;

	(void)state;
	assert_int_equal(stream_open(h, &c, 1, &s), STREAM_OPEN_OK);
	round_of(h, "1", 1);
	read_all(s, buf, sizeof(buf)); /* then suspended, as a quiet stream is */
	quiet_round(h);
	assert_int_equal(c.resumes, 0);
	c.gone = true;
	quiet_round(h);
	assert_int_equal(c.resumes, 1);
	assert_int_equal(stream_read(s, buf, sizeof(buf)), -2);
	/* Not a drop: the client went away, kubia did not give up on it. */
	assert_int_equal(metrics.stream_drops, drops);
	stream_close(s);
	stream_hub_free(h);
}

static void test_the_host_name_is_escaped(void **state)
{
	struct stream_limits lim = limits();
	struct stream_hub *h = stream_hub_new(&lim, &io, NULL, NULL, "a\"b\\c");
	struct conn c = {0};
	struct stream_sub *s;
	char buf[1024];
	const char *data;
	json_t *doc;

	(void)state;
	assert_int_equal(stream_open(h, &c, 1, &s), STREAM_OPEN_OK);
	round_of(h, "1", 1);
	read_all(s, buf, sizeof(buf));
	data = strstr(buf, "data: ") + 6;
	doc = json_loadb(data, strcspn(data, "\n"), 0, NULL);
	assert_non_null(doc);
	assert_string_equal(
		json_string_value(json_object_get(json_object_get(doc, "stream"), "served_by")),
		"a\"b\\c");
	json_decref(doc);
	stream_close(s);
	stream_hub_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frame_copy_reads_across_parts),
		cmocka_unit_test(test_events_are_framed_and_numbered),
		cmocka_unit_test(test_a_new_subscriber_gets_the_last_view_at_once),
		cmocka_unit_test(test_heartbeat_after_silence_only),
		cmocka_unit_test(test_a_subscriber_behind_by_more_events_is_dropped),
		cmocka_unit_test(test_a_subscriber_behind_by_more_bytes_is_dropped),
		cmocka_unit_test(test_subscribers_are_bounded_and_charged),
		cmocka_unit_test(test_stop_ends_idle_streams_and_cuts_busy_ones),
		cmocka_unit_test(test_a_client_that_left_is_ended_at_the_next_round),
		cmocka_unit_test(test_the_host_name_is_escaped),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
