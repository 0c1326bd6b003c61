/* SPDX-License-Identifier: MIT */
#include "common/metrics.h"

#define MS 1000000ULL /* nanoseconds */

const struct metrics_buckets metrics_duration_buckets = {
	.n = 16,
	.le = {100000ULL, 250000ULL, 500000ULL, 1 * MS, 2500000ULL, 5 * MS, 10 * MS, 25 * MS,
	       50 * MS, 100 * MS, 250 * MS, 500 * MS, 1000 * MS, 2500 * MS, 5000 * MS, 10000 * MS},
	.scale = 1e-9,
};

const struct metrics_buckets metrics_batch_buckets = {
	.n = 11,
	.le = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024},
	.scale = 1,
};

struct metrics_registry metrics;

const char *const metrics_srv_result_names[METRICS_SRV_NRESULTS] = {"ok", "empty", "error"};

const char *const metrics_fetch_result_names[METRICS_FETCH_NRESULTS] = {
	"ok", "http_error", "timeout", "connect_error", "too_large", "over_budget", "error",
};

size_t metrics_bucket(const struct metrics_buckets *b, uint64_t v)
{
	size_t i = 0;

	while (i < b->n && v > b->le[i]) {
		i++;
	}
	return i;
}

uint64_t metrics_histogram_read(const struct metrics_histogram *h, const struct metrics_buckets *b,
				uint64_t *out)
{
	for (size_t i = 0; i <= b->n; i++) {
		out[i] = atomic_load_explicit(&h->count[i], memory_order_relaxed);
	}
	return atomic_load_explicit(&h->sum, memory_order_relaxed);
}
