/* SPDX-License-Identifier: MIT */
/*
 * The facade (discovery.c) without a network: the configuration's checks and their
 * error texts, and requests refused once discovery stopped. Loops are created and
 * stopped, but nothing is asked of DNS or of peers (test/integration/discovery_net.c
 * does that).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "discovery/discovery.h"

static void local_get(void *ctx, const char **data, size_t *len, void **hold)
{
	(void)ctx;
	*data = "mine";
	*len = 4;
	*hold = NULL;
}

static void local_release(void *ctx, void *hold)
{
	(void)ctx;
	(void)hold;
}

static const struct discovery_local local_data = {local_get, local_release, NULL};

static void base_config(struct discovery_config *c, char *server, size_t len)
{
	memset(c, 0, sizeof(*c));
	snprintf(server, len, "127.0.0.1:53");
	c->service = "kubia";
	c->hostname = "kubia-0";
	c->dns_server = server;
	c->dns_timeout_ms = 2000;
	c->cache_ms = 5000;
	c->peer_timeout_ms = 2000;
	c->peer_connect_timeout_ms = 1000;
	c->peer_max_bytes = 1024;
	c->peer_max_connections = 4;
	c->max_peers = 16;
	c->max_pending = 8;
}

static void test_bad_config(void **state)
{
	struct discovery_config c;
	char server[64];
	char err[256];
	static const char *const bad[] = {
		"example.com", "1.2.3.4:0", "1.2.3.4:99999", "[::1", "[::1]x", "1.2.3.4:", ""};

	(void)state;
	base_config(&c, server, sizeof(server));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		c.dns_server = bad[i];
		err[0] = '\0';
		if (bad[i][0] == '\0') {
			/* Empty means "use resolv.conf": not an error. */
			struct discovery *d = discovery_create(&c, &local_data, err, sizeof(err));

			assert_non_null(d);
			discovery_destroy(d);
			continue;
		}
		assert_null(discovery_create(&c, &local_data, err, sizeof(err)));
		assert_non_null(strstr(err, "DNS server"));
	}
	c.dns_server = "::1";
	{
		struct discovery *d = discovery_create(&c, &local_data, err, sizeof(err));

		assert_non_null(d);
		discovery_destroy(d);
	}
	c.dns_server = "[::1]:5353";
	{
		struct discovery *d = discovery_create(&c, &local_data, err, sizeof(err));

		assert_non_null(d);
		discovery_destroy(d);
	}
	c.dns_server = NULL;
	c.service = "";
	assert_null(discovery_create(&c, &local_data, err, sizeof(err)));
	assert_string_equal(err, "service name is empty");
	/* 253 characters and a trailing dot: the longest name there is. */
	{
		char name[300];
		struct discovery *d;

		memset(name, 'a', sizeof(name));
		name[63] = name[127] = name[191] = '.';
		name[253] = '.';
		name[254] = '\0';
		c.service = name;
		d = discovery_create(&c, &local_data, err, sizeof(err));
		assert_non_null(d);
		discovery_destroy(d);
		name[253] = 'a';
		assert_null(discovery_create(&c, &local_data, err, sizeof(err)));
		assert_non_null(strstr(err, "longer than 253"));
		/* A host name of 253 characters is the longest taken. */
		c.service = "kubia";
		name[253] = '\0';
		c.hostname = name;
		d = discovery_create(&c, &local_data, err, sizeof(err));
		assert_non_null(d);
		discovery_destroy(d);
		name[253] = 'a';
		assert_null(discovery_create(&c, &local_data, err, sizeof(err)));
		assert_non_null(strstr(err, "host name"));
		c.hostname = "kubia-0";
	}
	discovery_destroy(NULL);
}

/* Zero limits, no callbacks: refused with a reason of their own, no prefix stacked on it
 * (the caller says what failed). */
static void test_limits_and_callbacks(void **state)
{
	struct discovery_config c;
	char server[64];
	char err[256];
	struct discovery_local no_get = {NULL, local_release, NULL};

	(void)state;
	base_config(&c, server, sizeof(server));
	assert_null(discovery_create(NULL, &local_data, err, sizeof(err)));
	assert_string_equal(err, "no configuration");
	assert_null(discovery_create(&c, &no_get, err, sizeof(err)));
	assert_string_equal(err, "no configuration");
	c.dns_timeout_ms = 0;
	assert_null(discovery_create(&c, &local_data, err, sizeof(err)));
	assert_string_equal(err, "DNS and peer time-outs must be at least 1 ms");
	base_config(&c, server, sizeof(server));
	c.max_pending = 0;
	assert_null(discovery_create(&c, &local_data, err, sizeof(err)));
	assert_string_equal(err, "max peers and max pending requests must be at least 1");
	base_config(&c, server, sizeof(server));
	c.peer_max_connections = 0;
	assert_null(discovery_create(&c, &local_data, err, sizeof(err)));
	assert_string_equal(err, "max connections per peer must be at least 1");
	base_config(&c, server, sizeof(server));
	c.peer_port = 65536;
	assert_null(discovery_create(&c, &local_data, err, sizeof(err)));
	assert_string_equal(err, "peer port 65536 is not in 0-65535");
}

static void never_done(void *ctx, const struct discovery_view *view)
{
	(void)ctx;
	(void)view;
	fail_msg("a refused request was answered");
}

/* Once stopped, requests are refused (their callback never runs); stop is idempotent. */
static void test_stopped_refuses(void **state)
{
	struct discovery_config c;
	char server[64];
	char err[256];
	struct discovery *d;

	(void)state;
	base_config(&c, server, sizeof(server));
	d = discovery_create(&c, &local_data, err, sizeof(err));
	assert_non_null(d);
	assert_false(discovery_request(d, NULL, NULL));
	assert_false(discovery_request(NULL, never_done, NULL));
	discovery_stop(d);
	discovery_stop(d);
	assert_false(discovery_request(d, never_done, NULL));
	assert_false(discovery_request_as(d, DISCOVERY_FORMAT_JSON, never_done, NULL));
	discovery_destroy(d);
	discovery_body_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_config),
		cmocka_unit_test(test_limits_and_callbacks),
		cmocka_unit_test(test_stopped_refuses),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
