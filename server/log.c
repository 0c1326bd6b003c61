/* SPDX-License-Identifier: MIT */
#include "server/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int current_level = LOG_LEVEL_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_set_level(enum log_level level)
{
	atomic_store(&current_level, (int)level);
}

bool log_enabled(enum log_level level)
{
	return (int)level <= atomic_load(&current_level);
}

bool log_level_parse(const char *text, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(text, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return true;
		}
	}
	return false;
}

static void log_write(enum log_level level, int err, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

static void log_write(enum log_level level, int err, const char *fmt, va_list ap)
{
	char line[1024];
	struct timespec ts;
	struct tm tm;
	size_t n = 0;
	int r;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	r = snprintf(line + n, sizeof(line) - n, ".%03ldZ kubia[%ld] %s: ", ts.tv_nsec / 1000000L,
		     (long)getpid(), level_names[level]);
	if (r > 0) {
		n += (size_t)r;
	}
	if (n < sizeof(line)) {
		r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
		if (r > 0) {
			n += (size_t)r;
		}
	}
	if (err != 0 && n < sizeof(line)) {
		char buf[128];
		/* GNU strerror_r returns the text, which may not be buf. */
		const char *text = strerror_r(err, buf, sizeof(buf));
		r = snprintf(line + n, sizeof(line) - n, ": %s", text);
		if (r > 0) {
			n += (size_t)r;
		}
	}
	if (n >= sizeof(line)) {
		n = sizeof(line) - 1; /* truncated: keep room for the newline */
	}
	line[n++] = '\n';
	/* A failed log write has nowhere to be reported. */
	if (write(STDERR_FILENO, line, n) < 0) {
		return;
	}
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;
	int saved = errno;

	if (!log_enabled(level)) {
		return;
	}
	va_start(ap, fmt);
	log_write(level, 0, fmt, ap);
	va_end(ap);
	errno = saved;
}

void log_errno(enum log_level level, int err, const char *fmt, ...)
{
	va_list ap;
	int saved = errno;

	if (!log_enabled(level)) {
		return;
	}
	va_start(ap, fmt);
	log_write(level, err, fmt, ap);
	va_end(ap);
	errno = saved;
}
