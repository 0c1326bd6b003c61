/* SPDX-License-Identifier: MIT */
/*
 * The process's recv() (server/wire.c) on a socket pair, as libmicrohttpd would call it:
 * a socket not registered is read as before; a registered one hands on good requests
 * whole, answers a faulty one with kubia's single 400 (after the requests before it are
 * done) and reports a reset; at the end of the client's stream it says "no data yet"
 * while a complete request is unanswered, then the end.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "server/http_internal.h"

#define GET "GET /data HTTP/1.1\r\nHost: kubia\r\n\r\n"

struct pair {
	int server; /* libmicrohttpd's side */
	int client;
	atomic_uint done;
};

static int setup(void **state)
{
	static struct pair p;
	int sv[2];

	if (!wire_init() || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
		return -1;
	}
	p.server = sv[0];
	p.client = sv[1];
	atomic_init(&p.done, 0);
	wire_open(p.server, &p.done);
	*state = &p;
	return 0;
}

static int teardown(void **state)
{
	struct pair *p = *state;

	wire_close(p->server);
	close(p->server);
	close(p->client);
	return 0;
}

static void put(int fd, const char *s, size_t n)
{
	assert_int_equal(send(fd, s, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* Everything the client has been sent, until the server's side is shut for writing. */
static size_t take_all(int fd, char *buf, size_t cap)
{
	size_t got = 0;
	ssize_t n;

	while (got < cap && (n = recv(fd, buf + got, cap - got, 0)) > 0) {
		got += (size_t)n;
	}
	return got;
}

static void test_unregistered_socket_read_as_before(void **state)
{
	int sv[2];
	char buf[64];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	put(sv[1], ": not HTTP\r\n", 12);
	assert_int_equal(recv(sv[0], buf, sizeof(buf), 0), 12);
	assert_memory_equal(buf, ": not HTTP\r\n", 12);
	shutdown(sv[1], SHUT_WR);
	assert_int_equal(recv(sv[0], buf, sizeof(buf), 0), 0);
	close(sv[0]);
	close(sv[1]);
}

static void test_good_requests_handed_on(void **state)
{
	struct pair *p = *state;
	char buf[256];

	put(p->client, GET GET, 2 * strlen(GET));
	assert_int_equal(recv(p->server, buf, sizeof(buf), 0), (ssize_t)(2 * strlen(GET)));
	assert_memory_equal(buf, GET GET, 2 * strlen(GET));
}

static void test_fault_refused_once_after_the_requests_before(void **state)
{
	struct pair *p = *state;
	char buf[512];
	const char bad[] = "GET /data HTTP/1.1\r\n: x\r\n\r\n";
	size_t n;

	put(p->client, GET, strlen(GET));
	put(p->client, bad, strlen(bad));
	/* the good request goes on alone */
	assert_int_equal(recv(p->server, buf, sizeof(buf), 0), (ssize_t)strlen(GET));
	/* not answered yet: the library is told to wait, and nothing is written */
	errno = 0;
	assert_int_equal(recv(p->server, buf, sizeof(buf), 0), -1);
	assert_int_equal(errno, EAGAIN);
	/* answered: kubia's 400, then a reset for the library */
	atomic_store(&p->done, 1);
	put(p->server, "ANSWER", 6);
	errno = 0;
	assert_int_equal(recv(p->server, buf, sizeof(buf), 0), -1);
	assert_int_equal(errno, ECONNRESET);
	assert_int_equal(recv(p->server, buf, sizeof(buf), 0), -1);
	n = take_all(p->client, buf, sizeof(buf) - 1);
	buf[n] = '\0';
	assert_true(strncmp(buf, "ANSWER", 6) == 0);
	assert_non_null(strstr(buf + 6, "HTTP/1.1 400 Bad Request\r\n"));
	assert_non_null(strstr(buf, "\r\nConnection: close\r\n"));
	assert_non_null(strstr(buf, "\r\n\r\nBad request: a field line without a name\n"));
	assert_null(strstr(strstr(buf, "HTTP/1.1 400") + 1, "HTTP/1.1")); /* one answer */
}

static void test_eof_after_a_complete_request(void **state)
{
	struct pair *p = *state;
	char buf[256];
	const char post[] = "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";

	put(p->client, post, strlen(post));
	shutdown(p->client, SHUT_WR);
	assert_int_equal(recv(p->server, buf, sizeof(buf), 0), (ssize_t)strlen(post));
	errno = 0;
	assert_int_equal(recv(p->server, buf, sizeof(buf), 0), -1);
	assert_int_equal(errno, EAGAIN);
	atomic_store(&p->done, 1);
	assert_int_equal(recv(p->server, buf, sizeof(buf), 0), 0);
}

static void test_eof_inside_a_request_is_an_abort(void **state)
{
	struct pair *p = *state;
	char buf[256];
	const char part[] = "POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nabc";

	put(p->client, part, strlen(part));
	shutdown(p->client, SHUT_WR);
	assert_int_equal(recv(p->server, buf, sizeof(buf), 0), (ssize_t)strlen(part));
	assert_int_equal(recv(p->server, buf, sizeof(buf), 0), 0);
}

/* A request the library finished without kubia's handler never counts as done: the wait
 * ends after a bounded number of tries, not never. */
static void test_wait_is_bounded(void **state)
{
	struct pair *p = *state;
	char buf[256];
	int tries = 0;

	put(p->client, GET, strlen(GET));
	shutdown(p->client, SHUT_WR);
	assert_int_equal(recv(p->server, buf, sizeof(buf), 0), (ssize_t)strlen(GET));
	while (recv(p->server, buf, sizeof(buf), 0) == -1 && errno == EAGAIN) {
		assert_true(++tries < 1000);
	}
	assert_true(tries >= 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unregistered_socket_read_as_before),
		cmocka_unit_test_setup_teardown(test_good_requests_handed_on, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fault_refused_once_after_the_requests_before,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_eof_after_a_complete_request, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eof_inside_a_request_is_an_abort, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_wait_is_bounded, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
