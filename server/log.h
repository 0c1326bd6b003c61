/* SPDX-License-Identifier: MIT */
#ifndef KUBIA_LOG_H
#define KUBIA_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * One logging function with levels: one line per event on stderr, written with one
 * write() so threads never interleave. Every line has the time (RFC 3339, UTC,
 * milliseconds), the level and a message, in logfmt (the default) or JSON; events with
 * fields of their own (a request, the configuration) add them after the message. Values
 * are escaped so that a line always parses: control bytes and invalid UTF-8 never reach
 * the output raw.
 */

enum log_level {
	LOG_LEVEL_ERROR = 0,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

enum log_format {
	LOG_FORMAT_LOGFMT = 0,
	LOG_FORMAT_JSON,
};

void log_set_level(enum log_level level);
bool log_enabled(enum log_level level);
void log_set_format(enum log_format format);

/* Parses "error", "warn", "info" or "debug". */
bool log_level_parse(const char *text, enum log_level *out);
const char *log_level_name(enum log_level level);

/* Parses "logfmt" or "json". */
bool log_format_parse(const char *text, enum log_format *out);
const char *log_format_name(enum log_format format);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Like log_msg() with ": <strerror(err)>" appended. */
void log_errno(enum log_level level, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* A field of an event: a key (a fixed identifier: letters, digits, '_') and a value. */
enum log_value {
	LOG_STR, /* str, len bytes: any bytes, escaped as needed */
	LOG_UINT, /* u */
	LOG_MS, /* ms, printed with three decimals */
};

struct log_field {
	const char *key;
	enum log_value type;
	const char *str;
	size_t len;
	uint64_t u;
	double ms;
};

/* One line: the message, then the fields in order. A line longer than the log's buffer
 * (8 KiB) loses its last fields, never its end of line. */
void log_fields(enum log_level level, const char *msg, const struct log_field *f, size_t n);

#endif
