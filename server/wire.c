/* SPDX-License-Identifier: MIT */
/*
 * The bytes libmicrohttpd reads, checked before it reads them (docs/design.md, "why this
 * hook"). The executable defines recv(): libmicrohttpd calls recv() through its PLT, and
 * the dynamic linker binds that call to the executable's definition before libc's. For a
 * connection of the HTTP server the bytes go through a validating scanner beside the
 * library (it parses nothing for it: it only follows the request line, the field lines
 * and the framing of the body far enough to find what 0.9.75 hides, drops or mis-frames);
 * every other socket of the process (libcurl's, c-ares') is read as before.
 */
/* This file defines recv(): glibc's fortified headers define recv() as an inline wrapper
 * of their own, which a definition of it may not follow (clang refuses it). The only
 * other calls here it would check are two snprintf()s, each given its array's size. */
#undef _FORTIFY_SOURCE
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "server/http_internal.h"
#include "server/log.h"

struct wire_conn {
	struct wire_scan sc;
	const atomic_uint *done; /* requests libmicrohttpd has finished (guard.c's count) */
	unsigned complete; /* requests handed to libmicrohttpd whole */
	const char *why; /* a refusal to send once the requests before it are done */
	unsigned waits; /* "no data yet" told in a row while done stood still */
	unsigned waits_done; /* done when the last was told */
	bool eof; /* the peer has shut its sending side */
	bool refused; /* kubia answered 400: libmicrohttpd is to close */
};

/* How many times in a row libmicrohttpd is told "no data yet" while it finishes no
 * request. Once per request is what it takes (docs/design.md); a request it answered
 * itself without kubia's handler would never count as finished, and telling it to wait
 * for ever would make it poll a readable socket without end. */
#define WIRE_WAITS_MAX 64

/* Indexed by socket; a slot is written only by the thread that serves that connection
 * (libmicrohttpd's, which opens, reads and closes it), and read by any thread calling
 * recv(), which only looks at its own sockets' slots. The table is published once, with
 * its length, while other threads (discovery's) may already read sockets. */
struct wire_table {
	size_t len;
	_Atomic(struct wire_conn *) slot[];
};
static _Atomic(struct wire_table *) table;

/* The slot of fd, or NULL when there is none. */
static _Atomic(struct wire_conn *) *slot_of(int fd)
{
	struct wire_table *t = atomic_load_explicit(&table, memory_order_acquire);

	return t != NULL && fd >= 0 && (size_t)fd < t->len ? &t->slot[fd] : NULL;
}

static ssize_t real_recv(int fd, void *buf, size_t len, int flags)
{
	return (ssize_t)syscall(SYS_recvfrom, fd, buf, len, flags, NULL, NULL);
}

bool wire_init(void)
{
	struct rlimit rl;
	size_t n = 65536;
	struct wire_table *t;

	if (atomic_load_explicit(&table, memory_order_acquire) != NULL) {
		return true;
	}
	/* A socket number is below the limit on open files (at most 2^20 slots: 8 MiB of
	 * address space, touched only where sockets are) */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur > n) {
		n = rl.rlim_cur > (1U << 20) ? (1U << 20) : (size_t)rl.rlim_cur;
	}
	t = calloc(1, sizeof(*t) + n * sizeof(t->slot[0]));
	if (t == NULL) {
		return false;
	}
	t->len = n;
	atomic_store_explicit(&table, t, memory_order_release);
	return true;
}

void wire_open(int fd, const atomic_uint *done)
{
	_Atomic(struct wire_conn *) *slot = slot_of(fd);
	struct wire_conn *c;

	if (slot == NULL) {
		return;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		return; /* unchecked, as before this hook: better than refusing it */
	}
	wire_scan_init(&c->sc);
	c->done = done;
	atomic_store_explicit(slot, c, memory_order_release);
}

void wire_close(int fd)
{
	_Atomic(struct wire_conn *) *slot = slot_of(fd);

	if (slot != NULL) {
		free(atomic_exchange_explicit(slot, NULL, memory_order_acq_rel));
	}
}

/* Sends kubia's one answer to a request the scanner refused, then ends the stream. */
static void refuse(int fd, const char *why)
{
	char text[448];
	char body[256];
	char date[64];
	char sink[4096];
	time_t now = time(NULL);
	struct tm tm;
	int blen = snprintf(body, sizeof(body), "Bad request: %s\n", why);
	int n;

	/* RFC 9110 6.6.1: a 4xx from a server with a clock has a Date (kubia keeps the C
	 * locale, so the names are English). */
	if (gmtime_r(&now, &tm) == NULL ||
	    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm) == 0) {
		date[0] = '\0';
	}
	n = snprintf(text, sizeof(text),
		     "HTTP/1.1 400 Bad Request\r\nDate: %s\r\nConnection: close\r\n"
		     "Content-Type: " CONTENT_TYPE "\r\nContent-Length: %d\r\n\r\n%s",
		     date, blen, body);

	if (n > 0 && (size_t)n < sizeof(text)) {
		(void)send(fd, text, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
	}
	/* The FIN right after the answer, and what the client has sent already read away
	 * (a little, without waiting): a close with unread bytes would reset the
	 * connection, and a reset can reach the client before it has read the answer. */
	(void)shutdown(fd, SHUT_WR);
	for (int i = 0; i < 16 && real_recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0; i++) {
	}
	log_msg(LOG_LEVEL_INFO, "http: request refused before libmicrohttpd read it: %s", why);
}

static ssize_t fail(int err)
{
	errno = err;
	return -1;
}

/* Whether requests handed on whole are still to be finished by libmicrohttpd. */
static bool must_wait(struct wire_conn *c)
{
	unsigned done = atomic_load_explicit(c->done, memory_order_relaxed);

	if (done == c->complete) {
		return false;
	}
	if (done != c->waits_done) {
		c->waits_done = done;
		c->waits = 0;
	}
	return ++c->waits <= WIRE_WAITS_MAX;
}

/* What to tell libmicrohttpd once the refusal is due: nothing until the requests before
 * the refused one are answered, then a reset, after kubia's own answer. */
static ssize_t refusal(struct wire_conn *c, int fd)
{
	if (must_wait(c)) {
		return fail(EAGAIN);
	}
	refuse(fd, c->why);
	c->why = NULL;
	c->refused = true;
	return fail(ECONNRESET);
}

/*
 * The peer has shut its sending side. libmicrohttpd 0.9.75 takes a recv() of 0 for an
 * abort whenever it has a request in hand, even a complete one waiting for its answer:
 * while a request kubia knows to be complete is in progress, "no data yet" instead, and
 * the end of the stream once it is answered. libmicrohttpd asks for bytes only in its
 * reading states, so the socket readable at its end does not make it spin meanwhile.
 */
static ssize_t at_eof(struct wire_conn *c)
{
	if (wire_scan_between(&c->sc) && must_wait(c)) {
		return fail(EAGAIN);
	}
	return 0;
}

static ssize_t wire_recv(struct wire_conn *c, int fd, unsigned char *buf, size_t len)
{
	size_t clean;
	unsigned ended;
	ssize_t n;
	const char *why;

	if (c->refused) {
		return fail(ECONNRESET);
	}
	if (c->why != NULL) {
		return refusal(c, fd);
	}
	if (c->eof) {
		return at_eof(c);
	}
	n = real_recv(fd, buf, len, 0);
	if (n < 0) {
		return n;
	}
	if (n == 0) {
		c->eof = true;
		return at_eof(c);
	}
	why = wire_scan(&c->sc, buf, (size_t)n, &clean, &ended);
	c->complete += ended;
	if (why == NULL) {
		return n;
	}
	c->why = why;
	if (clean > 0) {
		/* The requests before the refused one go to libmicrohttpd. Its next recv()
		 * must come even if no more bytes do: a socket shut for reading stays
		 * readable. */
		(void)shutdown(fd, SHUT_RD);
		return (ssize_t)clean;
	}
	return refusal(c, fd);
}

/* Every recv() of the process comes here (see the top of this file). */
__attribute__((visibility("default"))) ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	_Atomic(struct wire_conn *) *slot = slot_of(fd);
	struct wire_conn *c =
		slot != NULL ? atomic_load_explicit(slot, memory_order_acquire) : NULL;

	if (c == NULL || flags != 0) {
		return real_recv(fd, buf, len, flags);
	}
	return wire_recv(c, fd, buf, len);
}
