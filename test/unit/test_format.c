/* SPDX-License-Identifier: MIT */
/* Unit tests of the cluster view's format: "?format=" and Accept's media ranges. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "server/http_internal.h"

struct accept_case {
	const char *accept;
	enum view_format want;
};

static void test_accept(void **state)
{
	static const struct accept_case cases[] = {
		/* no preference, or one for anything: the book's text */
		{NULL, VIEW_FORMAT_TEXT},
		{"", VIEW_FORMAT_TEXT},
		{"*/*", VIEW_FORMAT_TEXT},
		{"text/plain", VIEW_FORMAT_TEXT},
		{"image/png", VIEW_FORMAT_TEXT},
		/* JSON asked for, in any case, with spaces and parameters */
		{"application/json", VIEW_FORMAT_JSON},
		{"APPLICATION/Json", VIEW_FORMAT_JSON},
		{"  application/json ; charset=utf-8 ", VIEW_FORMAT_JSON},
		{"application/*", VIEW_FORMAT_JSON},
		{"text/html, application/xhtml+xml, application/json;q=0.9, */*;q=0.8",
		 VIEW_FORMAT_JSON},
		/* weights decide; a tie keeps the text */
		{"application/json, text/plain", VIEW_FORMAT_TEXT},
		{"application/json;q=1.0, text/plain;q=0.999", VIEW_FORMAT_JSON},
		{"application/json;q=0.5, text/plain", VIEW_FORMAT_TEXT},
		{"text/plain;q=0.2, application/json;Q=0.3", VIEW_FORMAT_JSON},
		{"application/json;q=0", VIEW_FORMAT_TEXT},
		{"application/json;q=0, */*", VIEW_FORMAT_TEXT},
		/* the most specific range that matches a type gives its weight */
		{"*/*;q=0.1, application/json", VIEW_FORMAT_JSON},
		{"application/*;q=0.1, */*;q=0.5", VIEW_FORMAT_TEXT},
		{"text/*;q=0.1, */*;q=0.5", VIEW_FORMAT_JSON},
		{"text/plain;q=0.1, text/*;q=0.9, application/json;q=0.5", VIEW_FORMAT_JSON},
		/* malformed ranges are ignored */
		{"application/json;q=2", VIEW_FORMAT_TEXT},
		{"application/json;q=0.5x", VIEW_FORMAT_TEXT},
		{"application/json;q=0.1234", VIEW_FORMAT_TEXT},
		{"*/json", VIEW_FORMAT_TEXT},
		{"json", VIEW_FORMAT_TEXT},
		{"application/", VIEW_FORMAT_TEXT},
		{",,, application/json ,", VIEW_FORMAT_JSON},
		{"application/jsonx, application/json-seq", VIEW_FORMAT_TEXT},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum view_format got = view_format_choose(NULL, cases[i].accept);

		if (got != cases[i].want) {
			print_error("Accept: %s gave %d, want %d\n",
				    cases[i].accept != NULL ? cases[i].accept : "(none)", (int)got,
				    (int)cases[i].want);
		}
		assert_int_equal(got, cases[i].want);
	}
}

static void test_format_parameter(void **state)
{
	(void)state;
	assert_int_equal(view_format_choose("json", NULL), VIEW_FORMAT_JSON);
	assert_int_equal(view_format_choose("text", "application/json"), VIEW_FORMAT_TEXT);
	assert_int_equal(view_format_choose("json", "text/plain"), VIEW_FORMAT_JSON);
	assert_int_equal(view_format_choose("", NULL), VIEW_FORMAT_BAD);
	assert_int_equal(view_format_choose("JSON", NULL), VIEW_FORMAT_BAD);
	assert_int_equal(view_format_choose("yaml", "application/json"), VIEW_FORMAT_BAD);
}

static void test_stream_is_asked_by_watch_or_by_accept(void **state)
{
	static const struct {
		const char *watch;
		const char *accept;
		bool stream;
	} cases[] = {
		{"1", NULL, true},
		{"1", "application/json", true},
		{"0", "text/event-stream", false},
		{"yes", NULL, false},
		{NULL, NULL, false},
		{NULL, "text/event-stream", true},
		{NULL, "text/event-stream;q=0.9, */*;q=0.1", true},
		{NULL, "*/*", false},
		{NULL, "text/*", false},
		{NULL, "text/event-stream, text/plain", false},
		{NULL, "text/event-stream, application/json", false},
		{NULL, "text/event-stream;q=0.5, application/json;q=0.4", true},
		{NULL, "application/json", false},
		{NULL, "text/plain", false},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (view_stream_choose(cases[i].watch, cases[i].accept) != cases[i].stream) {
			fail_msg("watch=%s Accept: %s: stream %d expected", cases[i].watch,
				 cases[i].accept, cases[i].stream);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stream_is_asked_by_watch_or_by_accept),
		cmocka_unit_test(test_accept),
		cmocka_unit_test(test_format_parameter),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
