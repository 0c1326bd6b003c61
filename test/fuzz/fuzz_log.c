/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the log's lines (server/log.c): a message and fields of any
 * bytes, in logfmt and in JSON. Whatever they hold, the output is one line (one
 * newline, at its end), without a control byte, valid UTF-8; in JSON it parses, in
 * logfmt every pair does (a bare value or a JSON-quoted string); time, level and msg
 * come first and the fields follow in the order given, each one whole, its value the
 * bytes given when they are UTF-8.
 *
 * Input: a byte (1: JSON; the next two bits: the level), then NUL-separated items: the
 * message, then fields, each a byte (the type: string, number, milliseconds) and its
 * value.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "server/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_FIELDS 8

static const char *const keys[MAX_FIELDS] = {"k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"};
static const char *const levels[] = {"error", "warn", "info", "debug"};

/* RFC 3629: is s[0..n) UTF-8? */
static bool utf8(const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned c = s[i];
		size_t len = c < 0x80                 ? 1
			     : c >= 0xc2 && c <= 0xdf ? 2
			     : c >= 0xe0 && c <= 0xef ? 3
			     : c >= 0xf0 && c <= 0xf4 ? 4
						      : 0;
		unsigned cp = len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;

		if (len == 0 || len > n - i) {
			return false;
		}
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80) {
				return false;
			}
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
		    (len == 4 && (cp < 0x10000 || cp > 0x10ffff))) {
			return false;
		}
		i += len;
	}
	return true;
}

/* A value as the log must show it: the same bytes when they are UTF-8; a number as a
 * JSON number, or in logfmt as its decimal text. */
static bool value_is(json_t *v, const struct log_field *f, bool json)
{
	char num[32];

	if (!json && f->type == LOG_UINT) {
		snprintf(num, sizeof(num), "%llu", (unsigned long long)f->u);
		return json_is_string(v) && strcmp(json_string_value(v), num) == 0;
	}
	if (!json && f->type == LOG_MS) {
		snprintf(num, sizeof(num), "%.3f", f->ms);
		return json_is_string(v) && strcmp(json_string_value(v), num) == 0;
	}
	switch (f->type) {
	case LOG_STR:
		return json_is_string(v) && (!utf8((const unsigned char *)f->str, f->len) ||
					     (json_string_length(v) == f->len &&
					      memcmp(json_string_value(v), f->str, f->len) == 0));
	case LOG_UINT:
		return json_is_integer(v) && (uint64_t)json_integer_value(v) == f->u;
	default:
		return json_is_number(v) && json_number_value(v) - f->ms < 0.001 &&
		       f->ms - json_number_value(v) < 0.001;
	}
}

/* The pairs of a logfmt line, as a JSON object of strings. */
static json_t *logfmt(const char *s, size_t n)
{
	json_t *o = json_object();
	size_t i = 0;

	while (i < n) {
		size_t k = i, v;
		char *key;
		json_t *val;

		while (i < n && s[i] != '=' && s[i] != ' ') {
			i++;
		}
		if (i >= n || s[i] != '=' || i == k) {
			abort();
		}
		key = strndup(s + k, i - k);
		v = ++i;
		if (i < n && s[i] == '"') {
			for (i++; i < n && s[i] != '"'; i++) {
				i += s[i] == '\\';
			}
			if (i >= n) {
				abort();
			}
			val = json_loadb(s + v, ++i - v, JSON_DECODE_ANY, NULL);
		} else {
			while (i < n && s[i] != ' ') {
				i++;
			}
			val = json_stringn(s + v, i - v);
		}
		if (val == NULL || (i < n && s[i++] != ' ') || json_object_get(o, key) != NULL) {
			abort();
		}
		json_object_set_new(o, key, val);
		free(key);
	}
	return o;
}

static void check(const char *out, size_t n, bool json, enum log_level level, const char *msg,
		  const struct log_field *f, size_t nf)
{
	json_t *o;
	const char *key;
	json_t *v;
	size_t at = 0, next = 0;

	if (n == 0 || out[n - 1] != '\n' || memchr(out, '\n', n) != out + n - 1 ||
	    !utf8((const unsigned char *)out, n)) {
		abort();
	}
	for (size_t i = 0; i + 1 < n; i++) {
		if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f) {
			abort();
		}
	}
	o = json ? json_loadb(out, n - 1, JSON_REJECT_DUPLICATES, NULL) : logfmt(out, n - 1);
	if (o == NULL || strcmp(json_string_value(json_object_get(o, "level")), levels[level]) ||
	    !json_is_string(json_object_get(o, "time"))) {
		abort();
	}
	v = json_object_get(o, "msg");
	if (v == NULL || (utf8((const unsigned char *)msg, strlen(msg)) &&
			  strcmp(json_string_value(v), msg) != 0)) {
		abort();
	}
	/* time, level, msg, then the fields given, in order, each whole or not at all. */
	json_object_foreach(o, key, v)
	{
		static const char *const first[] = {"time", "level", "msg"};

		if (at < 3) {
			if (strcmp(key, first[at++]) != 0) {
				abort();
			}
			continue;
		}
		while (next < nf && strcmp(keys[next], key) != 0) {
			next++;
		}
		if (next == nf || !value_is(v, &f[next], json)) {
			abort();
		}
		next++;
	}
	json_decref(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	static int saved = -1;
	static char out[16384];
	char *copy, *item, *msg;
	struct log_field f[MAX_FIELDS];
	size_t nf = 0;
	ssize_t n;
	bool json;
	enum log_level level;

	if (size < 1) {
		return 0;
	}
	if (fd < 0) {
		fd = memfd_create("log", 0);
		saved = dup(STDERR_FILENO);
		json_object_seed(
			1); /* keys keep their order: objects are kept in insertion order */
		if (fd < 0 || saved < 0) {
			abort();
		}
	}
	json = (data[0] & 1) != 0;
	level = (enum log_level)((data[0] >> 1) & 3);
	copy = malloc(size);
	if (copy == NULL) {
		abort();
	}
	memcpy(copy, data + 1, size - 1);
	copy[size - 1] = '\0';
	msg = copy;
	item = msg + strlen(msg) + 1;
	while (item < copy + size - 1 && nf < MAX_FIELDS) {
		size_t len = strlen(item);
		uint64_t u = 0;

		for (size_t i = 1; i < len; i++) {
			u = (u * 131 + (unsigned char)item[i]) & ((1ull << 53) - 1);
		}
		f[nf] = (struct log_field){.key = keys[nf],
					   .type = (enum log_value)((unsigned char)item[0] % 3),
					   .str = item + (len > 0),
					   .len = len > 0 ? len - 1 : 0,
					   .u = u,
					   .ms = (double)(u % 100000000) / 1000.0};
		nf++;
		item += len + 1;
	}
	log_set_format(json ? LOG_FORMAT_JSON : LOG_FORMAT_LOGFMT);
	log_set_level(LOG_LEVEL_DEBUG);
	if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0 || dup2(fd, STDERR_FILENO) < 0) {
		abort();
	}
	log_fields(level, msg, f, nf);
	dup2(saved, STDERR_FILENO);
	n = pread(fd, out, sizeof(out), 0);
	if (n < 0) {
		abort();
	}
	check(out, (size_t)n, json, level, msg, f, nf);
	free(copy);
	return 0;
}
