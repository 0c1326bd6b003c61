/* SPDX-License-Identifier: MIT */
/*
 * The missing pods of a view (missing_add(): which ordinals, their names, their text,
 * which names take part), without a network.
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
 * text (free with render_body_free()); *added gets missing_add()'s result. */
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
	body = render_text("", 0, lines, n, NULL, &len);
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
	render_body_free(body);
}

/* Only the count of missing lines the view added, for views whose text is not the
 * point. */
static void expect_added(const char *const *names, size_t count, const char *hostname,
			 unsigned replicas, size_t limit, int want_added)
{
	int added = -2;

	render_body_free(view_of(names, count, hostname, replicas, limit, &added));
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gap),
		cmocka_unit_test(test_gaps_from_zero_and_own_ordinal_above),
		cmocka_unit_test(test_replicas_tail),
		cmocka_unit_test(test_limit),
		cmocka_unit_test(test_names_that_take_no_part),
		cmocka_unit_test(test_missing_lines_are_marked),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
