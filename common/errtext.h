/* SPDX-License-Identifier: MIT */
#ifndef KUBIA_ERRTEXT_H
#define KUBIA_ERRTEXT_H

#include <stddef.h>

/*
 * errtext: the one way a module tells its caller what went wrong. Functions that can
 * fail take a small buffer (err, errlen) and fill it with one line of plain text, which
 * server/ shows to the user as it is.
 */

/* Lets the compiler check printf-style formats (-Wformat=2 relies on it). */
#define ERRTEXT_PRINTF(fmt, first) __attribute__((format(printf, fmt, first)))

/* Writes one printf-formatted line into err, cut to errlen, every control byte of it
 * (a newline too) made '?'; nothing when err is NULL or errlen is 0. */
void errtext_set(char *err, size_t errlen, const char *fmt, ...) ERRTEXT_PRINTF(3, 4);

#endif
