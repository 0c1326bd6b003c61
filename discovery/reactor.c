/* SPDX-License-Identifier: MIT */
/*
 * The discovery loop thread: epoll over the sockets of c-ares and libcurl, one timerfd
 * for every deadline (curl's timer, c-ares' retransmissions, the lookup's total budget)
 * and an eventfd through which other threads hand in views.
 *
 * Neither library is thread-safe per handle, so after discovery_create() the channel
 * and the multi handle are touched by the loop thread only. Callbacks of both libraries
 * run inside the calls this file makes on that thread (lookup_on_event(),
 * transfer_on_event(), the timers); they may start new queries and transfers.
 */
#include "discovery/internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

enum tag { TAG_WAKE = 1, TAG_TIMER = 2 }; /* and enum fd_owner's FD_ARES, FD_CURL */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static bool global_ok;

/* curl_global_init() and ares_library_init() are process-wide and not thread-safe, so
 * they run once for the process and are never undone: another discovery object (or
 * another user of the libraries) may still need them. */
static void global_init(void)
{
	global_ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK &&
		    ares_library_init(ARES_LIB_INIT_ALL) == ARES_SUCCESS;
}

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void disc_log(const struct discovery *d, enum discovery_log_level level, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	if (d->cfg.log == NULL) {
		return;
	}
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	d->cfg.log(d->cfg.log_ctx, level, line);
}

static uint64_t tag_fd(unsigned t, int fd)
{
	return ((uint64_t)t << 32) | (uint32_t)fd;
}

void reactor_watch(struct discovery *d, enum fd_owner owner, int fd, uint32_t events)
{
	struct epoll_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.events = events;
	ev.data.u64 = tag_fd(owner, fd);
	if (epoll_ctl(d->epfd, EPOLL_CTL_MOD, fd, &ev) == 0) {
		return;
	}
	if (errno != ENOENT || epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
		/* The socket stays unwatched; its owner's time-out then ends the query or
		 * transfer, so nothing waits forever. */
		disc_log(d, DISCOVERY_LOG_ERROR, "epoll_ctl on fd %d: %s", fd, strerror(errno));
	}
}

void reactor_unwatch(struct discovery *d, int fd)
{
	/* ENOENT/EBADF are fine: the fd may never have been added, or be closed. */
	(void)epoll_ctl(d->epfd, EPOLL_CTL_DEL, fd, NULL);
}

/* Takes the submitted views; returns whether the loop is asked to stop. */
static bool take_submissions(struct discovery *d)
{
	struct view *v;
	bool stop;
	uint64_t n;

	while (read(d->evfd, &n, sizeof(n)) < 0 && errno == EINTR) {
	}
	pthread_mutex_lock(&d->mu);
	v = d->q_head;
	d->q_head = NULL;
	d->q_tail = NULL;
	stop = d->stopping;
	pthread_mutex_unlock(&d->mu);
	if (stop) {
		d->loop_stopping = true;
	}
	while (v != NULL) {
		struct view *next = v->next;

		view_start(d, v);
		v = next;
	}
	return stop;
}

static void handle_event(struct discovery *d, const struct epoll_event *ev, bool *stop)
{
	unsigned t = (unsigned)(ev->data.u64 >> 32);
	int fd = (int)(uint32_t)ev->data.u64;
	uint64_t v;

	switch (t) {
	case TAG_WAKE:
		*stop = take_submissions(d) || *stop;
		break;
	case TAG_TIMER:
		while (read(d->tfd, &v, sizeof(v)) < 0 && errno == EINTR) {
		}
		break;
	case FD_ARES:
		lookup_on_event(d, fd, ev->events);
		break;
	case FD_CURL:
		transfer_on_event(d, fd, ev->events);
		break;
	default:
		break;
	}
}

/* Arms the timerfd for the earliest deadline of anyone. */
static void arm_timer(struct discovery *d)
{
	uint64_t due = lookup_due(d, now_ns());
	struct itimerspec its;

	if (d->curl_due < due) {
		due = d->curl_due;
	}
	memset(&its, 0, sizeof(its));
	if (due != NEVER) {
		/* An absolute time in the past fires at once, but zero would disarm. */
		if (due == 0) {
			due = 1;
		}
		its.it_value.tv_sec = (time_t)(due / 1000000000ull);
		its.it_value.tv_nsec = (long)(due % 1000000000ull);
	}
	if (timerfd_settime(d->tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0) {
		disc_log(d, DISCOVERY_LOG_ERROR, "timerfd_settime: %s", strerror(errno));
	}
}

/* Answers everything still open, so that every done callback has run when the thread
 * ends: the lookup's waiters, late submissions, then the fetches, running or queued. */
static void shutdown_all(struct discovery *d)
{
	d->loop_stopping = true;
	pthread_mutex_lock(&d->mu);
	d->stopping = true;
	pthread_mutex_unlock(&d->mu);

	lookup_cancel(d, false);
	take_submissions(d);
	views_shutdown(d);
}

static void *loop_main(void *arg)
{
	struct discovery *d = arg;
	struct epoll_event evs[32];
	bool stop = false;

	while (!stop) {
		uint64_t now = now_ns();
		int n;

		transfer_run_timer(d, now);
		lookup_run_timers(d, now);
		arm_timer(d);
		n = epoll_wait(d->epfd, evs, (int)(sizeof(evs) / sizeof(evs[0])), -1);
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			/* Cannot wait any more: answer everyone and refuse new views. */
			disc_log(d, DISCOVERY_LOG_ERROR, "epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			handle_event(d, &evs[i], &stop);
		}
	}
	shutdown_all(d);
	return NULL;
}

/* ---- set-up ------------------------------------------------------------------ */

static bool setup_fds(struct discovery *d, char *err, size_t errlen)
{
	struct epoll_event ev;

	d->epfd = epoll_create1(EPOLL_CLOEXEC);
	d->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	d->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (d->epfd < 0 || d->evfd < 0 || d->tfd < 0) {
		errtext_set(err, errlen, "discovery: could not create the event loop: %s",
			    strerror(errno));
		return false;
	}
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.u64 = tag_fd(TAG_WAKE, d->evfd);
	if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->evfd, &ev) < 0) {
		goto fail;
	}
	ev.data.u64 = tag_fd(TAG_TIMER, d->tfd);
	if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->tfd, &ev) < 0) {
		goto fail;
	}
	return true;
fail:
	errtext_set(err, errlen, "discovery: epoll: %s", strerror(errno));
	return false;
}

static bool check_config(const struct discovery_config *cfg, char *err, size_t errlen)
{
	struct discovery_dns_server server;
	char why[160];

	if (cfg->service == NULL || cfg->service[0] == '\0' || strcmp(cfg->service, ".") == 0) {
		errtext_set(err, errlen, "service name is empty");
		return false;
	}
	/* 253 characters, not counting the trailing dot of a fully qualified name. */
	if (strlen(cfg->service) - (cfg->service[strlen(cfg->service) - 1] == '.') > 253) {
		errtext_set(err, errlen, "service name '%.40s...' is longer than 253 characters",
			    cfg->service);
		return false;
	}
	if (cfg->hostname != NULL && strlen(cfg->hostname) > DISCOVERY_HOSTNAME_MAX) {
		errtext_set(err, errlen, "host name '%.40s...' is longer than %d characters",
			    cfg->hostname, DISCOVERY_HOSTNAME_MAX);
		return false;
	}
	if (cfg->dns_server != NULL && cfg->dns_server[0] != '\0' &&
	    !discovery_parse_dns_server(cfg->dns_server, &server, why, sizeof(why))) {
		errtext_set(err, errlen, "DNS server '%s': %s", cfg->dns_server, why);
		return false;
	}
	if (cfg->dns_timeout_ms == 0 || cfg->peer_timeout_ms == 0) {
		errtext_set(err, errlen, "DNS and peer time-outs must be at least 1 ms");
		return false;
	}
	if (cfg->peer_port > 65535) {
		errtext_set(err, errlen, "peer port %u is not in 0-65535", cfg->peer_port);
		return false;
	}
	if (cfg->max_peers == 0 || cfg->max_pending == 0) {
		errtext_set(err, errlen, "max peers and max pending requests must be at least 1");
		return false;
	}
	if (cfg->peer_max_connections == 0) {
		errtext_set(err, errlen, "max connections per peer must be at least 1");
		return false;
	}
	return true;
}

static char *dup_or_null(const char *s, bool *ok)
{
	char *c;

	if (s == NULL) {
		return NULL;
	}
	c = strdup(s);
	if (c == NULL) {
		*ok = false;
	}
	return c;
}

/* A zeroed object with its mutexes and owned copies of the configuration's strings;
 * NULL when memory (or a mutex) could not be had. */
static struct discovery *discovery_alloc(const struct discovery_config *cfg,
					 const struct discovery_local *local)
{
	struct discovery *d = calloc(1, sizeof(*d));
	bool ok = true;

	if (d == NULL) {
		return NULL;
	}
	d->epfd = -1;
	d->evfd = -1;
	d->tfd = -1;
	/* Nothing to stop yet: destroy must not try to join a thread. */
	d->joined = true;
	d->stopping = true;
	if (pthread_mutex_init(&d->mu, NULL) != 0) {
		free(d);
		return NULL;
	}
	if (pthread_mutex_init(&d->stop_mu, NULL) != 0) {
		pthread_mutex_destroy(&d->mu);
		free(d);
		return NULL;
	}
	d->cfg = *cfg;
	d->service = dup_or_null(cfg->service, &ok);
	d->hostname = dup_or_null(cfg->hostname, &ok);
	d->resolv_conf = dup_or_null(cfg->resolv_conf, &ok);
	d->dns_server = dup_or_null(cfg->dns_server, &ok);
	d->port_name = dup_or_null(cfg->port_name, &ok);
	d->local = *local;
	if (!ok) {
		discovery_destroy(d);
		return NULL;
	}
	/* The configuration's pointers belong to the caller: point at the copies. */
	d->cfg.service = d->service;
	d->cfg.hostname = d->hostname;
	d->cfg.resolv_conf = d->resolv_conf;
	d->cfg.dns_server = d->dns_server;
	d->cfg.port_name = d->port_name;
	return d;
}

struct discovery *discovery_create(const struct discovery_config *cfg,
				   const struct discovery_local *local, char *err, size_t errlen)
{
	struct discovery *d;
	int rc;

	if (cfg == NULL || local == NULL || local->get == NULL || local->release == NULL) {
		errtext_set(err, errlen, "discovery: no configuration");
		return NULL;
	}
	if (!check_config(cfg, err, errlen)) {
		return NULL;
	}
	pthread_once(&global_once, global_init);
	if (!global_ok) {
		errtext_set(err, errlen, "discovery: could not initialise libcurl or c-ares");
		return NULL;
	}
	d = discovery_alloc(cfg, local);
	if (d == NULL) {
		errtext_set(err, errlen, "discovery: out of memory");
		return NULL;
	}
	if (!setup_fds(d, err, errlen) || !lookup_setup(d, err, errlen) ||
	    !transfer_setup(d, err, errlen)) {
		goto fail;
	}
	d->stopping = false;
	d->joined = false;
	rc = pthread_create(&d->thread, NULL, loop_main, d);
	if (rc != 0) {
		d->stopping = true;
		d->joined = true;
		errtext_set(err, errlen, "discovery: could not start the loop thread: %s",
			    strerror(rc));
		goto fail;
	}
	return d;

fail:
	discovery_destroy(d);
	return NULL;
}

bool discovery_request(struct discovery *d, discovery_done_fn done, void *ctx)
{
	return discovery_request_as(d, DISCOVERY_FORMAT_TEXT, done, ctx);
}

bool discovery_request_as(struct discovery *d, enum discovery_format format, discovery_done_fn done,
			  void *ctx)
{
	struct view *v;
	uint64_t one = 1;
	bool ok = false;

	if (d == NULL || done == NULL) {
		return false;
	}
	v = calloc(1, sizeof(*v));
	if (v == NULL) {
		return false;
	}
	v->done = done;
	v->ctx = ctx;
	v->format = format;
	pthread_mutex_lock(&d->mu);
	/* The view's arrival, taken as late as it can be: every POST a peer acknowledged
	 * before this call is acknowledged before this time, so a fetch started at or after
	 * it sees that POST (fetch.c). */
	v->arrival_ns = now_ns();
	if (!d->stopping && d->pending < d->cfg.max_pending) {
		if (d->q_tail != NULL) {
			d->q_tail->next = v;
		} else {
			d->q_head = v;
		}
		d->q_tail = v;
		d->pending++;
		ok = true;
	}
	pthread_mutex_unlock(&d->mu);
	if (!ok) {
		free(v);
		return false;
	}
	/* EAGAIN would mean the counter is saturated: the loop is awake anyway. */
	while (write(d->evfd, &one, sizeof(one)) < 0 && errno == EINTR) {
	}
	return true;
}

void discovery_stop(struct discovery *d)
{
	uint64_t one = 1;

	if (d == NULL) {
		return;
	}
	pthread_mutex_lock(&d->stop_mu);
	if (!d->joined) {
		pthread_mutex_lock(&d->mu);
		d->stopping = true;
		pthread_mutex_unlock(&d->mu);
		while (write(d->evfd, &one, sizeof(one)) < 0 && errno == EINTR) {
		}
		pthread_join(d->thread, NULL);
		d->joined = true;
	}
	pthread_mutex_unlock(&d->stop_mu);
}

void discovery_destroy(struct discovery *d)
{
	if (d == NULL) {
		return;
	}
	discovery_stop(d);
	/* The libraries may tell their socket callbacks about closing sockets, so the
	 * epoll fd outlives them. */
	transfer_destroy(d);
	lookup_destroy(d);
	cache_clear(&d->cache);
	if (d->epfd >= 0) {
		close(d->epfd);
	}
	if (d->evfd >= 0) {
		close(d->evfd);
	}
	if (d->tfd >= 0) {
		close(d->tfd);
	}
	free(d->service);
	free(d->hostname);
	free(d->resolv_conf);
	free(d->dns_server);
	free(d->port_name);
	pthread_mutex_destroy(&d->stop_mu);
	pthread_mutex_destroy(&d->mu);
	free(d);
}
