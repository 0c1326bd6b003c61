/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for srv_parse(): any bytes a DNS server (or an attacker spoofing
 * one) could send. Besides the sanitizers, it checks the invariants callers rely on:
 * unique names in natural order, no more than max_peers, NUL-terminated strings.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "discovery/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct srv_answer a;
	char err[128];
	/* Vary the cap with the input so that cutting is exercised too. */
	unsigned max_peers = size > 0 ? (unsigned)(data[size - 1] % 8) + 1 : 4;

	if (srv_parse(data, size, max_peers, &a, err, sizeof(err)) < 0) {
		if (a.peers != NULL || a.npeers != 0 || memchr(err, '\0', sizeof(err)) == NULL) {
			abort();
		}
		return 0;
	}
	if (a.npeers > max_peers) {
		abort();
	}
	for (size_t i = 0; i < a.npeers; i++) {
		if (memchr(a.peers[i].name, '\0', sizeof(a.peers[i].name)) == NULL ||
		    a.peers[i].name[0] == '\0') {
			abort();
		}
		if (i > 0 && (srv_name_cmp(a.peers[i - 1].name, a.peers[i].name) >= 0 ||
			      strcasecmp(a.peers[i - 1].name, a.peers[i].name) == 0)) {
			abort();
		}
	}
	srv_answer_free(&a);
	return 0;
}
