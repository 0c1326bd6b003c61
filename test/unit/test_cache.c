/* SPDX-License-Identifier: MIT */
/*
 * How long an SRV outcome may be reused (cache.c), with the clock passed in.
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

static struct srv_answer answer(size_t n, uint32_t ttl)
{
	struct srv_answer a;

	memset(&a, 0, sizeof(a));
	a.ttl = ttl;
	a.npeers = n;
	a.peers = n > 0 ? calloc(n, sizeof(*a.peers)) : NULL;
	for (size_t i = 0; i < n; i++) {
		snprintf(a.peers[i].name, sizeof(a.peers[i].name), "kubia-%zu.kubia", i);
		a.peers[i].family = AF_INET;
	}
	return a;
}

static void test_cache_life(void **state)
{
	struct srv_answer a = answer(2, 30);

	(void)state;
	assert_int_equal(cache_life_ms(SRV_PEERS, &a, 1000), 1000);
	/* The TTL caps the life. */
	assert_int_equal(cache_life_ms(SRV_PEERS, &a, 60000), 30000);
	a.ttl = 0;
	assert_int_equal(cache_life_ms(SRV_PEERS, &a, 1000), 0);
	a.ttl = UINT32_MAX;
	assert_int_equal(cache_life_ms(SRV_PEERS, &a, 3600000), 3600000);
	/* 0 is off, whatever the outcome. */
	assert_int_equal(cache_life_ms(SRV_PEERS, &a, 0), 0);
	assert_int_equal(cache_life_ms(SRV_EMPTY, NULL, 0), 0);
	/* No peers is reused for the configured life; errors never. */
	assert_int_equal(cache_life_ms(SRV_EMPTY, NULL, 700), 700);
	assert_int_equal(cache_life_ms(SRV_ERROR, NULL, 700), 0);
	assert_int_equal(cache_life_ms(SRV_NONE, NULL, 700), 0);
	/* A target that did not resolve: the next view asks again. */
	snprintf(a.peers[1].err, sizeof(a.peers[1].err), "no address records");
	assert_int_equal(cache_life_ms(SRV_PEERS, &a, 1000), 0);
	srv_answer_free(&a);
}

static void test_cache_put_and_get(void **state)
{
	struct srv_cache c;
	struct srv_answer a = answer(3, 5);
	struct srv_answer e = answer(0, UINT32_MAX);
	const uint64_t t0 = 1000 * NS_PER_MS;

	(void)state;
	memset(&c, 0, sizeof(c));
	assert_null(cache_get(&c, t0));
	assert_true(cache_put(&c, SRV_PEERS, &a, 2000, t0));
	/* Ownership moved: the caller's answer is empty. */
	assert_null(a.peers);
	assert_int_equal(a.npeers, 0);
	assert_non_null(cache_get(&c, t0));
	assert_int_equal(cache_get(&c, t0 + 1999 * NS_PER_MS)->ans.npeers, 3);
	assert_null(cache_get(&c, t0 + 2000 * NS_PER_MS));

	/* Not cacheable: nothing changes, the answer stays the caller's. */
	a = answer(1, 0);
	assert_false(cache_put(&c, SRV_PEERS, &a, 2000, t0));
	assert_non_null(a.peers);
	assert_int_equal(c.ans.npeers, 3);
	srv_answer_free(&a);

	/* A new outcome replaces the old one. */
	assert_true(cache_put(&c, SRV_EMPTY, &e, 500, t0 + 10 * NS_PER_MS));
	assert_int_equal(cache_get(&c, t0 + 10 * NS_PER_MS)->kind, SRV_EMPTY);
	assert_null(cache_get(&c, t0 + 510 * NS_PER_MS));
	cache_clear(&c);
	assert_null(cache_get(&c, t0));
	cache_clear(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cache_life),
		cmocka_unit_test(test_cache_put_and_get),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
