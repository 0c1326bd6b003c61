/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for srv_parse(): any bytes a DNS server (or an attacker spoofing
 * one) could send, through every section of the reply (question, answers, authority,
 * additional addresses). Besides the sanitizers, it checks the invariants callers rely
 * on: unique names in natural order, no more than max_peers, NUL-terminated strings, a
 * TTL read as RFC 2181 says, addresses only of the two families; and how long the
 * outcome may be reused (cache.c): never past its TTL nor the configured life.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "discovery/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Peers live for the configured time, never past the TTL; "no peers" for the configured
 * time; an error never. */
static void check_cache(const struct srv_answer *a, unsigned cache_ms)
{
	uint64_t ttl_ms = (uint64_t)a->ttl * 1000;

	if (cache_life_ms(SRV_ERROR, a, cache_ms) != 0 ||
	    cache_life_ms(SRV_EMPTY, a, cache_ms) != cache_ms) {
		abort();
	}
	if (a->npeers > 0 &&
	    cache_life_ms(SRV_PEERS, a, cache_ms) != (ttl_ms < cache_ms ? ttl_ms : cache_ms)) {
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct srv_answer a;
	char err[128];
	/* Vary the cap with the input so that cutting is exercised too. */
	unsigned max_peers = size > 0 ? (unsigned)(data[size - 1] % 8) + 1 : 4;
	unsigned cache_ms = size > 1 ? (unsigned)data[size - 2] * 100 : 1000;

	if (srv_parse(data, size, max_peers, &a, err, sizeof(err)) < 0) {
		if (a.peers != NULL || a.npeers != 0 || memchr(err, '\0', sizeof(err)) == NULL) {
			abort();
		}
		return 0;
	}
	if (a.npeers > max_peers || (a.npeers > 0 && a.ttl > 0x7fffffffu)) {
		abort();
	}
	check_cache(&a, cache_ms);
	for (size_t i = 0; i < a.npeers; i++) {
		int family = a.peers[i].family;

		if (memchr(a.peers[i].name, '\0', sizeof(a.peers[i].name)) == NULL ||
		    a.peers[i].name[0] == '\0' ||
		    (family != 0 && family != AF_INET && family != AF_INET6)) {
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
