/* SPDX-License-Identifier: MIT */
#include "common/monotonic.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

/* It never goes back, and it counts nanoseconds: a 20 ms sleep moves it by at least
 * that much and, on any machine that runs the tests, by less than a minute. */
static void test_advances_in_nanoseconds(void **state)
{
	const struct timespec nap = {0, 20 * 1000 * 1000};
	uint64_t t0;
	uint64_t t1;

	(void)state;
	t0 = monotonic_ns();
	assert_true(monotonic_ns() >= t0);
	assert_int_equal(nanosleep(&nap, NULL), 0);
	t1 = monotonic_ns();
	assert_true(t1 - t0 >= 20 * 1000 * 1000ULL);
	assert_true(t1 - t0 < 60 * 1000 * 1000 * 1000ULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_advances_in_nanoseconds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
