/* SPDX-License-Identifier: MIT */
#ifndef KUBIA_OBSERVE_H
#define KUBIA_OBSERVE_H

/*
 * What the HTTP server tells about itself (observe.c): each request counted by its route
 * label and status, timed, and written to the access log; the connections open; GET
 * /metrics. Only server/ includes this.
 */

#include <microhttpd.h>

struct http_server;
struct request;

/* MHD_OPTION_NOTIFY_CONNECTION's callback, with the server as cls: makes each
 * connection's request record (request.h) and frees it when the connection closes. */
void obs_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
		       enum MHD_ConnectionNotificationCode code);

/* A request's first call: its start, and its method and path for the access log. Every
 * request that reaches obs_end() went through it. */
void obs_begin(struct request *rq, const char *url, const char *method);

/* The request completed: counts it and writes its access-log line. */
void obs_end(const struct request *rq);

/* GET /metrics: the exposition, charged to the memory budget. */
enum MHD_Result obs_serve_metrics(struct http_server *s, struct MHD_Connection *conn);

#endif
