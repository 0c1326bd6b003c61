/* SPDX-License-Identifier: MIT */
/*
 * Requests counted, timed and logged, and GET /metrics: the Prometheus text exposition
 * format, version 0.0.4, of the HTTP counters kept here and of the process's registry
 * (common/metrics.h: commits, SRV lookups, peer fetches).
 *
 * The HTTP counters are sharded: each thread adds to a shard of its own (a thread takes
 * the next of SHARDS the first time it counts), so the threads serving requests never
 * write the same cache line; the exposition adds the shards up. Route labels (classify.c)
 * and status codes are small fixed sets, so what clients send cannot grow the label sets.
 */
#include <microhttpd.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/budget.h"
#include "common/metrics.h"
#include "common/monotonic.h"
#include "server/guard.h"
#include "server/http_internal.h"
#include "server/log.h"
#include "server/observe.h"
#include "server/request.h"
#include "version.h"

#define EXPOSITION_TYPE "text/plain; version=0.0.4; charset=utf-8"
/* The exposition's buffer, charged to the budget while it is sent; the page is about
 * 25 KiB. */
#define EXPOSITION_MAX ((size_t)64 << 10)
#define SHARDS 8
#define NROUTES CLASSIFY_NLABELS

/* The statuses kubia answers with; anything else (none: the connection ended first) is
 * counted as "other". */
static const unsigned codes[] = {200, 304, 400, 404, 405, 413, 417, 500, 501, 503, 507};
#define NCODES (sizeof(codes) / sizeof(codes[0]) + 1)

struct shard {
	_Alignas(64) _Atomic uint64_t requests[NROUTES][NCODES];
	struct metrics_histogram duration[NROUTES];
	_Atomic uint64_t body_bytes;
};

static struct shard shards[SHARDS];
static atomic_uint next_shard;
static _Thread_local unsigned my_shard; /* 1 + index; 0: not chosen yet */
static _Atomic uint64_t connections_open;

void obs_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
		       enum MHD_ConnectionNotificationCode code)
{
	struct http_server *s = cls;

	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci =
			MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
		struct request *rq = request_new(s, conn);

		if (rq != NULL && ci != NULL) {
			guard_add(s->guard, rq, ci->connect_fd);
		} else if (rq != NULL) {
			free(rq);
			rq = NULL; /* the access handler refuses a connection without a record */
		}
		*socket_context = rq;
		metrics_add(&connections_open, 1);
		return;
	}
	if (*socket_context != NULL) {
		guard_remove(s->guard, *socket_context);
	}
	free(*socket_context);
	*socket_context = NULL;
	if (METRICS_ENABLED) {
		atomic_fetch_sub_explicit(&connections_open, 1, memory_order_relaxed);
	}
}

static const char *method_name(const char *m)
{
	static const char *const known[] = {"GET",    "HEAD",    "POST", "PUT",
					    "DELETE", "OPTIONS", "PATCH"};

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		if (strcmp(m, known[i]) == 0) {
			return known[i];
		}
	}
	return "other";
}

void obs_begin(struct request *rq, const char *url, const char *method)
{
	rq->start_ns = monotonic_ns();
	rq->resp_len = 0;
	rq->method = method_name(method);
	rq->path_len = 0;
	if (rq->srv->cfg->access_log) {
		rq->path_len = strnlen(url, sizeof(rq->path));
		memcpy(rq->path, url, rq->path_len);
	}
}

static struct shard *shard_here(void)
{
	if (my_shard == 0) {
		my_shard = 1 +
			   atomic_fetch_add_explicit(&next_shard, 1, memory_order_relaxed) % SHARDS;
	}
	return &shards[my_shard - 1];
}

static size_t code_index(unsigned status)
{
	for (size_t i = 0; i < NCODES - 1; i++) {
		if (codes[i] == status) {
			return i;
		}
	}
	return NCODES - 1;
}

static void access_log(const struct request *rq, unsigned status, uint64_t ns, uint64_t body)
{
	struct log_field f[8] = {
		{.key = "method", .type = LOG_STR, .str = rq->method, .len = strlen(rq->method)},
		{.key = "path", .type = LOG_STR, .str = rq->path, .len = rq->path_len},
		{.key = "status", .type = LOG_UINT, .u = status},
		{.key = "bytes", .type = LOG_UINT, .u = rq->resp_len},
		{.key = "duration_ms", .type = LOG_MS, .ms = (double)ns / 1e6},
	};
	size_t n = 5;

	if (body != 0) {
		f[n++] = (struct log_field){.key = "request_bytes", .type = LOG_UINT, .u = body};
	}
	if (rq->route == ROUTE_CLUSTER) {
		f[n++] = (struct log_field){
			.key = "peer_errors", .type = LOG_UINT, .u = rq->peer_errors};
	}
	log_fields(LOG_LEVEL_INFO, "request", f, n);
}

void obs_end(const struct request *rq)
{
	const struct http_server *s = rq->srv;
	const union MHD_ConnectionInfo *ci;
	uint64_t body = rq->len + rq->discarded;
	unsigned status;
	uint64_t ns;

	ns = monotonic_ns() - rq->start_ns;
	ci = MHD_get_connection_info(rq->conn, MHD_CONNECTION_INFO_HTTP_STATUS);
	status = ci != NULL ? ci->http_status : 0;
	if (METRICS_ENABLED) {
		struct shard *sh = shard_here();

		metrics_add(&sh->requests[rq->label][code_index(status)], 1);
		metrics_observe(&sh->duration[rq->label], &metrics_duration_buckets, ns);
		if (body != 0) {
			metrics_add(&sh->body_bytes, body);
		}
	}
	if (s->cfg->access_log && log_enabled(LOG_LEVEL_INFO)) {
		access_log(rq, status, ns, body);
	}
}

/* ---- the exposition ---------------------------------------------------------------- */

struct text {
	char *buf;
	size_t n;
	size_t cap;
	bool overflow;
};

static void textf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void textf(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int r;

	if (t->overflow) {
		return;
	}
	va_start(ap, fmt);
	r = vsnprintf(t->buf + t->n, t->cap - t->n, fmt, ap);
	va_end(ap);
	if (r < 0 || (size_t)r >= t->cap - t->n) {
		t->overflow = true;
		return;
	}
	t->n += (size_t)r;
}

/* A label value as the format wants it: \\, \" and \n escaped. */
static void label_value(struct text *t, const char *v)
{
	for (; *v != '\0' && !t->overflow; v++) {
		switch (*v) {
		case '\\':
			textf(t, "\\\\");
			break;
		case '"':
			textf(t, "\\\"");
			break;
		case '\n':
			textf(t, "\\n");
			break;
		default:
			textf(t, "%c", *v);
		}
	}
}

static void header(struct text *t, const char *name, const char *type, const char *help)
{
	textf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One histogram's series; labels is "" or `route="/data",` (with its comma). */
static void histogram(struct text *t, const char *name, const char *labels, const uint64_t *counts,
		      uint64_t sum, const struct metrics_buckets *b)
{
	uint64_t cum = 0;
	size_t ll = strlen(labels);

	for (size_t i = 0; i < b->n; i++) {
		cum += counts[i];
		textf(t, "%s_bucket{%sle=\"%.6g\"} %llu\n", name, labels,
		      (double)b->le[i] * b->scale, (unsigned long long)cum);
	}
	cum += counts[b->n];
	textf(t, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, labels, (unsigned long long)cum);
	/* Without labels, the braces go: "name_sum 1" rather than "name_sum{} 1". */
	textf(t, "%s_sum%s%.*s%s %.17g\n", name, ll > 0 ? "{" : "", ll > 0 ? (int)ll - 1 : 0,
	      labels, ll > 0 ? "}" : "", (double)sum * b->scale);
	textf(t, "%s_count%s%.*s%s %llu\n", name, ll > 0 ? "{" : "", ll > 0 ? (int)ll - 1 : 0,
	      labels, ll > 0 ? "}" : "", (unsigned long long)cum);
}

static void plain_histogram(struct text *t, const char *name, const char *type_help,
			    const struct metrics_histogram *h, const struct metrics_buckets *b)
{
	uint64_t counts[METRICS_MAX_BUCKETS + 1];
	uint64_t sum = metrics_histogram_read(h, b, counts);

	header(t, name, "histogram", type_help);
	histogram(t, name, "", counts, sum, b);
}

static uint64_t load(const _Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

static void http_series(struct text *t)
{
	uint64_t body = 0;
	struct guard_counts gc;

	header(t, "kubia_http_requests_total", "counter",
	       "HTTP requests answered, by route and status code.");
	for (size_t r = 0; r < NROUTES; r++) {
		for (size_t c = 0; c < NCODES; c++) {
			uint64_t v = 0;

			for (size_t s = 0; s < SHARDS; s++) {
				v += load(&shards[s].requests[r][c]);
			}
			if (v == 0 && !(c == 0 && r == LABEL_DATA)) {
				continue; /* series appear once they count something */
			}
			textf(t, "kubia_http_requests_total{route=\"%s\",code=\"",
			      classify_label_name((enum classify_label)r));
			if (c < NCODES - 1) {
				textf(t, "%u", codes[c]);
			} else {
				textf(t, "other");
			}
			textf(t, "\"} %llu\n", (unsigned long long)v);
		}
	}
	header(t, "kubia_http_request_duration_seconds", "histogram",
	       "Time from a request's headers to its completion, by route.");
	for (size_t r = 0; r < NROUTES; r++) {
		uint64_t counts[METRICS_MAX_BUCKETS + 1] = {0};
		uint64_t sum = 0;
		char labels[32];

		for (size_t s = 0; s < SHARDS; s++) {
			uint64_t part[METRICS_MAX_BUCKETS + 1];

			sum += metrics_histogram_read(&shards[s].duration[r],
						      &metrics_duration_buckets, part);
			for (size_t i = 0; i <= metrics_duration_buckets.n; i++) {
				counts[i] += part[i];
			}
		}
		snprintf(labels, sizeof(labels), "route=\"%s\",",
			 classify_label_name((enum classify_label)r));
		histogram(t, "kubia_http_request_duration_seconds", labels, counts, sum,
			  &metrics_duration_buckets);
	}
	for (size_t s = 0; s < SHARDS; s++) {
		body += load(&shards[s].body_bytes);
	}
	header(t, "kubia_http_request_body_bytes_total", "counter",
	       "Bytes of request bodies received (POST), stored or not.");
	textf(t, "kubia_http_request_body_bytes_total %llu\n", (unsigned long long)body);
	header(t, "kubia_http_connections_open", "gauge", "Client connections open now.");
	textf(t, "kubia_http_connections_open %llu\n", (unsigned long long)load(&connections_open));
	guard_counts(&gc);
	header(t, "kubia_http_connections_closed_total", "counter",
	       "Client connections closed by kubia's deadlines and to make room, by reason.");
	textf(t, "kubia_http_connections_closed_total{reason=\"header_timeout\"} %llu\n",
	      (unsigned long long)gc.header_timeouts);
	textf(t, "kubia_http_connections_closed_total{reason=\"body_too_slow\"} %llu\n",
	      (unsigned long long)gc.body_too_slow);
	textf(t, "kubia_http_connections_closed_total{reason=\"evicted\"} %llu\n",
	      (unsigned long long)gc.evicted);
}

static void result_counter(struct text *t, const char *name, const char *help,
			   const _Atomic uint64_t *v, const char *const *names, size_t n)
{
	header(t, name, "counter", help);
	for (size_t i = 0; i < n; i++) {
		textf(t, "%s{result=\"%s\"} %llu\n", name, names[i],
		      (unsigned long long)load(&v[i]));
	}
}

static void registry_series(struct text *t)
{
	static const char *const commit_results[] = {"ok", "failed"};
	const _Atomic uint64_t *commits[] = {&metrics.commits_ok, &metrics.commits_failed};

	header(t, "kubia_storage_commits_total", "counter",
	       "Commits of the data file (one per batch of POSTs), by result.");
	for (size_t i = 0; i < 2; i++) {
		textf(t, "kubia_storage_commits_total{result=\"%s\"} %llu\n", commit_results[i],
		      (unsigned long long)load(commits[i]));
	}
	plain_histogram(t, "kubia_storage_commit_duration_seconds",
			"Time to make one commit durable (write, fsync, rename, fsync).",
			&metrics.commit_duration, &metrics_duration_buckets);
	plain_histogram(t, "kubia_storage_commit_batch_posts",
			"POSTs answered by one commit (group commit).", &metrics.commit_batch,
			&metrics_batch_buckets);
	result_counter(t, "kubia_dns_srv_lookups_total",
		       "SRV lookups of the governing Service (not those answered from the cache), "
		       "by result.",
		       metrics.srv_lookups, metrics_srv_result_names, METRICS_SRV_NRESULTS);
	plain_histogram(t, "kubia_dns_srv_lookup_duration_seconds",
			"Time of one SRV lookup with the addresses of its targets.",
			&metrics.srv_duration, &metrics_duration_buckets);
	header(t, "kubia_discovery_peers", "gauge",
	       "Pods listed by the last SRV answer, this one included.");
	textf(t, "kubia_discovery_peers %llu\n",
	      (unsigned long long)load(&metrics.peers_discovered));
	result_counter(t, "kubia_peer_fetches_total", "Requests for a peer's /data, by result.",
		       metrics.peer_fetches, metrics_fetch_result_names, METRICS_FETCH_NRESULTS);
	plain_histogram(t, "kubia_peer_fetch_duration_seconds", "Time of one request to a peer.",
			&metrics.fetch_duration, &metrics_duration_buckets);
	header(t, "kubia_stream_subscribers", "gauge", "View streams open now.");
	textf(t, "kubia_stream_subscribers %llu\n",
	      (unsigned long long)load(&metrics.stream_subscribers));
	header(t, "kubia_stream_events_total", "counter",
	       "View events written whole to stream subscribers.");
	textf(t, "kubia_stream_events_total %llu\n",
	      (unsigned long long)load(&metrics.stream_events));
	header(t, "kubia_stream_drops_total", "counter",
	       "Stream subscribers dropped for falling behind.");
	textf(t, "kubia_stream_drops_total %llu\n",
	      (unsigned long long)load(&metrics.stream_drops));
	header(t, "kubia_stream_heartbeats_total", "counter",
	       "Heartbeat comments sent on quiet streams.");
	textf(t, "kubia_stream_heartbeats_total %llu\n",
	      (unsigned long long)load(&metrics.stream_heartbeats));
	header(t, "kubia_view_bodies_total", "counter",
	       "Cluster views answered, by whether their body was rendered or shared with "
	       "views of the same bytes.");
	textf(t, "kubia_view_bodies_total{how=\"rendered\"} %llu\n",
	      (unsigned long long)load(&metrics.view_bodies_rendered));
	textf(t, "kubia_view_bodies_total{how=\"shared\"} %llu\n",
	      (unsigned long long)load(&metrics.view_bodies_shared));
}

static void process_series(struct text *t, const struct http_server *s)
{
	header(t, "kubia_build_info", "gauge", "Always 1: the version, pod name and mode.");
	textf(t, "kubia_build_info{version=\"");
	label_value(t, KUBIA_VERSION);
	textf(t, "\",hostname=\"");
	label_value(t, s->cfg->hostname);
	textf(t, "\",mode=\"%s\"} 1\n", config_mode_name(s->cfg->mode));
	header(t, "kubia_memory_budget_used_bytes", "gauge",
	       "Memory held now for request bodies, peer answers and responses in flight.");
	textf(t, "kubia_memory_budget_used_bytes %llu\n",
	      (unsigned long long)budget_used(s->budget));
	header(t, "kubia_memory_budget_limit_bytes", "gauge",
	       "The memory budget (--max-memory): past it requests get 503.");
	textf(t, "kubia_memory_budget_limit_bytes %llu\n", (unsigned long long)s->cfg->max_memory);
	header(t, "kubia_http_requests_in_flight", "gauge",
	       "Requests being handled now, view streams aside.");
	textf(t, "kubia_http_requests_in_flight %u\n", atomic_load(&s->in_flight));
}

enum MHD_Result obs_serve_metrics(struct http_server *s, struct MHD_Connection *conn)
{
	struct text t = {.cap = EXPOSITION_MAX};

	t.buf = charged_alloc(s->budget, t.cap);
	if (t.buf == NULL) {
		return queue_fixed(conn, MHD_HTTP_SERVICE_UNAVAILABLE, s->over_budget_resp);
	}
	process_series(&t, s);
	http_series(&t);
	registry_series(&t);
	if (t.overflow) {
		charged_free(t.buf);
		return queue_fmt(conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
				 "metrics larger than %zu bytes\n", t.cap);
	}
	return queue_charged_as(conn, MHD_HTTP_OK, t.buf, t.n, EXPOSITION_TYPE);
}
