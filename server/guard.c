/* SPDX-License-Identifier: MIT */
#include "server/guard.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include "common/monotonic.h"
#include "server/config.h"
#include "server/http_internal.h"
#include "server/request.h"

/* How often the guard looks: the deadlines are kept to within it, and a client waiting
 * in a full table's queue is let in within two of it. */
#define TICK_NS ((uint64_t)50 * 1000000U)
/* Connections closed to make room at a look: the first time a client is seen waiting,
 * one; each look that still finds one waiting doubles them, up to the most, so that a
 * queue of hundreds drains within a second without closing the whole table at once. */
#define EVICT_FIRST 1
#define EVICT_MOST 256

struct guard {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	pthread_t thread;
	bool stop;
	bool quiesced;
	struct request *head; /* every open connection */
	unsigned count;
	int listen_fd;
	unsigned max_connections;
	unsigned threads;
	uint64_t header_ns;
	uint64_t window_ns;
	uint64_t min_per_window; /* body bytes a window must bring */
	bool queue_seen; /* a client waited in the queue at the last look */
	unsigned batch; /* how many the next look closes to make room */
};

static _Atomic uint64_t header_timeouts, body_too_slow, evicted;

static void kill_conn(struct request *rq, _Atomic uint64_t *why)
{
	/* The socket stays libmicrohttpd's to close: it sees the end of the stream. */
	(void)shutdown(rq->fd, SHUT_RDWR);
	rq->g_killed = true;
	atomic_fetch_add_explicit(why, 1, memory_order_relaxed);
}

/* The deadlines of one connection; must hold the lock. */
static void check(struct guard *g, struct request *rq, uint64_t now)
{
	unsigned phase = atomic_load_explicit(&rq->phase, memory_order_relaxed);
	unsigned seq = atomic_load_explicit(&rq->seq, memory_order_relaxed);
	uint64_t bytes;

	if (phase != rq->g_phase || seq != rq->g_seq) {
		rq->g_phase = phase;
		rq->g_seq = seq;
		rq->g_since_ns = now;
		rq->g_win_ns = 0;
	}
	if (rq->g_killed) {
		return;
	}
	if (phase == GUARD_HEAD && now - rq->g_since_ns > g->header_ns) {
		kill_conn(rq, &header_timeouts);
		return;
	}
	if (phase != GUARD_BODY || g->min_per_window == 0 || now - rq->g_since_ns < g->window_ns) {
		return;
	}
	bytes = atomic_load_explicit(&rq->body_seen, memory_order_relaxed);
	if (rq->g_win_ns == 0) {
		/* The grace is over: the first window starts. */
		rq->g_win_ns = now;
		rq->g_win_bytes = bytes;
	} else if (now - rq->g_win_ns >= g->window_ns) {
		if (bytes - rq->g_win_bytes < g->min_per_window) {
			kill_conn(rq, &body_too_slow);
		} else {
			rq->g_win_ns = now;
			rq->g_win_bytes = bytes;
		}
	}
}

/* Whether a client waits in the listening socket's queue. */
static bool queue_waiting(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};

	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0;
}

/* Must hold the lock. A client that waited through two looks while the table is full
 * (libmicrohttpd takes no more) gets in: the connections that have waited longest for a
 * head are closed, as many as one look may. */
static void make_room(struct guard *g)
{
	bool waiting;

	if (g->listen_fd < 0 || g->quiesced || g->count + g->threads < g->max_connections) {
		g->queue_seen = false;
		g->batch = EVICT_FIRST;
		return;
	}
	waiting = queue_waiting(g->listen_fd);
	if (!waiting || !g->queue_seen) {
		g->queue_seen = waiting;
		g->batch = EVICT_FIRST;
		return;
	}
	for (unsigned n = 0; n < g->batch; n++) {
		struct request *oldest = NULL;

		/* The list runs from the newest connection: on a tie (seen at the same look)
		 * the older connection, later in the list, goes first. */
		for (struct request *rq = g->head; rq != NULL; rq = rq->g_next) {
			if (!rq->g_killed && rq->g_phase == GUARD_HEAD &&
			    (oldest == NULL || rq->g_since_ns <= oldest->g_since_ns)) {
				oldest = rq;
			}
		}
		if (oldest == NULL) {
			break;
		}
		kill_conn(oldest, &evicted);
	}
	g->batch = g->batch * 2 < EVICT_MOST ? g->batch * 2 : EVICT_MOST;
}

static void *run(void *arg)
{
	struct guard *g = arg;

	pthread_mutex_lock(&g->lock);
	while (!g->stop) {
		uint64_t now = monotonic_ns();
		uint64_t due = now + TICK_NS;
		struct timespec ts = {.tv_sec = (time_t)(due / 1000000000U),
				      .tv_nsec = (long)(due % 1000000000U)};

		for (struct request *rq = g->head; rq != NULL; rq = rq->g_next) {
			check(g, rq, now);
		}
		make_room(g);
		while (!g->stop && pthread_cond_timedwait(&g->wake, &g->lock, &ts) != ETIMEDOUT) {
		}
	}
	pthread_mutex_unlock(&g->lock);
	return NULL;
}

struct guard *guard_start(const struct config *cfg, unsigned threads)
{
	struct guard *g = calloc(1, sizeof(*g));
	pthread_condattr_t ca;

	if (g == NULL) {
		return NULL;
	}
	g->listen_fd = -1;
	g->max_connections = cfg->max_connections;
	g->threads = threads;
	g->batch = EVICT_FIRST;
	g->header_ns = (uint64_t)cfg->header_timeout_s * 1000000000U;
	g->window_ns = (uint64_t)cfg->body_rate_window_s * 1000000000U;
	g->min_per_window = cfg->body_min_rate * cfg->body_rate_window_s;
	pthread_mutex_init(&g->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&g->wake, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&g->thread, NULL, run, g) != 0) {
		pthread_mutex_destroy(&g->lock);
		pthread_cond_destroy(&g->wake);
		free(g);
		return NULL;
	}
	return g;
}

void guard_listen(struct guard *g, int listen_fd)
{
	pthread_mutex_lock(&g->lock);
	g->listen_fd = listen_fd;
	pthread_mutex_unlock(&g->lock);
}

void guard_quiesce(struct guard *g)
{
	pthread_mutex_lock(&g->lock);
	g->quiesced = true;
	pthread_mutex_unlock(&g->lock);
}

void guard_stop(struct guard *g)
{
	pthread_mutex_lock(&g->lock);
	g->stop = true;
	pthread_cond_signal(&g->wake);
	pthread_mutex_unlock(&g->lock);
	pthread_join(g->thread, NULL);
}

void guard_free(struct guard *g)
{
	if (g != NULL) {
		pthread_mutex_destroy(&g->lock);
		pthread_cond_destroy(&g->wake);
		free(g);
	}
}

void guard_add(struct guard *g, struct request *rq, int fd)
{
	rq->fd = fd;
	atomic_init(&rq->phase, GUARD_HEAD);
	atomic_init(&rq->seq, 0);
	atomic_init(&rq->body_seen, 0);
	rq->g_phase = GUARD_HEAD;
	rq->g_seq = 0;
	rq->g_since_ns = monotonic_ns();
	wire_open(fd, &rq->seq);
	pthread_mutex_lock(&g->lock);
	rq->g_prev = NULL;
	rq->g_next = g->head;
	if (g->head != NULL) {
		g->head->g_prev = rq;
	}
	g->head = rq;
	g->count++;
	pthread_mutex_unlock(&g->lock);
}

void guard_remove(struct guard *g, struct request *rq)
{
	wire_close(rq->fd);
	pthread_mutex_lock(&g->lock);
	if (rq->g_prev != NULL) {
		rq->g_prev->g_next = rq->g_next;
	} else {
		g->head = rq->g_next;
	}
	if (rq->g_next != NULL) {
		rq->g_next->g_prev = rq->g_prev;
	}
	g->count--;
	pthread_mutex_unlock(&g->lock);
}

void guard_phase(struct request *rq, enum guard_phase phase)
{
	atomic_store_explicit(&rq->phase, phase, memory_order_relaxed);
}

void guard_next(struct request *rq)
{
	atomic_store_explicit(&rq->body_seen, 0, memory_order_relaxed);
	atomic_store_explicit(&rq->phase, GUARD_HEAD, memory_order_relaxed);
	atomic_fetch_add_explicit(&rq->seq, 1, memory_order_relaxed);
}

void guard_body(struct request *rq, uint64_t bytes)
{
	atomic_fetch_add_explicit(&rq->body_seen, bytes, memory_order_relaxed);
}

void guard_counts(struct guard_counts *out)
{
	out->header_timeouts = atomic_load_explicit(&header_timeouts, memory_order_relaxed);
	out->body_too_slow = atomic_load_explicit(&body_too_slow, memory_order_relaxed);
	out->evicted = atomic_load_explicit(&evicted, memory_order_relaxed);
}
