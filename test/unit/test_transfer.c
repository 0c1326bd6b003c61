/* SPDX-License-Identifier: MIT */
/*
 * GET /data with libcurl on the loop (transfer.c), against a one-shot HTTP peer on
 * loopback run by a thread of this test: the request as sent (path, Host), the body as
 * the answer, an HTTP error, the size cap, a refused connection, and an aborted transfer
 * whose callback never runs. Every wait is bounded by a timer of the loop.
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
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "discovery/internal.h"

#include "common/monotonic.h"

#define GUARD_MS 5000

/* A peer that answers one request with reply, after keeping what it was sent. */
struct peer {
	int fd;
	uint16_t port;
	const char *reply; /* NULL: read the request, answer nothing, wait for the close */
	char request[2048];
	pthread_t thread;
};

static void *peer_main(void *arg)
{
	struct peer *p = arg;
	int c = accept(p->fd, NULL, NULL);
	size_t n = 0;

	if (c < 0) {
		return NULL;
	}
	while (n < sizeof(p->request) - 1 && strstr(p->request, "\r\n\r\n") == NULL) {
		ssize_t r = read(c, p->request + n, sizeof(p->request) - 1 - n);

		if (r <= 0) {
			break;
		}
		n += (size_t)r;
		p->request[n] = '\0';
	}
	if (p->reply != NULL) {
		if (write(c, p->reply, strlen(p->reply)) < 0) {
			/* The transfer sees a connection closed without an answer. */
		}
	} else {
		char b;

		while (read(c, &b, 1) > 0) {
		}
	}
	close(c);
	return NULL;
}

static void peer_start(struct peer *p, const char *reply)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);

	memset(p, 0, sizeof(*p));
	p->reply = reply;
	p->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(p->fd >= 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(p->fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(p->fd, 4), 0);
	assert_int_equal(getsockname(p->fd, (struct sockaddr *)&a, &len), 0);
	p->port = ntohs(a.sin_port);
	assert_int_equal(pthread_create(&p->thread, NULL, peer_main, p), 0);
}

static void peer_stop(struct peer *p)
{
	/* Wakes an accept() still waiting (a transfer that never connected). */
	shutdown(p->fd, SHUT_RDWR);
	pthread_join(p->thread, NULL);
	close(p->fd);
}

struct result {
	struct loop *loop;
	int calls;
	struct render_answer *a;
};

static void on_done(void *arg, struct render_answer *a)
{
	struct result *r = arg;

	r->calls++;
	r->a = a;
	loop_quit(r->loop);
}

static void on_guard(void *arg)
{
	(void)arg;
	fail_msg("no answer within %d ms", GUARD_MS);
}

/* Counts the answers; the loop stops at each. */
static void on_count(void *arg, struct render_answer *a)
{
	struct result *r = arg;

	r->calls++;
	assert_non_null(a);
	assert_true(a->error);
	render_answer_unref(a);
	loop_quit(r->loop);
}

static void quit_cb(void *arg)
{
	loop_quit(arg);
}

static struct discovery_config cfg;

static void config(void)
{
	memset(&cfg, 0, sizeof(cfg));
	cfg.peer_timeout_ms = 2000;
	cfg.peer_connect_timeout_ms = 1000;
	cfg.peer_max_bytes = 64;
	cfg.peer_max_connections = 2;
	cfg.max_peers = 4;
}

static void key_for(struct peer_key *k, uint16_t port)
{
	memset(k, 0, sizeof(*k));
	snprintf(k->name, sizeof(k->name), "kubia-1.kubia");
	k->family = AF_INET;
	k->addr[0] = 127;
	k->addr[3] = 1;
	k->port = port;
}

/* One GET /data to port; returns the answer's text (the result keeps the answer). */
static const char *fetch_once(struct result *r, uint16_t port)
{
	char err[128] = "";
	struct loop_timer guard;
	struct transfers tr;
	struct peer_key k;

	memset(r, 0, sizeof(*r));
	r->loop = loop_create(NULL, NULL, err, sizeof(err));
	assert_non_null(r->loop);
	assert_true(transfer_init(&tr, &cfg, r->loop, err, sizeof(err)));
	key_for(&k, port);
	assert_non_null(transfer_start(&tr, &k, on_done, r));
	assert_int_equal(r->calls, 0); /* never answered inside the call */
	loop_timer_init(&guard, on_guard, NULL);
	loop_timer_set(r->loop, &guard, monotonic_ns() + GUARD_MS * NS_PER_MS);
	assert_true(loop_run(r->loop));
	loop_timer_set(r->loop, &guard, LOOP_NEVER);
	transfer_destroy(&tr);
	loop_destroy(r->loop);
	assert_int_equal(r->calls, 1);
	assert_non_null(r->a);
	return r->a->data;
}

static void test_the_body_is_the_answer(void **state)
{
	struct peer p;
	struct result r;
	char host[64];

	(void)state;
	config();
	peer_start(&p, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
	assert_memory_equal(fetch_once(&r, p.port), "hello", 5);
	assert_int_equal(r.a->len, 5);
	assert_false(r.a->error);
	peer_stop(&p);
	assert_non_null(strstr(p.request, "GET /data HTTP/1.1\r\n"));
	/* Reached by address, told its own name. */
	snprintf(host, sizeof(host), "Host: kubia-1.kubia:%u\r\n", (unsigned)p.port);
	assert_non_null(strstr(p.request, host));
	render_answer_unref(r.a);
}

static void test_an_http_error(void **state)
{
	struct peer p;
	struct result r;

	(void)state;
	config();
	peer_start(&p, "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
	assert_string_equal(fetch_once(&r, p.port), "Error: HTTP 500");
	assert_true(r.a->error);
	peer_stop(&p);
	render_answer_unref(r.a);
}

static void test_the_size_cap(void **state)
{
	struct peer p;
	struct result r;

	(void)state;
	config();
	cfg.peer_max_bytes = 4;
	peer_start(&p, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
	assert_string_equal(fetch_once(&r, p.port), "Error: reply larger than 4 bytes");
	peer_stop(&p);
	render_answer_unref(r.a);
}

/* A port just bound and closed without listening: nobody is there. */
static uint16_t closed_port(void)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static void test_a_refused_connection(void **state)
{
	struct result r;

	(void)state;
	config();
	assert_string_equal(fetch_once(&r, closed_port()),
			    "Error: could not connect: Connection refused");
	render_answer_unref(r.a);
}

/* One transfer to port on tr, run to its end; the result keeps the answer. */
static const char *fetch_on(struct transfers *tr, struct result *r, uint16_t port)
{
	struct loop_timer guard;
	struct peer_key k;

	r->calls = 0;
	r->a = NULL;
	key_for(&k, port);
	assert_non_null(transfer_start(tr, &k, on_done, r));
	loop_timer_init(&guard, on_guard, NULL);
	loop_timer_set(r->loop, &guard, monotonic_ns() + GUARD_MS * NS_PER_MS);
	assert_true(loop_run(r->loop));
	loop_timer_set(r->loop, &guard, LOOP_NEVER);
	assert_int_equal(r->calls, 1);
	assert_non_null(r->a);
	return r->a->data;
}

/* A finished transfer's easy handle is kept and serves the next transfer, which sees
 * nothing of the one before (its failure, its peer); no more are kept than max_peers
 * (at least 8). */
static void test_a_handle_serves_the_next_transfer(void **state)
{
	char err[128] = "";
	struct peer p;
	struct result r;
	struct transfers tr;
	struct peer_key k;
	CURL *kept;

	(void)state;
	config();
	memset(&r, 0, sizeof(r));
	r.loop = loop_create(NULL, NULL, err, sizeof(err));
	assert_non_null(r.loop);
	assert_true(transfer_init(&tr, &cfg, r.loop, err, sizeof(err)));
	assert_int_equal(tr.nidle, 0);
	assert_string_equal(fetch_on(&tr, &r, closed_port()),
			    "Error: could not connect: Connection refused");
	render_answer_unref(r.a);
	assert_int_equal(tr.nidle, 1);
	kept = tr.idle[0];

	peer_start(&p, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
	assert_memory_equal(fetch_on(&tr, &r, p.port), "hello", 5);
	assert_int_equal(r.a->len, 5);
	assert_false(r.a->error);
	render_answer_unref(r.a);
	peer_stop(&p);
	assert_int_equal(tr.nidle, 1);
	assert_ptr_equal(tr.idle[0], kept);

	/* Twelve at once: the four past the bound are freed when they end. */
	key_for(&k, closed_port());
	r.calls = 0;
	for (int i = 0; i < 12; i++) {
		assert_non_null(transfer_start(&tr, &k, on_count, &r));
	}
	assert_int_equal(tr.nidle, 0);
	while (r.calls < 12) {
		struct loop_timer guard;

		loop_timer_init(&guard, on_guard, NULL);
		loop_timer_set(r.loop, &guard, monotonic_ns() + GUARD_MS * NS_PER_MS);
		assert_true(loop_run(r.loop));
		loop_timer_set(r.loop, &guard, LOOP_NEVER);
	}
	assert_int_equal(tr.idle_max, 8);
	assert_int_equal(tr.nidle, 8);
	transfer_destroy(&tr);
	assert_int_equal(tr.nidle, 0);
	loop_destroy(r.loop);
}

/* An aborted transfer's callback never runs, and nothing is left behind. */
static void test_an_aborted_transfer(void **state)
{
	char err[128] = "";
	struct peer p;
	struct result r;
	struct transfers tr;
	struct loop_timer t;
	struct peer_key k;
	struct xfer *x;

	(void)state;
	config();
	peer_start(&p, NULL);
	memset(&r, 0, sizeof(r));
	r.loop = loop_create(NULL, NULL, err, sizeof(err));
	assert_non_null(r.loop);
	assert_true(transfer_init(&tr, &cfg, r.loop, err, sizeof(err)));
	key_for(&k, p.port);
	x = transfer_start(&tr, &k, on_done, &r);
	assert_non_null(x);
	/* Give it time to connect and send (it need not have: an abort at any point must
	 * keep the callback from running), then abort it. */
	loop_timer_init(&t, quit_cb, r.loop);
	loop_timer_set(r.loop, &t, monotonic_ns() + 100 * NS_PER_MS);
	assert_true(loop_run(r.loop));
	transfer_abort(&tr, x);
	loop_timer_set(r.loop, &t, monotonic_ns() + 100 * NS_PER_MS);
	assert_true(loop_run(r.loop));
	assert_int_equal(r.calls, 0);
	transfer_destroy(&tr);
	loop_destroy(r.loop);
	peer_stop(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_the_body_is_the_answer),
		cmocka_unit_test(test_an_http_error),
		cmocka_unit_test(test_the_size_cap),
		cmocka_unit_test(test_a_refused_connection),
		cmocka_unit_test(test_an_aborted_transfer),
		cmocka_unit_test(test_a_handle_serves_the_next_transfer),
	};
	int rc;

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		return 1;
	}
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	curl_global_cleanup();
	return rc;
}
