/* SPDX-License-Identifier: MIT */
/*
 * The facade of discovery/: the configuration's checks, the loop thread, and the
 * submission queue through which other threads hand views to it. Everything below runs
 * on the loop thread (loop.c), the sources registered by the lookup (lookup.c) and the
 * transfers (transfer.c); views (view.c) tie them together.
 *
 * Neither library is thread-safe per handle, so after discovery_create() the channel
 * and the multi handle are touched by the loop thread only.
 */
#include "discovery/internal.h"

#include "common/monotonic.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct discovery {
	struct discovery_config cfg; /* strings below are owned copies */
	char *service;
	char *hostname;
	char *resolv_conf;
	char *dns_server;
	char *port_name;
	struct discovery_local local;

	/* The loop thread's. */
	struct loop *loop;
	struct lookup lookup;
	struct transfers transfers;
	struct fetches fetches;
	struct views views;
	struct watch watch;

	/* Shared with submitting threads, under mu. */
	pthread_mutex_t mu;
	struct view *q_head;
	struct view *q_tail;
	unsigned pending;
	bool stopping;
	/* What discovery_watch() last asked for, applied on the loop thread. */
	bool watch_on;
	unsigned watch_interval_ms;
	discovery_watch_fn watch_fn;
	void *watch_ctx;

	/* Serialises discovery_stop() callers so each returns only after the join. */
	pthread_mutex_t stop_mu;
	pthread_t thread;
	bool joined;
};

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

void discovery_body_free(char *body)
{
	render_body_free(body);
}

static void loop_failed(void *arg, const char *call, int err)
{
	struct discovery *d = arg;

	discovery_logf(&d->cfg, DISCOVERY_LOG_ERROR, "%s: %s", call, strerror(err));
}

/* A view is about to be answered: its slot in max_pending is free again. */
static void view_finished(void *arg)
{
	struct discovery *d = arg;

	pthread_mutex_lock(&d->mu);
	d->pending--;
	pthread_mutex_unlock(&d->mu);
}

/* The loop was woken: takes the submitted views, and ends the loop when asked to stop
 * (the views taken with that request end at once, as every later one would). */
static void take_submissions(void *arg)
{
	struct discovery *d = arg;
	struct view *v;
	bool stop;
	bool watch_on;
	unsigned interval_ms;
	discovery_watch_fn watch_fn;
	void *watch_ctx;

	pthread_mutex_lock(&d->mu);
	v = d->q_head;
	d->q_head = NULL;
	d->q_tail = NULL;
	stop = d->stopping;
	watch_on = d->watch_on && !stop;
	interval_ms = d->watch_interval_ms;
	watch_fn = d->watch_fn;
	watch_ctx = d->watch_ctx;
	pthread_mutex_unlock(&d->mu);
	watch_set(&d->watch, watch_on, interval_ms, watch_fn, watch_ctx);
	if (stop) {
		view_stop(&d->views);
		loop_quit(d->loop);
	}
	while (v != NULL) {
		struct view *next = v->next;

		view_start(&d->views, v);
		v = next;
	}
}

/* Runs the loop, then answers everything still open, so that every done callback has
 * run when the thread ends. */
static void *discovery_main(void *arg)
{
	struct discovery *d = arg;

	/* Cannot wait any more (logged): answer everyone and refuse new views. */
	(void)loop_run(d->loop);
	pthread_mutex_lock(&d->mu);
	d->stopping = true;
	pthread_mutex_unlock(&d->mu);
	/* The watcher's view in flight ends with the rest, unreported. */
	watch_set(&d->watch, false, 0, NULL, NULL);
	view_end_all(&d->views);
	take_submissions(d);
	return NULL;
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

/* The watcher's way in: the same queue as every other view's. */
static bool watch_submit(void *arg, discovery_done_fn done, void *ctx)
{
	return discovery_request_as(arg, DISCOVERY_FORMAT_JSON, done, ctx);
}

/* The loop and its sources; false with a line in err. */
static bool discovery_setup(struct discovery *d, char *err, size_t errlen)
{
	d->loop = loop_create(loop_failed, d, err, errlen);
	if (d->loop == NULL || !lookup_init(&d->lookup, &d->cfg, d->loop, err, errlen) ||
	    !transfer_init(&d->transfers, &d->cfg, d->loop, err, errlen)) {
		return false;
	}
	view_init(&d->views, &d->cfg, &d->local, d->loop, &d->lookup, &d->fetches, &d->transfers,
		  view_finished, d);
	watch_init(&d->watch, d->loop, d->cfg.budget, watch_submit, d);
	loop_on_wake(d->loop, take_submissions, d);
	return true;
}

struct discovery *discovery_create(const struct discovery_config *cfg,
				   const struct discovery_local *local, char *err, size_t errlen)
{
	struct discovery *d;
	int rc;

	if (cfg == NULL || local == NULL || local->get == NULL || local->release == NULL) {
		errtext_set(err, errlen, "no configuration");
		return NULL;
	}
	if (!check_config(cfg, err, errlen)) {
		return NULL;
	}
	pthread_once(&global_once, global_init);
	if (!global_ok) {
		errtext_set(err, errlen, "could not initialise libcurl or c-ares");
		return NULL;
	}
	d = discovery_alloc(cfg, local);
	if (d == NULL) {
		errtext_set(err, errlen, "out of memory");
		return NULL;
	}
	if (!discovery_setup(d, err, errlen)) {
		goto fail;
	}
	d->stopping = false;
	d->joined = false;
	rc = pthread_create(&d->thread, NULL, discovery_main, d);
	if (rc != 0) {
		d->stopping = true;
		d->joined = true;
		errtext_set(err, errlen, "could not start the loop thread: %s", strerror(rc));
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

/* Appends v to the submission queue unless discovery is stopping or max_pending views
 * are in flight; returns whether it was taken, and in *wake whether the loop must be
 * woken: only the view that finds the queue empty wakes it, since the loop takes the
 * whole queue at once and a queue that is not empty has a wake-up on its way. */
static bool submit(struct discovery *d, struct view *v, bool *wake)
{
	bool ok = false;

	pthread_mutex_lock(&d->mu);
	/* The view's arrival, taken as late as it can be: every POST a peer acknowledged
	 * before this call is acknowledged before this time, so a fetch started at or after
	 * it sees that POST (fetch.c). */
	v->arrival_ns = monotonic_ns();
	if (!d->stopping && d->pending < d->cfg.max_pending) {
		*wake = d->q_tail == NULL;
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
	return ok;
}

bool discovery_request_as(struct discovery *d, enum discovery_format format, discovery_done_fn done,
			  void *ctx)
{
	struct view *v;
	bool wake = false;

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
	if (!submit(d, v, &wake)) {
		free(v);
		return false;
	}
	if (wake) {
		loop_wake(d->loop);
	}
	return true;
}

void discovery_stop(struct discovery *d)
{
	if (d == NULL) {
		return;
	}
	pthread_mutex_lock(&d->stop_mu);
	if (!d->joined) {
		pthread_mutex_lock(&d->mu);
		d->stopping = true;
		pthread_mutex_unlock(&d->mu);
		loop_wake(d->loop);
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
	if (d->loop != NULL) {
		watch_destroy(&d->watch);
	}
	/* The libraries may tell their socket callbacks about closing sockets, so the
	 * loop outlives them. */
	view_destroy(&d->views);
	transfer_destroy(&d->transfers);
	lookup_destroy(&d->lookup);
	loop_destroy(d->loop);
	free(d->service);
	free(d->hostname);
	free(d->resolv_conf);
	free(d->dns_server);
	free(d->port_name);
	pthread_mutex_destroy(&d->stop_mu);
	pthread_mutex_destroy(&d->mu);
	free(d);
}

void discovery_watch(struct discovery *d, bool on, unsigned interval_ms, discovery_watch_fn fn,
		     void *ctx)
{
	if (d == NULL) {
		return;
	}
	pthread_mutex_lock(&d->mu);
	d->watch_on = on && fn != NULL && interval_ms > 0;
	d->watch_interval_ms = interval_ms;
	d->watch_fn = fn;
	d->watch_ctx = ctx;
	pthread_mutex_unlock(&d->mu);
	loop_wake(d->loop);
}
