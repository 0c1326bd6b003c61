/* SPDX-License-Identifier: MIT */
#include "common/parse.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

static void test_whole_numbers(void **state)
{
	uint64_t v = 7;

	(void)state;
	assert_true(parse_u64("0", &v));
	assert_int_equal(v, 0);
	assert_true(parse_u64("00042", &v));
	assert_int_equal(v, 42);
	assert_true(parse_u64("18446744073709551615", &v));
	assert_true(v == UINT64_MAX);
}

/* Anything but digits alone is refused, and *out is left as it was. */
static void test_refused(void **state)
{
	static const char *const bad[] = {
		"", "-1", "+1", " 1", "1 ", "1x", "0x10", "1.5", "18446744073709551616", "\t2",
	};
	uint64_t v = 7;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_false(parse_u64(bad[i], &v));
		assert_int_equal(v, 7);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_whole_numbers),
		cmocka_unit_test(test_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
