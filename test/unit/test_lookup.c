/* SPDX-License-Identifier: MIT */
/*
 * The SRV lookup on a real loop (lookup.c), against a DNS server on loopback that never
 * answers: the walk's deadline is a timer of the loop, a cancelled walk says "shutting
 * down", a second begin joins the walk in flight, and errors are never cached. What DNS
 * answers is covered by test/integration/discovery_net.c (dnsmasq). Every wait is
 * bounded by a timer of the loop.
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
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "discovery/internal.h"

#include "common/monotonic.h"

#define GUARD_MS 5000
#define NAME "kubia.default.svc.cluster.local"

struct result {
	struct loop *loop;
	struct lookup *lu;
	int calls;
	enum srv_outcome kind;
	char reason[256];
};

static void on_lookup(void *arg, enum srv_outcome kind, const struct srv_answer *ans,
		      const char *reason)
{
	struct result *r = arg;

	(void)ans;
	r->calls++;
	r->kind = kind;
	snprintf(r->reason, sizeof(r->reason), "%s", reason != NULL ? reason : "");
	loop_quit(r->loop);
}

static void on_guard(void *arg)
{
	(void)arg;
	fail_msg("the lookup did not end within %d ms", GUARD_MS);
}

static void cancel_cb(void *arg)
{
	struct result *r = arg;

	lookup_cancel(r->lu, false);
}

/* A UDP socket on loopback that takes queries and never answers; its port in *port. */
static int silent_server(uint16_t *port)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

struct fixture {
	int server;
	char dns[32];
	struct discovery_config cfg;
	struct lookup lu;
	struct loop_timer guard;
	struct result r;
};

static void fixture_start(struct fixture *f, unsigned timeout_ms)
{
	char err[256] = "";
	uint16_t port;

	memset(f, 0, sizeof(*f));
	f->server = silent_server(&port);
	snprintf(f->dns, sizeof(f->dns), "127.0.0.1:%u", (unsigned)port);
	/* The trailing dot: asked as given, whatever the search list. */
	f->cfg.service = NAME ".";
	f->cfg.hostname = "kubia-0";
	f->cfg.dns_server = f->dns;
	f->cfg.dns_timeout_ms = timeout_ms;
	f->cfg.cache_ms = 5000;
	f->cfg.max_peers = 16;
	f->r.loop = loop_create(NULL, NULL, err, sizeof(err));
	assert_non_null(f->r.loop);
	assert_true(lookup_init(&f->lu, &f->cfg, f->r.loop, err, sizeof(err)));
	f->r.lu = &f->lu;
	loop_timer_init(&f->guard, on_guard, NULL);
	loop_timer_set(f->r.loop, &f->guard, monotonic_ns() + GUARD_MS * NS_PER_MS);
}

static void fixture_stop(struct fixture *f)
{
	loop_timer_set(f->r.loop, &f->guard, LOOP_NEVER);
	lookup_destroy(&f->lu);
	loop_destroy(f->r.loop);
	close(f->server);
}

/* The budget ends the walk, named, not the clock's reading: c-ares's own three tries
 * (t + 2t + 4t, t = budget / 7) or the loop's deadline, whichever comes first. */
static void test_the_deadline_ends_the_walk(void **state)
{
	struct fixture f;
	uint64_t start;

	(void)state;
	fixture_start(&f, 300);
	start = monotonic_ns();
	lookup_begin(&f.lu, on_lookup, &f.r);
	/* A second begin while one runs joins it: one end, one callback. */
	lookup_begin(&f.lu, on_lookup, &f.r);
	assert_true(loop_run(f.r.loop));
	assert_int_equal(f.r.calls, 1);
	assert_int_equal(f.r.kind, SRV_ERROR);
	assert_string_equal(f.r.reason, NAME ": timed out after 300 ms");
	/* 7 * (300 / 7) = 294 ms of tries, less c-ares's rounding to its clock. */
	assert_true(monotonic_ns() - start >= 250 * NS_PER_MS);
	/* Errors are never reused: the next view asks again. */
	assert_null(lookup_cached(&f.lu, monotonic_ns()));
	fixture_stop(&f);
}

static void test_a_cancelled_walk_is_shutting_down(void **state)
{
	struct fixture f;
	struct loop_timer cancel;

	(void)state;
	fixture_start(&f, 4000);
	lookup_begin(&f.lu, on_lookup, &f.r);
	loop_timer_init(&cancel, cancel_cb, &f.r);
	loop_timer_set(f.r.loop, &cancel, monotonic_ns() + 50 * NS_PER_MS);
	assert_true(loop_run(f.r.loop));
	assert_int_equal(f.r.calls, 1);
	assert_int_equal(f.r.kind, SRV_ERROR);
	assert_string_equal(f.r.reason, NAME ": " SHUTDOWN_TEXT);
	/* Cancelling with nothing in flight does nothing. */
	lookup_cancel(&f.lu, false);
	assert_int_equal(f.r.calls, 1);
	fixture_stop(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_the_deadline_ends_the_walk),
		cmocka_unit_test(test_a_cancelled_walk_is_shutting_down),
	};
	int rc;

	if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS) {
		return 1;
	}
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	ares_library_cleanup();
	return rc;
}
