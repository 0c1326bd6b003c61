/* SPDX-License-Identifier: MIT */
#ifndef KUBIA_HTTP_INTERNAL_H
#define KUBIA_HTTP_INTERNAL_H

/*
 * What the files of the HTTP server share; only server/ includes it. http.c holds the
 * server's life (the daemon, the fixed responses, start and shutdown), routes.c the
 * requests (what each one is and how it is answered), responses.c the helpers that build
 * and queue an answer and the responses cached from the stored data.
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
	struct MHD_Response *data_resp;
	struct MHD_Response *pet_resp;

	/* Fixed responses, built once. */
	struct MHD_Response *stored_resp;
	struct MHD_Response *healthz_resp;
	struct MHD_Response *ready_resp;
	struct MHD_Response *stopping_resp;
	struct MHD_Response *method_resp;
	struct MHD_Response *too_large_resp;
	struct MHD_Response *busy_resp;
	struct MHD_Response *over_budget_resp; /* 503 with Retry-After */

	/* The body lengths of the fixed responses and of the data responses, for the
	 * access log (metrics.c). */
	struct {
		const struct MHD_Response *r;
		size_t len;
	} fixed_len[16];
	size_t nfixed;
	size_t data_len; /* under cache_lock */
	size_t pet_len;

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
enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
			   const char *method, const char *version, const char *upload_data,
			   size_t *upload_data_size, void **req_cls);
void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
		  enum MHD_RequestTerminationCode toe);

/* strict.c: what libmicrohttpd lets through and RFC 9112 refuses. */
/* The URL unescaper (MHD_OPTION_UNESCAPE_CALLBACK): marks a request whose target holds
 * raw control bytes, for strict_check(), then unescapes as libmicrohttpd does. */
size_t strict_unescape(void *cls, struct MHD_Connection *conn, char *s);
/* 0 when the request may be served, else the status to refuse it with and *why. */
unsigned strict_check(struct MHD_Connection *conn, const char *method, const char *version,
		      const char **why);
/* Queues the refusal and closes the connection after it. */
enum MHD_Result strict_refuse(struct MHD_Connection *conn, unsigned status, const char *why);

/* responses.c */
struct MHD_Response *text_response(const char *text, size_t len);
/* Takes ownership of buf (malloc()ed) in every case. */
struct MHD_Response *owned_response(char *buf, size_t len);
/* Queues buf (from charged_alloc(), len bytes) as the body: its charge is given back
 * when libmicrohttpd is done with the response. Takes buf over in every case. */
enum MHD_Result queue_charged(struct MHD_Connection *conn, unsigned status, char *buf, size_t len);
/* As queue_charged(), with another Content-Type. */
enum MHD_Result queue_charged_as(struct MHD_Connection *conn, unsigned status, char *buf,
				 size_t len, const char *content_type);

/* size bytes charged to budget; NULL when they do not fit or memory ran out. */
char *charged_alloc(struct budget *budget, size_t size);

/* Gives back a buffer from charged_alloc() that was never queued. */
void charged_free(char *buf);

enum MHD_Result queue_owned(struct MHD_Connection *conn, unsigned status, char *buf, size_t len);
enum MHD_Result queue_fmt(struct MHD_Connection *conn, unsigned status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
enum MHD_Result queue_fixed(struct MHD_Connection *conn, unsigned status, struct MHD_Response *r);
/* Must hold cache_lock. Rebuilds the data responses if a POST changed the data. */
bool cache_refresh_locked(struct http_server *s);

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

#endif
