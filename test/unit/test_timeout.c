/* SPDX-License-Identifier: MIT */
#include "common/timeout.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

static void test_connect_within_total(void **state)
{
	(void)state;
	assert_int_equal(timeout_connect_ms(1000, 2000), 1000);
	assert_int_equal(timeout_connect_ms(2000, 2000), 2000);
}

static void test_connect_clamped_to_total(void **state)
{
	(void)state;
	assert_int_equal(timeout_connect_ms(5000, 2000), 2000);
	assert_int_equal(timeout_connect_ms(0, 2000), 2000); /* not set */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_connect_within_total),
		cmocka_unit_test(test_connect_clamped_to_total),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
