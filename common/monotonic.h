/* SPDX-License-Identifier: MIT */
#ifndef KUBIA_MONOTONIC_H
#define KUBIA_MONOTONIC_H

#include <stdint.h>

/* Nanoseconds of CLOCK_MONOTONIC: the one clock for durations and deadlines, which a
 * change of the wall clock cannot move. */
uint64_t monotonic_ns(void);

#endif
