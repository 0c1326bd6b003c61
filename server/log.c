/* SPDX-License-Identifier: MIT */
#include "server/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 8192

static atomic_int current_level = LOG_LEVEL_INFO;
static atomic_int current_format = LOG_FORMAT_LOGFMT;

static const char *const level_names[] = {"error", "warn", "info", "debug"};
static const char *const format_names[] = {"logfmt", "json"};

void log_set_level(enum log_level level)
{
	atomic_store(&current_level, (int)level);
}

bool log_enabled(enum log_level level)
{
	return (int)level <= atomic_load(&current_level);
}

void log_set_format(enum log_format format)
{
	atomic_store(&current_format, (int)format);
}

static bool parse_name(const char *text, const char *const *names, size_t n, int *out)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(text, names[i]) == 0) {
			*out = (int)i;
			return true;
		}
	}
	return false;
}

bool log_level_parse(const char *text, enum log_level *out)
{
	int i;

	if (!parse_name(text, level_names, sizeof(level_names) / sizeof(level_names[0]), &i)) {
		return false;
	}
	*out = (enum log_level)i;
	return true;
}

const char *log_level_name(enum log_level level)
{
	return level_names[level];
}

bool log_format_parse(const char *text, enum log_format *out)
{
	int i;

	if (!parse_name(text, format_names, sizeof(format_names) / sizeof(format_names[0]), &i)) {
		return false;
	}
	*out = (enum log_format)i;
	return true;
}

const char *log_format_name(enum log_format format)
{
	return format_names[format];
}

/* A line being built; what does not fit is dropped, and the line stays well formed
 * because every piece is added whole or not at all. */
struct line {
	char buf[LINE_MAX_BYTES];
	size_t n;
	bool json;
};

/* Room kept for the closing "}\n". */
#define LINE_RESERVE 2

static bool put(struct line *l, const char *s, size_t len)
{
	if (len > sizeof(l->buf) - LINE_RESERVE - l->n) {
		return false;
	}
	memcpy(l->buf + l->n, s, len);
	l->n += len;
	return true;
}

static bool puts_(struct line *l, const char *s)
{
	return put(l, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 when it is not one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t len;
	unsigned cp;

	if (s[0] < 0x80) {
		return 1;
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		cp = s[0] & 0x1fU;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		cp = s[0] & 0x0fU;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		cp = s[0] & 0x07U;
	} else {
		return 0;
	}
	if (len > n) {
		return 0;
	}
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80) {
			return 0;
		}
		cp = (cp << 6) | (s[i] & 0x3fU);
	}
	/* Overlong forms, surrogates and past U+10FFFF are not UTF-8. */
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff)) {
		return 0;
	}
	return len;
}

/* A quoted string, escaped the same way in both formats (JSON's escapes, which logfmt
 * parsers read too): \" \\ \n \r \t, other control bytes as \u00XX, invalid UTF-8 as
 * \ufffd. Whole or not at all. */
static bool put_quoted(struct line *l, const char *s, size_t len)
{
	size_t start = l->n;
	const unsigned char *p = (const unsigned char *)s;
	char esc[8];

	if (!put(l, "\"", 1)) {
		return false;
	}
	for (size_t i = 0; i < len;) {
		size_t u = utf8_len(p + i, len - i);
		bool ok;

		if (u == 0) {
			ok = put(l, "\\ufffd", 6);
			u = 1;
		} else if (p[i] == '"' || p[i] == '\\') {
			esc[0] = '\\';
			esc[1] = (char)p[i];
			ok = put(l, esc, 2);
		} else if (p[i] == '\n') {
			ok = put(l, "\\n", 2);
		} else if (p[i] == '\r') {
			ok = put(l, "\\r", 2);
		} else if (p[i] == '\t') {
			ok = put(l, "\\t", 2);
		} else if (p[i] < 0x20 || p[i] == 0x7f) {
			snprintf(esc, sizeof(esc), "\\u%04x", p[i]);
			ok = put(l, esc, 6);
		} else {
			ok = put(l, s + i, u);
		}
		if (!ok) {
			l->n = start;
			return false;
		}
		i += u;
	}
	if (!put(l, "\"", 1)) {
		l->n = start;
		return false;
	}
	return true;
}

/* logfmt leaves a plain value bare: printable ASCII without space, '=', '"' or '\'. */
static bool bare(const char *s, size_t len)
{
	if (len == 0) {
		return false;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= ' ' || c >= 0x7f || c == '=' || c == '"' || c == '\\') {
			return false;
		}
	}
	return true;
}

/* One key and value: ` key=value` or `,"key":value`; whole or not at all. */
static void put_field(struct line *l, const char *key, const char *val, size_t len, bool quote)
{
	size_t start = l->n;
	bool ok;

	if (l->json) {
		ok = put(l, ",\"", 2) && puts_(l, key) && put(l, "\":", 2) &&
		     (quote ? put_quoted(l, val, len) : put(l, val, len));
	} else {
		ok = put(l, " ", 1) && puts_(l, key) && put(l, "=", 1) &&
		     (quote && !bare(val, len) ? put_quoted(l, val, len) : put(l, val, len));
	}
	if (!ok) {
		l->n = start;
	}
}

static void line_begin(struct line *l, enum log_level level)
{
	char ts[40];
	struct timespec now;
	struct tm tm;
	size_t n;

	l->n = 0;
	l->json = atomic_load(&current_format) == LOG_FORMAT_JSON;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + n, sizeof(ts) - n, ".%03ldZ", now.tv_nsec / 1000000L);
	if (l->json) {
		(void)put(l, "{\"time\":\"", 9);
		(void)puts_(l, ts);
		(void)put(l, "\"", 1);
	} else {
		(void)put(l, "time=", 5);
		(void)puts_(l, ts);
	}
	put_field(l, "level", level_names[level], strlen(level_names[level]), true);
}

static void line_end(struct line *l)
{
	/* LINE_RESERVE keeps room for these. */
	if (l->json) {
		l->buf[l->n++] = '}';
	}
	l->buf[l->n++] = '\n';
	/* A failed log write has nowhere to be reported. */
	if (write(STDERR_FILENO, l->buf, l->n) < 0) {
		return;
	}
}

static void log_write(enum log_level level, int err, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

static void log_write(enum log_level level, int err, const char *fmt, va_list ap)
{
	struct line l;
	char msg[2048];
	int r;
	size_t n = 0;

	r = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (r > 0) {
		n = (size_t)r < sizeof(msg) ? (size_t)r : sizeof(msg) - 1;
	}
	if (err != 0 && n < sizeof(msg) - 1) {
		char buf[128];
		/* GNU strerror_r returns the text, which may not be buf. */
		const char *text = strerror_r(err, buf, sizeof(buf));
		r = snprintf(msg + n, sizeof(msg) - n, ": %s", text);
		if (r > 0) {
			n = n + (size_t)r < sizeof(msg) ? n + (size_t)r : sizeof(msg) - 1;
		}
	}
	line_begin(&l, level);
	put_field(&l, "msg", msg, n, true);
	line_end(&l);
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

void log_fields(enum log_level level, const char *msg, const struct log_field *f, size_t n)
{
	struct line l;
	char num[32];
	int saved = errno;
	int r;

	if (!log_enabled(level)) {
		return;
	}
	line_begin(&l, level);
	put_field(&l, "msg", msg, strlen(msg), true);
	for (size_t i = 0; i < n; i++) {
		switch (f[i].type) {
		case LOG_STR:
			put_field(&l, f[i].key, f[i].str != NULL ? f[i].str : "",
				  f[i].str != NULL ? f[i].len : 0, true);
			break;
		case LOG_UINT:
			r = snprintf(num, sizeof(num), "%llu", (unsigned long long)f[i].u);
			put_field(&l, f[i].key, num, r > 0 ? (size_t)r : 0, false);
			break;
		case LOG_MS:
			r = snprintf(num, sizeof(num), "%.3f", f[i].ms);
			put_field(&l, f[i].key, num, r > 0 ? (size_t)r : 0, false);
			break;
		}
	}
	line_end(&l);
	errno = saved;
}
