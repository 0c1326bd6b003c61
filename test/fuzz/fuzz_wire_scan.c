/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the scanner beside libmicrohttpd (server/wire_scan.c): any bytes
 * as a connection's stream. What it promises wire.c, checked without a model:
 *  - the verdict does not depend on how the stream arrives: scanned whole or cut into
 *    reads of any sizes, the same fault (or none) and the same number of requests ended
 *    before it;
 *  - the bytes it hands on before a fault are whole requests only: scanned again alone,
 *    they hold no fault, end exactly the requests counted, and leave the scanner between
 *    requests (so not a byte of the faulty request reaches libmicrohttpd), and none
 *    are handed on when the fault is in the first request.
 *
 * Input: a byte n, then n bytes of read sizes (each 1 + its value), then the stream.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/http_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct outcome {
	const char *why;
	unsigned ended;
	size_t clean_end; /* where the bytes handed on end, from the stream's start */
};

/* Scans stream in reads of the sizes in cuts (cycled; the whole stream when ncuts is 0). */
static struct outcome scan(const uint8_t *stream, size_t len, const uint8_t *cuts, size_t ncuts)
{
	struct wire_scan sc;
	struct outcome o = {NULL, 0, 0};
	size_t at = 0;
	size_t k = 0;

	wire_scan_init(&sc);
	while (at < len) {
		size_t n = ncuts == 0 ? len - at : (size_t)cuts[k++ % ncuts] + 1;
		size_t clean = 0;
		unsigned ended = 0;

		if (n > len - at) {
			n = len - at;
		}
		o.why = wire_scan(&sc, stream + at, n, &clean, &ended);
		o.ended += ended;
		if (ended > 0 || clean > 0) {
			o.clean_end = at + clean;
		}
		if (o.why != NULL) {
			return o;
		}
		at += n;
	}
	o.clean_end = len;
	return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t ncuts;
	const uint8_t *cuts;
	const uint8_t *stream;
	size_t len;
	struct outcome whole;
	struct outcome cut;

	if (size < 1) {
		return 0;
	}
	ncuts = data[0];
	if (ncuts > size - 1) {
		ncuts = size - 1;
	}
	cuts = data + 1;
	stream = data + 1 + ncuts;
	len = size - 1 - ncuts;

	whole = scan(stream, len, NULL, 0);
	cut = scan(stream, len, cuts, ncuts);
	if (whole.why != cut.why || whole.ended != cut.ended) {
		abort(); /* the verdict depends on how the bytes arrived */
	}
	if (whole.why != NULL) {
		struct wire_scan sc;
		size_t clean = 0;
		unsigned ended = 0;

		if (whole.clean_end > len) {
			abort();
		}
		wire_scan_init(&sc);
		if (whole.clean_end > 0 &&
		    (wire_scan(&sc, stream, whole.clean_end, &clean, &ended) != NULL ||
		     clean != whole.clean_end || ended != whole.ended || !wire_scan_between(&sc))) {
			abort(); /* bytes of the faulty request would be handed on */
		}
		if (whole.clean_end == 0 && whole.ended != 0) {
			abort();
		}
	}
	return 0;
}
