/* SPDX-License-Identifier: MIT */
/*
 * What to ask, and whom: the names an SRV lookup walks through (the resolver's search
 * rule applied to the service name) and the parser of a DNS server given by the user.
 * Pure functions: the resolver's options come in as arguments.
 */
#include "discovery/internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define DNS_PORT 53

static size_t count_dots(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++) {
		n += *s == '.';
	}
	return n;
}

/* Appends base, or base.domain, to list. An empty domain adds nothing. */
static bool add_name(char **list, size_t *n, const char *base, size_t bl, const char *domain)
{
	size_t dl = domain != NULL ? strlen(domain) : 0;
	char *s;

	while (dl > 0 && domain[dl - 1] == '.') {
		dl--;
	}
	if (domain != NULL && dl == 0) {
		return true;
	}
	s = malloc(bl + 1 + dl + 1);
	if (s == NULL) {
		return false;
	}
	memcpy(s, base, bl);
	s[bl] = '\0';
	if (domain != NULL) {
		s[bl] = '.';
		memcpy(s + bl + 1, domain, dl);
		s[bl + 1 + dl] = '\0';
	}
	list[(*n)++] = s;
	return true;
}

static bool add_searched(char **list, size_t *n, const char *base, size_t bl,
			 const char *const *domains, size_t ndomains)
{
	for (size_t i = 0; i < ndomains; i++) {
		if (domains[i] != NULL && !add_name(list, n, base, bl, domains[i])) {
			return false;
		}
	}
	return true;
}

int names_build(const char *service, const char *const *domains, size_t ndomains, unsigned ndots,
		char ***out, size_t *n)
{
	size_t bl = strlen(service);
	bool fqdn = bl > 0 && service[bl - 1] == '.';
	size_t dots;
	char **list;
	size_t k = 0;
	bool ok;

	*out = NULL;
	*n = 0;
	if (fqdn) {
		bl--;
		ndomains = 0;
	}
	list = calloc(ndomains + 1, sizeof(*list));
	if (list == NULL) {
		return -1;
	}
	dots = count_dots(service) - (fqdn ? 1 : 0);
	if (fqdn || dots >= ndots) {
		ok = add_name(list, &k, service, bl, NULL) &&
		     add_searched(list, &k, service, bl, domains, ndomains);
	} else {
		ok = add_searched(list, &k, service, bl, domains, ndomains);
		if (ok && (dots > 0 || k == 0)) {
			ok = add_name(list, &k, service, bl, NULL);
		}
	}
	if (!ok) {
		names_free(list, k);
		return -1;
	}
	*out = list;
	*n = k;
	return 0;
}

void names_free(char **names, size_t n)
{
	if (names == NULL) {
		return;
	}
	for (size_t i = 0; i < n; i++) {
		free(names[i]);
	}
	free(names);
}

static bool parse_port(const char *s, unsigned *port)
{
	unsigned long v = 0;
	size_t i;

	for (i = 0; s[i] != '\0'; i++) {
		if (s[i] < '0' || s[i] > '9' || i >= 5) {
			return false;
		}
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (i == 0 || v == 0 || v > 65535) {
		return false;
	}
	*port = (unsigned)v;
	return true;
}

/* Splits text into its host and port parts; false when the shape is wrong. */
static bool split_host_port(const char *text, char *host, size_t hostlen, const char **port)
{
	const char *colon = strchr(text, ':');
	size_t hl;

	*port = NULL;
	if (text[0] == '[') {
		const char *end = strchr(text, ']');

		if (end == NULL || (end[1] != '\0' && end[1] != ':')) {
			return false;
		}
		hl = (size_t)(end - text - 1);
		text++;
		*port = end[1] == ':' ? end + 2 : NULL;
	} else if (colon != NULL && strchr(colon + 1, ':') == NULL) {
		hl = (size_t)(colon - text);
		*port = colon + 1;
	} else {
		hl = strlen(text); /* no colon, or a bare IPv6 address */
	}
	if (hl == 0 || hl >= hostlen) {
		return false;
	}
	memcpy(host, text, hl);
	host[hl] = '\0';
	return true;
}

bool discovery_parse_dns_server(const char *text, struct discovery_dns_server *out, char *err,
				size_t errlen)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *port = NULL;

	memset(out, 0, sizeof(*out));
	out->port = DNS_PORT;
	if (text == NULL || !split_host_port(text, host, sizeof(host), &port)) {
		errtext_set(err, errlen,
			    "expected IP[:port], for example 10.96.0.10:53 or [fd00::a]:53");
		return false;
	}
	if (inet_pton(AF_INET, host, out->addr) == 1) {
		out->family = AF_INET;
	} else if (inet_pton(AF_INET6, host, out->addr) == 1) {
		out->family = AF_INET6;
	} else {
		errtext_set(err, errlen,
			    "'%s' is not an IPv4 or IPv6 address: the resolver needs an "
			    "address, not a host name",
			    host);
		return false;
	}
	if (port != NULL && !parse_port(port, &out->port)) {
		errtext_set(err, errlen, "port '%s' is not a number from 1 to 65535", port);
		return false;
	}
	return true;
}
