/* SPDX-License-Identifier: MIT */
#ifndef KUBIA_CLASSIFY_H
#define KUBIA_CLASSIFY_H

#include <stdbool.h>
#include <stdint.h>

/*
 * What a request is, decided from its method, path and headers alone: a pure function,
 * without libmicrohttpd, so that it is unit tested and fuzzed on its own. routes.c asks
 * it once, on the first call for a request: the route says how the request is answered,
 * the label under which it is counted (observe.c).
 */

/*
 * A too-large body is read and dropped before the 413 is queued, up to this much past
 * the limit. libmicrohttpd closes a connection whose body it did not read right after
 * the answer, and the unread bytes make the kernel reset it: a client or a proxy that
 * is still sending (nginx, the API server's proxy) loses the 413 and reports a broken
 * connection instead. A longer body is answered at once and the connection closed.
 */
#define CLASSIFY_DISCARD_SLACK ((uint64_t)16 << 20)

enum classify_route {
	ROUTE_DATA, /* GET or HEAD /data: the stored data verbatim */
	ROUTE_HEALTHZ, /* GET or HEAD /healthz */
	ROUTE_READYZ, /* GET or HEAD /readyz */
	ROUTE_METRICS, /* GET or HEAD /metrics: the Prometheus exposition */
	ROUTE_UI, /* GET or HEAD /ui or /ui/ in peers mode: the live page (ui.c) */
	ROUTE_POD, /* GET or HEAD of any other path in pet mode: this pod's data */
	ROUTE_CLUSTER, /* GET or HEAD of any other path in peers mode: the cluster view */
	ROUTE_STORE, /* POST: the body is read and stored */
	ROUTE_TOO_LARGE_DRAIN, /* POST past the limit by at most the slack: body read, dropped,
				* then 413 */
	ROUTE_TOO_LARGE, /* POST answered 413 at once, its body never read */
	ROUTE_BAD_LENGTH, /* POST whose Content-Length is not a number: 400 */
	ROUTE_METHOD, /* any other method: 405 */
};

/* The route label of the request metrics: the path alone, whatever the method and mode,
 * from a fixed set so that what clients send cannot grow the series. */
enum classify_label {
	LABEL_ROOT, /* "/" */
	LABEL_DATA, /* "/data" */
	LABEL_HEALTHZ, /* "/healthz" */
	LABEL_READYZ, /* "/readyz" */
	LABEL_METRICS, /* "/metrics" */
	LABEL_UI, /* "/ui", and "/ui/": one page */
	LABEL_OTHER, /* any other path */
	CLASSIFY_NLABELS
};

struct classify_request {
	const char *method; /* as sent: methods are case-sensitive */
	const char *path; /* without the query string */
	const char *content_length; /* the header's value; NULL when absent */
	bool expect; /* an Expect header was sent (the client waits for 100 Continue) */
};

/* The route of rq when the largest body is max_body bytes and peers tells the mode, and
 * in *label its metrics label. For a POST *length is the declared body size (0 without
 * Content-Length), for others 0. */
enum classify_route classify_request(const struct classify_request *rq, bool peers,
				     uint64_t max_body, uint64_t *length,
				     enum classify_label *label);

/* The label as the metrics show it: "/", "/data", ..., "other". */
const char *classify_label_name(enum classify_label label);

#endif
