/* SPDX-License-Identifier: MIT */
/*
 * What libmicrohttpd 0.9.75 lets through and RFC 9112 says to refuse: ambiguous body
 * framing (the shapes of request smuggling), header fields that are not fields, and
 * raw control bytes or spaces in the request target. Each is answered at once, before any body
 * is read, with 400 (or 501 for a transfer coding kubia does not know, 417 for an
 * expectation it cannot meet) and the connection is closed: after a framing error the
 * next byte on it cannot be trusted to start a request.
 */
#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "server/http_internal.h"

/* Set by the unescape callback on a request whose target holds raw control bytes or spaces. The
 * space makes it a name no valid header has, so it cannot come from a client's request
 * that passes the name check. */
#define BAD_TARGET_MARK "kubia bad target"

size_t strict_unescape(void *cls, struct MHD_Connection *conn, char *s)
{
	(void)cls;
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p <= 0x20 || *p == 0x7f) {
			(void)MHD_set_connection_value(conn, MHD_HEADER_KIND, BAD_TARGET_MARK, "");
			break;
		}
	}
	return MHD_http_unescape(s);
}

/* RFC 3986 2.3 and 2.2: unreserved and sub-delims, what a reg-name is made of; a
 * switch, not a search of a string, as every request's Host goes through it. */
static bool is_regname_char(unsigned char c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
		return true;
	}
	switch (c) {
	case '-':
	case '.':
	case '_':
	case '~':
	case '!':
	case '$':
	case '&':
	case '\'':
	case '(':
	case ')':
	case '*':
	case '+':
	case ',':
	case ';':
	case '=':
		return true;
	default:
		return false;
	}
}

static bool is_hex(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool strict_authority_valid(const char *a, size_t n)
{
	size_t i = 0;

	if (n > 0 && a[0] == '[') {
		/* IP-literal: an IPv6 address (or IPvFuture), checked for its alphabet. */
		size_t colons = 0;

		for (i = 1; i < n && a[i] != ']'; i++) {
			unsigned char c = (unsigned char)a[i];

			colons += c == ':';
			if (!is_hex(c) && c != ':' && c != '.' &&
			    !(a[1] == 'v' && is_regname_char(c))) {
				return false;
			}
		}
		if (i == n || (colons < 2 && a[1] != 'v')) {
			return false;
		}
		i++;
	} else {
		while (i < n && a[i] != ':') {
			unsigned char c = (unsigned char)a[i];

			if (c == '%') {
				if (i + 2 >= n || !is_hex((unsigned char)a[i + 1]) ||
				    !is_hex((unsigned char)a[i + 2])) {
					return false;
				}
				i += 3;
				continue;
			}
			if (!is_regname_char(c)) {
				return false;
			}
			i++;
		}
	}
	if (i == n) {
		return true;
	}
	if (a[i] != ':' || n - i - 1 > 5) {
		return false;
	}
	for (i++; i < n; i++) {
		if (a[i] < '0' || a[i] > '9') {
			return false;
		}
	}
	return true;
}

/* What is wrong with the raw request target uri, or NULL: RFC 9112 3.2 allows an origin
 * form, or (which a server must accept) an absolute form; kubia has no use for the
 * authority form (CONNECT) or the asterisk form (OPTIONS), and a fragment is never sent. */
static const char asterisk_form[] = "the asterisk form of a request target is only for OPTIONS";
static const char other_form[] =
	"a request target neither in origin form (/path) nor absolute with http";

const char *strict_target_problem(const char *uri)
{
	static const char scheme[] = "http://";

	if (strchr(uri, '#') != NULL) {
		return "a fragment in the request target";
	}
	if (uri[0] == '/') {
		return NULL;
	}
	if (strcmp(uri, "*") == 0) {
		return asterisk_form;
	}
	if (strncasecmp(uri, scheme, strlen(scheme)) == 0) {
		const char *a = uri + strlen(scheme);
		size_t n = strcspn(a, "/?");

		if (n == 0 || !strict_authority_valid(a, n)) {
			return "an invalid authority in the absolute request target";
		}
		return NULL;
	}
	return other_form;
}

const char *strict_origin_path(const char *url)
{
	static const char scheme[] = "http://";
	const char *p;

	if (url[0] == '/' || strncasecmp(url, scheme, strlen(scheme)) != 0) {
		return url;
	}
	p = strchr(url + strlen(scheme), '/');
	return p != NULL ? p : "/";
}

void *strict_uri_log(void *cls, const char *uri, struct MHD_Connection *conn)
{
	const char *why = strict_target_problem(uri);

	(void)cls;
	if (why != NULL) {
		(void)MHD_set_connection_value(conn, MHD_HEADER_KIND, BAD_TARGET_MARK, why);
	}
	return NULL; /* the request's context: the access handler's first call sets it */
}

/* RFC 9110 5.6.2: token characters. */
static bool is_tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

struct scan {
	const char *why;
	unsigned status;
	unsigned hosts, lengths, encodings;
	const char *te; /* the (only) Transfer-Encoding value */
	const char *expect;
	const char *length;
	const char *target; /* what is wrong with the target, as the mark says */
};

static void fail(struct scan *sc, unsigned status, const char *why)
{
	if (sc->status == 0) {
		sc->status = status;
		sc->why = why;
	}
}

/*
 * libmicrohttpd 0.9.75 joins an obsolete folded line (one that starts with a space or
 * tab) to the field *name* before it, not to its value: "Content-Length: 8\r\n 9"
 * reaches the handler as a field "Content-Length9" with the value "8". The request then
 * seems to have no Content-Length at all, and a POST would store an empty body. Folding
 * elsewhere only renames a field kubia does not read; folded framing is refused.
 */
static bool folded_framing(const char *key)
{
	static const char *const framing[] = {MHD_HTTP_HEADER_CONTENT_LENGTH,
					      MHD_HTTP_HEADER_TRANSFER_ENCODING};

	for (size_t i = 0; i < sizeof(framing) / sizeof(framing[0]); i++) {
		size_t n = strlen(framing[i]);

		if (strlen(key) > n && strncasecmp(key, framing[i], n) == 0) {
			return true;
		}
	}
	return false;
}

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key,
				   const char *value)
{
	struct scan *sc = cls;

	(void)kind;
	if (strcmp(key, BAD_TARGET_MARK) == 0) {
		/* Judged with the method, in check_framing(). */
		sc->target = value != NULL && *value != '\0' && sc->target == NULL
				     ? value
				     : "control characters or spaces in the request target";
		return MHD_YES;
	}
	if (*key == '\0') {
		fail(sc, MHD_HTTP_BAD_REQUEST, "a header field without a name");
		return MHD_NO;
	}
	for (const unsigned char *p = (const unsigned char *)key; *p != '\0'; p++) {
		if (!is_tchar(*p)) {
			fail(sc, MHD_HTTP_BAD_REQUEST,
			     "a header field name with a character "
			     "that is not allowed (space, control, separator)");
			return MHD_NO;
		}
	}
	if (value == NULL) {
		value = ""; /* a field without a value: as an empty one */
	}
	for (const unsigned char *p = (const unsigned char *)value; *p != '\0'; p++) {
		if ((*p < 0x20 && *p != '\t') || *p == 0x7f) {
			fail(sc, MHD_HTTP_BAD_REQUEST,
			     "control characters in a header field value");
			return MHD_NO;
		}
	}
	if (folded_framing(key)) {
		fail(sc, MHD_HTTP_BAD_REQUEST,
		     "a folded Content-Length or Transfer-Encoding "
		     "(obsolete line folding)");
		return MHD_NO;
	}
	if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0) {
		sc->hosts++;
		if (!strict_authority_valid(value, strlen(value))) {
			fail(sc, MHD_HTTP_BAD_REQUEST,
			     "Host is not an authority (host with an optional numeric port)");
			return MHD_NO;
		}
	} else if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
		sc->lengths++;
		sc->length = value;
	} else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
		sc->encodings++;
		sc->te = value;
	} else if (strcasecmp(key, MHD_HTTP_HEADER_EXPECT) == 0) {
		sc->expect = sc->expect == NULL ? value : "";
	}
	return MHD_YES;
}

/* Whether the list te..end names chunked (each coding is a token, maybe with
 * parameters after ';'). */
static bool chunked_before(const char *te, const char *end)
{
	const char *p = te;

	while (p < end) {
		size_t n;

		while (p < end && (*p == ' ' || *p == '\t' || *p == ',')) {
			p++;
		}
		n = strcspn(p, " \t,;");
		if (p + n > end) {
			n = (size_t)(end - p);
		}
		if (n == strlen("chunked") && strncasecmp(p, "chunked", n) == 0) {
			return true;
		}
		p += n;
		while (p < end && *p != ',') {
			p++;
		}
	}
	return false;
}

/* RFC 9112 6.3: chunked must be the last coding, and once; libmicrohttpd reads a body
 * only when the field is exactly "chunked". */
static void check_coding(struct scan *sc, const char *te)
{
	size_t n = strlen(te);
	const char *last;

	while (n > 0 && (te[n - 1] == ' ' || te[n - 1] == '\t')) {
		n--;
	}
	last = te + n;
	while (last > te && last[-1] != ',' && last[-1] != ' ' && last[-1] != '\t') {
		last--;
	}
	if ((size_t)(te + n - last) != strlen("chunked") ||
	    strncasecmp(last, "chunked", strlen("chunked")) != 0) {
		fail(sc, MHD_HTTP_BAD_REQUEST,
		     "Transfer-Encoding does not end in chunked: "
		     "the body's length cannot be known");
	} else if (strcasecmp(te, "chunked") != 0 && chunked_before(te, last)) {
		fail(sc, MHD_HTTP_BAD_REQUEST, "chunked applied more than once");
	} else if (strcasecmp(te, "chunked") != 0) {
		fail(sc, MHD_HTTP_NOT_IMPLEMENTED,
		     "a transfer coding other than a single chunked is not supported");
	}
}

static bool all_digits(const char *s)
{
	if (*s == '\0') {
		return false;
	}
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9') {
			return false;
		}
	}
	return true;
}

static void check_framing(struct scan *sc, const char *method, const char *version)
{
	bool http10 = strcmp(version, MHD_HTTP_VERSION_1_0) == 0;
	bool bodyless = strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
			strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;

	/* OPTIONS * and CONNECT host:port are well formed: their method gets its 405. */
	if (sc->target != NULL &&
	    !(strcmp(sc->target, asterisk_form) == 0 && strcmp(method, "OPTIONS") == 0) &&
	    !(strcmp(sc->target, other_form) == 0 && strcmp(method, "CONNECT") == 0)) {
		fail(sc, MHD_HTTP_BAD_REQUEST, sc->target);
	}
	if (sc->hosts > 1 || (sc->hosts == 0 && !http10)) {
		fail(sc, MHD_HTTP_BAD_REQUEST, "an HTTP/1.1 request needs exactly one Host");
	}
	if (sc->lengths > 1) {
		fail(sc, MHD_HTTP_BAD_REQUEST, "more than one Content-Length");
	} else if (sc->lengths == 1 && !all_digits(sc->length)) {
		fail(sc, MHD_HTTP_BAD_REQUEST, "Content-Length is not a number");
	}
	if (sc->encodings > 0 && sc->lengths > 0) {
		fail(sc, MHD_HTTP_BAD_REQUEST, "both Content-Length and Transfer-Encoding");
	}
	if (sc->encodings > 0 && http10) {
		fail(sc, MHD_HTTP_BAD_REQUEST, "Transfer-Encoding in an HTTP/1.0 request");
	}
	if (sc->encodings > 1) {
		fail(sc, MHD_HTTP_BAD_REQUEST, "more than one Transfer-Encoding");
	} else if (sc->encodings == 1) {
		check_coding(sc, sc->te);
	}
	if (bodyless && (sc->encodings > 0 || (sc->lengths == 1 && strcmp(sc->length, "0") != 0))) {
		fail(sc, MHD_HTTP_BAD_REQUEST, "a body on GET or HEAD");
	}
	if (sc->expect != NULL && strcasecmp(sc->expect, "100-continue") != 0) {
		fail(sc, MHD_HTTP_EXPECTATION_FAILED, "the only expectation met is 100-continue");
	}
}

unsigned strict_check(struct MHD_Connection *conn, const char *method, const char *version,
		      const char **why)
{
	struct scan sc;

	memset(&sc, 0, sizeof(sc));
	(void)MHD_get_connection_values(conn, MHD_HEADER_KIND, scan_header, &sc);
	if (sc.status == 0) {
		check_framing(&sc, method, version);
	}
	*why = sc.why;
	return sc.status;
}

enum MHD_Result strict_refuse(struct MHD_Connection *conn, unsigned status, const char *why)
{
	static const char prefix[] = "Bad request: ";
	char text[256];
	struct MHD_Response *r;
	enum MHD_Result ret;
	size_t len;
	int n;

	n = snprintf(text, sizeof(text), "%s%s\n",
		     status == MHD_HTTP_BAD_REQUEST ? prefix : "Not served: ", why);
	len = n > 0 && (size_t)n < sizeof(text) ? (size_t)n : 0;
	r = response_text(text, len);
	if (r == NULL) {
		return MHD_NO;
	}
	if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close") != MHD_YES) {
		MHD_destroy_response(r);
		return MHD_NO;
	}
	ret = queue_response(conn, status, r, len);
	MHD_destroy_response(r);
	return ret;
}
