/* SPDX-License-Identifier: MIT */
/*
 * The cluster view's exact bytes: render_plan() decides the lines (self detection, the
 * self line for a pod DNS does not list yet, unresolved peers), the answers lines share,
 * and render_text() and render_dns_error() produce the text the server sends, head
 * included, charged to the memory budget; bodies are reference-counted and the latest of
 * each kind is found again on a shelf while it is held.
 */
#include <pthread.h>
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
#include "discovery/internal.h"

#define SUFFIX ".kubia.default.svc.cluster.local"

static struct srv_peer *add_peer(struct srv_answer *a, const char *name, uint16_t port, int family)
{
	struct srv_peer *p;
	struct srv_peer *np = realloc(a->peers, (a->npeers + 1) * sizeof(*np));

	assert_non_null(np);
	a->peers = np;
	p = &a->peers[a->npeers++];
	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "%s", name);
	p->port = port;
	p->family = family;
	if (family == AF_INET) {
		p->addr[0] = 10;
		p->addr[3] = (unsigned char)a->npeers;
	}
	return p;
}

static void set_all(struct render_line *lines, size_t n, const char *const *data, size_t ndata)
{
	assert_int_equal(n, ndata);
	for (size_t i = 0; i < n && i < ndata; i++) {
		if (!lines[i].done) {
			assert_true(render_line_set(&lines[i], data[i], strlen(data[i])));
		}
	}
}

/* The head of every text view these tests render. */
#define HEAD "You've hit kubia-0\nData stored in the cluster:\n"

/* Renders the lines after HEAD, charged to a budget that has exactly room for them;
 * returns the body (free with render_body_free()). */
static char *render_checked(const struct render_line *lines, size_t n, size_t *len)
{
	char head[RENDER_HEAD_MAX];
	size_t headlen = render_head("kubia-0", head);
	size_t want = headlen + render_text_len(lines, n);
	struct budget b;
	char *body;

	assert_int_equal(headlen, strlen(HEAD));
	assert_memory_equal(head, HEAD, headlen);
	/* One byte short: refused, nothing held. */
	budget_init(&b, want);
	assert_null(render_text(head, headlen, lines, n, &b, len));
	assert_int_equal(budget_used(&b), 0);
	budget_init(&b, want + 1);
	body = render_text(head, headlen, lines, n, &b, len);
	assert_non_null(body);
	assert_int_equal(*len, want);
	assert_int_equal(budget_used(&b), want + 1);
	assert_memory_equal(body, HEAD, headlen);
	assert_int_equal(body[*len], '\0');
	render_body_free(body);
	assert_int_equal(budget_used(&b), 0);
	/* The same bytes again, for the caller, without a budget. */
	return render_text(head, headlen, lines, n, NULL, len);
}

static void expect_render(const struct render_line *lines, size_t n, const char *want)
{
	size_t len = 0;
	char *body = render_checked(lines, n, &len);

	assert_non_null(body);
	assert_int_equal(len, strlen(HEAD) + strlen(want));
	assert_memory_equal(body + strlen(HEAD), want, len - strlen(HEAD));
	render_body_free(body);
}

static void test_normal(void **state)
{
	struct srv_answer a = {0};
	struct render_line *lines;
	size_t n;
	static const char *const data[] = {"Data of kubia-0", "local data", "kubia-2's"};

	(void)state;
	add_peer(&a, "kubia-0" SUFFIX, 8080, AF_INET);
	add_peer(&a, "kubia-1" SUFFIX, 8080, AF_INET);
	add_peer(&a, "kubia-2" SUFFIX, 9090, AF_INET);
	assert_int_equal(render_plan(&a, "kubia-1", 0, &lines, &n), 0);
	assert_int_equal(n, 3);
	assert_false(lines[0].self);
	assert_true(lines[1].self);
	assert_false(lines[2].self);
	assert_int_equal(lines[0].port, 8080);
	assert_int_equal(lines[2].port, 9090);
	assert_int_equal(lines[2].family, AF_INET);
	assert_int_equal(lines[2].addr[3], 3);
	assert_false(lines[0].done);
	set_all(lines, n, data, sizeof(data) / sizeof(data[0]));
	expect_render(lines, n,
		      "- kubia-0" SUFFIX ": Data of kubia-0\n"
		      "- kubia-1" SUFFIX ": local data\n"
		      "- kubia-2" SUFFIX ": kubia-2's\n");
	render_lines_free(lines, n);
	srv_answer_free(&a);
}

static void test_peer_port_override(void **state)
{
	struct srv_answer a = {0};
	struct render_line *lines;
	size_t n;

	(void)state;
	add_peer(&a, "kubia-0" SUFFIX, 80, AF_INET);
	assert_int_equal(render_plan(&a, "kubia-0", 8080, &lines, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(lines[0].port, 8080);
	render_lines_free(lines, n);
	srv_answer_free(&a);
}

static void test_self_missing(void **state)
{
	struct srv_answer a = {0};
	struct render_line *lines;
	size_t n;
	static const char *const data[] = {"zero", "me", "ten"};

	(void)state;
	add_peer(&a, "kubia-0" SUFFIX, 8080, AF_INET);
	add_peer(&a, "kubia-10" SUFFIX, 8080, AF_INET);
	assert_int_equal(render_plan(&a, "kubia-2", 0, &lines, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(lines[1].name, "kubia-2" SUFFIX);
	assert_true(lines[1].self);
	assert_false(lines[0].self);
	assert_false(lines[2].self);
	set_all(lines, n, data, sizeof(data) / sizeof(data[0]));
	expect_render(lines, n,
		      "- kubia-0" SUFFIX ": zero\n"
		      "- kubia-2" SUFFIX ": me\n"
		      "- kubia-10" SUFFIX ": ten\n");
	render_lines_free(lines, n);

	/* First and last positions; self name matching is case-insensitive. */
	assert_int_equal(render_plan(&a, "a", 0, &lines, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(lines[0].name, "a" SUFFIX);
	render_lines_free(lines, n);
	assert_int_equal(render_plan(&a, "kubia-11", 0, &lines, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(lines[2].name, "kubia-11" SUFFIX);
	render_lines_free(lines, n);
	assert_int_equal(render_plan(&a, "KUBIA-10", 0, &lines, &n), 0);
	assert_int_equal(n, 2);
	assert_true(lines[1].self);
	render_lines_free(lines, n);
	srv_answer_free(&a);
}

static void test_self_missing_single_label(void **state)
{
	struct srv_answer a = {0};
	struct render_line *lines;
	size_t n;

	(void)state;
	add_peer(&a, "peer", 8080, AF_INET);
	assert_int_equal(render_plan(&a, "me.example", 0, &lines, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(lines[0].name, "me");
	assert_string_equal(lines[1].name, "peer");
	render_lines_free(lines, n);
	srv_answer_free(&a);
}

static void test_only_self(void **state)
{
	struct srv_answer a = {0};
	struct render_line *lines;
	size_t n;
	static const char *const data[] = {"No data posted yet"};

	(void)state;
	/* Our own record needs no address: it is never asked over the network. */
	add_peer(&a, "kubia-0" SUFFIX, 8080, 0);
	assert_int_equal(render_plan(&a, "kubia-0", 0, &lines, &n), 0);
	assert_int_equal(n, 1);
	assert_true(lines[0].self);
	assert_false(lines[0].done);
	set_all(lines, n, data, sizeof(data) / sizeof(data[0]));
	expect_render(lines, n, "- kubia-0" SUFFIX ": No data posted yet\n");
	render_lines_free(lines, n);
	srv_answer_free(&a);
}

static void test_errors(void **state)
{
	struct srv_answer a = {0};
	struct render_line *lines;
	size_t n;
	struct srv_peer *p;

	(void)state;
	add_peer(&a, "kubia-0" SUFFIX, 8080, AF_INET);
	p = add_peer(&a, "kubia-1" SUFFIX, 8080, 0);
	snprintf(p->err, sizeof(p->err), "no such name (NXDOMAIN)");
	add_peer(&a, "kubia-2" SUFFIX, 8080, 0);
	add_peer(&a, "kubia-3" SUFFIX, 8080, AF_INET);
	assert_int_equal(render_plan(&a, "kubia-0", 0, &lines, &n), 0);
	assert_int_equal(n, 4);
	assert_true(lines[1].done);
	assert_true(lines[2].done);
	assert_true(render_line_set(&lines[0], "mine", 4));
	assert_true(render_line_error(&lines[3], "HTTP %d", 500));
	expect_render(lines, n,
		      "- kubia-0" SUFFIX ": mine\n"
		      "- kubia-1" SUFFIX ": Error: could not resolve kubia-1" SUFFIX
		      ": no such name (NXDOMAIN)\n"
		      "- kubia-2" SUFFIX ": Error: could not resolve kubia-2" SUFFIX
		      ": no address\n"
		      "- kubia-3" SUFFIX ": Error: HTTP 500\n");
	/* A line whose text could not be stored says so rather than vanishing. */
	render_line_share(&lines[3], NULL);
	assert_true(lines[3].done);
	expect_render(&lines[3], 1, "- kubia-3" SUFFIX ": Error: out of memory\n");
	render_lines_free(lines, n);
	srv_answer_free(&a);
}

static void test_no_peers(void **state)
{
	struct srv_answer a = {0};
	struct render_line *lines = (struct render_line *)&a;
	size_t n = 99;

	(void)state;
	assert_int_equal(render_plan(&a, "kubia-0", 0, &lines, &n), 0);
	assert_null(lines);
	assert_int_equal(n, 0);
	expect_render(NULL, 0, "No peers discovered.\n");
}

static void test_verbatim_data(void **state)
{
	struct srv_answer a = {0};
	struct render_line *lines;
	size_t n;
	static const char bin[] = {'a', '\0', 'b'};

	(void)state;
	add_peer(&a, "kubia-0" SUFFIX, 8080, AF_INET);
	add_peer(&a, "kubia-1" SUFFIX, 8080, AF_INET);
	add_peer(&a, "kubia-2" SUFFIX, 8080, AF_INET);
	assert_int_equal(render_plan(&a, "kubia-0", 0, &lines, &n), 0);
	assert_true(render_line_set(&lines[0], "line one\nline two\n", 18));
	assert_true(render_line_set(&lines[1], "", 0));
	assert_true(render_line_set(&lines[2], bin, sizeof(bin)));
	{
		static const char want[] = "- kubia-0" SUFFIX ": line one\nline two\n\n"
					   "- kubia-1" SUFFIX ": \n"
					   "- kubia-2" SUFFIX ": a\0b\n";
		size_t len = 0;
		char *body = render_checked(lines, n, &len);

		assert_non_null(body);
		assert_int_equal(len, strlen(HEAD) + sizeof(want) - 1);
		assert_memory_equal(body + strlen(HEAD), want, sizeof(want) - 1);
		render_body_free(body);
	}
	render_lines_free(lines, n);
	srv_answer_free(&a);
}

static void test_dns_error(void **state)
{
	size_t len = 0;
	char *body = render_dns_error(HEAD, strlen(HEAD),
				      "kubia.default.svc.cluster.local: server failure (SERVFAIL)",
				      NULL, &len);
	static const char want[] =
		HEAD "Could not look up DNS SRV records: "
		     "kubia.default.svc.cluster.local: server failure (SERVFAIL)\n";

	(void)state;
	assert_non_null(body);
	assert_int_equal(len, strlen(want));
	assert_memory_equal(body, want, len);
	render_body_free(body);
}

static void test_long_error_text(void **state)
{
	struct render_line l;
	char big[4000];

	(void)state;
	memset(&l, 0, sizeof(l));
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_true(render_line_error(&l, "%s", big));
	assert_true(l.done);
	assert_int_equal(l.ans->len, 1023);
	assert_int_equal(l.ans->len, strlen(l.ans->data));
	assert_memory_equal(l.ans->data, "Error: xxx", 10);
	render_answer_unref(l.ans);
}

/* Two views asking the same peers: one answer per peer serves both views' lines, each
 * render copies it, and the answer lives exactly as long as its last line. */
static void test_shared_answer(void **state)
{
	struct srv_answer a = {0};
	struct render_line *v1;
	struct render_line *v2;
	size_t n1;
	size_t n2;
	struct render_answer *one;
	struct render_answer *err;
	char *body = malloc(7);
	static const char want[] = "- kubia-0" SUFFIX ": mine\n"
				   "- kubia-1" SUFFIX ": one\ntwo\n"
				   "- kubia-2" SUFFIX ": Error: HTTP 503\n";

	(void)state;
	assert_non_null(body);
	memcpy(body, "one\ntwo", 7);
	add_peer(&a, "kubia-0" SUFFIX, 8080, AF_INET);
	add_peer(&a, "kubia-1" SUFFIX, 8080, AF_INET);
	add_peer(&a, "kubia-2" SUFFIX, 8080, AF_INET);
	assert_int_equal(render_plan(&a, "kubia-0", 0, &v1, &n1), 0);
	assert_int_equal(render_plan(&a, "kubia-0", 0, &v2, &n2), 0);
	/* The body is adopted as it is, not copied (and needs no terminating NUL). */
	one = render_answer_take(body, 7);
	assert_non_null(one);
	assert_ptr_equal(one->data, body);
	err = render_answer_error("HTTP %d", 503);
	assert_non_null(err);
	assert_int_equal(one->refs, 1);
	render_line_share(&v1[1], one);
	render_line_share(&v2[1], one);
	render_line_share(&v1[2], err);
	render_line_share(&v2[2], err);
	assert_int_equal(one->refs, 3);
	assert_int_equal(err->refs, 3);
	assert_ptr_equal(v1[1].ans, v2[1].ans);
	assert_ptr_equal(v1[1].ans->data, body);
	assert_true(v1[1].done && v2[2].done);
	/* The fetch lets go: the lines hold it now. */
	render_answer_unref(one);
	render_answer_unref(err);
	assert_true(render_line_set(&v1[0], "mine", 4));
	assert_true(render_line_set(&v2[0], "mine", 4));
	expect_render(v1, n1, want);
	expect_render(v2, n2, want);
	/* The first view is gone; the second still shows the same bytes. */
	render_lines_free(v1, n1);
	assert_int_equal(v2[1].ans->refs, 1);
	expect_render(v2, n2, want);
	/* A line given another answer drops its reference to the old one. */
	one = render_answer_copy("two", 3);
	assert_non_null(one);
	render_line_share(&v2[1], one);
	render_answer_unref(one);
	assert_int_equal(v2[1].ans->refs, 1);
	assert_memory_equal(v2[1].ans->data, "two", 4);
	render_lines_free(v2, n2);
	srv_answer_free(&a);
}

static void test_answer_texts(void **state)
{
	struct render_answer *a = render_answer_copy("", 0);

	(void)state;
	/* An empty body is an answer with its bytes, not "out of memory". */
	assert_non_null(a);
	assert_int_equal(a->len, 0);
	assert_non_null(a->data);
	assert_int_equal(a->data[0], '\0');
	render_answer_unref(a);
	a = render_answer_take(NULL, 0);
	assert_non_null(a);
	assert_int_equal(a->len, 0);
	render_answer_unref(a);
	a = render_answer_error("%s after %d ms", "timed out", 20);
	assert_non_null(a);
	assert_int_equal(a->len, strlen("Error: timed out after 20 ms"));
	assert_string_equal(a->data, "Error: timed out after 20 ms");
	render_answer_unref(a);
	/* A reason quoting bytes of a peer stays one line of printable ASCII. */
	a = render_answer_error("bad status line %s", "HTTP/1.1 200 \xff\xfe\r\nX\t\x7f");
	assert_non_null(a);
	assert_string_equal(a->data, "Error: bad status line HTTP/1.1 200 ????X??");
	render_answer_unref(a);
	render_answer_unref(NULL);
}

/* The longest host name with the longest target: this pod's line still has its name
 * (found by fuzz_render: the name did not fit, and the view failed as if out of
 * memory). */
static void test_self_missing_longest_names(void **state)
{
	struct srv_answer a = {0};
	struct render_line *lines;
	size_t n;
	char host[DISCOVERY_HOSTNAME_MAX + 1];
	char peer[SRV_NAME_MAX];
	char want[LINE_NAME_MAX];

	(void)state;
	memset(host, 'h', sizeof(host) - 1);
	host[sizeof(host) - 1] = '\0';
	memset(peer, 'p', sizeof(peer) - 1);
	peer[1] = '.';
	peer[sizeof(peer) - 1] = '\0';
	add_peer(&a, peer, 8080, AF_INET);
	assert_int_equal(render_plan(&a, host, 0, &lines, &n), 0);
	assert_int_equal(n, 2);
	snprintf(want, sizeof(want), "%s%s", host, peer + 1);
	assert_string_equal(lines[0].name, want);
	assert_true(lines[0].self);
	assert_string_equal(lines[1].name, peer);
	render_lines_free(lines, n);
	srv_answer_free(&a);
}

/* A body is freed, and its charge given back, with its last reference only. */
static void test_body_references(void **state)
{
	struct budget b;
	char *body;

	(void)state;
	budget_init(&b, 100);
	body = render_body_alloc(&b, 60);
	assert_non_null(body);
	assert_int_equal(budget_used(&b), 60);
	/* A second body of the same size does not fit beside it. */
	assert_null(render_body_alloc(&b, 60));
	render_body_ref(body);
	render_body_ref(body);
	render_body_free(body);
	render_body_free(body);
	assert_int_equal(budget_used(&b), 60);
	render_body_free(body);
	assert_int_equal(budget_used(&b), 0);
	render_body_free(NULL);
}

/* Three done lines, the first two the given texts (same length: "b" and "B" differ in one
 * byte only). */
static void plan_three(struct render_line **lines, size_t *n, const char *one, const char *two)
{
	struct srv_answer a = {0};
	const char *data[] = {one, two, "own"};

	add_peer(&a, "kubia-1" SUFFIX, 8080, AF_INET);
	add_peer(&a, "kubia-2" SUFFIX, 8080, AF_INET);
	assert_int_equal(render_plan(&a, "kubia-0", 0, lines, n), 0);
	assert_int_equal(*n, 3);
	/* The self line is inserted first, in pod order. */
	data[0] = "own";
	data[1] = one;
	data[2] = two;
	set_all(*lines, *n, data, 3);
	srv_answer_free(&a);
}

/* render_text_same() says yes exactly when render_text() would make the same bytes. */
static void test_text_same(void **state)
{
	char head[RENDER_HEAD_MAX];
	size_t headlen = render_head("kubia-0", head);
	struct render_line *lines, *other;
	size_t n, m, len = 0;
	char *body;

	(void)state;
	plan_three(&lines, &n, "data b", "data 2");
	body = render_text(head, headlen, lines, n, NULL, &len);
	assert_non_null(body);
	assert_true(render_text_same(body, len, head, headlen, lines, n));
	/* One byte of one answer differs, the length is the same. */
	plan_three(&other, &m, "data B", "data 2");
	assert_false(render_text_same(body, len, head, headlen, other, m));
	render_lines_free(other, m);
	/* The last byte differs. */
	plan_three(&other, &m, "data b", "data 3");
	assert_false(render_text_same(body, len, head, headlen, other, m));
	render_lines_free(other, m);
	/* Another length. */
	plan_three(&other, &m, "data b", "data 22");
	assert_false(render_text_same(body, len, head, headlen, other, m));
	render_lines_free(other, m);
	/* Equal answers made apart (other objects, same bytes) are the same view. */
	plan_three(&other, &m, "data b", "data 2");
	assert_true(render_text_same(body, len, head, headlen, other, m));
	render_lines_free(other, m);
	/* Another head, and no body at all. */
	{
		char head2[RENDER_HEAD_MAX];
		size_t head2len = render_head("kubia-9", head2);

		assert_false(render_text_same(body, len, head2, head2len, lines, n));
	}
	assert_false(render_text_same(NULL, 0, head, headlen, lines, n));
	render_body_free(body);
	/* No peers: the text that says so. */
	body = render_text(head, headlen, NULL, 0, NULL, &len);
	assert_true(render_text_same(body, len, head, headlen, NULL, 0));
	assert_false(render_text_same(body, len, head, headlen, lines, n));
	render_body_free(body);
	render_lines_free(lines, n);
}

/* The shelf hands out the latest body of each kind while someone holds it, and forgets it
 * when the last reference goes; bodies may outlive the shelf's owner. */
static void test_recent_shelf(void **state)
{
	struct render_recent *rc = render_recent_new();
	struct budget b;
	char *text, *json, *got, *newer;
	size_t len = 0;

	(void)state;
	assert_non_null(rc);
	budget_init(&b, 1000);
	assert_null(render_recent_get(rc, 0, &len));
	text = render_body_alloc(&b, 10);
	json = render_body_alloc(&b, 20);
	assert_true(render_recent_put(rc, 0, text, 9));
	assert_true(render_recent_put(rc, 1, json, 19));
	/* A body on a shelf is not put again: it is a shared one. */
	assert_false(render_recent_put(rc, 0, text, 9));
	assert_false(render_recent_put(rc, 1, text, 9));
	assert_false(render_recent_put(rc, 0, NULL, 0));
	/* No such kind. */
	assert_null(render_recent_get(rc, RENDER_KINDS, &len));
	got = render_recent_get(rc, 0, &len);
	assert_ptr_equal(got, text);
	assert_int_equal(len, 9);
	got = render_recent_get(rc, 1, &len);
	assert_ptr_equal(got, json);
	assert_int_equal(len, 19);
	/* The shelf's hand-outs are references: two frees each before the bytes go. */
	render_body_free(text);
	render_body_free(json);
	assert_int_equal(budget_used(&b), 30);
	/* A newer body of a kind replaces the older on the shelf, not in its readers. */
	newer = render_body_alloc(&b, 5);
	assert_true(render_recent_put(rc, 0, newer, 4));
	got = render_recent_get(rc, 0, &len);
	assert_ptr_equal(got, newer);
	render_body_free(got);
	render_body_free(text);
	assert_int_equal(budget_used(&b), 25);
	/* The last reader gone, the shelf has nothing of that kind. */
	render_body_free(newer);
	assert_null(render_recent_get(rc, 0, &len));
	/* The owner lets go first; the body still holding it frees it (ASan checks). */
	render_recent_unref(rc);
	render_body_free(json);
	assert_int_equal(budget_used(&b), 0);
	/* Without a shelf nothing is kept and every body counts as made. */
	assert_null(render_recent_get(NULL, 0, &len));
	text = render_body_alloc(NULL, 3);
	assert_true(render_recent_put(NULL, 0, text, 2));
	render_body_free(text);
	render_recent_unref(NULL);
}

struct race {
	char *body;
	pthread_barrier_t go;
};

static void *free_racer(void *arg)
{
	struct race *r = arg;

	pthread_barrier_wait(&r->go);
	render_body_free(r->body);
	return NULL;
}

/* The last reference going on one thread while the loop looks the body up on another:
 * the lookup gets a live body (with its own reference) or none, never a freed one. */
static void test_recent_race(void **state)
{
	struct render_recent *rc = render_recent_new();
	struct budget b;
	unsigned got_it = 0;

	(void)state;
	assert_non_null(rc);
	budget_init(&b, 1 << 20);
	for (int i = 0; i < 2000; i++) {
		struct race r = {.body = render_body_alloc(&b, 64)};
		pthread_t t;
		size_t len = 0;
		char *got;

		assert_non_null(r.body);
		memset(r.body, 'x', 64);
		assert_true(render_recent_put(rc, 0, r.body, 64));
		assert_int_equal(pthread_barrier_init(&r.go, NULL, 2), 0);
		assert_int_equal(pthread_create(&t, NULL, free_racer, &r), 0);
		pthread_barrier_wait(&r.go);
		got = render_recent_get(rc, 0, &len);
		if (got != NULL) {
			got_it++;
			assert_int_equal(got[63], 'x');
			render_body_free(got);
		}
		pthread_join(t, NULL);
		pthread_barrier_destroy(&r.go);
		assert_int_equal(budget_used(&b), 0);
		assert_null(render_recent_get(rc, 0, &len));
	}
	print_message("the lookup won %u of 2000 races\n", got_it);
	render_recent_unref(rc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_normal),
		cmocka_unit_test(test_peer_port_override),
		cmocka_unit_test(test_self_missing),
		cmocka_unit_test(test_self_missing_single_label),
		cmocka_unit_test(test_self_missing_longest_names),
		cmocka_unit_test(test_only_self),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_no_peers),
		cmocka_unit_test(test_verbatim_data),
		cmocka_unit_test(test_dns_error),
		cmocka_unit_test(test_long_error_text),
		cmocka_unit_test(test_shared_answer),
		cmocka_unit_test(test_answer_texts),
		cmocka_unit_test(test_body_references),
		cmocka_unit_test(test_text_same),
		cmocka_unit_test(test_recent_shelf),
		cmocka_unit_test(test_recent_race),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
