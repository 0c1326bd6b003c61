/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for what kubia makes of a request's head before it reads a body:
 * server/strict.c (what RFC 9112 refuses and libmicrohttpd lets through) and then
 * server/classify.c (the route), as routes.c runs them.
 *
 * The input is the head of an HTTP request as a client sends it ("METHOD target
 * VERSION", then "Name: value" lines, CRLF or LF). It is split the way libmicrohttpd
 * hands it to kubia, and libmicrohttpd's few calls are stood in for here (its header
 * iterator walks these fields), so strict.c runs without a connection; a call of
 * libmicrohttpd or of the rest of server/ added to those files needs its stand-in here.
 *
 * The verdict is checked against RFC 9112's rules stated on their own: one Host (none
 * only in HTTP/1.0), at most one Content-Length and all digits, never both
 * Content-Length and Transfer-Encoding, only "chunked" as a coding and not in HTTP/1.0,
 * no body on GET or HEAD, only the 100-continue expectation, field names that are
 * tokens, values and targets without control bytes; 501 only for a coding, 417 only for
 * an expectation. A request let through is then routed, and never found to have a bad
 * length, and the format of its view is chosen (server/format.c): ?format= as given
 * (json, text, else refused); from Accept, text unless JSON is preferred: an added
 * "text/plain" always makes it text, an added refusal of one type never turns the
 * choice to it.
 */
#include <ctype.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server/classify.h"
#include "server/http_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_FIELDS 64

struct field {
	char *key;
	char *value;
};

static struct field fields[MAX_FIELDS + 1];
static size_t nfields;
static const char *format_arg; /* ?format= of the target, as libmicrohttpd gives it */

/* ---- what strict.c needs of libmicrohttpd ------------------------------------------ */

int MHD_get_connection_values(struct MHD_Connection *conn, enum MHD_ValueKind kind,
			      MHD_KeyValueIterator it, void *cls)
{
	int n = 0;

	(void)conn;
	for (size_t i = 0; i < nfields && (kind & MHD_HEADER_KIND) != 0; i++) {
		n++;
		if (it != NULL &&
		    it(cls, MHD_HEADER_KIND, fields[i].key, fields[i].value) != MHD_YES) {
			break;
		}
	}
	return n;
}

enum MHD_Result MHD_set_connection_value(struct MHD_Connection *conn, enum MHD_ValueKind kind,
					 const char *key, const char *value)
{
	(void)conn;
	(void)kind;
	if (nfields < MAX_FIELDS + 1) {
		fields[nfields].key = strdup(key);
		fields[nfields++].value = strdup(value);
	}
	return MHD_YES;
}

const char *MHD_lookup_connection_value(struct MHD_Connection *conn, enum MHD_ValueKind kind,
					const char *key)
{
	(void)conn;
	if ((kind & MHD_GET_ARGUMENT_KIND) != 0 && strcmp(key, "format") == 0) {
		return format_arg;
	}
	for (size_t i = 0; (kind & MHD_HEADER_KIND) != 0 && i < nfields; i++) {
		if (strcasecmp(fields[i].key, key) == 0) {
			return fields[i].value;
		}
	}
	return NULL;
}

size_t MHD_http_unescape(char *val)
{
	return strlen(val);
}

/* Never reached: only strict_refuse() answers, and it is not called here. */
enum MHD_Result MHD_add_response_header(struct MHD_Response *r, const char *h, const char *c)
{
	(void)r, (void)h, (void)c;
	abort();
}

enum MHD_Result MHD_queue_response(struct MHD_Connection *conn, unsigned int status,
				   struct MHD_Response *r)
{
	(void)conn, (void)status, (void)r;
	abort();
}

void MHD_destroy_response(struct MHD_Response *r)
{
	(void)r;
	abort();
}

enum MHD_Result queue_response(struct MHD_Connection *conn, unsigned status, struct MHD_Response *r,
			       size_t len)
{
	(void)conn, (void)status, (void)r, (void)len;
	abort();
}

struct MHD_Response *response_text(const char *text, size_t len)
{
	(void)text, (void)len;
	abort();
}

enum MHD_Result queue_fmt(struct MHD_Connection *conn, unsigned status, const char *fmt, ...)
{
	(void)conn, (void)status, (void)fmt;
	abort();
}

/* ---- RFC 9112, stated on its own --------------------------------------------------- */

static bool token(const char *s)
{
	if (*s == '\0') {
		return false;
	}
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      strchr("!#$%&'*+-.^_`|~", c) != NULL)) {
			return false;
		}
	}
	return true;
}

static bool digits(const char *s)
{
	return *s != '\0' && strspn(s, "0123456789") == strlen(s);
}

static bool has_controls(const char *s, bool tab_ok)
{
	for (; *s != '\0'; s++) {
		if (((unsigned char)*s < 0x20 && !(tab_ok && *s == '\t')) || *s == 0x7f) {
			return true;
		}
	}
	return false;
}

/* 0 when the head is acceptable, else the status it must get (any of 400/501/417 is
 * taken where several rules break: *allowed says which). */
/* RFC 3986 authority without userinfo, as a second reading: reg-name (unreserved,
 * sub-delims, %XX), IPv4 (a reg-name too) or [IPv6 or IPvFuture], then :port (0-5 digits). */
static bool authority_ok(const char *v, size_t n)
{
	static const char regname[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				      "0123456789-._~!$&'()*+,;=";
	const char *end = v + n;
	const char *rest;

	if (n > 0 && *v == '[') {
		const char *close = memchr(v, ']', n);
		size_t colons = 0;

		if (close == NULL) {
			return false;
		}
		for (const char *p = v + 1; p < close; p++) {
			bool future = v[1] == 'v' && (strchr(regname, *p) != NULL || *p == ':');

			colons += *p == ':';
			if (*p == '\0' ||
			    (!future && strchr("0123456789abcdefABCDEF:.", *p) == NULL)) {
				return false;
			}
		}
		if (colons < 2 && v[1] != 'v') {
			return false;
		}
		rest = close + 1;
	} else {
		rest = v;
		while (rest < end && *rest != ':') {
			if (*rest == '%' && end - rest >= 3 && isxdigit((unsigned char)rest[1]) &&
			    isxdigit((unsigned char)rest[2])) {
				rest += 3;
			} else if (*rest != '\0' && strchr(regname, *rest) != NULL) {
				rest++;
			} else {
				return false;
			}
		}
	}
	if (rest == end) {
		return true;
	}
	if (*rest != ':' || end - rest > 6) {
		return false;
	}
	while (++rest < end) {
		if (!isdigit((unsigned char)*rest)) {
			return false;
		}
	}
	return true;
}

/* RFC 9112 3.2: origin form, or absolute with http and an authority; no fragment. */
static bool target_ok(const char *t)
{
	if (strchr(t, '#') != NULL) {
		return false;
	}
	if (*t == '/') {
		return true;
	}
	if (strncasecmp(t, "http://", 7) != 0) {
		return false;
	}
	t += 7;
	return strcspn(t, "/?") > 0 && authority_ok(t, strcspn(t, "/?"));
}

static unsigned judge(const char *method, const char *target, const char *version,
		      unsigned *allowed)
{
	unsigned hosts = 0, lengths = 0, codings = 0, expects = 0;
	const char *length = NULL, *coding = NULL, *expect = NULL;
	bool http10 = strcmp(version, "HTTP/1.0") == 0;
	bool bad = false;

	*allowed = 0;
	for (const char *p = target; *p != '\0'; p++) {
		bad = bad || (unsigned char)*p <= 0x20 || *p == 0x7f;
	}
	bad = bad ||
	      !(target_ok(target) || (strcmp(target, "*") == 0 && strcmp(method, "OPTIONS") == 0) ||
		(strcmp(method, "CONNECT") == 0 && *target != '/' && strcmp(target, "*") != 0 &&
		 strchr(target, '#') == NULL && strncasecmp(target, "http://", 7) != 0));
	for (size_t i = 0; i < nfields; i++) {
		const char *k = fields[i].key;

		if (!token(k) || has_controls(fields[i].value, true) ||
		    (strlen(k) > 14 && strncasecmp(k, "Content-Length", 14) == 0) ||
		    (strlen(k) > 17 && strncasecmp(k, "Transfer-Encoding", 17) == 0)) {
			bad = true;
		}
		if (strcasecmp(k, "Host") == 0) {
			hosts++;
			bad = bad || !authority_ok(fields[i].value, strlen(fields[i].value));
		}
		if (strcasecmp(k, "Content-Length") == 0) {
			lengths++;
			length = fields[i].value;
		} else if (strcasecmp(k, "Transfer-Encoding") == 0) {
			codings++;
			coding = fields[i].value;
		} else if (strcasecmp(k, "Expect") == 0) {
			expects++;
			expect = fields[i].value;
		}
	}
	bad = bad || hosts > 1 || (hosts == 0 && !http10) || lengths > 1 ||
	      (lengths == 1 && !digits(length)) || (lengths > 0 && codings > 0) ||
	      (codings > 0 && http10) || codings > 1;
	if ((strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) &&
	    (codings > 0 || (lengths == 1 && strcmp(length, "0") != 0))) {
		bad = true;
	}
	*allowed |= bad ? 1 : 0;
	if (codings == 1 && strcasecmp(coding, "chunked") != 0) {
		*allowed |= 1 | 2; /* 400 or 501, by how the coding is wrong */
	}
	if (expects > 1 || (expects == 1 && strcasecmp(expect, "100-continue") != 0)) {
		*allowed |= 4;
	}
	return *allowed != 0;
}

/* The view's format: the query's word, else Accept (every field, one list). */
static void check_format(void)
{
	enum view_format f = view_format_of(NULL);
	char *accept = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&accept, &len);
	char *more = NULL;

	if (format_arg != NULL) {
		if (f != (strcmp(format_arg, "json") == 0   ? VIEW_FORMAT_JSON
			  : strcmp(format_arg, "text") == 0 ? VIEW_FORMAT_TEXT
							    : VIEW_FORMAT_BAD)) {
			abort();
		}
		fclose(m);
		free(accept);
		return;
	}
	for (size_t i = 0; i < nfields; i++) {
		if (strcasecmp(fields[i].key, "Accept") == 0 && fields[i].value[0] != '\0') {
			fprintf(m, "%s%s", len > 0 || ftell(m) > 0 ? ", " : "", fields[i].value);
		}
	}
	fclose(m);
	if ((f != VIEW_FORMAT_TEXT && f != VIEW_FORMAT_JSON) ||
	    (len == 0 && f != VIEW_FORMAT_TEXT)) {
		abort();
	}
	if (asprintf(&more, "%s, text/plain", accept) < 0 ||
	    view_format_choose(NULL, more) != VIEW_FORMAT_TEXT) {
		abort();
	}
	free(more);
	if (asprintf(&more, "%s, %s", accept,
		     f == VIEW_FORMAT_TEXT ? "application/json;q=0" : "text/plain;q=0") < 0 ||
	    view_format_choose(NULL, more) != f) {
		abort();
	}
	free(more);
	free(accept);
}

/* ---- the head, split as libmicrohttpd does ------------------------------------------ */

static char *trim(char *s)
{
	char *e = s + strlen(s);

	while (*s == ' ' || *s == '\t') {
		s++;
	}
	while (e > s && (e[-1] == ' ' || e[-1] == '\t')) {
		*--e = '\0';
	}
	return s;
}

static char *next_line(char **p)
{
	char *line = *p;
	char *nl = strchr(line, '\n');

	if (nl != NULL) {
		*nl = '\0';
		*p = nl + 1;
		if (nl > line && nl[-1] == '\r') {
			nl[-1] = '\0';
		}
	} else {
		*p = line + strlen(line);
	}
	return line;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *head = malloc(size + 1);
	char *p = head;
	char *method, *target, *version, *line;
	const char *why = NULL;
	unsigned allowed = 0;
	unsigned refuse;
	uint64_t want = 0;

	if (head == NULL) {
		abort();
	}
	memcpy(head, data, size);
	head[size] = '\0'; /* libmicrohttpd never hands over a NUL: the head ends there */
	line = next_line(&p);
	method = strsep(&line, " ");
	target = line != NULL ? strsep(&line, " ") : NULL;
	version = line;
	if (target == NULL || version == NULL || strchr(version, ' ') != NULL ||
	    strncmp(version, "HTTP/1.", 7) != 0 || *method == '\0') {
		free(head); /* libmicrohttpd answers a malformed request line itself */
		return 0;
	}
	nfields = 0;
	while (*p != '\0' && nfields < MAX_FIELDS) {
		char *colon;

		line = next_line(&p);
		if (*line == '\0') {
			break; /* the end of the head */
		}
		colon = strchr(line, ':');
		fields[nfields].key =
			strndup(line, colon != NULL ? (size_t)(colon - line) : strlen(line));
		fields[nfields++].value = strdup(colon != NULL ? trim(colon + 1) : "");
	}
	format_arg = NULL;
	for (char *q = strchr(target, '?'); q != NULL; q = strchr(q + 1, '&')) {
		if (strncmp(q + 1, "format=", 7) == 0) {
			char *end = q + 8 + strcspn(q + 8, "&");

			format_arg = strndup(q + 8, (size_t)(end - q - 8));
			break;
		}
	}
	/* Judged first: the marks the callbacks leave are fields the judge must not see. */
	judge(method, target, version, &allowed);
	(void)strict_uri_log(NULL, target, NULL); /* marks a target's form, as in MHD */
	{
		char *url = strdup(target);

		(void)strict_unescape(NULL, NULL, url); /* marks a bad target, as in MHD */
		free(url);
	}
	refuse = strict_check(NULL, method, version, &why);
	if ((refuse == 0) != (allowed == 0) || (refuse != 0 && (why == NULL || *why == '\0')) ||
	    (refuse == 400 && (allowed & 1) == 0) || (refuse == 501 && (allowed & 2) == 0) ||
	    (refuse == 417 && (allowed & 4) == 0) ||
	    (refuse != 0 && refuse != 400 && refuse != 501 && refuse != 417)) {
		abort();
	}
	if (refuse == 0) {
		const char *cl = NULL;
		struct classify_request rq;
		enum classify_label label;

		for (size_t i = 0; i < nfields; i++) {
			cl = strcasecmp(fields[i].key, "Content-Length") == 0 ? fields[i].value
									      : cl;
		}
		rq = (struct classify_request){method, strict_origin_path(target), cl, false};
		if (classify_request(&rq, true, 1024, &want, &label) == ROUTE_BAD_LENGTH) {
			abort(); /* strict.c let a length through that the route cannot read */
		}
		check_format();
	}
	for (size_t i = 0; i < nfields; i++) {
		free(fields[i].key);
		free(fields[i].value);
	}
	free((void *)(uintptr_t)format_arg);
	free(head);
	return 0;
}
