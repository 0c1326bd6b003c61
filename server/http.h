/* SPDX-License-Identifier: MIT */
#ifndef KUBIA_HTTP_H
#define KUBIA_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/config.h"

struct storage;
struct discovery;
struct budget;

/* The HTTP front: libmicrohttpd with its internal polling thread(s), the routes (GET
 * /data, /healthz and /readyz, POST of new data, and GET of any other path: this pod's
 * data in pet mode, the cluster view in peers mode) and the exact texts they answer.
 * The only place that knows about HTTP. */
struct http_server;

/* What stands for the data before any were posted: the answer of GET /data, and this
 * pod's entry in the cluster view, which discovery gets from the caller. */
#define HTTP_NO_DATA "No data posted yet"

/* Starts listening, with cfg's limits resolved (main.c: threads is not 0). discovery is
 * NULL in pet mode. Request bodies and responses in flight
 * are charged to budget; past it, requests get 503 with Retry-After. None of storage,
 * discovery and budget is owned; all must outlive the server. NULL on failure with one
 * line in err. */
struct http_server *http_start(const struct config *cfg, struct storage *st, struct discovery *disc,
			       struct budget *budget, char *err, size_t errlen);

/* The port the server listens on. */
unsigned http_port(const struct http_server *srv);

/* Shutdown, step 1: every view stream ends, /readyz answers 503 and no new connection
 * is accepted. */
void http_quiesce(struct http_server *srv);

/* Shutdown, step 2: waits until no request is in flight or timeout_ms passes.
 * Returns true when none is left. */
bool http_wait_idle(struct http_server *srv, unsigned timeout_ms);

/* Number of requests being handled right now. */
unsigned http_in_flight(struct http_server *srv);

/* Shutdown, step 3: closes every connection and frees. NULL is a no-op. Every
 * suspended request must have been resumed (discovery_stop() does that for views,
 * http_quiesce() for streams), and discovery's watcher stopped (discovery_stop()). */
void http_stop(struct http_server *srv);

#endif
