/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for classify_request(): what a request is, from any method, path,
 * Content-Length and Expect a client can send. The route is checked against the
 * contract's table, stated here on its own (README "What it answers"), and against
 * rules that need no model: GET and HEAD are routed alike, and a POST's route does not
 * depend on its path or the mode.
 *
 * Input: a flags byte (1: Expect sent, 2: peers mode, 4: Content-Length sent), eight
 * bytes of the body limit, then method, path and Content-Length separated by NUL bytes.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/classify.h"

#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FIELD_MAX 4096

/* A Content-Length by RFC 9110 section 8.6: decimal digits only. */
static bool valid_length(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (s[0] == '\0') {
		return false;
	}
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9') {
			return false;
		}
		/* Past 64 bits: too large for any limit. */
		v = v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10 ? UINT64_MAX
								 : v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return true;
}

static enum classify_route expected(const struct classify_request *rq, bool peers, uint64_t max,
				    uint64_t *length)
{
	uint64_t want = 0;

	*length = 0;
	if (strcmp(rq->method, "GET") == 0 || strcmp(rq->method, "HEAD") == 0) {
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
		if (strcmp(rq->path, "/ui") == 0 || strcmp(rq->path, "/ui/") == 0) {
			return peers ? ROUTE_UI : ROUTE_POD;
		}
		return peers ? ROUTE_CLUSTER : ROUTE_POD;
	}
	if (strcmp(rq->method, "POST") != 0) {
		return ROUTE_METHOD;
	}
	if (rq->content_length != NULL && !valid_length(rq->content_length, &want)) {
		return ROUTE_BAD_LENGTH;
	}
	*length = want;
	if (want <= max) {
		return ROUTE_STORE;
	}
	if (rq->expect || want - max > CLASSIFY_DISCARD_SLACK) {
		return ROUTE_TOO_LARGE;
	}
	return ROUTE_TOO_LARGE_DRAIN;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data + 9;
	const uint8_t *end = data + size;
	struct classify_request rq;
	uint64_t max = 0;
	uint64_t len = 0;
	uint64_t want_len = 0;
	uint64_t other_len = 0;
	enum classify_route r;
	enum classify_label label;
	enum classify_label other_label;
	char *method, *path, *cl;
	bool peers;

	if (size < 9) {
		return 0;
	}
	for (int i = 0; i < 8; i++) {
		max = max << 8 | data[1 + i];
	}
	/* Mostly limits a short decimal number can pass, sometimes any. */
	if ((data[0] & 8) == 0) {
		max %= 100000;
	}
	peers = (data[0] & 2) != 0;
	method = fuzz_field(&p, end, FIELD_MAX);
	path = fuzz_field(&p, end, FIELD_MAX);
	cl = fuzz_field(&p, end, FIELD_MAX);
	rq = (struct classify_request){method, path, (data[0] & 4) != 0 ? cl : NULL,
				       (data[0] & 1) != 0};

	r = classify_request(&rq, peers, max, &len, &label);
	if (r != expected(&rq, peers, max, &want_len) || len != want_len) {
		abort();
	}
	/* The label is the path alone: a path of its own by name (the page's two as
	 * one), any other "other". */
	if (label != LABEL_OTHER
		    ? strcmp(classify_label_name(label), path) != 0 &&
			      !(label == LABEL_UI && strcmp(path, "/ui/") == 0)
		    : strcmp(path, "/") == 0 || strcmp(path, "/data") == 0 ||
			      strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0 ||
			      strcmp(path, "/metrics") == 0 || strcmp(path, "/ui") == 0 ||
			      strcmp(path, "/ui/") == 0) {
		abort();
	}
	/* GET and HEAD alike; a POST whatever its path and mode; no route without a
	 * method's own. */
	if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) {
		struct classify_request other = rq;

		other.method = method[0] == 'G' ? "HEAD" : "GET";
		if (classify_request(&other, peers, max, &other_len, &other_label) != r ||
		    other_len != 0 || other_label != label) {
			abort();
		}
		if (r > ROUTE_CLUSTER) {
			abort();
		}
	} else if (strcmp(method, "POST") == 0) {
		struct classify_request other = rq;

		other.path = "/";
		if (classify_request(&other, !peers, max, &other_len, &other_label) != r ||
		    other_len != len || other_label != LABEL_ROOT) {
			abort();
		}
		if (r < ROUTE_STORE || r > ROUTE_BAD_LENGTH || (r == ROUTE_STORE && len > max)) {
			abort();
		}
	} else if (r != ROUTE_METHOD || len != 0) {
		abort();
	}
	free(method);
	free(path);
	free(cl);
	return 0;
}
