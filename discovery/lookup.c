/* SPDX-License-Identifier: MIT */
/*
 * The SRV lookup of the governing Service, with c-ares on the loop thread. One lookup
 * runs at a time and every view that arrives meanwhile waits for it (view.c), so a burst
 * of views costs one walk through the names to ask:
 *
 *   SRV query for each name in turn (names.c) until one answers with records
 *     -> parse the reply (srv.c); NXDOMAIN or no records: the next name
 *     -> targets the reply gave no address for: A/AAAA lookups, in parallel
 *     -> the outcome (peers, no peers or an error) is cached (cache.c) and handed to
 *        the callback lookup_begin() was given.
 *
 * The whole walk has one deadline (the DNS time-out), a timer of the loop. c-ares is
 * driven through its socket-state callback, which registers its sockets with the loop,
 * and ares_process_fd(), never from another thread: its channel is not thread-safe.
 */
#include "discovery/internal.h"

#include "common/metrics.h"
#include "common/monotonic.h"

#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define DNS_TRIES 3
/* "<name asked>: <why>", the name possibly in its named-port form */
#define REASON_MAX (sizeof(((struct lookup_walk *)0)->named_port_name) + SRV_ERR_MAX + 32)

/* Which peer of the lookup's answer an address query is for. */
struct addr_query {
	struct lookup *lu;
	size_t idx;
};

static const char *ares_text(int status)
{
	switch (status) {
	case ARES_ESERVFAIL:
		return "server failure (SERVFAIL)";
	case ARES_EREFUSED:
		return "query refused (REFUSED)";
	case ARES_ENOTIMP:
		return "query not implemented by the server (NOTIMP)";
	case ARES_EFORMERR:
		return "server could not read the query (FORMERR)";
	case ARES_ECONNREFUSED:
		return "connection refused";
	case ARES_ENOTFOUND:
		return "no such name (NXDOMAIN)";
	case ARES_ENODATA:
		return "no address records";
	case ARES_EBADRESP:
		return "malformed reply";
	case ARES_ENOMEM:
		return "out of memory";
	case ARES_EBADNAME:
		return "invalid name";
	case ARES_ECANCELLED:
	case ARES_EDESTRUCTION:
		return SHUTDOWN_TEXT;
	default:
		return ares_strerror(status);
	}
}

/* The reason for a failed query, honest about which limit ended it. */
static void failure_text(struct lookup *lu, int status, char *buf, size_t len)
{
	/* When c-ares's own tries run out first, they have used up the budget too (see the
	 * channel's time-out): the budget is named, not the clock's reading, so the line is
	 * the same every time. */
	if (lu->lk.cancelling && !lu->lk.timed_out) {
		snprintf(buf, len, SHUTDOWN_TEXT);
	} else if (lu->lk.timed_out || status == ARES_ETIMEOUT) {
		snprintf(buf, len, "timed out after %u ms", lu->cfg->dns_timeout_ms);
	} else {
		snprintf(buf, len, "%s", ares_text(status));
	}
}

/* Asks c-ares when it next needs the clock (a retransmission), after every call into
 * the channel: c-ares 1.18 has no timer callback of its own. */
static void lookup_rearm(struct lookup *lu)
{
	struct timeval tv;
	struct timeval *t = ares_timeout(lu->channel, NULL, &tv);
	uint64_t due = LOOP_NEVER;

	if (t != NULL) {
		due = monotonic_ns() + (uint64_t)t->tv_sec * 1000000000ull +
		      (uint64_t)t->tv_usec * 1000ull;
	}
	loop_timer_set(lu->loop, &lu->retry, due);
}

/* Ends the lookup: caches its outcome when allowed and hands it to the callback. */
static void lookup_end(struct lookup *lu, enum srv_outcome kind, const char *reason)
{
	struct srv_answer ans = lu->lk.ans;
	static const enum metrics_srv_result results[] = {[SRV_PEERS] = METRICS_SRV_OK,
							  [SRV_EMPTY] = METRICS_SRV_EMPTY,
							  [SRV_ERROR] = METRICS_SRV_ERROR};

	metrics_srv_lookup(results[kind], monotonic_ns() - lu->lk.start, ans.npeers);
	free(lu->lk.aq);
	memset(&lu->lk, 0, sizeof(lu->lk));
	loop_timer_set(lu->loop, &lu->deadline, LOOP_NEVER);
	if (kind == SRV_ERROR) {
		discovery_logf(lu->cfg, DISCOVERY_LOG_WARN, "SRV lookup failed: %s", reason);
	}
	if (cache_put(&lu->cache, kind, &ans, lu->cfg->cache_ms, monotonic_ns())) {
		lu->on_done(lu->arg, kind, &lu->cache.ans, reason);
		return;
	}
	lu->on_done(lu->arg, kind, &ans, reason);
	srv_answer_free(&ans);
}

/* The name being asked right now. */
static const char *asking(const struct lookup *lu)
{
	return lu->lk.named_port ? lu->lk.named_port_name : lu->names[lu->lk.name];
}

static void lookup_fail(struct lookup *lu, int status)
{
	char text[SRV_ERR_MAX];
	char reason[REASON_MAX];

	failure_text(lu, status, text, sizeof(text));
	snprintf(reason, sizeof(reason), "%s: %s", asking(lu), text);
	lookup_end(lu, SRV_ERROR, reason);
}

/* Takes the first address c-ares gives (it sorts them by RFC 6724). */
static void peer_address(struct srv_peer *p, const struct ares_addrinfo_node *n)
{
	if (n->ai_addr == NULL) {
		return;
	}
	if (n->ai_family == AF_INET && n->ai_addrlen >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *sin =
			(const struct sockaddr_in *)(const void *)n->ai_addr;

		p->family = AF_INET;
		memcpy(p->addr, &sin->sin_addr, 4);
	} else if (n->ai_family == AF_INET6 && n->ai_addrlen >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *sin6 =
			(const struct sockaddr_in6 *)(const void *)n->ai_addr;

		p->family = AF_INET6;
		memcpy(p->addr, &sin6->sin6_addr, 16);
	}
}

static void addr_cb(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
	struct addr_query *q = arg;
	struct lookup *lu = q->lu;
	struct srv_peer *p = &lu->lk.ans.peers[q->idx];
	const struct ares_addrinfo_node *n = NULL;

	(void)timeouts;
	if (status == ARES_SUCCESS && res != NULL) {
		n = res->nodes;
	}
	if (n != NULL) {
		peer_address(p, n);
	}
	if (n != NULL && p->family != 0) {
		if (n->ai_ttl >= 0 && (uint32_t)n->ai_ttl < lu->lk.ans.ttl) {
			lu->lk.ans.ttl = (uint32_t)n->ai_ttl;
		}
	} else if (status == ARES_SUCCESS) {
		snprintf(p->err, sizeof(p->err), "no address records");
	} else {
		failure_text(lu, status, p->err, sizeof(p->err));
	}
	if (res != NULL) {
		ares_freeaddrinfo(res);
	}
	if (--lu->lk.addr_pending == 0) {
		lookup_end(lu, SRV_PEERS, NULL);
	}
}

/* Resolves the targets that the reply gave no address for (not this pod's own: it is
 * read locally). A callback may run before ares_getaddrinfo() returns, so one extra
 * count holds the lookup open until every query has been started. */
static void lookup_resolve(struct lookup *lu)
{
	struct lookup_walk *lk = &lu->lk;
	struct ares_addrinfo_hints hints;

	lk->aq = calloc(lk->ans.npeers, sizeof(*lk->aq));
	if (lk->aq == NULL) {
		lookup_fail(lu, ARES_ENOMEM);
		return;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	lk->addr_pending = 1;
	for (size_t i = 0; i < lk->ans.npeers; i++) {
		struct srv_peer *p = &lk->ans.peers[i];
		char fqdn[SRV_NAME_MAX + 2];

		if (p->family != 0 || srv_is_self(p->name, lu->cfg->hostname)) {
			continue;
		}
		/* The trailing dot keeps c-ares from walking the search list for it. */
		snprintf(fqdn, sizeof(fqdn), "%s.", p->name);
		lk->aq[i].lu = lu;
		lk->aq[i].idx = i;
		lk->addr_pending++;
		ares_getaddrinfo(lu->channel, fqdn, NULL, &hints, addr_cb, &lk->aq[i]);
	}
	if (--lk->addr_pending == 0) {
		lookup_end(lu, SRV_PEERS, NULL);
	}
}

static void lookup_query(struct lookup *lu);

/* A reply with records: on to their addresses. false when it had none. */
static bool lookup_answered(struct lookup *lu, const unsigned char *abuf, int alen)
{
	struct lookup_walk *lk = &lu->lk;
	char perr[SRV_ERR_MAX];
	char reason[REASON_MAX];

	if (abuf == NULL || alen < 0 ||
	    srv_parse(abuf, (size_t)alen, lu->cfg->max_peers, &lk->ans, perr, sizeof(perr)) < 0) {
		snprintf(reason, sizeof(reason), "%s: malformed reply (%s)", asking(lu),
			 abuf == NULL ? "empty" : perr);
		lookup_end(lu, SRV_ERROR, reason);
		return true;
	}
	if (lk->ans.npeers == 0) {
		return false;
	}
	snprintf(lk->ans.qname, sizeof(lk->ans.qname), "%s", asking(lu));
	lookup_resolve(lu);
	return true;
}

/* The name exists but has no SRV records (NODATA, not NXDOMAIN): a cluster DNS that
 * follows only the Kubernetes DNS specification, which defines SRV records for named
 * ports alone. A bare service name is then asked in its named-port form; true when that
 * query is to be made. */
static bool try_named_port(struct lookup *lu)
{
	struct lookup_walk *lk = &lu->lk;
	const char *name = lu->names[lk->name];
	int n;

	if (lk->named_port || name[0] == '_' || lu->cfg->port_name == NULL ||
	    lu->cfg->port_name[0] == '\0') {
		return false;
	}
	n = snprintf(lk->named_port_name, sizeof(lk->named_port_name), "_%s._tcp.%s",
		     lu->cfg->port_name, name);
	if (n < 0 || (size_t)n >= sizeof(lk->named_port_name)) {
		return false;
	}
	lk->named_port = true;
	discovery_logf(lu->cfg, lu->told_named_port ? DISCOVERY_LOG_DEBUG : DISCOVERY_LOG_WARN,
		       "%s has no SRV records of its own: asking %s, the DNS specification's form "
		       "(set the service to _%s._tcp.<service> to ask it first)",
		       name, lk->named_port_name, lu->cfg->port_name);
	lu->told_named_port = true;
	return true;
}

static void srv_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct lookup *lu = arg;
	struct lookup_walk *lk = &lu->lk;

	(void)timeouts;
	if (!lk->active) {
		return;
	}
	if (lk->cancelling) {
		lookup_fail(lu, status);
		return;
	}
	if (status == ARES_SUCCESS) {
		if (lookup_answered(lu, abuf, alen)) {
			return;
		}
		/* Answers, but no usable SRV record: as good as NODATA. */
		status = ARES_ENODATA;
	}
	if (status != ARES_ENOTFOUND && status != ARES_ENODATA) {
		lookup_fail(lu, status);
	} else if (status == ARES_ENODATA && try_named_port(lu)) {
		lookup_query(lu);
	} else if (lk->name + 1 < lu->nnames) {
		lk->named_port = false;
		lk->name++;
		lookup_query(lu);
	} else {
		lookup_end(lu, SRV_EMPTY, NULL);
	}
}

static void lookup_query(struct lookup *lu)
{
	/* Plain ares_query(), not ares_search(): c-ares 1.18's search goes on to the next
	 * domain after SERVFAIL, which would turn a failing server into "no peers". */
	ares_query(lu->channel, asking(lu), DNS_CLASS_IN, DNS_TYPE_SRV, srv_cb, lu);
}

/* The walk may end inside this call: c-ares fails some queries at once. */
void lookup_begin(struct lookup *lu, lookup_done_fn on_done, void *arg)
{
	if (lu->lk.active) {
		return;
	}
	lu->on_done = on_done;
	lu->arg = arg;
	memset(&lu->lk, 0, sizeof(lu->lk));
	lu->lk.active = true;
	lu->lk.start = monotonic_ns();
	lu->lk.ans.ttl = UINT32_MAX;
	loop_timer_set(lu->loop, &lu->deadline,
		       lu->lk.start + (uint64_t)lu->cfg->dns_timeout_ms * NS_PER_MS);
	lookup_query(lu);
	lookup_rearm(lu);
}

const struct srv_cache *lookup_cached(const struct lookup *lu, uint64_t now)
{
	return cache_get(&lu->cache, now);
}

/* ares_cancel() runs every outstanding callback before it returns, and they start
 * nothing new while cancelling is set. */
void lookup_cancel(struct lookup *lu, bool timed_out)
{
	if (!lu->lk.active) {
		return;
	}
	lu->lk.cancelling = true;
	lu->lk.timed_out = timed_out;
	ares_cancel(lu->channel);
	if (lu->lk.active) {
		/* No query was outstanding (cannot happen); do not wait forever. */
		lookup_fail(lu, ARES_ECANCELLED);
	}
	lookup_rearm(lu);
}

static void lookup_on_deadline(void *arg)
{
	lookup_cancel(arg, true);
}

/* Without sockets ares_process_fd() handles only time-outs (retries). */
static void lookup_on_retry(void *arg)
{
	struct lookup *lu = arg;

	ares_process_fd(lu->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	lookup_rearm(lu);
}

static void lookup_on_event(void *arg, int fd, uint32_t events)
{
	struct lookup *lu = arg;
	bool err = (events & (EPOLLERR | EPOLLHUP)) != 0;
	ares_socket_t rfd = (events & EPOLLIN) || err ? fd : ARES_SOCKET_BAD;
	ares_socket_t wfd = (events & EPOLLOUT) ? fd : ARES_SOCKET_BAD;

	ares_process_fd(lu->channel, rfd, wfd);
	lookup_rearm(lu);
}

static void ares_sock_cb(void *data, ares_socket_t s, int readable, int writable)
{
	struct lookup *lu = data;
	uint32_t ev = 0;

	if (!readable && !writable) {
		loop_unwatch(lu->loop, s);
		return;
	}
	if (readable) {
		ev |= EPOLLIN;
	}
	if (writable) {
		ev |= EPOLLOUT;
	}
	/* A socket left unwatched is ended by the lookup's deadline: nothing waits forever. */
	if (!loop_watch(lu->loop, s, ev, lookup_on_event, lu)) {
		discovery_logf(lu->cfg, DISCOVERY_LOG_ERROR, "epoll_ctl on fd %d: %s", s,
			       strerror(errno));
	}
}

/* The names to ask, from the service and the resolver's search list and ndots. */
static bool setup_names(struct lookup *lu, char *err, size_t errlen)
{
	struct ares_options o;
	int mask = 0;
	int rc;

	memset(&o, 0, sizeof(o));
	if (ares_save_options(lu->channel, &o, &mask) != ARES_SUCCESS) {
		errtext_set(err, errlen, "DNS: could not read the resolver options");
		return false;
	}
	rc = names_build(lu->cfg->service, (const char *const *)o.domains,
			 o.domains != NULL && o.ndomains > 0 ? (size_t)o.ndomains : 0,
			 o.ndots > 0 ? (unsigned)o.ndots : 1, &lu->names, &lu->nnames);
	ares_destroy_options(&o);
	if (rc < 0) {
		errtext_set(err, errlen, "DNS: out of memory");
		return false;
	}
	return true;
}

static bool setup_server(struct lookup *lu, char *err, size_t errlen)
{
	struct discovery_dns_server s;
	struct ares_addr_port_node node;
	char why[160];
	int st;

	if (lu->cfg->dns_server == NULL || lu->cfg->dns_server[0] == '\0') {
		return true;
	}
	if (!discovery_parse_dns_server(lu->cfg->dns_server, &s, why, sizeof(why))) {
		errtext_set(err, errlen, "DNS server '%s': %s", lu->cfg->dns_server, why);
		return false;
	}
	memset(&node, 0, sizeof(node));
	node.family = s.family;
	memcpy(&node.addr, s.addr, s.family == AF_INET ? 4 : 16);
	node.udp_port = (int)s.port;
	node.tcp_port = (int)s.port;
	st = ares_set_servers_ports(lu->channel, &node);
	if (st != ARES_SUCCESS) {
		errtext_set(err, errlen, "DNS server '%s': %s", lu->cfg->dns_server,
			    ares_strerror(st));
		return false;
	}
	return true;
}

bool lookup_init(struct lookup *lu, const struct discovery_config *cfg, struct loop *loop,
		 char *err, size_t errlen)
{
	struct ares_options o;
	int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS;
	int st;

	memset(lu, 0, sizeof(*lu));
	lu->cfg = cfg;
	lu->loop = loop;
	loop_timer_init(&lu->retry, lookup_on_retry, lu);
	loop_timer_init(&lu->deadline, lookup_on_deadline, lu);
	memset(&o, 0, sizeof(o));
	o.sock_state_cb = ares_sock_cb;
	o.sock_state_cb_data = lu;
	/* c-ares doubles the time-out on each round over the servers: t + 2t + 4t spends
	 * the whole budget on one server; our own deadline bounds it in any case. */
	o.timeout = (int)(lu->cfg->dns_timeout_ms / 7 > 0 ? lu->cfg->dns_timeout_ms / 7 : 1);
	o.tries = DNS_TRIES;
	/* Hand SERVFAIL/REFUSED replies to us: otherwise c-ares 1.18 retries them and, once
	 * out of tries, reports "connection refused", hiding what the server said. */
	o.flags = ARES_FLAG_NOCHECKRESP;
	if (lu->cfg->resolv_conf != NULL) {
		mask |= ARES_OPT_RESOLVCONF;
		/* Only read by c-ares, which wants it without const. */
		o.resolvconf_path = (char *)(uintptr_t)lu->cfg->resolv_conf;
		/* c-ares falls back to its defaults without a word: say it, since then
		 * there is no search list and short names cannot be completed. */
		if (access(lu->cfg->resolv_conf, R_OK) != 0) {
			discovery_logf(lu->cfg, DISCOVERY_LOG_WARN,
				       "cannot read %s (%s): no search list, default name servers",
				       lu->cfg->resolv_conf, strerror(errno));
		}
	}
	st = ares_init_options(&lu->channel, &o, mask);
	if (st != ARES_SUCCESS) {
		errtext_set(err, errlen, "DNS: could not set up the resolver%s%s: %s",
			    lu->cfg->resolv_conf != NULL ? " from " : "",
			    lu->cfg->resolv_conf != NULL ? lu->cfg->resolv_conf : "",
			    ares_strerror(st));
		return false;
	}
	lu->channel_ok = true;
	return setup_server(lu, err, errlen) && setup_names(lu, err, errlen);
}

void lookup_destroy(struct lookup *lu)
{
	loop_timer_set(lu->loop, &lu->retry, LOOP_NEVER);
	loop_timer_set(lu->loop, &lu->deadline, LOOP_NEVER);
	cache_clear(&lu->cache);
	if (lu->channel_ok) {
		ares_destroy(lu->channel);
		lu->channel_ok = false;
	}
	srv_answer_free(&lu->lk.ans);
	free(lu->lk.aq);
	lu->lk.aq = NULL;
	names_free(lu->names, lu->nnames);
	lu->names = NULL;
	lu->nnames = 0;
}
