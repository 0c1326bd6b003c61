/* SPDX-License-Identifier: MIT */
#ifndef KUBIA_HTTP_INTERNAL_H
#define KUBIA_HTTP_INTERNAL_H

/*
 * What the files of the HTTP server share; only server/ includes it. Each file calls only
 * files below it: http.c holds the server's life (the daemon, the fixed responses, start
 * and shutdown) and hands libmicrohttpd the callbacks of routes.c, the requests (what
 * each one is and how it is answered), which uses observe.c (each request counted, timed
 * and logged; GET /metrics), format.c and strict.c, which all queue their answers through
 * responses.c (building and queuing responses; the responses cached from the stored
 * data), which records each answer's length in the request record (request.c).
 */

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "server/http.h"

#define CONTENT_TYPE "text/plain; charset=utf-8"
#define CONTENT_TYPE_JSON "application/json"

/* A response built once and sent many times, with the length of its body (for the
 * access log: libmicrohttpd does not tell it). */
struct fixed_response {
	struct MHD_Response *r;
	size_t len;
};

#define FIXED_MAX 12

struct http_server {
	const struct config *cfg;
	struct storage *st;
	struct discovery *disc;
	struct budget *budget; /* bodies and responses in flight are charged to it */
	struct MHD_Daemon *daemon;
	unsigned port;
	atomic_bool stopping;
	atomic_uint in_flight;
	pthread_mutex_t idle_lock;
	pthread_cond_t idle_cond;

	/* Responses built from the stored data, rebuilt when its generation changes so
	 * that GET /data is served from memory without a system call. MHD reference-counts
	 * responses, so an old one stays valid for connections still sending it. */
	pthread_mutex_t cache_lock;
	uint64_t cache_gen;
	struct fixed_response data_resp;
	struct fixed_response pet_resp;

	/* The latest cluster view's response of each format (text, JSON), queued on every
	 * connection discovery hands the same body to (routes.c); NULL once no request
	 * waits to queue it. */
	pthread_mutex_t view_lock;
	struct view_response *view_latest[2];

	/* Fixed responses, built once, in fixed[]. */
	struct fixed_response fixed[FIXED_MAX];
	size_t nfixed;
	const struct fixed_response *stored_resp;
	const struct fixed_response *healthz_resp;
	const struct fixed_response *ready_resp;
	const struct fixed_response *stopping_resp;
	const struct fixed_response *method_resp;
	const struct fixed_response *too_large_resp;
	const struct fixed_response *busy_resp;
	const struct fixed_response *over_budget_resp; /* 503 with Retry-After */
	const struct fixed_response *streams_full_resp; /* 503 with Retry-After */

	struct stream_hub *streams; /* the view stream's subscribers; NULL in pet mode */

	struct guard *guard; /* deadlines, and room in a full table (guard.c) */

	MHD_socket quiesced_fd; /* closed only after MHD_stop_daemon() (MHD's rule) */

	/* The last thing MHD said while starting, for the error message. MHD reports a
	 * failure to start on the thread that starts it, while its own threads, already
	 * running, may log too: only the starting thread's lines are kept, so start_error
	 * is never shared, and starting is atomic because every thread reads it. */
	pthread_t starter;
	atomic_bool starting;
	char start_error[256];
};

/* routes.c: MHD's access handler and request-completed callback, with the server as
 * their closure. */
enum MHD_Result routes_on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **req_cls);
void routes_on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
			 enum MHD_RequestTerminationCode toe);

/* strict.c: what libmicrohttpd lets through and RFC 9112 refuses. */
/* The URI logger (MHD_OPTION_URI_LOG_CALLBACK), the one hook that sees the request
 * target as sent: marks a target of a form kubia does not serve, for strict_check(). */
void *strict_uri_log(void *cls, const char *uri, struct MHD_Connection *conn);
/* What is wrong with the raw request target uri (a reason), or NULL when it is in origin
 * form or absolute with http and a valid authority. */
const char *strict_target_problem(const char *uri);
/* The path of url: url itself in origin form, its path (or "/") in absolute form. */
const char *strict_origin_path(const char *url);
/* Whether a..a+n is an RFC 3986 authority without userinfo: a reg-name, IPv4 address
 * or [IPv6], with an optional numeric port. Empty is valid (RFC 9112 3.2: an empty Host). */
bool strict_authority_valid(const char *a, size_t n);
/* The URL unescaper (MHD_OPTION_UNESCAPE_CALLBACK): marks a request whose target holds
 * raw control bytes, for strict_check(), then unescapes as libmicrohttpd does. */
size_t strict_unescape(void *cls, struct MHD_Connection *conn, char *s);
/* 0 when the request may be served, else the status to refuse it with and *why. */
unsigned strict_check(struct MHD_Connection *conn, const char *method, const char *version,
		      const char **why);
/* Queues the refusal and closes the connection after it. */
enum MHD_Result strict_refuse(struct MHD_Connection *conn, unsigned status, const char *why);

/* wire.c: the bytes libmicrohttpd reads, checked before it reads them. The process's
 * recv() is wire.c's: for a socket of the HTTP server it runs the scanner below and, on a
 * fault, sends kubia's one 400 with Connection: close and makes libmicrohttpd close the
 * connection without writing; every other socket is read as before. */
/* Where a scanner is in the stream of requests on one connection. */
struct wire_scan {
	uint8_t state;
	uint8_t sub; /* progress within the state (a version's letters, a value's form) */
	uint8_t val; /* which framing field the value being read is */
	uint8_t cl_pos, te_pos; /* the name so far matches Content-Length/Transfer-Encoding */
	uint8_t digits;
	uint8_t blank; /* empty lines before the request line */
	uint8_t te_count;
	bool name_len; /* the name or target has a byte */
	bool has_cl;
	bool te_chunked;
	bool te_space;
	bool in_trailer;
	uint64_t num; /* the chunk size being read */
	uint64_t left; /* Content-Length, then the bytes of the body or chunk still to come */
};
void wire_scan_init(struct wire_scan *sc);
/* Scans the next len bytes of the connection. NULL when they hold no fault, with *ended
 * the requests that ended in them; else the fault, *clean the bytes before the faulty
 * request (0 when it began in an earlier call) and *ended the requests in those. */
const char *wire_scan(struct wire_scan *sc, const unsigned char *buf, size_t len, size_t *clean,
		      unsigned *ended);
/* Whether the scanner is between requests: a request ended, and no byte of the next. */
bool wire_scan_between(const struct wire_scan *sc);
/* The table of the server's sockets; false when memory ran out. Idempotent. */
bool wire_init(void);
/* fd is a connection of the server's from now; done counts the requests libmicrohttpd
 * has finished on it (guard.c's). */
void wire_open(int fd, const atomic_uint *done);
/* fd is about to be closed. */
void wire_close(int fd);

/* responses.c. Every answer is queued through queue_response(), which records the
 * body's length for the access log. */
/* A text/plain response with a copy of text. */
struct MHD_Response *response_text(const char *text, size_t len);
/* A text/plain response of buf (malloc()ed), which it takes over in every case. */
struct MHD_Response *response_owned(char *buf, size_t len);
/* The one way an answer is queued: r (not taken over), whose body is len bytes. */
enum MHD_Result queue_response(struct MHD_Connection *conn, unsigned status, struct MHD_Response *r,
			       size_t len);
enum MHD_Result queue_fixed(struct MHD_Connection *conn, unsigned status,
			    const struct fixed_response *f);
/* Queues buf (from charged_alloc(), len bytes) as the body, of content_type: its charge
 * is given back when libmicrohttpd is done with the response. Takes buf over in every
 * case. */
enum MHD_Result queue_charged_as(struct MHD_Connection *conn, unsigned status, char *buf,
				 size_t len, const char *content_type);
/* Queues buf (malloc()ed, len bytes), taken over in every case. */
enum MHD_Result queue_owned(struct MHD_Connection *conn, unsigned status, char *buf, size_t len);
enum MHD_Result queue_fmt(struct MHD_Connection *conn, unsigned status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* size bytes charged to budget; NULL when they do not fit or memory ran out. */
char *charged_alloc(struct budget *budget, size_t size);

/* Gives back a buffer from charged_alloc() that was never queued. */
void charged_free(char *buf);

/* Must hold cache_lock. Rebuilds the data responses if a POST changed the data. */
bool response_cache_refresh_locked(struct http_server *s);

/* format.c: the format a cluster view is asked in. */
enum view_format {
	VIEW_FORMAT_TEXT = 0,
	VIEW_FORMAT_JSON,
	VIEW_FORMAT_BAD, /* "?format=" names no format kubia has */
};
/* format: the value of "?format=" (NULL: not given), which wins; else accept: every
 * Accept field joined with ", " (NULL: none). JSON only when application/json weighs
 * more than text/plain under the most specific ranges that match each. */
enum view_format view_format_choose(const char *format, const char *accept);
/* view_format_choose() for a request. */
enum view_format view_format_of(struct MHD_Connection *conn);
/* Queues the 400 for an unknown "?format=". */
enum MHD_Result view_format_refuse(struct MHD_Connection *conn);
/* Whether a view is asked as a stream of events: watch is "?watch=" (NULL: not given),
 * given, decides ("1" asks for it); else accept (as for view_format_choose()) must weigh
 * text/event-stream more than both application/json and text/plain. */
bool view_stream_choose(const char *watch, const char *accept);
/* view_stream_choose() for a request. */
bool view_stream_of(struct MHD_Connection *conn);

#endif
