/* SPDX-License-Identifier: MIT */
#ifndef KUBIA_GUARD_H
#define KUBIA_GUARD_H

/*
 * The connection guard: deadlines libmicrohttpd 0.9.75 does not keep, and room made in a
 * full connection table. Its idle time-out is reset by every byte, so a head or a body
 * trickled a byte at a time holds a connection for ever, and once --max-connections
 * connections do that nobody else is served. The guard is a thread that looks at every
 * connection a few times a second: one waiting for its head longer than
 * --header-timeout-s, or whose body comes slower than --body-min-rate over a window of
 * --body-rate-window-s (after one window of grace), is shut down; and when the table is
 * full while a client waits in the kernel's queue, the connections that have waited
 * longest for their heads are shut down to let it in. Shutting the socket down, not
 * closing it, leaves the closing to libmicrohttpd, which sees the end of the stream.
 * Only server/ includes it.
 */

#include <stdbool.h>
#include <stdint.h>

struct guard;
struct request;
struct config;

/* Where a connection's current request is, as the request path tells the guard. */
enum guard_phase {
	GUARD_HEAD = 0, /* waiting for a request's head (a new or a kept-alive connection) */
	GUARD_BODY, /* the head is in, the body is being read */
	GUARD_BUSY, /* being answered: no deadline of the guard's */
};

struct guard_counts {
	uint64_t header_timeouts;
	uint64_t body_too_slow;
	uint64_t evicted;
};

/* Starts the guard's thread, for libmicrohttpd's threads HTTP threads; NULL when it
 * could not start. */
struct guard *guard_start(const struct config *cfg, unsigned threads);
/* The socket libmicrohttpd accepts on: room is made only once it is known. */
void guard_listen(struct guard *g, int listen_fd);
/* No more room is made (the listening socket is going away); deadlines still hold. */
void guard_quiesce(struct guard *g);
/* Stops the thread; connections may still be removed until guard_free(). */
void guard_stop(struct guard *g);
void guard_free(struct guard *g);

/* A connection opened with socket fd, its record rq; or closes. */
void guard_add(struct guard *g, struct request *rq, int fd);
void guard_remove(struct guard *g, struct request *rq);

/* The request path's side: cheap, no lock, no clock (the guard times what it sees). */
void guard_phase(struct request *rq, enum guard_phase phase);
/* The request completed: the connection waits for its next head. */
void guard_next(struct request *rq);
void guard_body(struct request *rq, uint64_t bytes);

/* What the guard has closed since the process started. */
void guard_counts(struct guard_counts *out);

#endif
