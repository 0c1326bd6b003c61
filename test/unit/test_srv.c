/* SPDX-License-Identifier: MIT */
/*
 * srv_parse() and srv_name_cmp() against DNS replies written by hand: a small writer
 * below emits the header, one question, SRV answers with compressed owner names, and
 * A/AAAA records in the additional section that point at the SRV targets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <sys/socket.h>

#include "discovery/internal.h"

struct dnsmsg {
	unsigned char b[8192];
	size_t len;
	unsigned an;
	unsigned ns;
	unsigned ar;
};

static void dm_put16(struct dnsmsg *m, unsigned v)
{
	m->b[m->len++] = (unsigned char)(v >> 8);
	m->b[m->len++] = (unsigned char)v;
}

static void dm_put32(struct dnsmsg *m, uint32_t v)
{
	dm_put16(m, v >> 16);
	dm_put16(m, v & 0xffff);
}

/* Writes name uncompressed; returns its offset (for later compression pointers). */
static size_t dm_name(struct dnsmsg *m, const char *name)
{
	size_t at = m->len;

	while (*name != '\0') {
		const char *dot = strchr(name, '.');
		size_t l = dot != NULL ? (size_t)(dot - name) : strlen(name);

		m->b[m->len++] = (unsigned char)l;
		memcpy(m->b + m->len, name, l);
		m->len += l;
		name += l;
		if (*name == '.') {
			name++;
		}
	}
	m->b[m->len++] = 0;
	return at;
}

static void dm_ptr(struct dnsmsg *m, size_t off)
{
	dm_put16(m, 0xc000u | (unsigned)off);
}

/* Header plus one question (class IN, type SRV) at offset 12. */
static void dm_begin(struct dnsmsg *m, unsigned rcode, const char *qname)
{
	memset(m, 0, sizeof(*m));
	dm_put16(m, 0x1234);
	dm_put16(m, 0x8180u | (rcode & 0x0f)); /* QR, RD, RA */
	dm_put16(m, 1);
	dm_put16(m, 0);
	dm_put16(m, 0);
	dm_put16(m, 0);
	dm_name(m, qname);
	dm_put16(m, 33);
	dm_put16(m, 1);
}

/* An SRV answer owned by the question name; returns the target's offset. */
static size_t dm_srv(struct dnsmsg *m, unsigned prio, unsigned weight, unsigned port, uint32_t ttl,
		     const char *target)
{
	size_t rdlen_at;
	size_t at;

	dm_ptr(m, 12);
	dm_put16(m, 33);
	dm_put16(m, 1);
	dm_put32(m, ttl);
	rdlen_at = m->len;
	dm_put16(m, 0);
	dm_put16(m, prio);
	dm_put16(m, weight);
	dm_put16(m, port);
	at = dm_name(m, target);
	m->b[rdlen_at] = (unsigned char)((m->len - rdlen_at - 2) >> 8);
	m->b[rdlen_at + 1] = (unsigned char)(m->len - rdlen_at - 2);
	m->an++;
	return at;
}

/* A resource record whose owner is a pointer to owner_off. */
static void dm_rr_ptr(struct dnsmsg *m, size_t owner_off, unsigned type, uint32_t ttl,
		      const unsigned char *rdata, size_t rdlen)
{
	dm_ptr(m, owner_off);
	dm_put16(m, type);
	dm_put16(m, 1);
	dm_put32(m, ttl);
	dm_put16(m, (unsigned)rdlen);
	memcpy(m->b + m->len, rdata, rdlen);
	m->len += rdlen;
}

static void dm_a(struct dnsmsg *m, size_t owner_off, uint32_t ttl, unsigned a, unsigned b,
		 unsigned c, unsigned d)
{
	const unsigned char ip[4] = {(unsigned char)a, (unsigned char)b, (unsigned char)c,
				     (unsigned char)d};

	dm_rr_ptr(m, owner_off, 1, ttl, ip, 4);
	m->ar++;
}

static void dm_aaaa(struct dnsmsg *m, size_t owner_off, uint32_t ttl, const unsigned char ip[16])
{
	dm_rr_ptr(m, owner_off, 28, ttl, ip, 16);
	m->ar++;
}

/* Patches the section counts into the header. */
static void dm_end(struct dnsmsg *m)
{
	m->b[6] = (unsigned char)(m->an >> 8);
	m->b[7] = (unsigned char)m->an;
	m->b[8] = (unsigned char)(m->ns >> 8);
	m->b[9] = (unsigned char)m->ns;
	m->b[10] = (unsigned char)(m->ar >> 8);
	m->b[11] = (unsigned char)m->ar;
}

#define QNAME "kubia.default.svc.cluster.local"
#define T0 "kubia-0.kubia.default.svc.cluster.local"
#define T1 "kubia-1.kubia.default.svc.cluster.local"
#define T2 "kubia-2.kubia.default.svc.cluster.local"
#define T10 "kubia-10.kubia.default.svc.cluster.local"

static int parse(const struct dnsmsg *m, unsigned max_peers, struct srv_answer *a)
{
	char err[128];

	return srv_parse(m->b, m->len, max_peers, a, err, sizeof(err));
}

static void test_basic(void **state)
{
	struct dnsmsg m;
	struct srv_answer a;
	size_t o0, o1, o2;
	char ip[INET6_ADDRSTRLEN];

	(void)state;
	dm_begin(&m, 0, QNAME);
	o2 = dm_srv(&m, 0, 50, 8080, 30, T2);
	o0 = dm_srv(&m, 0, 50, 8080, 30, T0);
	o1 = dm_srv(&m, 0, 50, 8080, 30, T1);
	dm_a(&m, o0, 30, 10, 0, 0, 10);
	dm_a(&m, o1, 30, 10, 0, 0, 11);
	dm_a(&m, o2, 30, 10, 0, 0, 12);
	dm_end(&m);

	assert_int_equal(parse(&m, 16, &a), 0);
	assert_int_equal(a.rcode, 0);
	assert_int_equal(a.npeers, 3);
	assert_string_equal(a.peers[0].name, T0);
	assert_string_equal(a.peers[1].name, T1);
	assert_string_equal(a.peers[2].name, T2);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(a.peers[i].port, 8080);
		assert_int_equal(a.peers[i].family, AF_INET);
		assert_int_equal(a.peers[i].err[0], '\0');
	}
	assert_non_null(inet_ntop(AF_INET, a.peers[1].addr, ip, sizeof(ip)));
	assert_string_equal(ip, "10.0.0.11");
	assert_int_equal(a.ttl, 30);
	srv_answer_free(&a);
	assert_null(a.peers);
	assert_int_equal(a.npeers, 0);
}

/* The priority/weight/port rule picks the winner among records whose targets differ
 * only in case: the spelling must not decide before the rule does. */
static void test_case_duplicates_follow_the_rule(void **state)
{
	struct dnsmsg m;
	struct srv_answer a;

	(void)state;
	dm_begin(&m, 0, QNAME);
	/* Upper case sorts first byte-wise, but the lower-case record has the lower
	 * priority and must win. */
	dm_srv(&m, 10, 0, 9090, 30, "KUBIA-0.kubia.default.svc.cluster.local");
	dm_srv(&m, 0, 0, 8080, 30, T0);
	/* Same priority: the higher weight wins whatever its spelling. */
	dm_srv(&m, 0, 5, 9091, 30, "kubia-1.KUBIA.default.svc.cluster.local");
	dm_srv(&m, 0, 50, 8081, 30, T1);
	dm_end(&m);

	assert_int_equal(parse(&m, 16, &a), 0);
	assert_int_equal(a.npeers, 2);
	assert_string_equal(a.peers[0].name, T0);
	assert_int_equal(a.peers[0].port, 8080);
	assert_string_equal(a.peers[1].name, T1);
	assert_int_equal(a.peers[1].port, 8081);
	srv_answer_free(&a);
}

/* This pod's record: first labels equal, ignoring case; nothing else. */
static void test_is_self(void **state)
{
	(void)state;
	assert_true(srv_is_self(T0, "kubia-0"));
	assert_true(srv_is_self(T0, "KUBIA-0"));
	assert_true(srv_is_self(T0, "kubia-0.kubia.other.svc"));
	assert_true(srv_is_self("kubia-0", "kubia-0"));
	assert_false(srv_is_self(T0, "kubia-01"));
	assert_false(srv_is_self(T0, "kubia-"));
	assert_false(srv_is_self(T1, "kubia-0"));
	assert_false(srv_is_self(T0, ""));
	assert_false(srv_is_self(T0, NULL));
}

static void test_duplicates_by_port(void **state)
{
	struct dnsmsg m;
	struct srv_answer a;

	(void)state;
	dm_begin(&m, 0, QNAME);
	/* kubia-0: lowest priority wins over weight and port. */
	dm_srv(&m, 10, 100, 80, 30, T0);
	dm_srv(&m, 5, 1, 9090, 30, T0);
	dm_srv(&m, 5, 1, 9091, 30, T0);
	/* kubia-1: same priority, highest weight wins. */
	dm_srv(&m, 0, 10, 80, 30, T1);
	dm_srv(&m, 0, 20, 8081, 30, T1);
	/* kubia-2: same priority and weight, lowest port wins. */
	dm_srv(&m, 0, 10, 8443, 30, T2);
	dm_srv(&m, 0, 10, 8080, 30, T2);
	dm_end(&m);

	assert_int_equal(parse(&m, 16, &a), 0);
	assert_int_equal(a.npeers, 3);
	assert_int_equal(a.peers[0].port, 9090);
	assert_int_equal(a.peers[1].port, 8081);
	assert_int_equal(a.peers[2].port, 8080);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(a.peers[i].family, 0);
	}
	srv_answer_free(&a);
}

static void test_natural_sort(void **state)
{
	struct dnsmsg m;
	struct srv_answer a;

	(void)state;
	dm_begin(&m, 0, QNAME);
	dm_srv(&m, 0, 0, 8080, 30, T10);
	dm_srv(&m, 0, 0, 8080, 30, T2);
	dm_srv(&m, 0, 0, 8080, 30, T1);
	dm_srv(&m, 0, 0, 8080, 30, T0);
	dm_end(&m);

	assert_int_equal(parse(&m, 16, &a), 0);
	assert_int_equal(a.npeers, 4);
	assert_string_equal(a.peers[0].name, T0);
	assert_string_equal(a.peers[1].name, T1);
	assert_string_equal(a.peers[2].name, T2);
	assert_string_equal(a.peers[3].name, T10);
	srv_answer_free(&a);
}

static void test_name_cmp(void **state)
{
	(void)state;
	assert_true(srv_name_cmp("kubia-2", "kubia-10") < 0);
	assert_true(srv_name_cmp("kubia-10", "kubia-2") > 0);
	assert_true(srv_name_cmp("kubia-9.x", "kubia-10.x") < 0);
	assert_true(srv_name_cmp("a", "a-0") < 0);
	assert_true(srv_name_cmp("A-1", "a-2") < 0);
	assert_true(srv_name_cmp("abc", "ABD") < 0);
	assert_int_equal(srv_name_cmp("same", "same"), 0);
	/* Equal numbers written differently are still distinct and ordered. */
	assert_true(srv_name_cmp("a-01", "a-1") != 0);
	assert_true(srv_name_cmp("a-01", "a-1") == -srv_name_cmp("a-1", "a-01"));
	assert_true(srv_name_cmp("a-007", "a-8") < 0);
	assert_true(srv_name_cmp("Kubia-0", "kubia-0") != 0);
	assert_true(srv_name_cmp("x99999999999999999999999", "x100000000000000000000000") < 0);
}

static void test_case_insensitive(void **state)
{
	struct dnsmsg m;
	struct srv_answer a;
	size_t o;

	(void)state;
	dm_begin(&m, 0, QNAME);
	dm_srv(&m, 0, 0, 8080, 30, "KUBIA-0.kubia.default.svc.cluster.local");
	dm_srv(&m, 0, 0, 9090, 30, T0);
	dm_srv(&m, 0, 0, 8080, 30, T1);
	/* The additional section names the target in other case, uncompressed. */
	o = dm_name(&m, "Kubia-1.KUBIA.default.svc.cluster.local");
	dm_put16(&m, 1);
	dm_put16(&m, 1);
	dm_put32(&m, 30);
	dm_put16(&m, 4);
	m.b[m.len++] = 192;
	m.b[m.len++] = 0;
	m.b[m.len++] = 2;
	m.b[m.len++] = 1;
	m.ar++;
	(void)o;
	dm_end(&m);

	assert_int_equal(parse(&m, 16, &a), 0);
	assert_int_equal(a.npeers, 2);
	assert_true(strcasecmp(a.peers[0].name, T0) == 0);
	assert_int_equal(a.peers[0].port, 8080);
	assert_int_equal(a.peers[0].family, 0);
	assert_string_equal(a.peers[1].name, T1);
	assert_int_equal(a.peers[1].family, AF_INET);
	assert_int_equal(a.peers[1].addr[0], 192);
	assert_int_equal(a.peers[1].addr[3], 1);
	srv_answer_free(&a);
}

static void test_aaaa_and_first_address(void **state)
{
	static const unsigned char v6[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
	struct dnsmsg m;
	struct srv_answer a;
	size_t o0, o1;

	(void)state;
	dm_begin(&m, 0, QNAME);
	o0 = dm_srv(&m, 0, 0, 8080, 30, T0);
	o1 = dm_srv(&m, 0, 0, 8080, 30, T1);
	dm_aaaa(&m, o0, 30, v6);
	dm_a(&m, o0, 30, 10, 0, 0, 10);
	dm_a(&m, o1, 30, 10, 0, 0, 11);
	dm_a(&m, o1, 30, 10, 0, 0, 99);
	dm_end(&m);

	assert_int_equal(parse(&m, 16, &a), 0);
	assert_int_equal(a.npeers, 2);
	assert_int_equal(a.peers[0].family, AF_INET6);
	assert_memory_equal(a.peers[0].addr, v6, 16);
	assert_int_equal(a.peers[1].family, AF_INET);
	assert_int_equal(a.peers[1].addr[3], 11);
	srv_answer_free(&a);
}

static void test_ttl_min(void **state)
{
	struct dnsmsg m;
	struct srv_answer a;
	size_t o0;

	(void)state;
	dm_begin(&m, 0, QNAME);
	o0 = dm_srv(&m, 0, 0, 8080, 30, T0);
	dm_srv(&m, 0, 0, 8080, 10, T1);
	dm_srv(&m, 0, 0, 8080, 60, T2);
	dm_end(&m);
	assert_int_equal(parse(&m, 16, &a), 0);
	assert_int_equal(a.ttl, 10);
	srv_answer_free(&a);

	/* An address record used for a peer counts too. */
	dm_a(&m, o0, 5, 10, 0, 0, 10);
	dm_end(&m);
	assert_int_equal(parse(&m, 16, &a), 0);
	assert_int_equal(a.ttl, 5);
	srv_answer_free(&a);

	/* RFC 2181: a TTL with the top bit set reads as zero. */
	dm_begin(&m, 0, QNAME);
	dm_srv(&m, 0, 0, 8080, 0x80000001u, T0);
	dm_end(&m);
	assert_int_equal(parse(&m, 16, &a), 0);
	assert_int_equal(a.ttl, 0);
	srv_answer_free(&a);

	/* No records: no TTL. */
	dm_begin(&m, 0, QNAME);
	dm_end(&m);
	assert_int_equal(parse(&m, 16, &a), 0);
	assert_int_equal(a.npeers, 0);
	assert_null(a.peers);
	assert_int_equal(a.ttl, UINT32_MAX);
	srv_answer_free(&a);
}

static void test_max_peers(void **state)
{
	struct dnsmsg m;
	struct srv_answer a;

	(void)state;
	dm_begin(&m, 0, QNAME);
	dm_srv(&m, 0, 0, 8080, 30, T10);
	dm_srv(&m, 0, 0, 8080, 30, T2);
	dm_srv(&m, 0, 0, 8080, 30, T1);
	dm_srv(&m, 0, 0, 8080, 30, T0);
	dm_end(&m);
	/* Cut after sorting, so the server's order does not matter. */
	assert_int_equal(parse(&m, 2, &a), 0);
	assert_int_equal(a.npeers, 2);
	assert_string_equal(a.peers[0].name, T0);
	assert_string_equal(a.peers[1].name, T1);
	srv_answer_free(&a);
	assert_int_equal(parse(&m, 0, &a), 0);
	assert_int_equal(a.npeers, 0);
	srv_answer_free(&a);
}

static void test_rcodes(void **state)
{
	struct dnsmsg m;
	struct srv_answer a;

	(void)state;
	dm_begin(&m, 3, QNAME);
	dm_end(&m);
	assert_int_equal(parse(&m, 16, &a), 0);
	assert_int_equal(a.rcode, DNS_RCODE_NXDOMAIN);
	assert_int_equal(a.npeers, 0);
	srv_answer_free(&a);

	dm_begin(&m, 2, QNAME);
	dm_srv(&m, 0, 0, 8080, 30, T0);
	dm_end(&m);
	assert_int_equal(parse(&m, 16, &a), 0);
	assert_int_equal(a.rcode, 2);
	assert_int_equal(a.npeers, 0);
	srv_answer_free(&a);
}

static void test_skipped_records(void **state)
{
	static const unsigned char cname_rdata[] = {0xc0, 12};
	struct dnsmsg m;
	struct srv_answer a;
	size_t rdlen_at;

	(void)state;
	dm_begin(&m, 0, QNAME);
	/* A CNAME in the answer section, then an SRV of class CH, then root target. */
	dm_rr_ptr(&m, 12, 5, 30, cname_rdata, sizeof(cname_rdata));
	m.an++;
	dm_ptr(&m, 12);
	dm_put16(&m, 33);
	dm_put16(&m, 3);
	dm_put32(&m, 30);
	rdlen_at = m.len;
	dm_put16(&m, 8);
	dm_put16(&m, 0);
	dm_put16(&m, 0);
	dm_put16(&m, 80);
	dm_ptr(&m, 12);
	(void)rdlen_at;
	m.an++;
	dm_srv(&m, 0, 0, 8080, 30, "");
	dm_srv(&m, 0, 0, 8080, 40, T1);
	dm_end(&m);

	assert_int_equal(parse(&m, 16, &a), 0);
	assert_int_equal(a.npeers, 1);
	assert_string_equal(a.peers[0].name, T1);
	srv_answer_free(&a);
}

static void test_truncated(void **state)
{
	struct dnsmsg m;
	struct srv_answer a;
	char err[128];
	size_t o0;

	(void)state;
	dm_begin(&m, 0, QNAME);
	o0 = dm_srv(&m, 0, 0, 8080, 30, T0);
	dm_srv(&m, 0, 0, 8080, 30, T1);
	dm_a(&m, o0, 30, 10, 0, 0, 10);
	dm_end(&m);
	for (size_t len = 0; len < m.len; len++) {
		err[0] = '\0';
		assert_int_equal(srv_parse(m.b, len, 16, &a, err, sizeof(err)), -1);
		assert_null(a.peers);
		assert_int_equal(a.npeers, 0);
		assert_true(err[0] != '\0');
	}
	assert_int_equal(srv_parse(NULL, 0, 16, &a, err, sizeof(err)), -1);
	/* A NULL error buffer is allowed. */
	assert_int_equal(srv_parse(m.b, 5, 16, &a, NULL, 0), -1);
}

static void test_malformed(void **state)
{
	struct dnsmsg m;
	struct srv_answer a;
	char err[128];
	size_t at;

	(void)state;
	/* A query, not a reply. */
	dm_begin(&m, 0, QNAME);
	dm_srv(&m, 0, 0, 8080, 30, T0);
	dm_end(&m);
	m.b[2] &= 0x7f;
	assert_int_equal(srv_parse(m.b, m.len, 16, &a, err, sizeof(err)), -1);

	/* A compression pointer to itself. */
	dm_begin(&m, 0, QNAME);
	at = m.len;
	dm_ptr(&m, at);
	dm_put16(&m, 33);
	dm_put16(&m, 1);
	dm_put32(&m, 30);
	dm_put16(&m, 0);
	m.an = 1;
	dm_end(&m);
	assert_int_equal(srv_parse(m.b, m.len, 16, &a, err, sizeof(err)), -1);

	/* rdlength past the end. */
	dm_begin(&m, 0, QNAME);
	dm_srv(&m, 0, 0, 8080, 30, T0);
	dm_end(&m);
	m.b[m.len - strlen(T0) - 2 - 6 - 2] = 0x7f;
	assert_int_equal(srv_parse(m.b, m.len, 16, &a, err, sizeof(err)), -1);

	/* SRV rdata too short. */
	dm_begin(&m, 0, QNAME);
	dm_ptr(&m, 12);
	dm_put16(&m, 33);
	dm_put16(&m, 1);
	dm_put32(&m, 30);
	dm_put16(&m, 4);
	dm_put32(&m, 0);
	m.an = 1;
	dm_end(&m);
	assert_int_equal(srv_parse(m.b, m.len, 16, &a, err, sizeof(err)), -1);
	assert_string_equal(err, "SRV record too short");

	/* Target running out of its rdata (rdlength one short). */
	dm_begin(&m, 0, QNAME);
	at = m.len + 2 + 8;
	dm_srv(&m, 0, 0, 8080, 30, T0);
	m.b[at + 1]--;
	dm_put16(&m, 0); /* keeps the message long enough for the next record */
	dm_end(&m);
	assert_int_equal(srv_parse(m.b, m.len, 16, &a, err, sizeof(err)), -1);

	/* More answers announced than present. */
	dm_begin(&m, 0, QNAME);
	dm_srv(&m, 0, 0, 8080, 30, T0);
	m.an = 65535;
	dm_end(&m);
	assert_int_equal(srv_parse(m.b, m.len, 16, &a, err, sizeof(err)), -1);
	assert_null(a.peers);

	/* Label longer than 63 bytes is invalid. */
	dm_begin(&m, 0, QNAME);
	dm_srv(&m, 0, 0, 8080, 30, T0);
	dm_end(&m);
	m.b[12] = 0x50;
	assert_int_equal(srv_parse(m.b, m.len, 16, &a, err, sizeof(err)), -1);
}

static void test_authority_skipped(void **state)
{
	static const unsigned char soa_like[] = {1, 2, 3, 4, 5, 6};
	struct dnsmsg m;
	struct srv_answer a;
	size_t o0;

	(void)state;
	dm_begin(&m, 0, QNAME);
	o0 = dm_srv(&m, 0, 0, 8080, 30, T0);
	dm_rr_ptr(&m, 12, 6, 30, soa_like, sizeof(soa_like));
	m.ns++;
	dm_a(&m, o0, 30, 10, 0, 0, 10);
	dm_end(&m);
	assert_int_equal(parse(&m, 16, &a), 0);
	assert_int_equal(a.npeers, 1);
	assert_int_equal(a.peers[0].family, AF_INET);
	srv_answer_free(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic),
		cmocka_unit_test(test_duplicates_by_port),
		cmocka_unit_test(test_case_duplicates_follow_the_rule),
		cmocka_unit_test(test_is_self),
		cmocka_unit_test(test_natural_sort),
		cmocka_unit_test(test_name_cmp),
		cmocka_unit_test(test_case_insensitive),
		cmocka_unit_test(test_aaaa_and_first_address),
		cmocka_unit_test(test_ttl_min),
		cmocka_unit_test(test_max_peers),
		cmocka_unit_test(test_rcodes),
		cmocka_unit_test(test_skipped_records),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_authority_skipped),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
