/* SPDX-License-Identifier: MIT */
#include "server/classify.h"

#include <string.h>

/* A Content-Length: one or more decimal digits, nothing else (RFC 9110 section 8.6).
 * A number past 64 bits is taken as UINT64_MAX: too large, not malformed. false for
 * anything else, so no prefix of a bad value is taken. */
static bool parse_length(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	for (i = 0; s[i] != '\0'; i++) {
		unsigned d = (unsigned)(unsigned char)s[i] - '0';

		if (d > 9) {
			return false;
		}
		v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
	}
	*out = v;
	return i > 0;
}

static enum classify_route classify_post(const struct classify_request *rq, uint64_t max_body,
					 uint64_t *length)
{
	uint64_t want = 0;

	if (rq->content_length != NULL && !parse_length(rq->content_length, &want)) {
		return ROUTE_BAD_LENGTH;
	}
	*length = want;
	if (want <= max_body) {
		return ROUTE_STORE;
	}
	/* A client that waits for "100 Continue" sends nothing more until told: answer it
	 * at once. Another is answered once its body is read and dropped. */
	if (want - max_body > CLASSIFY_DISCARD_SLACK || rq->expect) {
		return ROUTE_TOO_LARGE;
	}
	return ROUTE_TOO_LARGE_DRAIN;
}

enum classify_route classify_request(const struct classify_request *rq, bool peers,
				     uint64_t max_body, uint64_t *length)
{
	*length = 0;
	if (strcmp(rq->method, "POST") == 0) {
		return classify_post(rq, max_body, length);
	}
	if (strcmp(rq->method, "GET") != 0 && strcmp(rq->method, "HEAD") != 0) {
		return ROUTE_METHOD;
	}
	if (strcmp(rq->path, "/data") == 0) {
		return ROUTE_DATA;
	}
	if (strcmp(rq->path, "/healthz") == 0) {
		return ROUTE_HEALTHZ;
	}
	if (strcmp(rq->path, "/readyz") == 0) {
		return ROUTE_READYZ;
	}
	if (strcmp(rq->path, "/metrics") == 0) {
		return ROUTE_METRICS;
	}
	return peers ? ROUTE_CLUSTER : ROUTE_POD;
}
