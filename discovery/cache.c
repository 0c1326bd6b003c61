/* SPDX-License-Identifier: MIT */
/*
 * Reuse of an SRV outcome. Only the SRV answer is ever reused across views, and only
 * for a short, bounded time: peers' data are always fetched anew. Pure: the caller
 * passes the clock.
 */
#include "discovery/internal.h"

#include <string.h>

uint64_t cache_life_ms(enum srv_outcome kind, const struct srv_answer *a, unsigned cache_ms)
{
	uint64_t life = cache_ms;

	if (kind == SRV_EMPTY) {
		return life;
	}
	if (kind != SRV_PEERS || a == NULL) {
		return 0; /* errors are never reused: the next view asks again */
	}
	for (size_t i = 0; i < a->npeers; i++) {
		if (a->peers[i].err[0] != '\0') {
			return 0; /* a target that did not resolve: ask again next time */
		}
	}
	if ((uint64_t)a->ttl * 1000u < life) {
		life = (uint64_t)a->ttl * 1000u;
	}
	return life;
}

bool cache_put(struct srv_cache *c, enum srv_outcome kind, struct srv_answer *a, unsigned cache_ms,
	       uint64_t now_ns)
{
	uint64_t life = cache_life_ms(kind, a, cache_ms);

	if (life == 0) {
		return false;
	}
	cache_clear(c);
	c->kind = kind;
	c->ans = *a;
	c->expiry_ns = now_ns + life * NS_PER_MS;
	memset(a, 0, sizeof(*a));
	a->ttl = UINT32_MAX;
	return true;
}

const struct srv_cache *cache_get(const struct srv_cache *c, uint64_t now_ns)
{
	return c->kind != SRV_NONE && now_ns < c->expiry_ns ? c : NULL;
}

void cache_clear(struct srv_cache *c)
{
	srv_answer_free(&c->ans);
	c->kind = SRV_NONE;
	c->expiry_ns = 0;
}
