/* SPDX-License-Identifier: MIT */
#ifndef KUBIA_PARSE_H
#define KUBIA_PARSE_H

#include <stdbool.h>
#include <stdint.h>

/* A whole decimal number and nothing else: no sign, no space, not empty, and not past
 * UINT64_MAX. false, leaving *out alone, for anything else. */
bool parse_u64(const char *s, uint64_t *out);

#endif
