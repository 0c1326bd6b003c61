/* SPDX-License-Identifier: MIT */
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/budget.h"
#include "discovery/discovery.h"
#include "server/classify.h"
#include "server/guard.h"
#include "server/http_internal.h"
#include "server/log.h"
#include "server/observe.h"
#include "server/request.h"
#include "server/stream.h"
#include "server/ui.h"
#include "storage/storage.h"

/* GET /data and, in pet mode, GET of any other path. */
static enum MHD_Result serve_data(struct http_server *s, struct MHD_Connection *conn, bool pet)
{
	enum MHD_Result ret = MHD_NO;

	pthread_mutex_lock(&s->cache_lock);
	if (response_cache_refresh_locked(s)) {
		ret = queue_fixed(conn, MHD_HTTP_OK, pet ? &s->pet_resp : &s->data_resp);
	}
	pthread_mutex_unlock(&s->cache_lock);
	return ret;
}

static enum MHD_Result serve_ready(struct http_server *s, struct MHD_Connection *conn)
{
	char why[256];

	if (atomic_load(&s->stopping)) {
		return queue_fixed(conn, MHD_HTTP_SERVICE_UNAVAILABLE, s->stopping_resp);
	}
	if (!storage_ready(s->st, why, sizeof(why))) {
		return queue_fmt(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready: %s\n", why);
	}
	return queue_fixed(conn, MHD_HTTP_OK, s->ready_resp);
}

/* A cluster view's response: one per body discovery made, queued on every connection
 * the body was handed to. libmicrohttpd counts the response's references only from
 * MHD_queue_response() on, so the requests that have it but have not queued it yet are
 * counted here; the last of them drops the creator's reference, and the body goes when
 * the last connection sending it is done. */
struct view_response {
	struct MHD_Response *resp;
	const char *body; /* which body it sends: alive as long as the response is */
	size_t len;
	bool json;
	unsigned waiting; /* under the server's view_lock */
};

/* The response's free callback: its reference to the body. */
static void release_view(void *body)
{
	discovery_body_free(body);
}

/* A response of body (len bytes; the caller's reference is taken over), one waiting
 * request; NULL when memory ran out (the body is given back). */
static struct view_response *view_response_new(char *body, size_t len, bool json)
{
	struct view_response *vr = malloc(sizeof(*vr));

	if (vr == NULL) {
		discovery_body_free(body);
		return NULL;
	}
	vr->resp = MHD_create_response_from_buffer_with_free_callback_cls(len, body, release_view,
									  body);
	if (vr->resp == NULL) {
		discovery_body_free(body);
		free(vr);
		return NULL;
	}
	if (MHD_add_response_header(vr->resp, MHD_HTTP_HEADER_CONTENT_TYPE,
				    json ? CONTENT_TYPE_JSON : CONTENT_TYPE) != MHD_YES) {
		MHD_destroy_response(vr->resp);
		free(vr);
		return NULL;
	}
	vr->body = body;
	vr->len = len;
	vr->json = json;
	vr->waiting = 1;
	return vr;
}

/* The response for body (the caller's reference is taken over): the latest one when it
 * sends this body (the same pointer is the same bytes while that response holds it),
 * else a new one, which becomes the latest. NULL when memory ran out. */
static struct view_response *view_response_for(struct http_server *s, char *body, size_t len,
					       bool json)
{
	struct view_response *vr;

	pthread_mutex_lock(&s->view_lock);
	vr = s->view_latest[json];
	if (vr != NULL && vr->body == body) {
		vr->waiting++;
		pthread_mutex_unlock(&s->view_lock);
		discovery_body_free(body); /* the response holds one reference for all */
		return vr;
	}
	pthread_mutex_unlock(&s->view_lock);
	vr = view_response_new(body, len, json);
	if (vr != NULL) {
		pthread_mutex_lock(&s->view_lock);
		s->view_latest[json] = vr;
		pthread_mutex_unlock(&s->view_lock);
	}
	return vr;
}

/* A request that had vr has queued it or will not: the last one lets the response go
 * (connections still sending it keep theirs). */
static void view_response_done(struct http_server *s, struct view_response *vr)
{
	bool last;

	pthread_mutex_lock(&s->view_lock);
	last = --vr->waiting == 0;
	if (last && s->view_latest[vr->json] == vr) {
		s->view_latest[vr->json] = NULL;
	}
	pthread_mutex_unlock(&s->view_lock);
	if (last) {
		MHD_destroy_response(vr->resp);
		free(vr);
	}
}

/* Runs on the discovery loop thread. */
static void on_cluster_done(void *ctx, const struct discovery_view *view)
{
	struct request *r = ctx;

	r->view = view->body != NULL ? view_response_for(r->srv, view->body, view->len, r->json)
				     : NULL;
	r->peer_errors = view->peer_errors;
	/* The release store publishes the view to the MHD thread that reads state. */
	atomic_store_explicit(&r->state, WAIT_DONE, memory_order_release);
	MHD_resume_connection(r->conn);
}

/* A request is no longer in flight: the last one wakes a shutdown waiting for that. */
static void leave_in_flight(struct http_server *s)
{
	if (atomic_fetch_sub(&s->in_flight, 1) == 1 && atomic_load(&s->stopping)) {
		pthread_mutex_lock(&s->idle_lock);
		pthread_cond_broadcast(&s->idle_cond);
		pthread_mutex_unlock(&s->idle_lock);
	}
}

/* libmicrohttpd's reader of a view stream's response. */
static ssize_t read_stream(void *cls, uint64_t pos, char *buf, size_t max)
{
	ssize_t n = stream_read(cls, buf, max);

	(void)pos;
	if (n == -1) {
		return MHD_CONTENT_READER_END_OF_STREAM;
	}
	return n == -2 ? MHD_CONTENT_READER_END_WITH_ERROR : n;
}

/* GET of the view as Server-Sent Events: a subscriber of the pod's watcher, answered
 * for as long as the client stays (or until SIGTERM). */
static enum MHD_Result serve_stream(struct http_server *s, struct request *r)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	struct MHD_Response *resp;
	enum MHD_Result ret;

	if (ci == NULL) {
		return MHD_NO;
	}
	switch (stream_open(s->streams, r->conn, ci->connect_fd, &r->stream)) {
	case STREAM_OPEN_OK:
		/* A stream never completes: it is not a request the shutdown's grace waits
		 * for. SIGTERM ends it (stream_stop_all()) while the shutdown goes on. */
		leave_in_flight(s);
		break;
	case STREAM_OPEN_FULL:
		return queue_fixed(r->conn, MHD_HTTP_SERVICE_UNAVAILABLE, s->streams_full_resp);
	case STREAM_OPEN_STOPPING:
		return queue_fixed(r->conn, MHD_HTTP_SERVICE_UNAVAILABLE, s->stopping_resp);
	default:
		return queue_fixed(r->conn, MHD_HTTP_SERVICE_UNAVAILABLE, s->over_budget_resp);
	}
	/* No free callback: the subscriber is closed with the request (routes_on_completed),
	 * after which libmicrohttpd never reads the response again. */
	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, read_stream, r->stream,
						 NULL);
	if (resp == NULL) {
		return MHD_NO;
	}
	if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream") !=
		    MHD_YES ||
	    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache") != MHD_YES ||
	    MHD_add_response_header(resp, "X-Accel-Buffering", "no") != MHD_YES) {
		MHD_destroy_response(resp);
		return MHD_NO;
	}
	ret = queue_response(r->conn, MHD_HTTP_OK, resp, 0);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result serve_cluster(struct http_server *s, struct request *r)
{
	int state = atomic_load_explicit(&r->state, memory_order_acquire);
	enum MHD_Result ret;

	switch (state) {
	case WAIT_NEW:
		if (view_stream_of(r->conn)) {
			return serve_stream(s, r);
		}
		switch (view_format_of(r->conn)) {
		case VIEW_FORMAT_BAD:
			return view_format_refuse(r->conn);
		case VIEW_FORMAT_JSON:
			r->json = true;
			break;
		default:
			break;
		}
		/* Suspend before handing the job over: the answer may come back before
		 * discovery_request() even returns. */
		atomic_store(&r->state, WAIT_SUSPENDED);
		MHD_suspend_connection(r->conn);
		if (!discovery_request_as(s->disc,
					  r->json ? DISCOVERY_FORMAT_JSON : DISCOVERY_FORMAT_TEXT,
					  on_cluster_done, r)) {
			atomic_store(&r->state, WAIT_REJECTED);
			MHD_resume_connection(r->conn);
		}
		return MHD_YES;
	case WAIT_SUSPENDED:
		return MHD_YES;
	case WAIT_REJECTED:
		/* Discovery refuses views when max_pending are in flight, and once it is
		 * stopped: a view on a kept-alive connection after SIGTERM is told so. */
		return queue_fixed(r->conn, MHD_HTTP_SERVICE_UNAVAILABLE,
				   atomic_load(&s->stopping) ? s->stopping_resp : s->busy_resp);
	default:
		break;
	}
	if (r->view == NULL) {
		/* The memory budget (or memory) ran out while the view was assembled. */
		return queue_fixed(r->conn, MHD_HTTP_SERVICE_UNAVAILABLE, s->over_budget_resp);
	}
	/* The view is whole, as discovery made it, and may be queued on other connections
	 * too. */
	ret = queue_response(r->conn, MHD_HTTP_OK, r->view->resp, r->view->len);
	view_response_done(s, r->view);
	r->view = NULL;
	return ret;
}

/* Runs on the storage writer thread, once the commit covering this POST is durable or
 * has failed. */
static void on_post_done(void *ctx, const struct storage_outcome *o)
{
	struct request *r = ctx;

	r->outcome = *o;
	/* The release store publishes the outcome to the MHD thread that reads state. */
	atomic_store_explicit(&r->state, WAIT_DONE, memory_order_release);
	MHD_resume_connection(r->conn);
}

/* The upload is complete: hand the body to the writer and wait, suspended, for the
 * commit. The HTTP thread goes on serving others meanwhile. */
static enum MHD_Result submit_post(struct http_server *s, struct request *r)
{
	if (r->body == NULL) {
		r->body = malloc(1); /* an empty body is still a body to store */
		if (r->body == NULL) {
			return queue_fmt(
				r->conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
				"Could not store data: out of memory; previous data kept\n");
		}
		r->cap = 1;
	}
	if (r->len == r->cap) {
		/* The writer needs room for the NUL it adds. */
		char *p = realloc(r->body, r->len + 1);

		if (p == NULL) {
			return queue_fmt(
				r->conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
				"Could not store data: out of memory; previous data kept\n");
		}
		r->body = p;
		r->cap = r->len + 1;
	}
	/* Suspend before handing the body over: the commit may end before
	 * storage_submit() even returns. */
	atomic_store(&r->state, WAIT_SUSPENDED);
	MHD_suspend_connection(r->conn);
	if (storage_submit(s->st, r->body, r->len, on_post_done, r)) {
		r->body = NULL; /* the writer's now */
	} else {
		atomic_store(&r->state, WAIT_REJECTED);
		MHD_resume_connection(r->conn);
	}
	return MHD_YES;
}

static enum MHD_Result finish_post(struct http_server *s, struct request *r)
{
	const struct storage_outcome *o = &r->outcome;
	const char *note;
	unsigned status;

	if (r->too_large) {
		return queue_fixed(r->conn, MHD_HTTP_CONTENT_TOO_LARGE, s->too_large_resp);
	}
	if (r->over_budget) {
		return queue_fixed(r->conn, MHD_HTTP_SERVICE_UNAVAILABLE, s->over_budget_resp);
	}
	switch (atomic_load_explicit(&r->state, memory_order_acquire)) {
	case WAIT_NEW:
		return submit_post(s, r);
	case WAIT_SUSPENDED:
		return MHD_YES;
	case WAIT_REJECTED:
		return queue_fmt(r->conn, MHD_HTTP_SERVICE_UNAVAILABLE,
				 "Could not store data: shutting down; previous data kept\n");
	default:
		break;
	}
	if (o->res == STORAGE_OK) {
		/* At debug level: the access log already has a line for the POST. */
		log_msg(LOG_LEVEL_DEBUG, "new data has been received and stored (%zu bytes)",
			r->len);
		return queue_fixed(r->conn, MHD_HTTP_OK, s->stored_resp);
	}
	/* The stored data in memory never change on a failure, so they are still what GET
	 * answers; only the disk can have lost them. */
	note = o->previous_kept ? "previous data kept"
				: "previous data still served but may be lost on disk";
	status = MHD_HTTP_INTERNAL_SERVER_ERROR;
	if (o->res == STORAGE_ENOSPC) {
		status = MHD_HTTP_INSUFFICIENT_STORAGE;
	} else if (o->res == STORAGE_GONE) {
		/* Not ready either (GET /readyz says why); only a restart stores again. */
		status = MHD_HTTP_SERVICE_UNAVAILABLE;
		note = "previous data still served but no longer in the data directory";
	}
	log_msg(LOG_LEVEL_ERROR, "could not store %zu bytes: %s; %s", r->len, o->err, note);
	return queue_fmt(r->conn, status, "Could not store data: %s; %s\n", o->err, note);
}

/* Stops keeping the body: what arrives from now on is read and dropped. */
static void drop_body(struct http_server *s, struct request *r, size_t arriving)
{
	r->discarded = r->len + arriving;
	free(r->body);
	r->body = NULL;
	r->len = 0;
	r->cap = 0;
	budget_credit(s->budget, r->charged);
	r->charged = 0;
}

/* Makes room for n more bytes, charged to the budget; false when they do not fit. */
static bool grow_body(struct http_server *s, struct request *r, size_t n)
{
	size_t cap = r->cap != 0 ? r->cap : 4096;
	char *p;

	while (cap < r->len + n) {
		cap *= 2;
	}
	/* One byte more than the limit: room for the NUL the stored blob gets. */
	if (cap > s->cfg->max_body + 1) {
		cap = (size_t)s->cfg->max_body + 1;
	}
	if (!budget_charge(s->budget, cap - r->cap)) {
		return false;
	}
	p = realloc(r->body, cap);
	if (p == NULL) {
		budget_credit(s->budget, cap - r->cap);
		return false;
	}
	r->charged += cap - r->cap;
	r->body = p;
	r->cap = cap;
	return true;
}

static enum MHD_Result receive_post(struct http_server *s, struct request *r, const char *data,
				    size_t *size)
{
	size_t n = *size;

	*size = 0;
	guard_body(r, n);
	if (r->too_large || r->over_budget) {
		r->discarded += n;
		/* Stop reading an endless body: closing is the only answer left. */
		return r->discarded > s->cfg->max_body + CLASSIFY_DISCARD_SLACK ? MHD_NO : MHD_YES;
	}
	if ((uint64_t)r->len + n > s->cfg->max_body) {
		r->too_large = true;
		drop_body(s, r, n);
		return MHD_YES;
	}
	if (r->len + n > r->cap && !grow_body(s, r, n)) {
		r->over_budget = true;
		drop_body(s, r, n);
		return MHD_YES;
	}
	memcpy(r->body + r->len, data, n);
	r->len += n;
	return MHD_YES;
}

/* A client that waits for "100 Continue" sends nothing more until told. */
static bool waits_for_continue(struct MHD_Connection *conn)
{
	return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT) != NULL;
}

/* First call of a POST to be read (ROUTE_STORE or ROUTE_TOO_LARGE_DRAIN): the body's
 * room is charged and allocated now when Content-Length gives its size, so that an
 * upload that cannot fit is turned away before it is read. */
static enum MHD_Result first_post(struct http_server *s, struct request *r, uint64_t want)
{
	struct MHD_Connection *conn = r->conn;

	if (r->route == ROUTE_TOO_LARGE_DRAIN) {
		r->too_large = true;
	} else if (want > 0 && !budget_charge(s->budget, want + 1)) {
		r->over_budget = true;
		if (waits_for_continue(conn)) {
			return queue_fixed(conn, MHD_HTTP_SERVICE_UNAVAILABLE, s->over_budget_resp);
		}
	} else if (want > 0) {
		/* One byte more for the NUL the stored blob gets: no copy later. */
		r->charged = want + 1;
		r->body = malloc((size_t)want + 1);
		if (r->body == NULL) {
			return MHD_NO; /* routes_on_completed() gives the charge back */
		}
		r->cap = (size_t)want + 1;
	}
	return MHD_YES;
}

/* First call for a request: decide what it is (classify.c), once; answer at once only
 * when the body must not be read (405, 400 and 413 by Content-Length). Answers that can
 * wait are queued on the second call: libmicrohttpd closes the connection after a
 * response queued on the first, which would cost keep-alive on every request. */
static enum MHD_Result first_call(struct http_server *s, struct request *r, const char *url,
				  const char *method, const char *version)
{
	struct MHD_Connection *conn = r->conn;
	/* An absolute target is served as its path (its authority was checked). */
	const char *path = url[0] == '/' ? url : strict_origin_path(url);
	const struct classify_request cr = {
		.method = method,
		.path = path,
		.content_length = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
							      MHD_HTTP_HEADER_CONTENT_LENGTH),
		.expect = waits_for_continue(conn),
	};
	uint64_t want = 0;
	const char *why = NULL;
	unsigned refuse;

	r->route = classify_request(&cr, s->disc != NULL, s->cfg->max_body, &want, &r->label);
	obs_begin(r, path, method);
	/* Only a POST whose body is read has a body phase; the rest are answered now. */
	guard_phase(r, r->route == ROUTE_STORE || r->route == ROUTE_TOO_LARGE_DRAIN ? GUARD_BODY
										    : GUARD_BUSY);
	refuse = strict_check(conn, method, version, &why);
	if (refuse != 0) {
		/* A route answered on the first call and never served: not a view, nor a POST
		 * whose body is read. */
		r->route = ROUTE_BAD_LENGTH;
		return strict_refuse(conn, refuse, why);
	}
	switch (r->route) {
	case ROUTE_METHOD:
		return queue_fixed(conn, MHD_HTTP_METHOD_NOT_ALLOWED, s->method_resp);
	case ROUTE_TOO_LARGE:
		return queue_fixed(conn, MHD_HTTP_CONTENT_TOO_LARGE, s->too_large_resp);
	case ROUTE_BAD_LENGTH:
		return queue_fmt(conn, MHD_HTTP_BAD_REQUEST,
				 "Bad request: Content-Length is not a number\n");
	case ROUTE_STORE:
	case ROUTE_TOO_LARGE_DRAIN:
		return first_post(s, r, want);
	default:
		return MHD_YES;
	}
}

/* Second call of a request that keeps no state but its route. */
static enum MHD_Result serve_route(struct http_server *s, struct request *r)
{
	switch (r->route) {
	case ROUTE_DATA:
		return serve_data(s, r->conn, false);
	case ROUTE_HEALTHZ:
		return queue_fixed(r->conn, MHD_HTTP_OK, s->healthz_resp);
	case ROUTE_READYZ:
		return serve_ready(s, r->conn);
	case ROUTE_METRICS:
		return obs_serve_metrics(s, r->conn);
	case ROUTE_UI:
		return ui_serve(r->conn);
	default:
		return serve_data(s, r->conn, true); /* pet mode */
	}
}

enum MHD_Result routes_on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **req_cls)
{
	struct http_server *s = cls;
	struct request *r = *req_cls;

	if (r == NULL) {
		r = request_of(conn);
		if (r == NULL) {
			return MHD_NO; /* memory ran out when the connection opened */
		}
		*req_cls = r;
		atomic_fetch_add(&s->in_flight, 1);
		return first_call(s, r, url, method, version);
	}
	switch (r->route) {
	case ROUTE_STORE:
	case ROUTE_TOO_LARGE_DRAIN:
		if (*upload_data_size != 0) {
			return receive_post(s, r, upload_data, upload_data_size);
		}
		guard_phase(r, GUARD_BUSY);
		return finish_post(s, r);
	case ROUTE_CLUSTER:
		*upload_data_size = 0;
		return serve_cluster(s, r);
	default:
		if (*upload_data_size != 0) {
			*upload_data_size = 0; /* a body on GET means nothing: drop it */
			return MHD_YES;
		}
		return serve_route(s, r);
	}
}

void routes_on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct http_server *s = cls;
	struct request *r = *req_cls;
	bool streamed;

	if (r == NULL) {
		return;
	}
	obs_end(r);
	guard_next(r);
	streamed = r->stream != NULL;
	if (streamed) {
		stream_close(r->stream);
		r->stream = NULL;
	}
	/* Only these keep state beyond the route: GET /data's completion frees nothing. */
	if (r->route == ROUTE_STORE || r->route == ROUTE_TOO_LARGE_DRAIN ||
	    r->route == ROUTE_CLUSTER) {
		budget_credit(s->budget, r->charged);
		free(r->body);
		if (r->view != NULL) {
			view_response_done(s, r->view);
		}
		request_reset(r);
	}
	*req_cls = NULL;
	if (!streamed) {
		leave_in_flight(s);
	}
}
