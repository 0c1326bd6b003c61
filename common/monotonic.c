/* SPDX-License-Identifier: MIT */
#include "common/monotonic.h"

#include <time.h>

uint64_t monotonic_ns(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}
