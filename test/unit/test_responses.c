/* SPDX-License-Identifier: MIT */
/* What server/responses.c makes without a connection: text responses and buffers
 * charged to the memory budget. Queuing needs libmicrohttpd's connections: the
 * integration tests (test_logs: each answer's length in the access log) cover it. */
#include <microhttpd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/budget.h"
#include "server/http_internal.h"

static void test_text_responses_are_plain_text(void **state)
{
	char *buf = malloc(3);
	struct MHD_Response *copied = response_text("ok\n", 3);
	struct MHD_Response *owned;

	(void)state;
	assert_non_null(buf);
	memcpy(buf, "hi\n", 3);
	owned = response_owned(buf, 3); /* buf is the response's now */
	assert_non_null(copied);
	assert_non_null(owned);
	assert_string_equal(MHD_get_response_header(copied, MHD_HTTP_HEADER_CONTENT_TYPE),
			    CONTENT_TYPE);
	assert_string_equal(MHD_get_response_header(owned, MHD_HTTP_HEADER_CONTENT_TYPE),
			    CONTENT_TYPE);
	MHD_destroy_response(copied);
	MHD_destroy_response(owned);
}

/* A charged buffer holds its size of the budget until it is given back, and one that
 * does not fit is refused with nothing taken. */
static void test_charged_buffers_hold_the_budget(void **state)
{
	struct budget b;
	char *one;
	char *two;

	(void)state;
	budget_init(&b, 1000);
	one = charged_alloc(&b, 600);
	assert_non_null(one);
	assert_int_equal(budget_used(&b), 600);
	memset(one, 'x', 600); /* all of it is usable */
	assert_null(charged_alloc(&b, 401));
	assert_int_equal(budget_used(&b), 600);
	two = charged_alloc(&b, 400);
	assert_non_null(two);
	assert_int_equal(budget_used(&b), 1000);
	charged_free(one);
	assert_int_equal(budget_used(&b), 400);
	charged_free(two);
	assert_int_equal(budget_used(&b), 0);
	charged_free(NULL);
	assert_int_equal(budget_used(&b), 0);
	assert_null(charged_alloc(&b, SIZE_MAX));
	assert_int_equal(budget_used(&b), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_text_responses_are_plain_text),
		cmocka_unit_test(test_charged_buffers_hold_the_budget),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
