/* SPDX-License-Identifier: MIT */
#include "server/http.h"

#include <errno.h>
#include <poll.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/errtext.h"
#include "common/monotonic.h"
#include "server/guard.h"
#include "server/http_internal.h"
#include "server/log.h"
#include "server/observe.h"
#include "server/stream.h"

#define ALLOWED "GET, HEAD, POST"
/* Seconds a client turned away for memory is told to wait: requests in flight end fast. */
#define RETRY_AFTER_S "1"

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	struct http_server *s = cls;
	char line[512];
	size_t n;

	vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
		line[--n] = '\0';
	}
	if (atomic_load(&s->starting) && pthread_equal(pthread_self(), s->starter)) {
		snprintf(s->start_error, sizeof(s->start_error), "%s", line);
	}
	log_msg(LOG_LEVEL_WARN, "http: %s", line);
}

static struct MHD_Daemon *start_daemon(struct http_server *s, bool dual_stack)
{
	const struct config *cfg = s->cfg;
	/*
	 * poll, not epoll: with epoll worker threads, libmicrohttpd 0.9.75 races
	 * MHD_quiesce_daemon() against its workers when taking the listen socket out of
	 * their epoll sets, and the loser aborts the process ("Failed to remove listen FD
	 * from epoll set", about 1 shutdown in 500 under connection load). With poll the
	 * workers learn of the quiesce through their ITC and nothing races. Measured
	 * side by side on GET /data (64 and 512 keep-alive connections) the two are
	 * within 3% of each other.
	 */
	unsigned flags = MHD_USE_POLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME |
			 MHD_USE_ERROR_LOG | MHD_USE_TURBO;
	struct MHD_OptionItem items[16];
	size_t n = 0;

	if (dual_stack) {
		flags |= MHD_USE_DUAL_STACK;
	}
	/* The logger first, or MHD prints what it says about earlier options itself. */
	items[n++] = (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)on_mhd_log, s};
	items[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED,
					     (intptr_t)routes_on_completed, s};
	items[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_CONNECTION,
					     (intptr_t)obs_on_connection, s};
	items[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT,
					     (intptr_t)cfg->max_connections, NULL};
	items[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT,
					     (intptr_t)cfg->connection_memory, NULL};
	items[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT,
					     (intptr_t)cfg->idle_timeout_s, NULL};
	items[n++] = (struct MHD_OptionItem){MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024, NULL};
	items[n++] = (struct MHD_OptionItem){MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)strict_uri_log,
					     NULL};
	items[n++] = (struct MHD_OptionItem){MHD_OPTION_UNESCAPE_CALLBACK,
					     (intptr_t)strict_unescape, NULL};
	if (cfg->max_connections_per_ip != 0) {
		items[n++] = (struct MHD_OptionItem){MHD_OPTION_PER_IP_CONNECTION_LIMIT,
						     (intptr_t)cfg->max_connections_per_ip, NULL};
	}
	if (cfg->threads > 1) {
		items[n++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE,
						     (intptr_t)cfg->threads, NULL};
	}
	items[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
	return MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, routes_on_request, s,
				MHD_OPTION_ARRAY, items, MHD_OPTION_END);
}

/* r as the next fixed response, whose body is len bytes; NULL when r is. */
static const struct fixed_response *fixed_add(struct http_server *s, struct MHD_Response *r,
					      size_t len)
{
	if (r == NULL) {
		return NULL;
	}
	if (s->nfixed == FIXED_MAX) {
		MHD_destroy_response(r);
		return NULL;
	}
	s->fixed[s->nfixed] = (struct fixed_response){r, len};
	return &s->fixed[s->nfixed++];
}

static const struct fixed_response *fixed(struct http_server *s, const char *text)
{
	return fixed_add(s, response_text(text, strlen(text)), strlen(text));
}

/* Of text from asprintf(), which returned n: taken over. */
static const struct fixed_response *fixed_owned(struct http_server *s, char *text, int n)
{
	return n < 0 ? NULL : fixed_add(s, response_owned(text, (size_t)n), (size_t)n);
}

static bool build_fixed(struct http_server *s)
{
	char *text = NULL;
	int n;

	n = asprintf(&text, "Data stored on pod %s\n", s->cfg->hostname);
	s->stored_resp = fixed_owned(s, text, n);
	n = asprintf(&text,
		     "Request body too large: the limit is %" PRIu64 " bytes; data unchanged\n",
		     s->cfg->max_body);
	s->too_large_resp = fixed_owned(s, text, n);
	s->healthz_resp = fixed(s, "ok\n");
	s->ready_resp = fixed(s, "ready\n");
	s->stopping_resp = fixed(s, "not ready: shutting down\n");
	s->busy_resp = fixed(s, "Too many cluster views in flight; try again\n");
	s->over_budget_resp =
		fixed(s, "Busy: the memory for requests in flight is in use; try again\n");
	s->method_resp = fixed(s, "Method not allowed: use GET, HEAD or POST\n");
	s->streams_full_resp = fixed(s, "Too many view streams open; try again\n");
	if (s->stored_resp == NULL || s->too_large_resp == NULL || s->healthz_resp == NULL ||
	    s->ready_resp == NULL || s->stopping_resp == NULL || s->busy_resp == NULL ||
	    s->method_resp == NULL || s->over_budget_resp == NULL || s->streams_full_resp == NULL) {
		return false;
	}
	return MHD_add_response_header(s->method_resp->r, MHD_HTTP_HEADER_ALLOW, ALLOWED) ==
		       MHD_YES &&
	       MHD_add_response_header(s->over_budget_resp->r, MHD_HTTP_HEADER_RETRY_AFTER,
				       RETRY_AFTER_S) == MHD_YES &&
	       MHD_add_response_header(s->streams_full_resp->r, MHD_HTTP_HEADER_RETRY_AFTER,
				       RETRY_AFTER_S) == MHD_YES;
}

static void destroy_responses(struct http_server *s)
{
	if (s->data_resp.r != NULL) {
		MHD_destroy_response(s->data_resp.r);
	}
	if (s->pet_resp.r != NULL) {
		MHD_destroy_response(s->pet_resp.r);
	}
	for (size_t i = 0; i < s->nfixed; i++) {
		MHD_destroy_response(s->fixed[i].r);
	}
}

static void stream_suspend(void *conn)
{
	MHD_suspend_connection(conn);
}

static void stream_resume(void *conn)
{
	MHD_resume_connection(conn);
}

/* Shut down, not closed: libmicrohttpd sees the end and closes the connection itself
 * (as the guard does), so the descriptor stays its own. */
static void stream_cut(void *conn, int fd)
{
	(void)conn;
	(void)shutdown(fd, SHUT_RDWR);
}

static bool stream_gone(void *conn, int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLRDHUP};

	(void)conn;
	return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

/* The view stream's subscribers (peers mode only). */
static bool start_streams(struct http_server *s)
{
	static const struct stream_io io = {stream_suspend, stream_resume, stream_cut, stream_gone};
	const struct config *cfg = s->cfg;
	const struct stream_limits lim = {
		.interval_ms = cfg->stream_interval_ms,
		.heartbeat_s = cfg->stream_heartbeat_s,
		.max_subscribers = cfg->max_stream_subscribers,
		.max_pending = cfg->stream_max_pending,
		.max_pending_bytes = cfg->stream_max_pending_bytes,
	};

	if (s->disc == NULL) {
		return true;
	}
	s->streams = stream_hub_new(&lim, &io, s->disc, s->budget, cfg->hostname);
	return s->streams != NULL;
}

struct http_server *http_start(const struct config *cfg, struct storage *st, struct discovery *disc,
			       struct budget *budget, char *err, size_t errlen)
{
	struct http_server *s = calloc(1, sizeof(*s));
	const union MHD_DaemonInfo *info;
	pthread_condattr_t ca;

	if (s == NULL) {
		errtext_set(err, errlen, "HTTP server: out of memory");
		return NULL;
	}
	s->cfg = cfg;
	s->st = st;
	s->disc = disc;
	s->budget = budget;
	s->quiesced_fd = MHD_INVALID_SOCKET;
	atomic_init(&s->stopping, false);
	atomic_init(&s->in_flight, 0);
	atomic_init(&s->starting, false);
	pthread_mutex_init(&s->cache_lock, NULL);
	pthread_mutex_init(&s->view_lock, NULL);
	pthread_mutex_init(&s->idle_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->idle_cond, &ca);
	pthread_condattr_destroy(&ca);

	if (!build_fixed(s) || !response_cache_refresh_locked(s) || !start_streams(s) ||
	    !wire_init()) {
		errtext_set(err, errlen, "HTTP server: out of memory");
		goto fail;
	}
	/* Before the daemon: its first connection is the guard's. */
	s->guard = guard_start(cfg, cfg->threads > 1 ? cfg->threads : 1);
	if (s->guard == NULL) {
		errtext_set(err, errlen, "HTTP server: could not start the connection guard");
		goto fail;
	}
	/* Set before MHD creates its threads, so they see it without a lock. */
	s->starter = pthread_self();
	atomic_store(&s->starting, true);
	s->daemon = start_daemon(s, true);
	if (s->daemon == NULL) {
		/* A kernel without IPv6 cannot give a dual-stack socket: fall back. */
		char first[sizeof(s->start_error)];
		memcpy(first, s->start_error, sizeof(first));
		s->daemon = start_daemon(s, false);
		if (s->daemon != NULL) {
			log_msg(LOG_LEVEL_WARN, "IPv6 unavailable (%s): listening on IPv4 only",
				first);
		}
	}
	atomic_store(&s->starting, false);
	if (s->daemon == NULL) {
		errtext_set(err, errlen, "could not listen on port %u: %s", cfg->port,
			    s->start_error[0] != '\0' ? s->start_error : "unknown error");
		goto fail;
	}
	info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
	s->port = info != NULL ? info->port : cfg->port;
	info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_LISTEN_FD);
	if (info != NULL) {
		guard_listen(s->guard, info->listen_fd);
	}
	return s;
fail:
	if (s->guard != NULL) {
		guard_stop(s->guard);
		guard_free(s->guard);
	}
	destroy_responses(s);
	stream_hub_free(s->streams);
	pthread_mutex_destroy(&s->cache_lock);
	pthread_mutex_destroy(&s->view_lock);
	pthread_mutex_destroy(&s->idle_lock);
	pthread_cond_destroy(&s->idle_cond);
	free(s);
	return NULL;
}

unsigned http_port(const struct http_server *srv)
{
	return srv->port;
}

unsigned http_in_flight(struct http_server *srv)
{
	return atomic_load(&srv->in_flight);
}

void http_quiesce(struct http_server *srv)
{
	MHD_socket fd;

	atomic_store(&srv->stopping, true);
	/* Streams never end by themselves: they would hold the wait for idleness. */
	if (srv->streams != NULL) {
		stream_stop_all(srv->streams);
	}
	guard_quiesce(srv->guard);
	fd = MHD_quiesce_daemon(srv->daemon);
	if (fd != MHD_INVALID_SOCKET) {
		/* The socket may not be closed while MHD's threads run, but it must stop
		 * listening now: shutdown() makes the kernel refuse new connections. */
		(void)shutdown(fd, SHUT_RDWR);
		srv->quiesced_fd = fd;
	}
}

bool http_wait_idle(struct http_server *srv, unsigned timeout_ms)
{
	/* idle_cond waits on the same clock (http_start()). */
	uint64_t due = monotonic_ns() + (uint64_t)timeout_ms * 1000000U;
	struct timespec deadline = {.tv_sec = (time_t)(due / 1000000000U),
				    .tv_nsec = (long)(due % 1000000000U)};
	bool idle;

	pthread_mutex_lock(&srv->idle_lock);
	while (atomic_load(&srv->in_flight) != 0) {
		if (pthread_cond_timedwait(&srv->idle_cond, &srv->idle_lock, &deadline) ==
		    ETIMEDOUT) {
			break;
		}
	}
	idle = atomic_load(&srv->in_flight) == 0;
	pthread_mutex_unlock(&srv->idle_lock);
	return idle;
}

void http_stop(struct http_server *srv)
{
	if (srv == NULL) {
		return;
	}
	/* The guard's thread first (it shuts sockets down that MHD is about to close); its
	 * list stays until MHD has closed the last connection. */
	guard_stop(srv->guard);
	MHD_stop_daemon(srv->daemon);
	guard_free(srv->guard);
	if (srv->quiesced_fd != MHD_INVALID_SOCKET) {
		close(srv->quiesced_fd);
	}
	destroy_responses(srv);
	stream_hub_free(srv->streams);
	pthread_mutex_destroy(&srv->cache_lock);
	pthread_mutex_destroy(&srv->view_lock);
	pthread_mutex_destroy(&srv->idle_lock);
	pthread_cond_destroy(&srv->idle_cond);
	free(srv);
}
