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

static const char *const label_paths[CLASSIFY_NLABELS] = {
	[LABEL_ROOT] = "/",         [LABEL_DATA] = "/data",       [LABEL_HEALTHZ] = "/healthz",
	[LABEL_READYZ] = "/readyz", [LABEL_METRICS] = "/metrics", [LABEL_UI] = "/ui",
	[LABEL_OTHER] = "other",
};

static enum classify_label label_of(const char *path)
{
	/* The page is served at both: under a proxy's prefix either may be what a reader
	 * types, and a redirect from one to the other would have to know the prefix. */
	if (strcmp(path, "/ui/") == 0) {
		return LABEL_UI;
	}
	for (size_t i = 0; i < LABEL_OTHER; i++) {
		if (strcmp(path, label_paths[i]) == 0) {
			return (enum classify_label)i;
		}
	}
	return LABEL_OTHER;
}

const char *classify_label_name(enum classify_label label)
{
	return (unsigned)label < CLASSIFY_NLABELS ? label_paths[label] : "other";
}

enum classify_route classify_request(const struct classify_request *rq, bool peers,
				     uint64_t max_body, uint64_t *length,
				     enum classify_label *label)
{
	*length = 0;
	*label = label_of(rq->path);
	if (strcmp(rq->method, "POST") == 0) {
		return classify_post(rq, max_body, length);
	}
	if (strcmp(rq->method, "GET") != 0 && strcmp(rq->method, "HEAD") != 0) {
		return ROUTE_METHOD;
	}
	switch (*label) {
	case LABEL_DATA:
		return ROUTE_DATA;
	case LABEL_HEALTHZ:
		return ROUTE_HEALTHZ;
	case LABEL_READYZ:
		return ROUTE_READYZ;
	case LABEL_METRICS:
		return ROUTE_METRICS;
	case LABEL_UI:
		/* pet mode has no cluster to show: its page would be GET /data's text */
		return peers ? ROUTE_UI : ROUTE_POD;
	default:
		return peers ? ROUTE_CLUSTER : ROUTE_POD;
	}
}
