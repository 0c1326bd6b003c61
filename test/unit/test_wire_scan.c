/* SPDX-License-Identifier: MIT */
/*
 * The scanner beside libmicrohttpd (server/wire_scan.c): what it lets through (requests
 * of every framing, pipelined, cut anywhere), what it refuses (each class of
 * docs/contract.md's refusals before the library reads them), and where: the bytes of
 * the requests before a faulty one still go to the library, none of the faulty one's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "server/http_internal.h"

#define GET "GET /data HTTP/1.1\r\nHost: kubia\r\n\r\n"
#define POST_CL "POST / HTTP/1.1\r\nHost: kubia\r\nContent-Length: 8\r\n\r\nsentinel"
/* A stream and its length (some hold NULs). */
#define RAW(s) s, sizeof(s) - 1
#define POST_TE "POST / HTTP/1.1\r\nHost: kubia\r\nTransfer-Encoding: chunked\r\n\r\n"

/* Requests the scanner must let through whole, and how many each stream holds. */
static const struct {
	const char *raw;
	size_t len;
	unsigned requests;
} good[] = {
	{RAW(GET), 1},
	{RAW(GET GET GET), 3},
	{RAW("\r\n\r\n" GET), 1},
	{RAW("GET /data HTTP/1.1\nHost: kubia\n\n"), 1}, /* bare LF: RFC 9112 2.2 allows */
	{RAW(POST_CL GET), 2},
	{RAW("POST / HTTP/1.1\r\nContent-Length:\t0\r\n\r\n" GET), 2},
	{RAW("POST / HTTP/1.1\r\ncontent-LENGTH: 0008\r\n\r\n12345678" GET), 2},
	{RAW(POST_TE "8\r\nsentinel\r\n0\r\n\r\n" GET), 2},
	{RAW(POST_TE "8;a=b;c=\"q;\\\"x\"\r\nsentinel\r\n0;end\r\nX-Trailer: 1\r\n\r\n"), 1},
	{RAW(POST_TE "8 ;a\r\nsentinel\r\nA\r\n0123456789\r\n0\r\n\r\n"), 1},
	{RAW("POST / HTTP/1.1\r\nTransfer-Encoding:  Chunked \r\n\r\n0\r\n\r\n" GET), 2},
	{RAW("GET /data HTTP/1.1\r\nX-Note: caf\xc3\xa9\t \r\n\r\n"), 1},
	{RAW("GET /d%00 HTTP/9.9\r\n\r\n"), 1}, /* versions are the library's to refuse */
	{RAW("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n\0\r\n" GET), 2},
};

/* Streams with a fault, and how many whole requests come before it. */
static const struct {
	const char *raw;
	size_t len;
	unsigned before;
	const char *why; /* a word of the reason */
} bad[] = {
	{RAW("GET /data HTTP/1.1\r\nHost: kubia\r\n: x\r\n" GET), 0, "without a name"},
	{RAW("POST / HTTP/1.1\r\n: x\r\nContent-Length: 8\r\n\r\nsentinel"), 0, "without a name"},
	{RAW("POST / HTTP/1.1\r\nContent-Length: 3\0"
	     "5\r\n\r\nabcde"),
	 0, "control byte"},
	{RAW(POST_TE "x\r\n"), 0, "without a size"},
	{RAW("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\0, gzip\r\n\r\n"), 0, "control byte"},
	{RAW(GET "GET /da\0ta HTTP/1.1\r\n\r\n"), 1, "target"},
	{RAW(POST_TE "8;n=\"a\nb\"\r\nsentinel\r\n0\r\n\r\n"), 0, "chunk extension"},
	{RAW(POST_TE "8;n=a\nb\r\nsentinel\r\n0\r\n\r\n"), 0, "not tokens"},
	{RAW("POST / HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\nabcd"), 0, "not a number"},
	{RAW("POST / HTTP/1.1\r\nContent-Length: 3,3\r\n\r\nabc"), 0, "not a number"},
	{RAW("POST / HTTP/1.1\r\nContent-Length: 3\t\r\n\r\nabc"), 0, "whitespace"},
	{RAW("POST / HTTP/1.1\r\nContent-Length: 3\r4\r\n\r\nabc"), 0, "CR without LF"},
	{RAW("POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc"), 0, "not a number"},
	{RAW("POST / HTTP/1.1\r\nContent-Length: \r\n\r\n"), 0, "empty"},
	{RAW("POST / HTTP/1.1\r\nContent-Length: 9999999999999999999\r\n\r\n"), 0, "too large"},
	{RAW("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"), 0, "two"},
	{RAW(POST_TE "10000000000000008\r\nsentinel\r\n0\r\n\r\n"), 0, "overflows"},
	{RAW(POST_TE "8 8\r\nsentinel\r\n"), 0, "hexadecimal"},
	{RAW(POST_TE "\r\n"), 0, "without a size"},
	{RAW(POST_TE "8\r\nsentinel!!\r\n"), 0, "longer than its size"},
	{RAW(POST_TE "8\nsentinel\r\n0\r\n\r\n"), 0, "bare LF"},
	{RAW("GET /data HTTP/1.1\r\nX-Note: a\r\n b\r\n\r\n"), 0, "obs-fold"},
	{RAW("GET /data HTTP/1.1\r\nX: 1\r\n\tTransfer-Encoding: chunked\r\n\r\n"), 0, "obs-fold"},
	{RAW("GET /data HTTP/1.1\rHost: kubia\r\r"), 0, "CR without LF"},
	{RAW("GET /data HTTP/1.1\r\nX: a\rb\r\n\r\n"), 0, "CR without LF"},
	{RAW("GET /data HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n"), 0, "whitespace"},
	{RAW("GET /data HTTP/1.1\r\nX(y): 1\r\n\r\n"), 0, "not a token"},
	{RAW("GET\t/data\tHTTP/1.1\r\n\r\n"), 0, "not a token"},
	{RAW("GET  /data HTTP/1.1\r\n\r\n"), 0, "target"},
	{RAW(" /data HTTP/1.1\r\n\r\n"), 0, "method"},
	{RAW("GET /data HTTP/1.1 x\r\n\r\n"), 0, "HTTP/"},
	{RAW("GET /data http/1.1\r\n\r\n"), 0, "HTTP/"},
	{RAW("GET /\r\n"), 0, "target"},
	{RAW("\x16\x03\x01\x00"), 0, "method"},
	{RAW("\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n" GET), 0, "empty lines"},
	{RAW(POST_CL POST_CL "GET /data HTTP/1.1\r\nX: \x7f\r\n\r\n"), 2, "control byte"},
	{RAW(POST_TE "0\r\nX: \x01\r\n\r\n"), 0, "control byte"},
};

/* Scans raw in two calls, cut at cut. Returns the fault, if any, with the requests
 * ended before it. */
static const char *scan_cut(const char *raw, size_t len, size_t cut, unsigned *ended)
{
	struct wire_scan sc;
	const unsigned char *p = (const unsigned char *)raw;
	size_t parts[2] = {cut, len - cut};
	size_t at = 0;

	wire_scan_init(&sc);
	*ended = 0;
	for (int i = 0; i < 2; i++) {
		unsigned n = 0;
		size_t clean = 0;
		const char *why = wire_scan(&sc, p + at, parts[i], &clean, &n);

		*ended += n;
		if (why != NULL) {
			return why;
		}
		at += parts[i];
	}
	return NULL;
}

static void test_good_streams_pass_at_every_cut(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		size_t len = good[i].len;

		for (size_t cut = 0; cut <= len; cut++) {
			unsigned ended;
			const char *why = scan_cut(good[i].raw, len, cut, &ended);

			if (why != NULL || ended != good[i].requests) {
				fail_msg("good[%zu] cut at %zu: %s, %u requests", i, cut,
					 why != NULL ? why : "no fault", ended);
			}
		}
	}
}

static void test_bad_streams_refused_at_every_cut(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t len = bad[i].len;

		for (size_t cut = 0; cut <= len; cut++) {
			unsigned ended;
			const char *why = scan_cut(bad[i].raw, len, cut, &ended);

			if (why == NULL || strstr(why, bad[i].why) == NULL ||
			    ended != bad[i].before) {
				fail_msg(
					"bad[%zu] cut at %zu: %s (want \"%s\"), %u requests before",
					i, cut, why != NULL ? why : "passed", bad[i].why, ended);
			}
		}
	}
}

/* The bytes handed on before a fault are exactly the requests before it. */
static void test_clean_prefix_is_the_requests_before(void **state)
{
	const char raw[] = POST_CL GET "GET /data HTTP/1.1\r\n: x\r\n\r\n";
	struct wire_scan sc;
	size_t clean = 99;
	unsigned ended = 99;
	const char *why;

	(void)state;
	wire_scan_init(&sc);
	why = wire_scan(&sc, (const unsigned char *)raw, sizeof(raw) - 1, &clean, &ended);
	assert_non_null(why);
	assert_int_equal(clean, strlen(POST_CL GET));
	assert_int_equal(ended, 2);

	/* the faulty request began in an earlier call: nothing of this one is clean */
	wire_scan_init(&sc);
	assert_null(wire_scan(&sc, (const unsigned char *)"GET /data HTTP/1.1\r\n", 20, &clean,
			      &ended));
	assert_int_equal(clean, 20);
	assert_int_equal(ended, 0);
	assert_non_null(wire_scan(&sc, (const unsigned char *)": x\r\n\r\n", 7, &clean, &ended));
	assert_int_equal(clean, 0);
	assert_int_equal(ended, 0);
}

static void test_between_requests(void **state)
{
	struct wire_scan sc;
	size_t clean;
	unsigned ended;
	const char head[] = "POST / HTTP/1.1\r\nContent-Length: 8\r\n\r\n";

	(void)state;
	wire_scan_init(&sc);
	assert_true(wire_scan_between(&sc));
	assert_null(wire_scan(&sc, (const unsigned char *)head, sizeof(head) - 1, &clean, &ended));
	assert_false(wire_scan_between(&sc));
	assert_null(wire_scan(&sc, (const unsigned char *)"sentinel", 8, &clean, &ended));
	assert_int_equal(ended, 1);
	assert_true(wire_scan_between(&sc));
	assert_null(wire_scan(&sc, (const unsigned char *)"\r\n", 2, &clean, &ended));
	assert_true(wire_scan_between(&sc)); /* an empty line a client adds after a body */
	assert_null(wire_scan(&sc, (const unsigned char *)"G", 1, &clean, &ended));
	assert_false(wire_scan_between(&sc));
}

/* Framing kubia refuses (strict.c closes the connection) is not followed: what comes
 * after is never read as a request, so the scanner does not read it either. */
static void test_refused_framing_is_not_followed(void **state)
{
	const char *raw[] = {
		"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\nzz\r\n\1\1",
		"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\1",
		("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked"
		 "\r\n\r\n\1"),
	};

	(void)state;
	for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++) {
		struct wire_scan sc;
		size_t clean;
		unsigned ended;

		wire_scan_init(&sc);
		assert_null(wire_scan(&sc, (const unsigned char *)raw[i], strlen(raw[i]), &clean,
				      &ended));
		assert_int_equal(clean, strlen(raw[i]));
		assert_int_equal(ended, 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_streams_pass_at_every_cut),
		cmocka_unit_test(test_bad_streams_refused_at_every_cut),
		cmocka_unit_test(test_clean_prefix_is_the_requests_before),
		cmocka_unit_test(test_between_requests),
		cmocka_unit_test(test_refused_framing_is_not_followed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
