/* SPDX-License-Identifier: MIT */
#ifndef KUBIA_DISCOVERY_H
#define KUBIA_DISCOVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * discovery: the cluster view. One event-loop thread (epoll + timerfd) owns a c-ares
 * channel (SRV lookup of the governing Service) and a libcurl multi handle (GET /data
 * from every peer in parallel, keep-alive connections reused). Requests are submitted
 * from any thread and answered by a callback on the loop thread.
 *
 * A view shows, for each pod, data at least as new as every POST that pod had
 * acknowledged when the view was submitted. Views that may share a peer's answer under
 * that rule share one request to it, and at most peer_max_connections requests run to
 * one peer at once.
 */

struct discovery;
struct budget;

/* The longest host name taken: a DNS name's length. */
#define DISCOVERY_HOSTNAME_MAX 253

enum discovery_log_level {
	DISCOVERY_LOG_ERROR = 0,
	DISCOVERY_LOG_WARN,
	DISCOVERY_LOG_INFO,
	DISCOVERY_LOG_DEBUG,
};

/* Receives one line (no newline) about something that went wrong or changed inside the
 * loop; called on the loop thread, so it must be thread-safe and must not block. */
typedef void (*discovery_log_fn)(void *ctx, enum discovery_log_level level, const char *line);

struct discovery_config {
	const char *service; /* short name (search list) or fully qualified */
	/* The container port's name: when a bare service name exists in DNS without SRV
	 * records (the Kubernetes DNS specification defines them only for named ports),
	 * "_<port_name>._tcp.<name>" is asked instead. NULL or "": no such fallback. */
	const char *port_name;
	/* This pod's name, at most DISCOVERY_HOSTNAME_MAX bytes: its entry is read locally. */
	const char *hostname;
	const char *dns_server; /* IP[:port], [IPv6]:port; NULL or "": resolv.conf */
	const char *resolv_conf; /* NULL = /etc/resolv.conf (tests point elsewhere) */
	unsigned dns_timeout_ms; /* total time for one SRV lookup */
	unsigned cache_ms; /* longest SRV cache life (capped by TTL); 0 = off */
	unsigned peer_port; /* 0 = the SRV record's port */
	unsigned peer_timeout_ms; /* total time for one peer */
	unsigned peer_connect_timeout_ms; /* connect time for one peer */
	size_t peer_max_bytes; /* largest /data body accepted from a peer */
	unsigned peer_max_connections; /* most requests running to one peer at once (>= 1) */
	unsigned max_peers; /* most records used from one answer */
	unsigned max_pending; /* most cluster requests in flight at once */
	/* The StatefulSet's expected number of pods: the ordinals from the highest listed
	 * up to replicas - 1 are shown as missing. 0: unknown. */
	unsigned replicas;
	struct budget *budget; /* peer answers and assembled views are charged; NULL: none */
	discovery_log_fn log; /* NULL: nothing is logged */
	void *log_ctx;
};

/* A DNS server given as text: "IPv4", "IPv4:port", "IPv6", "[IPv6]" or "[IPv6]:port"
 * (addresses only: the resolver needs an address to ask). */
struct discovery_dns_server {
	int family; /* AF_INET or AF_INET6 */
	unsigned char addr[16]; /* network order; 4 bytes used for AF_INET */
	unsigned port; /* 53 when not given */
};

/* Parses text into *out. false with the reason in err (without the text itself, so the
 * caller can say where the value came from). The one parser of a DNS server: the
 * configuration checks values with it and discovery_create() uses it. */
bool discovery_parse_dns_server(const char *text, struct discovery_dns_server *out, char *err,
				size_t errlen);

/* Where this pod's own line comes from: read locally, never over the network, and never
 * copied. get() points *data and *len at this pod's data (or "No data posted yet"), kept
 * alive until release(ctx, *hold); both are called on the loop thread. */
struct discovery_local {
	void (*get)(void *ctx, const char **data, size_t *len, void **hold);
	void (*release)(void *ctx, void *hold);
	void *ctx;
};

/* What a cluster view came to. */
struct discovery_view {
	/* The whole response body (enum discovery_format), read-only: every view whose
	 * bytes would be the same gets the same body (rendered once, charged to the memory
	 * budget once), whether it waited for the same fetches or came later while the body
	 * was still held. The callee is given one reference, which it drops with
	 * discovery_body_free() (the last gives back what the body holds of the configured
	 * memory budget); the same pointer means the same bytes for as long as the callee
	 * holds it. NULL when the budget (or memory) ran out. */
	char *body;
	size_t len;
	/* How many peers could not be read (their lines are errors); 0 for a view that has
	 * no peers or could not look them up. */
	unsigned peer_errors;
};

/* Receives a view's outcome. Called exactly once per accepted request, always on the
 * loop thread (also during discovery_stop(), which waits for it). It may call
 * discovery_request() but must not call discovery_stop() or discovery_destroy(). */
typedef void (*discovery_done_fn)(void *ctx, const struct discovery_view *view);

/* Drops a reference to a view's body; the last frees it and gives back its charge. NULL
 * is a no-op. Any thread. */
void discovery_body_free(char *body);

/* What a view's body is. */
enum discovery_format {
	/* The text view, head included: "You've hit <hostname>\nData stored in the
	 * cluster:\n", then one line per pod. */
	DISCOVERY_FORMAT_TEXT = 0,
	/* The whole JSON document of the view (docs/view-json.md), newline-terminated:
	 * this pod, the SRV answer as it was seen, every line's peer. */
	DISCOVERY_FORMAT_JSON,
};

/* Creates the loop thread. NULL on failure with one line in err (a bad dns_server, a
 * zero time-out or limit, an empty service name). The first call also initialises
 * libcurl and c-ares for the whole process (curl_global_init, ares_library_init, once,
 * never undone). */
struct discovery *discovery_create(const struct discovery_config *cfg,
				   const struct discovery_local *local, char *err, size_t errlen);

/* Queues one cluster-view request; thread-safe. Returns false (done is not called)
 * when the queue is full or the loop is stopping. */
bool discovery_request(struct discovery *d, discovery_done_fn done, void *ctx);

/* As discovery_request(), with the body in the given format. */
bool discovery_request_as(struct discovery *d, enum discovery_format format, discovery_done_fn done,
			  void *ctx);

/* Ends every request still in flight (peers not yet answered get an
 * "Error: shutting down" line; requests still waiting for DNS get
 * "Could not look up DNS SRV records: <name asked>: shutting down", or without the name
 * when none was being asked), then stops the thread. Every
 * accepted request's done callback has run when this returns. Idempotent, and safe
 * to call from several threads. */
void discovery_stop(struct discovery *d);

/* Stops (if needed) and frees. NULL is a no-op. */
void discovery_destroy(struct discovery *d);

/* What the watcher found in one round (discovery_watch()). */
struct discovery_watch_event {
	/* The view as one line of compact JSON (the document of DISCOVERY_FORMAT_JSON,
	 * without a newline) when it differs from the last one reported, not counting
	 * srv.from_cache and the peers' fetch_ms; ownership passes to the callee, who frees
	 * it with discovery_body_free(). NULL when nothing changed, or the round could not
	 * be made (budget, max_pending). */
	char *body;
	size_t len;
	uint64_t changed_at_ms; /* Unix time in ms when the change was seen */
};

/* Receives every round of the watcher, on the loop thread; must not block. */
typedef void (*discovery_watch_fn)(void *ctx, struct discovery_watch_event *ev);

/*
 * The watcher: while on, one view every interval_ms (the first at once, rounds never
 * overlapping), assembled as any other view and compared with the last one, each round
 * reported to fn(ctx). One per discovery object, however many wait for its reports: the
 * caller fans them out. Thread-safe; on takes effect on the loop thread soon after.
 * Turning it off forgets the last view. It is off once discovery_stop() has begun.
 */
void discovery_watch(struct discovery *d, bool on, unsigned interval_ms, discovery_watch_fn fn,
		     void *ctx);

#endif
