/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for what to ask and whom (discovery/names.c): the names an SRV lookup
 * walks through for a service name, a search list and ndots, and the --dns-server
 * parser.
 *
 * The names are checked against the resolver's rule of resolv.conf(5) as
 * discovery/internal.h states it, built here on its own. A DNS server that parses must
 * parse again, identically, from its canonical form ("a.b.c.d:port", "[v6]:port"), and a
 * bare address is always accepted, on port 53.
 *
 * Input: ndots, then NUL-separated fields: the service name, the DNS server text, and
 * the search domains (at most 8; an empty field is an empty domain).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "discovery/internal.h"

#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_DOMAINS 8
#define FIELD_MAX 1024

/* Is name exactly base, or base "." domain with the domain's trailing dots dropped? */
static bool is_name(const char *name, const char *base, size_t bl, const char *domain)
{
	size_t dl;

	if (domain == NULL) {
		return strlen(name) == bl && memcmp(name, base, bl) == 0;
	}
	dl = strlen(domain);
	while (dl > 0 && domain[dl - 1] == '.') {
		dl--;
	}
	return strlen(name) == bl + 1 + dl && memcmp(name, base, bl) == 0 && name[bl] == '.' &&
	       memcmp(name + bl + 1, domain, dl) == 0;
}

/* A domain that adds a name: not NULL, and something left once trailing dots go. */
static bool adds(const char *domain)
{
	return domain != NULL && strspn(domain, ".") < strlen(domain);
}

static void check_names(const char *service, char **domains, size_t nd, unsigned ndots)
{
	char **names = NULL;
	size_t n = 0;
	size_t k = 0;
	size_t bl = strlen(service);
	bool fqdn = bl > 0 && service[bl - 1] == '.';
	size_t dots = 0;
	bool bare_first;
	size_t searched = 0;

	if (names_build(service, (const char *const *)domains, nd, ndots, &names, &n) < 0) {
		abort(); /* only when memory runs out */
	}
	for (size_t i = 0; service[i] != '\0'; i++) {
		dots += service[i] == '.';
	}
	if (fqdn) {
		bl--;
		dots--;
	}
	for (size_t i = 0; !fqdn && i < nd; i++) {
		searched += adds(domains[i]);
	}
	bare_first = fqdn || dots >= ndots;
	if (n != searched + (bare_first || dots > 0 || searched == 0)) {
		abort();
	}
	if (bare_first && !is_name(names[k++], service, bl, NULL)) {
		abort();
	}
	for (size_t i = 0; !fqdn && i < nd; i++) {
		if (adds(domains[i]) && !is_name(names[k++], service, bl, domains[i])) {
			abort();
		}
	}
	/* A single label is never asked bare while a search domain gives it a home. */
	if (k < n && (bare_first || !is_name(names[k++], service, bl, NULL))) {
		abort();
	}
	if (k != n) {
		abort();
	}
	names_free(names, n);
}

static void check_dns_server(const char *text)
{
	struct discovery_dns_server s, again;
	char err[128] = "";
	char addr[INET6_ADDRSTRLEN];
	char canon[INET6_ADDRSTRLEN + 16];
	unsigned char bare[16];

	if (!discovery_parse_dns_server(text, &s, err, sizeof(err))) {
		if (err[0] == '\0' || memchr(err, '\0', sizeof(err)) == NULL) {
			abort();
		}
		/* A bare address is always a server. */
		if (inet_pton(AF_INET, text, bare) == 1 || inet_pton(AF_INET6, text, bare) == 1) {
			abort();
		}
		return;
	}
	if ((s.family != AF_INET && s.family != AF_INET6) || s.port < 1 || s.port > 65535 ||
	    inet_ntop(s.family, s.addr, addr, sizeof(addr)) == NULL) {
		abort();
	}
	if (inet_pton(s.family, text, bare) == 1 &&
	    (s.port != 53 || memcmp(bare, s.addr, s.family == AF_INET ? 4 : 16) != 0)) {
		abort();
	}
	snprintf(canon, sizeof(canon), s.family == AF_INET ? "%s:%u" : "[%s]:%u", addr, s.port);
	if (!discovery_parse_dns_server(canon, &again, err, sizeof(err)) ||
	    memcmp(&s, &again, sizeof(s)) != 0) {
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data + 1;
	const uint8_t *end = data + size;
	char *domains[MAX_DOMAINS];
	size_t nd = 0;
	char *service;
	char *server;

	if (size < 1) {
		return 0;
	}
	service = fuzz_field(&p, end, FIELD_MAX);
	server = fuzz_field(&p, end, FIELD_MAX);
	while (p < end && nd < MAX_DOMAINS) {
		domains[nd++] = fuzz_field(&p, end, FIELD_MAX);
	}
	/* Leave a gap now and then: NULL entries are skipped. */
	if (nd > 0 && (data[0] & 0x80) != 0) {
		free(domains[0]);
		domains[0] = NULL;
	}
	check_names(service, domains, nd, data[0] & 0x0f);
	check_dns_server(server);
	for (size_t i = 0; i < nd; i++) {
		free(domains[i]);
	}
	free(service);
	free(server);
	return 0;
}
