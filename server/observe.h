/* SPDX-License-Identifier: MIT */
#ifndef KUBIA_OBSERVE_H
#define KUBIA_OBSERVE_H

/*
 * What the HTTP server tells about itself (metrics.c): each request counted by route and
 * status, timed, and written to the access log; the connections open; GET /metrics.
 * Each connection has a small record (made when it opens, not per request) that follows
 * its current request from the first call to the completion callback. Only server/
 * includes this.
 */

#include <microhttpd.h>
#include <stddef.h>
#include <stdint.h>

struct http_server;

/* MHD_OPTION_NOTIFY_CONNECTION's callback, with the server as cls. */
void obs_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
		       enum MHD_ConnectionNotificationCode code);

/* A request's first call. */
void obs_begin(struct MHD_Connection *conn, const char *url, const char *method);

/* The body length of the response queued (for the access log). */
void obs_response_len(struct MHD_Connection *conn, size_t len);

/* A fixed response of the server queued: its length is looked up. */
void obs_fixed_queued(struct MHD_Connection *conn, const struct MHD_Response *r);

/* Records the length of a fixed response, once, while the server starts. */
void obs_fixed_register(struct http_server *s, const struct MHD_Response *r, size_t len);

/* The request completed: counts it and writes its access-log line. body is the request
 * body's size in bytes, peer_errors the peers a cluster view could not read. */
void obs_end(struct http_server *s, struct MHD_Connection *conn, uint64_t body,
	     unsigned peer_errors);

/* GET /metrics: the exposition, charged to the memory budget. */
enum MHD_Result serve_metrics(struct http_server *s, struct MHD_Connection *conn);

#endif
