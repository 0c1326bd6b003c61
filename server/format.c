/* SPDX-License-Identifier: MIT */
/*
 * Which format a cluster view is asked in: text (the book's, the default) or JSON,
 * from "?format=" when it is given, else from the Accept header's media ranges and
 * their q-values (RFC 9110, section 12.5.1).
 */
#include <microhttpd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server/http_internal.h"

#define OWS " \t"

/* A q-value: "0", "0.5", "1", "1.000" (at most three decimals); -1 when malformed.
 * In thousandths, so comparisons are exact. */
static int parse_q(const char *v, size_t n)
{
	int q;
	size_t i = 2;

	if (n == 0 || (v[0] != '0' && v[0] != '1') || (n > 1 && v[1] != '.') || n > 5) {
		return -1;
	}
	q = (v[0] - '0') * 1000;
	for (int scale = 100; i < n; i++, scale /= 10) {
		if (v[i] < '0' || v[i] > '9') {
			return -1;
		}
		q += (v[i] - '0') * scale;
	}
	return q > 1000 ? -1 : q;
}

static void trim(const char **s, size_t *n)
{
	while (*n > 0 && strchr(OWS, (*s)[0]) != NULL) {
		(*s)++;
		(*n)--;
	}
	while (*n > 0 && strchr(OWS, (*s)[*n - 1]) != NULL) {
		(*n)--;
	}
}

/* One media range "type/subtype *( OWS ; OWS param )". Its q (1000 when not given) in
 * *q; false when it is malformed (it is then ignored, as a client's typo should be). */
static bool parse_range(const char *s, size_t n, const char **type, size_t *tlen, const char **sub,
			size_t *slen, int *q)
{
	const char *start = s;
	const char *semi = memchr(s, ';', n);
	size_t head = semi != NULL ? (size_t)(semi - s) : n;
	const char *slash;

	*q = 1000;
	trim(&s, &head);
	slash = memchr(s, '/', head);
	if (slash == NULL || slash == s || slash == s + head - 1) {
		return false;
	}
	*type = s;
	*tlen = (size_t)(slash - s);
	*sub = slash + 1;
	*slen = head - *tlen - 1;
	if (*tlen == 1 && **type == '*' && !(*slen == 1 && **sub == '*')) {
		return false; /* "*" + "/" + "json" is not a range */
	}
	while (semi != NULL) {
		const char *p = semi + 1;
		size_t left = n - (size_t)(p - start);
		const char *next = memchr(p, ';', left);
		size_t plen = next != NULL ? (size_t)(next - p) : left;
		const char *eq = memchr(p, '=', plen);

		if (eq != NULL) {
			const char *name = p;
			size_t nlen = (size_t)(eq - p);
			const char *val = eq + 1;
			size_t vlen = plen - nlen - 1;

			trim(&name, &nlen);
			trim(&val, &vlen);
			/* Parameters other than the weight do not change what a range matches
			 * here: neither of kubia's media types has any. */
			if (nlen == 1 && (name[0] == 'q' || name[0] == 'Q')) {
				*q = parse_q(val, vlen);
				if (*q < 0) {
					return false;
				}
			}
		}
		semi = next;
	}
	return true;
}

static bool token_is(const char *s, size_t n, const char *want)
{
	return n == strlen(want) && strncasecmp(s, want, n) == 0;
}

/* How specifically a range names type/sub: 3 exactly, 2 "type/x", 1 "x/x", 0 not. */
static int match(const char *t, size_t tl, const char *s, size_t sl, const char *type,
		 const char *sub)
{
	if (token_is(t, tl, "*") && token_is(s, sl, "*")) {
		return 1;
	}
	if (!token_is(t, tl, type)) {
		return 0;
	}
	if (token_is(s, sl, "*")) {
		return 2;
	}
	return token_is(s, sl, sub) ? 3 : 0;
}

/* The weight of type/sub under accept: the q of the most specific range that matches
 * it (the highest such q when several are equally specific); 0 when none does. */
static int weight_of(const char *accept, const char *type, const char *sub)
{
	int best = 0;
	int q_best = 0;
	const char *p = accept;

	while (*p != '\0') {
		const char *comma = strchr(p, ',');
		size_t n = comma != NULL ? (size_t)(comma - p) : strlen(p);
		const char *t, *s;
		size_t tl, sl;
		int q;

		if (parse_range(p, n, &t, &tl, &s, &sl, &q)) {
			int m = match(t, tl, s, sl, type, sub);

			if (m > best || (m == best && m > 0 && q > q_best)) {
				best = m;
				q_best = q;
			}
		}
		p += n + (comma != NULL);
	}
	return q_best;
}

enum view_format view_format_choose(const char *format, const char *accept)
{
	if (format != NULL) {
		if (strcmp(format, "json") == 0) {
			return VIEW_FORMAT_JSON;
		}
		return strcmp(format, "text") == 0 ? VIEW_FORMAT_TEXT : VIEW_FORMAT_BAD;
	}
	if (accept == NULL) {
		return VIEW_FORMAT_TEXT;
	}
	/* JSON only when it is preferred to text: a tie (no Accept, "*" + "/" + "*", both
	 * named alike) keeps the book's text. */
	return weight_of(accept, "application", "json") > weight_of(accept, "text", "plain")
		       ? VIEW_FORMAT_JSON
		       : VIEW_FORMAT_TEXT;
}

struct accept_acc {
	char *text; /* every Accept field, joined with ", " */
	size_t len;
	bool oom;
};

static enum MHD_Result add_accept(void *cls, enum MHD_ValueKind kind, const char *key,
				  const char *value)
{
	struct accept_acc *a = cls;
	size_t vl = value != NULL ? strlen(value) : 0;
	char *p;

	(void)kind;
	if (key == NULL || strcasecmp(key, MHD_HTTP_HEADER_ACCEPT) != 0 || vl == 0) {
		return MHD_YES;
	}
	p = realloc(a->text, a->len + vl + 3);
	if (p == NULL) {
		a->oom = true;
		return MHD_NO;
	}
	a->text = p;
	if (a->len > 0) {
		memcpy(a->text + a->len, ", ", 2);
		a->len += 2;
	}
	memcpy(a->text + a->len, value, vl + 1);
	a->len += vl;
	return MHD_YES;
}

enum view_format view_format_of(struct MHD_Connection *conn)
{
	const char *format = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "format");
	struct accept_acc a = {NULL, 0, false};
	enum view_format f;

	if (format != NULL) {
		return view_format_choose(format, NULL);
	}
	/* A field may be sent more than once: the lists are one list (RFC 9110, 5.3). */
	(void)MHD_get_connection_values(conn, MHD_HEADER_KIND, add_accept, &a);
	f = a.oom ? VIEW_FORMAT_TEXT : view_format_choose(NULL, a.text);
	free(a.text);
	return f;
}

bool view_stream_choose(const char *watch, const char *accept)
{
	int stream;

	if (watch != NULL) {
		return strcmp(watch, "1") == 0; /* given, it decides: ?watch=0 is the view */
	}
	if (accept == NULL) {
		return false;
	}
	/* A browser's EventSource sends exactly "text/event-stream"; "text/" + "*" or
	 * "*" + "/" + "*" weigh the text view as much, which keeps it. */
	stream = weight_of(accept, "text", "event-stream");
	return stream > weight_of(accept, "text", "plain") &&
	       stream > weight_of(accept, "application", "json");
}

bool view_stream_of(struct MHD_Connection *conn)
{
	const char *watch = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "watch");
	struct accept_acc a = {NULL, 0, false};
	bool stream;

	if (watch != NULL) {
		return view_stream_choose(watch, NULL);
	}
	/* A field may be sent more than once: the lists are one list (RFC 9110, 5.3). */
	(void)MHD_get_connection_values(conn, MHD_HEADER_KIND, add_accept, &a);
	stream = !a.oom && view_stream_choose(NULL, a.text);
	free(a.text);
	return stream;
}

enum MHD_Result view_format_refuse(struct MHD_Connection *conn)
{
	const char *format = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "format");
	char shown[65];
	size_t i = 0;

	/* Shown as it came, cut and with bytes that are not printable ASCII as '?'. */
	for (; format != NULL && format[i] != '\0' && i < sizeof(shown) - 1; i++) {
		unsigned char c = (unsigned char)format[i];

		shown[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
	}
	shown[i] = '\0';
	return queue_fmt(conn, MHD_HTTP_BAD_REQUEST,
			 "Unknown format \"%s\": use format=json or format=text\n", shown);
}
