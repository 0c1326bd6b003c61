/* SPDX-License-Identifier: MIT */
/*
 * The missing pods of a view (missing_add(): which ordinals, their names, their text,
 * which names take part) and the view as JSON (viewjson_render(): the values of every
 * member, strings or base64, the memory budget), without a network.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <jansson.h>
#include <sys/socket.h>

#include "common/budget.h"
#include "discovery/internal.h"

#define SUFFIX ".kubia.default.svc.cluster.local"
#define MISSING "Error: " MISSING_TEXT

static void add_peer(struct srv_answer *a, const char *name, uint16_t port)
{
	struct srv_peer *np = realloc(a->peers, (a->npeers + 1) * sizeof(*np));
	struct srv_peer *p;

	assert_non_null(np);
	a->peers = np;
	p = &a->peers[a->npeers++];
	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "%s", name);
	p->port = port;
	p->priority = (uint16_t)a->npeers;
	p->weight = (uint16_t)(100 + a->npeers);
	p->family = AF_INET;
	p->addr[0] = 10;
	p->addr[3] = (unsigned char)a->npeers;
}

/* The view's lines for names (as DNS lists them) seen from hostname, missing pods
 * added; every line not done gets its first label as its text. Returns the rendered
 * text, malloc()ed; *added gets missing_add()'s result. */
static char *view_of(const char *const *names, size_t count, const char *hostname,
		     unsigned replicas, size_t limit, int *added)
{
	struct srv_answer a = {0};
	struct render_line *lines;
	size_t n;
	size_t len;
	char *body;

	for (size_t i = 0; i < count; i++) {
		add_peer(&a, names[i], 8080);
	}
	assert_int_equal(render_plan(&a, hostname, 0, &lines, &n), 0);
	*added = missing_add(&lines, &n, replicas, limit);
	for (size_t i = 0; i < n; i++) {
		if (!lines[i].done) {
			assert_true(render_line_set(&lines[i], lines[i].name,
						    strcspn(lines[i].name, ".")));
		}
	}
	body = render_text(lines, n, &len);
	assert_non_null(body);
	render_lines_free(lines, n);
	srv_answer_free(&a);
	return body;
}

static void expect_view(const char *const *names, size_t count, const char *hostname,
			unsigned replicas, size_t limit, int want_added, const char *want)
{
	int added = -2;
	char *body = view_of(names, count, hostname, replicas, limit, &added);

	if (strcmp(body, want) != 0) {
		print_error("got:\n%s\nwant:\n%s\n", body, want);
	}
	assert_string_equal(body, want);
	assert_int_equal(added, want_added);
	free(body);
}

/* Only the count of missing lines the view added, for views whose text is not the
 * point. */
static void expect_added(const char *const *names, size_t count, const char *hostname,
			 unsigned replicas, size_t limit, int want_added)
{
	int added = -2;

	free(view_of(names, count, hostname, replicas, limit, &added));
	assert_int_equal(added, want_added);
}

static void test_gap(void **state)
{
	static const char *const names[] = {"kubia-0" SUFFIX, "kubia-2" SUFFIX};

	(void)state;
	expect_view(names, 2, "kubia-0", 0, 256, 1,
		    "- kubia-0" SUFFIX ": kubia-0\n"
		    "- kubia-1" SUFFIX ": " MISSING "\n"
		    "- kubia-2" SUFFIX ": kubia-2\n");
	/* the same from the pod that is listed last, and from the missing one itself: it
	 * is this pod then, not a missing one */
	expect_view(names, 2, "kubia-2", 0, 256, 1,
		    "- kubia-0" SUFFIX ": kubia-0\n"
		    "- kubia-1" SUFFIX ": " MISSING "\n"
		    "- kubia-2" SUFFIX ": kubia-2\n");
	expect_view(names, 2, "kubia-1", 0, 256, 0,
		    "- kubia-0" SUFFIX ": kubia-0\n"
		    "- kubia-1" SUFFIX ": kubia-1\n"
		    "- kubia-2" SUFFIX ": kubia-2\n");
}

static void test_gaps_from_zero_and_own_ordinal_above(void **state)
{
	static const char *const names[] = {"kubia-1" SUFFIX, "kubia-3" SUFFIX};

	(void)state;
	/* kubia-0 is below the lowest listed: missing too; kubia-5 (this pod, not ready)
	 * is above the highest: kubia-4 between them is missing. */
	expect_view(names, 2, "kubia-5", 0, 256, 3,
		    "- kubia-0" SUFFIX ": " MISSING "\n"
		    "- kubia-1" SUFFIX ": kubia-1\n"
		    "- kubia-2" SUFFIX ": " MISSING "\n"
		    "- kubia-3" SUFFIX ": kubia-3\n"
		    "- kubia-4" SUFFIX ": " MISSING "\n"
		    "- kubia-5" SUFFIX ": kubia-5\n");
}

static void test_replicas_tail(void **state)
{
	static const char *const names[] = {"kubia-0" SUFFIX, "kubia-1" SUFFIX};
	static const char both[] = "- kubia-0" SUFFIX ": kubia-0\n"
				   "- kubia-1" SUFFIX ": kubia-1\n";

	(void)state;
	expect_view(names, 2, "kubia-0", 4, 256, 2,
		    "- kubia-0" SUFFIX ": kubia-0\n"
		    "- kubia-1" SUFFIX ": kubia-1\n"
		    "- kubia-2" SUFFIX ": " MISSING "\n"
		    "- kubia-3" SUFFIX ": " MISSING "\n");
	/* as many or fewer replicas than listed, or unknown (0): nothing added */
	expect_view(names, 2, "kubia-0", 2, 256, 0, both);
	expect_view(names, 2, "kubia-0", 1, 256, 0, both);
	expect_view(names, 2, "kubia-0", 0, 256, 0, both);
}

static void test_limit(void **state)
{
	static const char *const names[] = {"kubia-0" SUFFIX, "kubia-999999999" SUFFIX};
	static const char *const huge[] = {"kubia-0" SUFFIX, "kubia-1000000000" SUFFIX};

	(void)state;
	/* the lowest missing ordinals first, at most limit of them */
	expect_view(names, 2, "kubia-0", 0, 3, 3,
		    "- kubia-0" SUFFIX ": kubia-0\n"
		    "- kubia-1" SUFFIX ": " MISSING "\n"
		    "- kubia-2" SUFFIX ": " MISSING "\n"
		    "- kubia-3" SUFFIX ": " MISSING "\n"
		    "- kubia-999999999" SUFFIX ": kubia-999999999\n");
	expect_added(names, 2, "kubia-0", 65535, 256, 256);
	/* an ordinal past 999999999 is no StatefulSet's: the rule stays out */
	expect_added(huge, 2, "kubia-0", 0, 256, 0);
}

static void test_names_that_take_no_part(void **state)
{
	static const char *const two_bases[] = {"web-0" SUFFIX, "web-2" SUFFIX};
	static const char *const other_base[] = {"a-0" SUFFIX, "b-2" SUFFIX};
	static const char *const no_ordinal[] = {"alpha" SUFFIX, "beta-2" SUFFIX};
	static const char *const leading_zero[] = {"kubia-00" SUFFIX, "kubia-2" SUFFIX};
	static const char *const empty_base[] = {"-0" SUFFIX, "-2" SUFFIX};
	static const char *const letters[] = {"kubia-0" SUFFIX, "kubia-2x" SUFFIX};
	static const char *const cased[] = {"KUBIA-0" SUFFIX, "kubia-2" SUFFIX};

	(void)state;
	/* this pod (db-5) is of another base than the listed pods */
	expect_added(two_bases, 2, "db-5", 3, 256, 0);
	/* two bases whose ordinals happen to be in order */
	expect_added(other_base, 2, "a-0", 3, 256, 0);
	expect_added(two_bases, 2, "zz-5", 3, 256, 0);
	expect_added(no_ordinal, 2, "beta-2", 3, 256, 0);
	expect_added(leading_zero, 2, "kubia-2", 3, 256, 0);
	expect_added(empty_base, 2, "x", 3, 256, 0);
	expect_added(letters, 2, "kubia-0", 3, 256, 0);
	/* the base is compared without regard to case; the first line names the missing */
	expect_view(cased, 2, "kubia-2", 0, 256, 1,
		    "- KUBIA-0" SUFFIX ": KUBIA-0\n"
		    "- KUBIA-1" SUFFIX ": " MISSING "\n"
		    "- kubia-2" SUFFIX ": kubia-2\n");
	/* a single label without a rest; no lines at all */
	{
		static const char *const bare[] = {"kubia-0", "kubia-2"};

		expect_view(bare, 2, "kubia-0", 0, 256, 1,
			    "- kubia-0: kubia-0\n- kubia-1: " MISSING "\n- kubia-2: kubia-2\n");
	}
	expect_view(NULL, 0, "kubia-0", 3, 256, 0, "No peers discovered.\n");
}

static void test_missing_lines_are_marked(void **state)
{
	struct srv_answer a = {0};
	struct render_line *lines;
	size_t n;

	(void)state;
	add_peer(&a, "kubia-0" SUFFIX, 8080);
	add_peer(&a, "kubia-2" SUFFIX, 8080);
	assert_int_equal(render_plan(&a, "kubia-3", 0, &lines, &n), 0);
	assert_int_equal(missing_add(&lines, &n, 0, 256), 1);
	assert_int_equal(n, 4);
	assert_true(lines[1].missing && lines[1].unlisted && lines[1].done && !lines[1].self);
	assert_true(lines[1].ans->error);
	assert_int_equal(lines[1].family, 0);
	assert_int_equal(lines[1].port, 0);
	/* this pod, not listed: unlisted but not missing; the listed ones neither */
	assert_true(lines[3].self && lines[3].unlisted && !lines[3].missing);
	assert_false(lines[0].unlisted || lines[0].missing || lines[2].unlisted);
	/* the listed lines keep their addresses and ports */
	assert_int_equal(lines[2].port, 8080);
	assert_int_equal(lines[2].addr[3], 2);
	render_lines_free(lines, n);
	srv_answer_free(&a);
}

/* ---- JSON --------------------------------------------------------------------------- */

static void test_base64(void **state)
{
	static const char *const vectors[][2] = {
		{"", ""},
		{"f", "Zg=="},
		{"fo", "Zm8="},
		{"foo", "Zm9v"},
		{"foob", "Zm9vYg=="},
		{"fooba", "Zm9vYmE="},
		{"foobar", "Zm9vYmFy"},
	};
	char out[16];
	static const unsigned char bin[] = {0xff, 0xfe, 0x00, 0x80};

	(void)state;
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		size_t len = strlen(vectors[i][0]);

		assert_int_equal(base64_len(len), strlen(vectors[i][1]));
		base64_encode((const unsigned char *)vectors[i][0], len, out);
		assert_string_equal(out, vectors[i][1]);
	}
	base64_encode(bin, sizeof(bin), out);
	assert_string_equal(out, "//4AgA==");
}

static json_t *render_doc(const struct viewjson *vj, const struct render_line *lines, size_t n,
			  const char *own, size_t ownlen, struct budget *b)
{
	struct viewjson_pod pod = {"kubia-0", own, ownlen};
	size_t len = 0;
	char *body = viewjson_render(vj, &pod, lines, n, b, &len);
	json_error_t err;
	json_t *doc;

	assert_non_null(body);
	assert_int_equal(body[len - 1], '\n');
	assert_int_equal(strlen(body), len); /* NUL bytes of the data are escaped */
	doc = json_loadb(body, len, JSON_ALLOW_NUL, &err);
	if (doc == NULL) {
		print_error("not JSON (%s): %s\n", err.text, body);
	}
	assert_non_null(doc);
	free(body);
	budget_credit(b, len + 1);
	return doc;
}

static const char *str_at(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	assert_true(json_is_string(v));
	return json_string_value(v);
}

static void test_json_document(void **state)
{
	struct srv_answer a = {0};
	struct render_line *lines;
	struct render_answer *fetched;
	struct budget b;
	struct viewjson *vj;
	json_t *doc;
	json_t *peers;
	json_t *srv;
	json_t *rec;
	static const char bin[] = {'\xff', 'a', '\0', 'b'};
	size_t n;

	(void)state;
	budget_init(&b, 1 << 20);
	add_peer(&a, "kubia-0" SUFFIX, 8080);
	add_peer(&a, "kubia-1" SUFFIX, 9090);
	add_peer(&a, "kubia-3" SUFFIX, 8080);
	a.ttl = 30;
	snprintf(a.qname, sizeof(a.qname), "kubia.default.svc.cluster.local");
	assert_int_equal(render_plan(&a, "kubia-0", 0, &lines, &n), 0);
	assert_int_equal(missing_add(&lines, &n, 0, 256), 1);
	assert_true(render_line_set(&lines[0], "mine\n\0x", 7));
	fetched = render_answer_copy(bin, sizeof(bin));
	assert_non_null(fetched);
	fetched->fetched = true;
	fetched->fetch_ns = 1234567; /* 1.234567 ms: shown to the microsecond */
	render_line_share(&lines[1], fetched);
	render_answer_unref(fetched);
	assert_true(render_line_error(&lines[3], "HTTP %d", 500));
	vj = viewjson_begin(SRV_PEERS, &a, NULL, true);
	assert_non_null(vj);
	doc = render_doc(vj, lines, n, "mine\n\0x", 7, &b);
	assert_int_equal(budget_used(&b), 0);

	assert_string_equal(str_at(json_object_get(doc, "pod"), "name"), "kubia-0");
	assert_int_equal(json_string_length(json_object_get(json_object_get(doc, "pod"), "data")),
			 7);
	srv = json_object_get(doc, "srv");
	assert_string_equal(str_at(srv, "result"), "peers");
	assert_string_equal(str_at(srv, "name"), "kubia.default.svc.cluster.local");
	assert_int_equal(json_integer_value(json_object_get(srv, "ttl")), 30);
	assert_true(json_is_true(json_object_get(srv, "from_cache")));
	assert_int_equal(json_array_size(json_object_get(srv, "records")), 3);
	rec = json_array_get(json_object_get(srv, "records"), 1);
	assert_string_equal(str_at(rec, "target"), "kubia-1" SUFFIX);
	assert_int_equal(json_integer_value(json_object_get(rec, "port")), 9090);
	assert_int_equal(json_integer_value(json_object_get(rec, "priority")), 2);
	assert_int_equal(json_integer_value(json_object_get(rec, "weight")), 102);
	assert_string_equal(json_string_value(json_array_get(json_object_get(rec, "addresses"), 0)),
			    "10.0.0.2");

	peers = json_object_get(doc, "peers");
	assert_int_equal(json_array_size(peers), 4);
	/* this pod: a string (NUL and newline are UTF-8), not fetched */
	assert_true(json_is_true(json_object_get(json_array_get(peers, 0), "self")));
	assert_true(json_is_false(json_object_get(json_array_get(peers, 0), "data_base64")));
	assert_null(json_object_get(json_array_get(peers, 0), "fetch_ms"));
	/* bytes that are not UTF-8: base64, flagged; the fetch time in ms */
	assert_string_equal(str_at(json_array_get(peers, 1), "data"), "/2EAYg==");
	assert_true(json_is_true(json_object_get(json_array_get(peers, 1), "data_base64")));
	assert_true(json_real_value(json_object_get(json_array_get(peers, 1), "fetch_ms")) ==
		    1.234);
	assert_string_equal(str_at(json_array_get(peers, 1), "address"), "10.0.0.2");
	/* the missing pod: its reason, no address, no data */
	assert_string_equal(str_at(json_array_get(peers, 2), "name"), "kubia-2" SUFFIX);
	assert_true(json_is_true(json_object_get(json_array_get(peers, 2), "missing")));
	assert_true(json_is_false(json_object_get(json_array_get(peers, 2), "in_dns")));
	assert_string_equal(str_at(json_array_get(peers, 2), "error"), MISSING_TEXT);
	assert_true(json_is_null(json_object_get(json_array_get(peers, 2), "address")));
	assert_null(json_object_get(json_array_get(peers, 2), "data"));
	/* an error: the reason without "Error: " (a peer whose data begins so is data) */
	assert_string_equal(str_at(json_array_get(peers, 3), "error"), "HTTP 500");
	json_decref(doc);

	/* the view does not fit the budget: NULL, and nothing stays charged */
	budget_init(&b, 4096);
	{
		struct viewjson_pod pod = {"kubia-0", "x", 1};
		size_t len = 0;

		assert_null(viewjson_render(vj, &pod, lines, n, &b, &len));
		assert_int_equal(budget_used(&b), 0);
	}
	viewjson_free(vj);
	render_lines_free(lines, n);
	srv_answer_free(&a);
}

static void test_json_outcomes_without_peers(void **state)
{
	struct budget b;
	struct viewjson *vj;
	json_t *doc;
	json_t *srv;

	(void)state;
	budget_init(&b, 1 << 20);
	vj = viewjson_begin(SRV_EMPTY, NULL, NULL, false);
	doc = render_doc(vj, NULL, 0, "No data posted yet", 18, &b);
	srv = json_object_get(doc, "srv");
	assert_string_equal(str_at(srv, "result"), "none");
	assert_true(json_is_null(json_object_get(srv, "name")));
	assert_true(json_is_null(json_object_get(srv, "ttl")));
	assert_null(json_object_get(srv, "error"));
	assert_int_equal(json_array_size(json_object_get(doc, "peers")), 0);
	json_decref(doc);
	viewjson_free(vj);

	vj = viewjson_begin(SRV_ERROR, NULL, "kubia.default.svc.cluster.local: timed out", false);
	doc = render_doc(vj, NULL, 0, "\xc3", 1, &b);
	srv = json_object_get(doc, "srv");
	assert_string_equal(str_at(srv, "result"), "error");
	assert_string_equal(str_at(srv, "error"), "kubia.default.svc.cluster.local: timed out");
	/* this pod's own bytes follow the same rule as a peer's */
	assert_string_equal(str_at(json_object_get(doc, "pod"), "data"), "ww==");
	json_decref(doc);
	viewjson_free(vj);
	assert_int_equal(budget_used(&b), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gap),
		cmocka_unit_test(test_gaps_from_zero_and_own_ordinal_above),
		cmocka_unit_test(test_replicas_tail),
		cmocka_unit_test(test_limit),
		cmocka_unit_test(test_names_that_take_no_part),
		cmocka_unit_test(test_missing_lines_are_marked),
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_json_document),
		cmocka_unit_test(test_json_outcomes_without_peers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
