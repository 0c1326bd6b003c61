/* SPDX-License-Identifier: MIT */
#ifndef KUBIA_DISCOVERY_INTERNAL_H
#define KUBIA_DISCOVERY_INTERNAL_H

/*
 * Private to discovery/ and its tests: the pure parts (DNS answer parsing, planning and
 * rendering of the cluster view) kept apart from the event loop so they can be unit
 * tested and fuzzed without a network.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A DNS name in presentation form is at most 253 characters; c-ares escapes unusual
 * bytes (\DDD), so names that do not fit here are dropped rather than truncated. */
#define SRV_NAME_MAX 256
#define SRV_ERR_MAX 128

/* Lets the compiler check printf-style formats (-Wformat=2 relies on it). */
#define DISCOVERY_PRINTF(fmt, first) __attribute__((format(printf, fmt, first)))

/* Writes one printf-formatted line into err (nothing when err is NULL or errlen 0). */
void discovery_set_err(char *err, size_t errlen, const char *fmt, ...) DISCOVERY_PRINTF(3, 4);

#define SRV_RCODE_NOERROR 0
#define SRV_RCODE_NXDOMAIN 3

struct srv_peer {
	char name[SRV_NAME_MAX]; /* target without the trailing dot */
	uint16_t priority;
	uint16_t weight;
	uint16_t port;
	int family; /* AF_INET, AF_INET6, or 0 while no address is known */
	unsigned char addr[16]; /* network order; 4 bytes used for AF_INET */
	char err[SRV_ERR_MAX]; /* why the address could not be found ("" = no error) */
};

struct srv_answer {
	int rcode; /* the reply's RCODE; peers are parsed only for NOERROR */
	uint32_t ttl; /* least TTL of the records used; UINT32_MAX when none */
	size_t npeers;
	struct srv_peer *peers; /* malloc()ed, sorted by srv_name_cmp(), unique names */
};

/* Parses a DNS reply to an SRV query. Records are de-duplicated by target
 * (case-insensitive; the record with the lowest priority, then highest weight, then
 * lowest port wins), sorted by srv_name_cmp(), and cut to max_peers after sorting so
 * the result does not depend on the server's record order. A and AAAA records of the
 * additional section give each target its first listed address. Targets "." (RFC 2782:
 * no service) and records of other types or classes are skipped. Returns 0, or -1 with
 * a line in err for a malformed reply or lack of memory; out is then empty. */
int srv_parse(const unsigned char *msg, size_t len, unsigned max_peers, struct srv_answer *out,
	      char *err, size_t errlen);

/* Frees out->peers and empties *out. Safe on an already empty answer. */
void srv_answer_free(struct srv_answer *a);

/* Natural, case-insensitive order of names: runs of digits compare by numeric value, so
 * "kubia-2" sorts before "kubia-10" (the pod ordinal order of a StatefulSet); other
 * bytes compare as lower case. Names equal in this order (e.g. "a-01" and "a-1") are
 * then ordered by strcasecmp() and finally strcmp(), so the order is total. */
int srv_name_cmp(const char *a, const char *b);

/* One line of the cluster view. data is owned by the line (malloc()ed) once set. */
struct fanout_line {
	char name[SRV_NAME_MAX + 64];
	bool self; /* this pod: read locally, never over the network */
	bool done; /* data holds the final text */
	int family;
	unsigned char addr[16];
	uint16_t port;
	char *data; /* the peer's /data body verbatim, or "Error: <reason>" */
	size_t len;
	void *xfer; /* loop.c's transfer while one is running */
};

/* Plans the lines for a parsed answer: one per peer in order; the peer whose first
 * label equals the first label of hostname (case-insensitive) is marked self. When
 * other peers exist but none is self, a self line "<hostname>.<rest>" is inserted in
 * order, rest being what follows the first label of the first other peer's name.
 * Peers whose address is unknown get their "Error: could not resolve ..." text now.
 * Port is peer_port when nonzero, else the record's. Returns 0 (*out NULL and *n 0 when
 * there are no peers) or -1 when memory ran out. */
int fanout_plan(const struct srv_answer *a, const char *hostname, unsigned peer_port,
		struct fanout_line **out, size_t *n);

/* Frees the lines and their data. */
void fanout_lines_free(struct fanout_line *lines, size_t n);

/* Sets a line's text (copied) and marks it done. false when memory ran out (data is
 * then NULL). */
bool fanout_line_set(struct fanout_line *l, const char *data, size_t len);

/* Sets "Error: <printf>" on a line (cut at 1 KiB) and marks it done; false when memory
 * ran out (data is then NULL, which fanout_render() shows as "Error: out of memory"). */
bool fanout_line_error(struct fanout_line *l, const char *fmt, ...) DISCOVERY_PRINTF(2, 3);

/* The body handed to done: "- <name>: <data>\n" per line, or "No peers discovered.\n"
 * when n is 0. malloc()ed, NUL-terminated for convenience; NULL when memory ran out. */
char *fanout_render(const struct fanout_line *lines, size_t n, size_t *len);

/* "Could not look up DNS SRV records: <reason>\n", malloc()ed; NULL when memory ran out */
char *fanout_render_dns_error(const char *reason, size_t *len);

#endif
