/* SPDX-License-Identifier: MIT */
#ifndef KUBIA_METRICS_H
#define KUBIA_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * metrics: the process's counters and fixed-bucket histograms, updated lock-free
 * (relaxed atomics, nothing allocated) from any thread by the modules that see what
 * they count: storage (commits), discovery (SRV lookups, peer fetches) and the HTTP
 * server. Nothing here knows HTTP or the exposition format; server/ renders them.
 *
 * Built with -Dmetrics=false (KUBIA_NO_METRICS), every update compiles to nothing, so
 * the cost of counting can be measured against the same code without it.
 */

/* Histogram buckets: upper bounds in the unit observed (nanoseconds for durations). */
#define METRICS_MAX_BUCKETS 16

struct metrics_buckets {
	size_t n;
	uint64_t le[METRICS_MAX_BUCKETS];
	double scale; /* rendered bound and sum = value * scale (1e-9: ns to seconds) */
};

/* Durations from 100 µs to 10 s. */
extern const struct metrics_buckets metrics_duration_buckets;
/* Bodies per commit, 1 to 1024. */
extern const struct metrics_buckets metrics_batch_buckets;

/* Counts per bucket (not cumulative: the renderer adds them up, so the +Inf bucket and
 * _count are always the same number), the last one past every bound. */
struct metrics_histogram {
	_Atomic uint64_t count[METRICS_MAX_BUCKETS + 1];
	_Atomic uint64_t sum;
};

/* What a SRV lookup ended with. */
enum metrics_srv_result {
	METRICS_SRV_OK = 0, /* records found */
	METRICS_SRV_EMPTY, /* no such name, or no records */
	METRICS_SRV_ERROR, /* time-out, server failure, malformed reply */
	METRICS_SRV_NRESULTS,
};

/* What a request to a peer ended with. */
enum metrics_fetch_result {
	METRICS_FETCH_OK = 0, /* 200 with the body */
	METRICS_FETCH_HTTP_ERROR, /* another status */
	METRICS_FETCH_TIMEOUT,
	METRICS_FETCH_CONNECT_ERROR, /* refused, unreachable */
	METRICS_FETCH_TOO_LARGE, /* past --peer-max-bytes */
	METRICS_FETCH_OVER_BUDGET, /* the memory budget had no room for the reply */
	METRICS_FETCH_ERROR, /* anything else */
	METRICS_FETCH_NRESULTS,
};

struct metrics_registry {
	_Atomic uint64_t commits_ok;
	_Atomic uint64_t commits_failed;
	struct metrics_histogram commit_duration;
	struct metrics_histogram commit_batch;
	_Atomic uint64_t srv_lookups[METRICS_SRV_NRESULTS];
	struct metrics_histogram srv_duration;
	_Atomic uint64_t peers_discovered; /* peers in the last SRV answer (a gauge) */
	_Atomic uint64_t peer_fetches[METRICS_FETCH_NRESULTS];
	struct metrics_histogram fetch_duration;
	_Atomic uint64_t stream_subscribers; /* view streams open now (a gauge) */
	_Atomic uint64_t stream_events; /* events written whole to subscribers */
	_Atomic uint64_t stream_drops; /* subscribers dropped for not keeping up */
	_Atomic uint64_t stream_heartbeats; /* heartbeat comments queued */
	/* Cluster views' bodies: made by a rendering, or shared with views of the same
	 * bytes. */
	_Atomic uint64_t view_bodies_rendered;
	_Atomic uint64_t view_bodies_shared;
};

/* The process's one registry (zero-initialised: ready before main()). */
extern struct metrics_registry metrics;

extern const char *const metrics_srv_result_names[METRICS_SRV_NRESULTS];
extern const char *const metrics_fetch_result_names[METRICS_FETCH_NRESULTS];

/* Index of the bucket value v falls in: the first bound >= v, else b->n (+Inf). */
size_t metrics_bucket(const struct metrics_buckets *b, uint64_t v);

/* Copies h's buckets into out[] (b->n + 1 entries) and returns the sum. */
uint64_t metrics_histogram_read(const struct metrics_histogram *h, const struct metrics_buckets *b,
				uint64_t *out);

#ifdef KUBIA_NO_METRICS
#define METRICS_ENABLED 0
static inline void metrics_observe(struct metrics_histogram *h, const struct metrics_buckets *b,
				   uint64_t v)
{
	(void)h;
	(void)b;
	(void)v;
}
static inline void metrics_add(_Atomic uint64_t *c, uint64_t n)
{
	(void)c;
	(void)n;
}
static inline void metrics_set(_Atomic uint64_t *g, uint64_t v)
{
	(void)g;
	(void)v;
}
#else
#define METRICS_ENABLED 1
static inline void metrics_observe(struct metrics_histogram *h, const struct metrics_buckets *b,
				   uint64_t v)
{
	atomic_fetch_add_explicit(&h->count[metrics_bucket(b, v)], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum, v, memory_order_relaxed);
}
static inline void metrics_add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}
static inline void metrics_set(_Atomic uint64_t *g, uint64_t v)
{
	atomic_store_explicit(g, v, memory_order_relaxed);
}
#endif

/* The updates the modules make. */
static inline void metrics_commit(bool ok, uint64_t ns, size_t batch)
{
	metrics_add(ok ? &metrics.commits_ok : &metrics.commits_failed, 1);
	metrics_observe(&metrics.commit_duration, &metrics_duration_buckets, ns);
	metrics_observe(&metrics.commit_batch, &metrics_batch_buckets, batch);
}

static inline void metrics_srv_lookup(enum metrics_srv_result r, uint64_t ns, size_t peers)
{
	metrics_add(&metrics.srv_lookups[r], 1);
	metrics_observe(&metrics.srv_duration, &metrics_duration_buckets, ns);
	if (r != METRICS_SRV_ERROR) {
		metrics_set(&metrics.peers_discovered, peers);
	}
}

static inline void metrics_view_body(bool shared)
{
	metrics_add(shared ? &metrics.view_bodies_shared : &metrics.view_bodies_rendered, 1);
}

static inline void metrics_peer_fetch(enum metrics_fetch_result r, uint64_t ns)
{
	metrics_add(&metrics.peer_fetches[r], 1);
	metrics_observe(&metrics.fetch_duration, &metrics_duration_buckets, ns);
}

#endif
