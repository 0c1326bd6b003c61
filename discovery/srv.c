/* SPDX-License-Identifier: MIT */
/*
 * Parsing of SRV replies. Kept free of the event loop and of any state so that it can be
 * unit tested with hand-made messages and fuzzed: every read is bounds checked against
 * the message length, and names are expanded by c-ares, which follows compression
 * pointers safely.
 */
#include "discovery/internal.h"

#include <ares.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#define DNS_HEADER_LEN 12
#define DNS_RR_FIXED 10 /* type, class, ttl, rdlength */
#define SRV_RDATA_FIXED 6 /* priority, weight, port */

static uint16_t get16(const unsigned char *p)
{
	return (uint16_t)(((unsigned)p[0] << 8) | p[1]);
}

static uint32_t get32(const unsigned char *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Expands the name at msg[*pos] into buf (without the trailing dot c-ares never adds)
 * and advances *pos past its encoded form, never beyond limit. Returns 1 when the name
 * was expanded, 0 when it is well formed but does not fit buf (skipped by the caller),
 * -1 when malformed. */
static int srv_name_at(const unsigned char *msg, size_t len, size_t *pos, size_t limit, char *buf,
		       size_t buflen)
{
	char *s = NULL;
	long enclen = 0;
	size_t n;
	int ret;

	if (*pos >= limit) {
		return -1;
	}
	if (ares_expand_name(msg + *pos, msg, (int)len, &s, &enclen) != ARES_SUCCESS) {
		return -1;
	}
	if (enclen <= 0 || (size_t)enclen > limit - *pos) {
		ares_free_string(s);
		return -1;
	}
	*pos += (size_t)enclen;
	n = strlen(s);
	ret = 0;
	if (n < buflen) {
		memcpy(buf, s, n + 1);
		ret = 1;
	}
	ares_free_string(s);
	return ret;
}

/* srv_name_cmp() without its last, case-sensitive step: 0 exactly when a and b are the
 * same name for DNS (equal ignoring case). */
static int name_cmp_nocase(const char *a, const char *b)
{
	const unsigned char *p = (const unsigned char *)a;
	const unsigned char *q = (const unsigned char *)b;
	int r;

	while (*p != '\0' && *q != '\0') {
		if (isdigit(*p) && isdigit(*q)) {
			const unsigned char *ps;
			const unsigned char *qs;
			size_t pl;
			size_t ql;

			/* Leading zeros carry no value; then the longer run is the larger
			 * number, and runs of equal length compare digit by digit. */
			while (*p == '0' && isdigit(p[1])) {
				p++;
			}
			while (*q == '0' && isdigit(q[1])) {
				q++;
			}
			ps = p;
			qs = q;
			while (isdigit(*p)) {
				p++;
			}
			while (isdigit(*q)) {
				q++;
			}
			pl = (size_t)(p - ps);
			ql = (size_t)(q - qs);
			if (pl != ql) {
				return pl < ql ? -1 : 1;
			}
			r = memcmp(ps, qs, pl);
			if (r != 0) {
				return r < 0 ? -1 : 1;
			}
			continue;
		}
		if (tolower(*p) != tolower(*q)) {
			return tolower(*p) < tolower(*q) ? -1 : 1;
		}
		p++;
		q++;
	}
	if (*p != *q) {
		return *p == '\0' ? -1 : 1;
	}
	r = strcasecmp(a, b);
	return r < 0 ? -1 : (r > 0 ? 1 : 0);
}

int srv_name_cmp(const char *a, const char *b)
{
	int r = name_cmp_nocase(a, b);

	if (r != 0) {
		return r;
	}
	r = strcmp(a, b);
	return r < 0 ? -1 : (r > 0 ? 1 : 0);
}

bool srv_is_self(const char *name, const char *hostname)
{
	size_t hl = hostname != NULL ? strcspn(hostname, ".") : 0;

	return hl > 0 && strcspn(name, ".") == hl && strncasecmp(name, hostname, hl) == 0;
}

/* Order used before de-duplication: by name ignoring case (one DNS name, however it is
 * spelled, is one group), then the record that should win first, then the spelling. */
static int srv_peer_cmp(const void *va, const void *vb)
{
	const struct srv_peer *a = va;
	const struct srv_peer *b = vb;
	int r = name_cmp_nocase(a->name, b->name);

	if (r != 0) {
		return r;
	}
	if (a->priority != b->priority) {
		return a->priority < b->priority ? -1 : 1;
	}
	if (a->weight != b->weight) {
		return a->weight > b->weight ? -1 : 1;
	}
	if (a->port != b->port) {
		return a->port < b->port ? -1 : 1;
	}
	return srv_name_cmp(a->name, b->name);
}

static uint32_t srv_ttl(uint32_t raw)
{
	/* RFC 2181 section 8: a TTL with the top bit set is to be read as zero. */
	return raw > 0x7fffffffu ? 0 : raw;
}

/* Gives each peer still without an address the first A/AAAA record of the additional
 * section that names it. Malformed records end the reply as malformed. */
static int srv_additional(const unsigned char *msg, size_t len, size_t *pos, unsigned count,
			  struct srv_answer *out, char *err, size_t errlen)
{
	char name[SRV_NAME_MAX];

	for (unsigned i = 0; i < count; i++) {
		uint16_t type;
		uint16_t class;
		uint32_t ttl;
		uint16_t rdlen;
		bool addr;
		int fit = srv_name_at(msg, len, pos, len, name, sizeof(name));

		if (fit < 0 || len - *pos < DNS_RR_FIXED) {
			errtext_set(err, errlen, "malformed additional record");
			return -1;
		}
		type = get16(msg + *pos);
		class = get16(msg + *pos + 2);
		ttl = srv_ttl(get32(msg + *pos + 4));
		rdlen = get16(msg + *pos + 8);
		*pos += DNS_RR_FIXED;
		if (rdlen > len - *pos) {
			errtext_set(err, errlen,
				    "additional record runs past the end of the reply");
			return -1;
		}
		addr = (type == DNS_TYPE_A && rdlen == 4) || (type == DNS_TYPE_AAAA && rdlen == 16);
		if (fit == 1 && class == DNS_CLASS_IN && addr) {
			for (size_t k = 0; k < out->npeers; k++) {
				struct srv_peer *p = &out->peers[k];

				if (p->family != 0 || strcasecmp(p->name, name) != 0) {
					continue;
				}
				p->family = type == DNS_TYPE_A ? AF_INET : AF_INET6;
				memcpy(p->addr, msg + *pos, rdlen);
				if (ttl < out->ttl) {
					out->ttl = ttl;
				}
			}
		}
		*pos += rdlen;
	}
	return 0;
}

/* Skips resource records (authority section) checking only their framing. */
static int srv_skip_rrs(const unsigned char *msg, size_t len, size_t *pos, unsigned count)
{
	char name[SRV_NAME_MAX];

	for (unsigned i = 0; i < count; i++) {
		if (srv_name_at(msg, len, pos, len, name, sizeof(name)) < 0 ||
		    len - *pos < DNS_RR_FIXED) {
			return -1;
		}
		if (get16(msg + *pos + 8) > len - *pos - DNS_RR_FIXED) {
			return -1;
		}
		*pos += DNS_RR_FIXED + get16(msg + *pos + 8);
	}
	return 0;
}

void srv_answer_free(struct srv_answer *a)
{
	if (a == NULL) {
		return;
	}
	free(a->peers);
	a->peers = NULL;
	a->npeers = 0;
}

/* Skips the question section. */
static int srv_questions(const unsigned char *msg, size_t len, size_t *pos, unsigned count)
{
	char name[SRV_NAME_MAX];

	for (unsigned i = 0; i < count; i++) {
		if (srv_name_at(msg, len, pos, len, name, sizeof(name)) < 0 || len - *pos < 4) {
			return -1;
		}
		*pos += 4;
	}
	return 0;
}

/* Reads one answer record at *pos and moves past it. An SRV record of class IN with a
 * usable target is appended to out (room for it was made by the caller); others are
 * skipped. */
static int srv_answer_rr(const unsigned char *msg, size_t len, size_t *pos, size_t cap,
			 struct srv_answer *out, char *err, size_t errlen)
{
	char name[SRV_NAME_MAX];
	uint16_t type;
	uint16_t class;
	uint32_t ttl;
	uint16_t rdlen;
	size_t rdend;
	size_t tpos;
	int fit;
	struct srv_peer *p;

	if (srv_name_at(msg, len, pos, len, name, sizeof(name)) < 0 || len - *pos < DNS_RR_FIXED) {
		errtext_set(err, errlen, "malformed answer record");
		return -1;
	}
	type = get16(msg + *pos);
	class = get16(msg + *pos + 2);
	ttl = srv_ttl(get32(msg + *pos + 4));
	rdlen = get16(msg + *pos + 8);
	*pos += DNS_RR_FIXED;
	if (rdlen > len - *pos) {
		errtext_set(err, errlen, "answer record runs past the end of the reply");
		return -1;
	}
	rdend = *pos + rdlen;
	tpos = *pos + SRV_RDATA_FIXED;
	if (type != DNS_TYPE_SRV || class != DNS_CLASS_IN) {
		*pos = rdend;
		return 0;
	}
	if (rdlen < SRV_RDATA_FIXED + 1) {
		errtext_set(err, errlen, "SRV record too short");
		return -1;
	}
	fit = srv_name_at(msg, len, &tpos, rdend, name, sizeof(name));
	if (fit < 0 || tpos != rdend) {
		errtext_set(err, errlen, "malformed SRV target");
		return -1;
	}
	if (fit == 1 && name[0] != '\0') {
		if (out->npeers >= cap) {
			/* Cannot happen given the caller's size bound; kept as a guard. */
			errtext_set(err, errlen, "too many SRV records");
			return -1;
		}
		p = &out->peers[out->npeers++];
		memset(p, 0, sizeof(*p));
		memcpy(p->name, name, sizeof(name));
		p->priority = get16(msg + *pos);
		p->weight = get16(msg + *pos + 2);
		p->port = get16(msg + *pos + 4);
		if (ttl < out->ttl) {
			out->ttl = ttl;
		}
	}
	*pos = rdend;
	return 0;
}

/* Reads the answer section into out. */
static int srv_answers(const unsigned char *msg, size_t len, size_t *pos, unsigned count,
		       struct srv_answer *out, char *err, size_t errlen)
{
	/* Every SRV record kept takes at least 19 bytes (root owner 1, fixed 10, rdata 6,
	 * a target other than the root 2 or more), so this bounds the allocation by the
	 * message size rather than by the untrusted count. */
	size_t cap = (len - *pos) / 17 + 1;

	if (cap > count) {
		cap = count;
	}
	if (cap > 0) {
		out->peers = calloc(cap, sizeof(*out->peers));
		if (out->peers == NULL) {
			errtext_set(err, errlen, "out of memory");
			return -1;
		}
	}
	for (unsigned i = 0; i < count; i++) {
		if (srv_answer_rr(msg, len, pos, cap, out, err, errlen) < 0) {
			return -1;
		}
	}
	return 0;
}

/* Sorts the peers and keeps one record per target (the winner), then cuts the list. */
static void srv_dedup(struct srv_answer *out, unsigned max_peers)
{
	size_t w = 0;

	if (out->npeers > 1) {
		qsort(out->peers, out->npeers, sizeof(*out->peers), srv_peer_cmp);
	}
	/* Records of one target are adjacent, with the winner first. */
	for (size_t r = 0; r < out->npeers; r++) {
		if (w > 0 && strcasecmp(out->peers[w - 1].name, out->peers[r].name) == 0) {
			continue;
		}
		if (w != r) {
			out->peers[w] = out->peers[r];
		}
		w++;
	}
	out->npeers = w < max_peers ? w : max_peers;
}

int srv_parse(const unsigned char *msg, size_t len, unsigned max_peers, struct srv_answer *out,
	      char *err, size_t errlen)
{
	size_t pos = DNS_HEADER_LEN;

	memset(out, 0, sizeof(*out));
	out->ttl = UINT32_MAX;
	if (msg == NULL || len < DNS_HEADER_LEN) {
		errtext_set(err, errlen, "reply shorter than a DNS header");
		return -1;
	}
	/* c-ares takes the length as an int; DNS messages never exceed 65535 bytes. */
	if (len > 65535) {
		errtext_set(err, errlen, "reply longer than a DNS message can be");
		return -1;
	}
	if ((msg[2] & 0x80) == 0) {
		errtext_set(err, errlen, "message is a query, not a reply");
		return -1;
	}
	out->rcode = msg[3] & 0x0f;
	if (out->rcode != DNS_RCODE_NOERROR) {
		return 0;
	}
	if (srv_questions(msg, len, &pos, get16(msg + 4)) < 0) {
		errtext_set(err, errlen, "malformed question");
		goto fail;
	}
	if (srv_answers(msg, len, &pos, get16(msg + 6), out, err, errlen) < 0) {
		goto fail;
	}
	srv_dedup(out, max_peers);
	if (srv_skip_rrs(msg, len, &pos, get16(msg + 8)) < 0) {
		errtext_set(err, errlen, "malformed authority record");
		goto fail;
	}
	if (srv_additional(msg, len, &pos, get16(msg + 10), out, err, errlen) < 0) {
		goto fail;
	}
	if (out->npeers == 0) {
		free(out->peers);
		out->peers = NULL;
	}
	return 0;

fail:
	srv_answer_free(out);
	out->ttl = UINT32_MAX;
	return -1;
}
