/* SPDX-License-Identifier: MIT */
/*
 * The pure rules of the SRV lookup, without a DNS server: the names asked for a service
 * (the resolver's search list and ndots rule) and the parser of --dns-server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <sys/socket.h>

#include "discovery/internal.h"

static const char *const cluster[] = {"default.svc.cluster.local", "svc.cluster.local",
				      "cluster.local"};

/* Builds the names for service and compares them with the expected list. */
static void expect_names(const char *service, const char *const *domains, size_t nd, unsigned ndots,
			 const char *const *want, size_t nwant)
{
	char **names = NULL;
	size_t n = 0;

	assert_int_equal(names_build(service, domains, nd, ndots, &names, &n), 0);
	if (n != nwant) {
		print_error("%s: %zu names, expected %zu\n", service, n, nwant);
	}
	assert_int_equal(n, nwant);
	for (size_t i = 0; i < n; i++) {
		assert_string_equal(names[i], want[i]);
	}
	names_free(names, n);
}

static void test_short_name_walks_the_search_list_only(void **state)
{
	const char *const want[] = {"kubia.default.svc.cluster.local", "kubia.svc.cluster.local",
				    "kubia.cluster.local"};

	(void)state;
	expect_names("kubia", cluster, 3, 5, want, 3);
	/* ndots 1: still no dot in the name, so still the search list only. */
	expect_names("kubia", cluster, 3, 1, want, 3);
}

static void test_dotted_name_below_ndots_searches_first(void **state)
{
	const char *const want[] = {"_http._tcp.kubia.default.svc.cluster.local",
				    "_http._tcp.kubia.svc.cluster.local",
				    "_http._tcp.kubia.cluster.local", "_http._tcp.kubia"};

	(void)state;
	expect_names("_http._tcp.kubia", cluster, 3, 5, want, 4);
}

static void test_name_with_ndots_dots_is_asked_as_given_first(void **state)
{
	const char *const want5[] = {"a.b.c.d.e.f", "a.b.c.d.e.f.default.svc.cluster.local",
				     "a.b.c.d.e.f.svc.cluster.local", "a.b.c.d.e.f.cluster.local"};
	const char *const want1[] = {
		"_http._tcp.kubia", "_http._tcp.kubia.default.svc.cluster.local",
		"_http._tcp.kubia.svc.cluster.local", "_http._tcp.kubia.cluster.local"};

	(void)state;
	expect_names("a.b.c.d.e.f", cluster, 3, 5, want5, 4);
	expect_names("_http._tcp.kubia", cluster, 3, 1, want1, 4);
}

static void test_trailing_dot_is_used_as_given(void **state)
{
	const char *const want[] = {"kubia.default.svc.cluster.local"};
	const char *const want_root[] = {"kubia"};

	(void)state;
	expect_names("kubia.default.svc.cluster.local.", cluster, 3, 5, want, 1);
	expect_names("kubia.", cluster, 3, 5, want_root, 1);
}

static void test_no_search_list_asks_the_name_itself(void **state)
{
	const char *const want[] = {"kubia"};
	const char *const empty[] = {"", ".", NULL};

	(void)state;
	expect_names("kubia", NULL, 0, 5, want, 1);
	/* Empty domains are no domains at all. */
	expect_names("kubia", empty, 3, 5, want, 1);
}

static void test_domains_with_trailing_dots(void **state)
{
	const char *const d[] = {"ns.svc.cluster.local."};
	const char *const want[] = {"kubia.ns.svc.cluster.local"};

	(void)state;
	expect_names("kubia", d, 1, 5, want, 1);
}

/* ---- --dns-server ---------------------------------------------------------------- */

static void expect_server(const char *text, int family, const char *addr, unsigned port)
{
	struct discovery_dns_server s;
	unsigned char want[16];
	char err[160] = "";

	if (!discovery_parse_dns_server(text, &s, err, sizeof(err))) {
		print_error("%s: %s\n", text, err);
		fail();
	}
	assert_int_equal(s.family, family);
	assert_int_equal(inet_pton(family, addr, want), 1);
	assert_memory_equal(s.addr, want, family == AF_INET ? 4 : 16);
	assert_int_equal(s.port, port);
}

static void expect_refused(const char *text, const char *why)
{
	struct discovery_dns_server s;
	char err[160] = "";

	assert_false(discovery_parse_dns_server(text, &s, err, sizeof(err)));
	if (strstr(err, why) == NULL) {
		print_error("%s: '%s' does not say '%s'\n", text, err, why);
		fail();
	}
}

static void test_dns_server_forms(void **state)
{
	(void)state;
	expect_server("10.96.0.10", AF_INET, "10.96.0.10", 53);
	expect_server("127.0.0.1:5353", AF_INET, "127.0.0.1", 5353);
	expect_server("fd00::a", AF_INET6, "fd00::a", 53);
	expect_server("::1", AF_INET6, "::1", 53);
	expect_server("[fd00::a]", AF_INET6, "fd00::a", 53);
	expect_server("[::1]:65535", AF_INET6, "::1", 65535);
}

static void test_dns_server_refusals(void **state)
{
	(void)state;
	expect_refused("", "expected IP[:port]");
	expect_refused("[::1", "expected IP[:port]");
	expect_refused("[::1]x", "expected IP[:port]");
	expect_refused("[]:53", "expected IP[:port]");
	expect_refused(":53", "expected IP[:port]");
	/* Host names are refused here, where the process starts, with the reason. */
	expect_refused("kube-dns.kube-system", "not an IPv4 or IPv6 address");
	expect_refused("localhost:53", "not an IPv4 or IPv6 address");
	expect_refused("10.0.0.1:0", "port '0'");
	expect_refused("10.0.0.1:65536", "port '65536'");
	expect_refused("10.0.0.1:", "port ''");
	/* What the text holds is repeated on one line, whatever it holds (found by
	 * fuzz_config). */
	expect_refused("10.0.0.1:5\n", "port '5?'");
	expect_refused("\x01\x1b[2J", "'??[2J' is not");
	expect_refused("10.0.0.1:5x", "port '5x'");
	expect_refused("10.0.0.1:+53", "port '+53'");
	expect_refused("[::1]:123456", "port '123456'");
	expect_refused("300.1.1.1", "not an IPv4 or IPv6 address");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_short_name_walks_the_search_list_only),
		cmocka_unit_test(test_dotted_name_below_ndots_searches_first),
		cmocka_unit_test(test_name_with_ndots_dots_is_asked_as_given_first),
		cmocka_unit_test(test_trailing_dot_is_used_as_given),
		cmocka_unit_test(test_no_search_list_asks_the_name_itself),
		cmocka_unit_test(test_domains_with_trailing_dots),
		cmocka_unit_test(test_dns_server_forms),
		cmocka_unit_test(test_dns_server_refusals),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
