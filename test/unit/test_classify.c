/* SPDX-License-Identifier: MIT */
/*
 * What a request is, from its method, path and headers (server/classify.c): the routes of
 * the contract, both modes, and every way a POST's declared length can go.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "server/classify.h"

#define MAX 1024

static enum classify_route route(const char *method, const char *path, const char *length,
				 bool expect, bool peers, uint64_t *want)
{
	const struct classify_request rq = {method, path, length, expect};
	enum classify_label label;

	return classify_request(&rq, peers, MAX, want, &label);
}

/* The metrics label of a request: its path alone, whatever the method and the mode. */
static enum classify_label label(const char *method, const char *path, bool peers)
{
	const struct classify_request rq = {method, path, NULL, false};
	enum classify_label l = CLASSIFY_NLABELS;
	uint64_t want;

	(void)classify_request(&rq, peers, MAX, &want, &l);
	return l;
}

static void test_labels(void **state)
{
	const char *methods[] = {"GET", "HEAD", "POST", "PUT", "get"};

	(void)state;
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		for (int peers = 0; peers < 2; peers++) {
			const char *m = methods[i];

			assert_int_equal(label(m, "/", peers), LABEL_ROOT);
			assert_int_equal(label(m, "/data", peers), LABEL_DATA);
			assert_int_equal(label(m, "/healthz", peers), LABEL_HEALTHZ);
			assert_int_equal(label(m, "/readyz", peers), LABEL_READYZ);
			assert_int_equal(label(m, "/metrics", peers), LABEL_METRICS);
			assert_int_equal(label(m, "/ui", peers), LABEL_UI);
			assert_int_equal(label(m, "/ui/", peers), LABEL_UI);
			assert_int_equal(label(m, "/ui//", peers), LABEL_OTHER);
			assert_int_equal(label(m, "/ui/data", peers), LABEL_OTHER);
			assert_int_equal(label(m, "/x", peers), LABEL_OTHER);
			assert_int_equal(label(m, "/data/", peers), LABEL_OTHER);
			assert_int_equal(label(m, "", peers), LABEL_OTHER);
		}
	}
	assert_string_equal(classify_label_name(LABEL_ROOT), "/");
	assert_string_equal(classify_label_name(LABEL_DATA), "/data");
	assert_string_equal(classify_label_name(LABEL_HEALTHZ), "/healthz");
	assert_string_equal(classify_label_name(LABEL_READYZ), "/readyz");
	assert_string_equal(classify_label_name(LABEL_METRICS), "/metrics");
	assert_string_equal(classify_label_name(LABEL_UI), "/ui");
	assert_string_equal(classify_label_name(LABEL_OTHER), "other");
	assert_string_equal(classify_label_name(CLASSIFY_NLABELS), "other");
}

static void test_get_and_head(void **state)
{
	uint64_t want = 1;
	const char *methods[] = {"GET", "HEAD"};

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		const char *m = methods[i];

		assert_int_equal(route(m, "/data", NULL, false, true, &want), ROUTE_DATA);
		assert_int_equal(want, 0);
		assert_int_equal(route(m, "/healthz", NULL, false, true, &want), ROUTE_HEALTHZ);
		assert_int_equal(route(m, "/readyz", NULL, false, false, &want), ROUTE_READYZ);
		assert_int_equal(route(m, "/metrics", NULL, false, true, &want), ROUTE_METRICS);
		assert_int_equal(route(m, "/metrics", NULL, false, false, &want), ROUTE_METRICS);
		assert_int_equal(route(m, "/metrics/", NULL, false, true, &want), ROUTE_CLUSTER);
		/* The page in peers mode, at both; pet mode has no cluster to draw. */
		assert_int_equal(route(m, "/ui", NULL, false, true, &want), ROUTE_UI);
		assert_int_equal(route(m, "/ui/", NULL, false, true, &want), ROUTE_UI);
		assert_int_equal(route(m, "/ui", NULL, false, false, &want), ROUTE_POD);
		assert_int_equal(route(m, "/ui/", NULL, false, false, &want), ROUTE_POD);
		assert_int_equal(route(m, "/UI", NULL, false, true, &want), ROUTE_CLUSTER);
		assert_int_equal(route(m, "/ui/x", NULL, false, true, &want), ROUTE_CLUSTER);
		assert_int_equal(route(m, "/uis", NULL, false, true, &want), ROUTE_CLUSTER);
		assert_int_equal(route(m, "/", NULL, false, true, &want), ROUTE_CLUSTER);
		assert_int_equal(route(m, "/", NULL, false, false, &want), ROUTE_POD);
		/* Only the exact paths are special: a proxy's prefix makes another path. */
		assert_int_equal(route(m, "/data/", "5", false, false, &want), ROUTE_POD);
		assert_int_equal(route(m, "/api/v1/namespaces/default/pods/kubia-0/proxy/data",
				       NULL, false, true, &want),
				 ROUTE_CLUSTER);
		assert_int_equal(route(m, "/DATA", NULL, false, true, &want), ROUTE_CLUSTER);
		assert_int_equal(route(m, "", NULL, false, false, &want), ROUTE_POD);
	}
}

static void test_other_methods(void **state)
{
	uint64_t want = 1;
	const char *methods[] = {"PUT", "DELETE", "OPTIONS", "get", "post", "POST ", "", "PATCH"};

	(void)state;
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		assert_int_equal(route(methods[i], "/data", "3", false, true, &want), ROUTE_METHOD);
		assert_int_equal(want, 0);
	}
}

static void test_post_lengths(void **state)
{
	uint64_t want = 7;

	(void)state;
	/* Any path stores, the probes' too. */
	assert_int_equal(route("POST", "/healthz", NULL, false, true, &want), ROUTE_STORE);
	assert_int_equal(want, 0);
	assert_int_equal(route("POST", "/", "0", false, true, &want), ROUTE_STORE);
	assert_int_equal(want, 0);
	assert_int_equal(route("POST", "/", "1024", true, true, &want), ROUTE_STORE);
	assert_int_equal(want, 1024);
	assert_int_equal(route("POST", "/", "0001024", false, false, &want), ROUTE_STORE);
	assert_int_equal(want, 1024);
	assert_int_equal(route("POST", "/", "1025", false, true, &want), ROUTE_TOO_LARGE_DRAIN);
	assert_int_equal(want, 1025);
	/* The client waits for 100 Continue: answered at once, never read. */
	assert_int_equal(route("POST", "/", "1025", true, true, &want), ROUTE_TOO_LARGE);
	assert_int_equal(route("POST", "/", "16778240", false, true, &want),
			 ROUTE_TOO_LARGE_DRAIN); /* MAX + the slack, 16 MiB */
	assert_int_equal(route("POST", "/", "16778241", false, true, &want), ROUTE_TOO_LARGE);
	assert_int_equal(route("POST", "/", "18446744073709551615", false, true, &want),
			 ROUTE_TOO_LARGE);
	assert_int_equal(want, UINT64_MAX);
	/* Past 64 bits: still a number, too large (found by fuzz_request: strict.c lets
	 * every all-digit length through). */
	assert_int_equal(route("POST", "/", "18446744073709551616", false, true, &want),
			 ROUTE_TOO_LARGE);
	assert_int_equal(want, UINT64_MAX);
	assert_int_equal(route("POST", "/", "000000000000000000000000001", false, true, &want),
			 ROUTE_STORE);
	assert_int_equal(want, 1);
}

static void test_post_bad_lengths(void **state)
{
	const char *bad[] = {"",
			     "-1",
			     "+1",
			     " 1",
			     "1 ",
			     "1a",
			     "0x10",
			     "1.0",
			     "1,2",
			     "١٢",
			     "99999999999999999999999x"};
	uint64_t want = 7;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(route("POST", "/", bad[i], false, true, &want), ROUTE_BAD_LENGTH);
		assert_int_equal(want, 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_labels),           cmocka_unit_test(test_get_and_head),
		cmocka_unit_test(test_other_methods),    cmocka_unit_test(test_post_lengths),
		cmocka_unit_test(test_post_bad_lengths),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
