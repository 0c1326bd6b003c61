/* SPDX-License-Identifier: MIT */
#ifndef KUBIA_LOG_H
#define KUBIA_LOG_H

#include <stdbool.h>

/* One logging function with levels: a line on stderr with a UTC timestamp, the
 * level and the message, written with one write() so threads never interleave. */

enum log_level {
	LOG_LEVEL_ERROR = 0,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

void log_set_level(enum log_level level);
bool log_enabled(enum log_level level);

/* Parses "error", "warn", "info" or "debug". */
bool log_level_parse(const char *text, enum log_level *out);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Like log_msg() with ": <strerror(err)>" appended. */
void log_errno(enum log_level level, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
