/* SPDX-License-Identifier: MIT */
/*
 * The view as JSON (viewjson_render(): the values of every member, strings or base64,
 * the memory budget), without a network.
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

		assert_int_equal(viewjson_base64_len(len), strlen(vectors[i][1]));
		viewjson_base64_encode((const unsigned char *)vectors[i][0], len, out);
		assert_string_equal(out, vectors[i][1]);
	}
	viewjson_base64_encode(bin, sizeof(bin), out);
	assert_string_equal(out, "//4AgA==");
}

static json_t *render_doc(const struct viewjson *vj, const struct render_line *lines, size_t n,
			  const char *own, size_t ownlen, struct budget *b)
{
	struct viewjson_pod pod = {"kubia-0", own, ownlen};
	size_t len = 0;
	uint64_t used = b != NULL ? budget_used(b) : 0;
	char *body = viewjson_render(vj, &pod, lines, n, b, &len, NULL, 0);
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
	/* The body holds len + 1 bytes of the budget until it is freed. */
	if (b != NULL) {
		assert_int_equal(budget_used(b), used + len + 1);
	}
	render_body_free(body);
	if (b != NULL) {
		assert_int_equal(budget_used(b), used);
	}
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

		assert_null(viewjson_render(vj, &pod, lines, n, &b, &len, NULL, 0));
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

/* A document whose bytes are exactly a given body's is that body (no second rendering, no
 * second charge); one that differs anywhere, even in its length only, is a new body and
 * the given one's reference is dropped. */
static void test_json_same_bytes_reuse_the_body(void **state)
{
	struct viewjson *vj = viewjson_begin(SRV_EMPTY, NULL, NULL, false);
	struct viewjson_pod pod = {"kubia-0", "data-a", 6};
	struct budget b;
	size_t len = 0, len2 = 0;
	char *body, *again;
	size_t used;

	(void)state;
	assert_non_null(vj);
	budget_init(&b, 1 << 20);
	body = viewjson_render(vj, &pod, NULL, 0, &b, &len, NULL, 0);
	assert_non_null(body);
	used = budget_used(&b);
	render_body_ref(body); /* the reference handed over */
	again = viewjson_render(vj, &pod, NULL, 0, &b, &len2, body, len);
	assert_ptr_equal(again, body);
	assert_int_equal(len2, len);
	assert_int_equal(budget_used(&b), used);
	render_body_free(again);
	/* One byte differs: a new body; the given reference is dropped. */
	pod.data = "data-b";
	render_body_ref(body);
	again = viewjson_render(vj, &pod, NULL, 0, &b, &len2, body, len);
	assert_non_null(again);
	assert_ptr_not_equal(again, body);
	assert_int_equal(len2, len);
	assert_int_equal(budget_used(&b), 2 * used);
	render_body_free(again);
	/* The given body is shorter than the document: not it. */
	pod.data = "data-aa";
	pod.len = 7;
	render_body_ref(body);
	again = viewjson_render(vj, &pod, NULL, 0, &b, &len2, body, len);
	assert_ptr_not_equal(again, body);
	assert_int_equal(len2, len + 1);
	render_body_free(again);
	/* Longer than the document: not it either. */
	pod.data = "data";
	pod.len = 4;
	render_body_ref(body);
	again = viewjson_render(vj, &pod, NULL, 0, &b, &len2, body, len);
	assert_ptr_not_equal(again, body);
	render_body_free(again);
	assert_int_equal(budget_used(&b), used);
	/* Over budget: NULL, and the given reference is still dropped. */
	{
		struct budget tight;

		budget_init(&tight, 16);
		render_body_ref(body);
		assert_null(viewjson_render(vj, &pod, NULL, 0, &tight, &len2, body, len));
	}
	render_body_free(body);
	assert_int_equal(budget_used(&b), 0);
	viewjson_free(vj);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_json_document),
		cmocka_unit_test(test_json_outcomes_without_peers),
		cmocka_unit_test(test_json_same_bytes_reuse_the_body),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
