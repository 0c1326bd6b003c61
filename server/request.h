/* SPDX-License-Identifier: MIT */
#ifndef KUBIA_REQUEST_H
#define KUBIA_REQUEST_H

/*
 * The request record: one per connection, made when the connection opens (so GET /data
 * allocates nothing), holding the request the connection serves now from the access
 * handler's first call to the completion callback: what it is (classified once, with its
 * metrics label), when it began, the body length of what was answered, and the state of
 * a POST or of a cluster view. Only server/ includes it.
 */

#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/classify.h"
#include "storage/storage.h"

/* The most of a request's path the access log shows. */
#define REQUEST_PATH_LOG_MAX 256

struct http_server;
struct stream_sub;
struct view_response;

/* Where a request that waits for another thread is (a cluster view waits for discovery,
 * a POST for the writer's commit). */
enum wait_state {
	WAIT_NEW = 0,
	WAIT_SUSPENDED, /* the other thread owns the answer until it resumes us */
	WAIT_DONE, /* the answer is in the request */
	WAIT_REJECTED, /* the other side refused the job (too many in flight, stopping) */
};

struct request {
	struct http_server *srv;
	struct MHD_Connection *conn;
	enum classify_route route;
	enum classify_label label;
	const char *method; /* a constant: the method's name, or "other" */
	uint64_t start_ns; /* 0: no request in progress */
	size_t resp_len; /* the body length of the answer queued */
	size_t path_len;
	char path[REQUEST_PATH_LOG_MAX]; /* kept only for the access log */
	/* POST */
	char *body;
	size_t len;
	size_t cap;
	bool too_large;
	bool over_budget; /* the body did not fit the memory budget: read and dropped */
	uint64_t charged; /* bytes of the budget this request holds */
	uint64_t discarded;
	struct storage_outcome outcome; /* the commit's, once state is WAIT_DONE */
	/* POST and cluster view */
	atomic_int state;
	/* cluster view */
	/* The response of the body discovery made, text or JSON, head included, shared with
	 * every request given the same body (routes.c); held until it is queued. */
	struct view_response *view;
	unsigned peer_errors; /* peers the view could not read, for the access log */
	bool json; /* the view is JSON (server/format.c decides) */
	struct stream_sub *stream; /* a view stream's subscriber (server/stream.c) */
	/* The connection guard's (server/guard.c): written by the request path... */
	atomic_uint phase; /* enum guard_phase */
	atomic_uint seq; /* requests completed on the connection */
	_Atomic uint64_t body_seen; /* body bytes of this request read so far */
	/* ...and, under the guard's lock or by its thread only, the rest. */
	int fd;
	struct request *g_prev, *g_next;
	unsigned g_phase, g_seq; /* the phase and request last seen */
	uint64_t g_since_ns; /* when the guard saw them first */
	uint64_t g_win_ns, g_win_bytes; /* the body's window: its start, body_seen then */
	bool g_killed;
};

/* A record for a connection that opens; NULL when memory ran out. */
struct request *request_new(struct http_server *s, struct MHD_Connection *conn);

/* The record of conn (request_new() made it), or NULL. */
struct request *request_of(struct MHD_Connection *conn);

/* Clears what a POST or a view left (its body and view given back), for the
 * connection's next request; requests of other routes leave nothing there, and the
 * fields of every request are set by observe.c's obs_begin(). */
void request_reset(struct request *rq);

#endif
