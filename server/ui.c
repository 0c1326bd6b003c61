/* SPDX-License-Identifier: MIT */
#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "server/http_internal.h"
#include "server/ui.h"
#include "server/ui_page.h" /* made from server/ui.html by server/gen_ui.py */

/* The page changes only with the binary: a browser may keep it but asks each time
 * (no-cache), and the entity tag makes that a 304 without the page. */
#define UI_CACHE_CONTROL "no-cache"

/* Whether an If-None-Match value names the page: "*", or a comma-separated list of entity
 * tags compared weakly (RFC 9110 section 13.1.2: W/ ignored). A malformed list matches
 * nothing, so the page is sent whole. */
static bool etag_matches(const char *p)
{
	const size_t n = strlen(UI_PAGE_ETAG);
	bool match = false;

	p += strspn(p, " \t,");
	if (strcmp(p, "*") == 0) {
		return true;
	}
	while (*p != '\0') {
		const char *q;

		if (strncmp(p, "W/", 2) == 0) {
			p += 2;
		}
		q = *p == '"' ? strchr(p + 1, '"') : NULL;
		if (q == NULL) {
			return false;
		}
		match = match || ((size_t)(q + 1 - p) == n && strncmp(p, UI_PAGE_ETAG, n) == 0);
		p = q + 1 + strspn(q + 1, " \t");
		if (*p != ',' && *p != '\0') {
			return false;
		}
		/* empty list elements are allowed (RFC 9110 section 5.6.1) */
		p += strspn(p, " \t,");
	}
	return match;
}

static bool add_headers(struct MHD_Response *r, bool page)
{
	return MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, UI_PAGE_ETAG) == MHD_YES &&
	       MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, UI_CACHE_CONTROL) ==
		       MHD_YES &&
	       (!page ||
		(MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
					 "text/html; charset=utf-8") == MHD_YES &&
		 MHD_add_response_header(r, "Content-Security-Policy", UI_PAGE_CSP) == MHD_YES &&
		 MHD_add_response_header(r, "X-Content-Type-Options", "nosniff") == MHD_YES &&
		 MHD_add_response_header(r, "Referrer-Policy", "no-referrer") == MHD_YES));
}

enum MHD_Result ui_serve(struct MHD_Connection *conn)
{
	const char *inm =
		MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
	const bool page = inm == NULL || !etag_matches(inm);
	/* Built per request: a page load is rare next to GET /data, and a response of
	 * its own costs no shared state. The bytes are the binary's, never copied. A 304
	 * has the page too: libmicrohttpd sends no body with it, and its Content-Length is
	 * then the page's, as RFC 9110 (section 8.6) wants it. */
	struct MHD_Response *r = MHD_create_response_from_buffer(
		sizeof(ui_page), (void *)(uintptr_t)ui_page, MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret;

	if (r == NULL) {
		return MHD_NO;
	}
	if (!add_headers(r, page)) {
		MHD_destroy_response(r);
		return MHD_NO;
	}
	ret = queue_response(conn, page ? MHD_HTTP_OK : MHD_HTTP_NOT_MODIFIED, r,
			     page ? sizeof(ui_page) : 0);
	MHD_destroy_response(r);
	return ret;
}
