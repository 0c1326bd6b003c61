/* SPDX-License-Identifier: MIT */
/*
 * The discovery loop thread: epoll over the sockets of c-ares and libcurl, one timerfd
 * for every deadline (curl's timer, c-ares' retransmissions, the lookup's total budget)
 * and an eventfd through which other threads hand in requests.
 *
 * Neither library is thread-safe per handle, so after discovery_create() the channel
 * and the multi handle are touched by the loop thread only. Callbacks of both libraries
 * run inside ares_process_fd()/curl_multi_socket_action() on that thread; they may
 * start new c-ares queries and add curl handles, but finished transfers are only reaped
 * from curl_multi_info_read(), never from inside a curl callback.
 */
#include "discovery/discovery.h"
#include "discovery/internal.h"

#include <arpa/inet.h>
#include <ares.h>
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_MS 1000000ull
#define NEVER UINT64_MAX
#define DNS_CLASS_IN 1
#define DNS_TYPE_SRV 33
#define DNS_TRIES 3
#define SHUTDOWN_TEXT "shutting down"

enum tag { TAG_WAKE = 1, TAG_TIMER, TAG_ARES, TAG_CURL };

enum result_kind { RES_NONE = 0, RES_PEERS, RES_EMPTY, RES_ERROR };

struct request {
	struct request *next;
	struct request *prev;
	discovery_done_fn done;
	void *ctx;
	struct fanout_line *lines;
	size_t nlines;
	size_t nleft;
};

struct xfer {
	struct discovery *d;
	struct request *req;
	size_t idx;
	CURL *easy;
	struct curl_slist *hdrs;
	char *buf;
	size_t len;
	size_t cap;
	bool too_large;
	char errbuf[CURL_ERROR_SIZE];
};

struct addr_ctx {
	struct discovery *d;
	size_t idx;
};

/* The one SRV lookup in flight; requests that need it wait in d->waiters. */
struct lookup {
	bool active;
	bool cancelling; /* deadline or shutdown: callbacks must not start new queries */
	bool timed_out;
	size_t cand; /* index into d->cands of the name being asked */
	uint64_t start;
	uint64_t deadline;
	struct srv_answer ans;
	struct addr_ctx *actx;
	size_t addr_pending;
};

struct discovery {
	char *service;
	char *hostname;
	char *resolv_conf;
	unsigned dns_timeout_ms;
	unsigned cache_ms;
	unsigned peer_port;
	unsigned peer_timeout_ms;
	unsigned peer_connect_timeout_ms;
	size_t peer_max_bytes;
	unsigned max_peers;
	unsigned max_pending;

	discovery_local_fn local;
	void *local_ctx;

	int epfd;
	int evfd;
	int tfd;
	ares_channel channel;
	bool channel_ok;
	CURLM *multi;
	uint64_t curl_due;

	char **cands; /* names to ask, in order (the search walk) */
	size_t ncands;

	/* Loop thread only. */
	struct lookup lk;
	struct request *waiters;
	struct request *waiters_tail;
	struct request *inflight; /* doubly linked: requests whose peers are being asked */
	bool loop_stopping;
	enum result_kind cache_kind;
	struct srv_answer cache_ans;
	uint64_t cache_expiry;

	/* Shared with submitting threads, under mu. */
	pthread_mutex_t mu;
	struct request *q_head;
	struct request *q_tail;
	unsigned pending;
	bool stopping;

	/* Serialises discovery_stop() callers so each returns only after the join. */
	pthread_mutex_t stop_mu;
	pthread_t thread;
	bool thread_started;
	bool joined;
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static bool global_ok;

/* curl_global_init() and ares_library_init() are process-wide and not thread-safe, so
 * they run once for the process and are never undone: another discovery object (or
 * another user of the libraries) may still need them. */
static void global_init(void)
{
	global_ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK &&
		    ares_library_init(ARES_LIB_INIT_ALL) == ARES_SUCCESS;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t tag_fd(enum tag t, int fd)
{
	return ((uint64_t)t << 32) | (uint32_t)fd;
}

/* Registers fd for events, whether or not it is registered already: libraries reuse
 * and close sockets, so a stale idea of "registered" must not lose events. */
static void watch_fd(struct discovery *d, enum tag t, int fd, uint32_t events)
{
	struct epoll_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.events = events;
	ev.data.u64 = tag_fd(t, fd);
	if (epoll_ctl(d->epfd, EPOLL_CTL_MOD, fd, &ev) == 0) {
		return;
	}
	if (errno == ENOENT) {
		/* Failure here leaves the socket unwatched; the owner's time-out then ends
		 * its query or transfer, so nothing waits forever. */
		(void)epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev);
	}
}

static void unwatch_fd(struct discovery *d, int fd)
{
	/* ENOENT/EBADF are fine: the fd may never have been added, or be closed. */
	(void)epoll_ctl(d->epfd, EPOLL_CTL_DEL, fd, NULL);
}

/* ---- requests ---------------------------------------------------------------- */

static void inflight_add(struct discovery *d, struct request *r)
{
	r->prev = NULL;
	r->next = d->inflight;
	if (d->inflight != NULL) {
		d->inflight->prev = r;
	}
	d->inflight = r;
}

static void inflight_del(struct discovery *d, struct request *r)
{
	if (r->prev != NULL) {
		r->prev->next = r->next;
	} else {
		d->inflight = r->next;
	}
	if (r->next != NULL) {
		r->next->prev = r->prev;
	}
	r->next = NULL;
	r->prev = NULL;
}

/* Hands body to the request's callback and frees the request. The slot is released
 * first so a callback that submits again is not refused for its own request. */
static void request_finish(struct discovery *d, struct request *r, char *body, size_t len)
{
	pthread_mutex_lock(&d->mu);
	d->pending--;
	pthread_mutex_unlock(&d->mu);
	r->done(r->ctx, body, body != NULL ? len : 0);
	fanout_lines_free(r->lines, r->nlines);
	free(r);
}

static void request_dns_error(struct discovery *d, struct request *r, const char *reason)
{
	size_t len = 0;
	char *body = fanout_render_dns_error(reason, &len);

	request_finish(d, r, body, len);
}

static void request_complete(struct discovery *d, struct request *r)
{
	size_t len = 0;
	char *body;

	inflight_del(d, r);
	body = fanout_render(r->lines, r->nlines, &len);
	request_finish(d, r, body, len);
}

/* ---- transfers --------------------------------------------------------------- */

static size_t xfer_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct xfer *x = userdata;
	size_t n = size * nmemb;
	size_t max = x->d->peer_max_bytes;

	if (n == 0) {
		return 0;
	}
	if (n > max - x->len) {
		/* Returning short aborts the transfer with CURLE_WRITE_ERROR. */
		x->too_large = true;
		return 0;
	}
	if (x->len + n > x->cap) {
		size_t cap = x->cap != 0 ? x->cap : 256;
		char *nb;

		while (cap < x->len + n) {
			cap = cap > max / 2 ? max : cap * 2;
		}
		nb = realloc(x->buf, cap);
		if (nb == NULL) {
			return 0;
		}
		x->buf = nb;
		x->cap = cap;
	}
	memcpy(x->buf + x->len, ptr, n);
	x->len += n;
	return n;
}

static void xfer_free(struct xfer *x)
{
	if (x == NULL) {
		return;
	}
	if (x->easy != NULL) {
		curl_easy_cleanup(x->easy);
	}
	curl_slist_free_all(x->hdrs);
	free(x->buf);
	free(x);
}

/* Detaches a transfer from curl and its line; the line's text is set by the caller. */
static void xfer_detach(struct discovery *d, struct xfer *x)
{
	curl_multi_remove_handle(d->multi, x->easy);
	x->req->lines[x->idx].xfer = NULL;
}

static bool xfer_start(struct discovery *d, struct request *r, size_t idx)
{
	struct fanout_line *l = &r->lines[idx];
	char ip[INET6_ADDRSTRLEN];
	char url[INET6_ADDRSTRLEN + 32];
	char host[sizeof(l->name) + 16];
	struct curl_slist *h;
	struct xfer *x;
	CURL *e;
	long connect_ms = d->peer_connect_timeout_ms;

	if (inet_ntop(l->family, l->addr, ip, sizeof(ip)) == NULL) {
		return false;
	}
	snprintf(url, sizeof(url),
		 l->family == AF_INET6 ? "http://[%s]:%u/data" : "http://%s:%u/data", ip,
		 (unsigned)l->port);
	/* The peer is reached by address (no second DNS lookup inside curl) but told
	 * its own name, as a client that had resolved it would. */
	snprintf(host, sizeof(host), "Host: %s:%u", l->name, (unsigned)l->port);

	x = calloc(1, sizeof(*x));
	if (x == NULL) {
		return false;
	}
	x->d = d;
	x->req = r;
	x->idx = idx;
	h = curl_slist_append(NULL, host);
	if (h == NULL) {
		goto fail;
	}
	x->hdrs = h;
	h = curl_slist_append(x->hdrs, "Accept: text/plain, */*");
	if (h == NULL) {
		goto fail;
	}
	x->hdrs = h;
	e = curl_easy_init();
	if (e == NULL) {
		goto fail;
	}
	x->easy = e;
	if (connect_ms == 0 || connect_ms > (long)d->peer_timeout_ms) {
		connect_ms = (long)d->peer_timeout_ms;
	}
	if (curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http") != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_PROXY, "") != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)d->peer_timeout_ms) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, connect_ms) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_USERAGENT, "kubia") != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, xfer_write) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_WRITEDATA, x) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_PRIVATE, x) != CURLE_OK) {
		goto fail;
	}
	if (d->peer_max_bytes > 0 && curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE,
						      (curl_off_t)d->peer_max_bytes) != CURLE_OK) {
		goto fail;
	}
	if (curl_multi_add_handle(d->multi, e) != CURLM_OK) {
		goto fail;
	}
	l->xfer = x;
	return true;

fail:
	xfer_free(x);
	return false;
}

static void xfer_done(struct discovery *d, CURL *e, CURLcode res)
{
	char *priv = NULL;
	struct xfer *x;
	struct request *r;
	struct fanout_line *l;
	long code = 0;

	if (curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv) != CURLE_OK || priv == NULL) {
		return;
	}
	x = (struct xfer *)(void *)priv;
	r = x->req;
	l = &r->lines[x->idx];
	xfer_detach(d, x);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
	if (res == CURLE_OK && code == 200) {
		if (x->buf == NULL) {
			fanout_line_set(l, "", 0);
		} else {
			/* Keep the peer's bytes as they are; the buffer becomes the line's. */
			free(l->data);
			l->data = x->buf;
			l->len = x->len;
			l->done = true;
			x->buf = NULL;
		}
	} else if (res == CURLE_OK) {
		fanout_line_error(l, "HTTP %ld", code);
	} else if (x->too_large || res == CURLE_FILESIZE_EXCEEDED) {
		fanout_line_error(l, "reply larger than %zu bytes", d->peer_max_bytes);
	} else if (x->errbuf[0] != '\0') {
		fanout_line_error(l, "%s", x->errbuf);
	} else {
		fanout_line_error(l, "%s", curl_easy_strerror(res));
	}
	xfer_free(x);
	if (--r->nleft == 0) {
		request_complete(d, r);
	}
}

static void check_multi(struct discovery *d)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(d->multi, &left)) != NULL) {
		if (m->msg == CURLMSG_DONE) {
			/* Copy out first: the message is invalid once the handle is removed. */
			CURL *e = m->easy_handle;
			CURLcode res = m->data.result;

			xfer_done(d, e, res);
		}
	}
}

static int curl_sock_cb(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct discovery *d = userp;
	uint32_t ev = 0;

	(void)e;
	(void)socketp;
	if (what == CURL_POLL_REMOVE) {
		unwatch_fd(d, s);
		return 0;
	}
	if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) {
		ev |= EPOLLIN;
	}
	if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) {
		ev |= EPOLLOUT;
	}
	watch_fd(d, TAG_CURL, s, ev);
	return 0;
}

static int curl_timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	struct discovery *d = userp;

	(void)m;
	/* Never act from inside the callback: the loop runs due timers on its next pass
	 * (the timerfd fires at once for a due time already past). */
	d->curl_due = timeout_ms < 0 ? NEVER : now_ns() + (uint64_t)timeout_ms * NS_PER_MS;
	return 0;
}

/* ---- cluster view for one request -------------------------------------------- */

static void serve(struct discovery *d, struct request *r, enum result_kind kind,
		  const struct srv_answer *ans, const char *reason)
{
	size_t len = 0;
	char *body;

	if (kind == RES_ERROR) {
		request_dns_error(d, r, reason != NULL ? reason : "unknown error");
		return;
	}
	if (kind == RES_PEERS &&
	    fanout_plan(ans, d->hostname, d->peer_port, &r->lines, &r->nlines) < 0) {
		request_finish(d, r, NULL, 0);
		return;
	}
	if (r->nlines == 0) {
		body = fanout_render(NULL, 0, &len);
		request_finish(d, r, body, len);
		return;
	}
	inflight_add(d, r);
	r->nleft = r->nlines;
	for (size_t i = 0; i < r->nlines; i++) {
		struct fanout_line *l = &r->lines[i];

		if (l->done) {
			r->nleft--;
		} else if (l->self) {
			char *data = NULL;
			size_t dlen = 0;

			if (!d->local(d->local_ctx, &data, &dlen)) {
				fanout_line_error(l, "out of memory");
			} else if (data == NULL) {
				fanout_line_set(l, "", 0);
			} else {
				l->data = data;
				l->len = dlen;
				l->done = true;
			}
			r->nleft--;
		} else if (d->loop_stopping) {
			fanout_line_error(l, SHUTDOWN_TEXT);
			r->nleft--;
		} else if (!xfer_start(d, r, i)) {
			fanout_line_error(l, "could not start the request (out of memory)");
			r->nleft--;
		}
	}
	/* Transfers finish only through check_multi(), never inside this function, so r
	 * is still ours here. */
	if (r->nleft == 0) {
		request_complete(d, r);
	}
}

/* ---- the SRV lookup ---------------------------------------------------------- */

static void lookup_start(struct discovery *d);

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
static void failure_text(struct discovery *d, int status, char *buf, size_t len)
{
	if (d->lk.timed_out) {
		snprintf(buf, len, "timed out after %u ms", d->dns_timeout_ms);
	} else if (d->lk.cancelling) {
		snprintf(buf, len, SHUTDOWN_TEXT);
	} else if (status == ARES_ETIMEOUT) {
		snprintf(buf, len, "timed out after %" PRIu64 " ms",
			 (uint64_t)((now_ns() - d->lk.start) / NS_PER_MS));
	} else {
		snprintf(buf, len, "%s", ares_text(status));
	}
}

/* Ends the lookup and answers every waiting request with its outcome. */
static void lookup_end(struct discovery *d, enum result_kind kind, const char *reason)
{
	struct request *w = d->waiters;
	struct srv_answer ans = d->lk.ans;
	bool cache = false;
	uint64_t now = now_ns();

	d->waiters = NULL;
	d->waiters_tail = NULL;
	free(d->lk.actx);
	memset(&d->lk, 0, sizeof(d->lk));

	if (d->cache_ms > 0 && (kind == RES_PEERS || kind == RES_EMPTY)) {
		uint64_t life = (uint64_t)d->cache_ms;

		if (kind == RES_PEERS) {
			for (size_t i = 0; i < ans.npeers; i++) {
				/* A target that did not resolve: ask again next time. */
				if (ans.peers[i].err[0] != '\0') {
					life = 0;
				}
			}
			if ((uint64_t)ans.ttl * 1000u < life) {
				life = (uint64_t)ans.ttl * 1000u;
			}
		}
		if (life > 0) {
			srv_answer_free(&d->cache_ans);
			d->cache_ans = ans;
			d->cache_kind = kind;
			d->cache_expiry = now + life * NS_PER_MS;
			cache = true;
		}
	}
	while (w != NULL) {
		struct request *next = w->next;

		w->next = NULL;
		serve(d, w, kind, &ans, reason);
		w = next;
	}
	if (!cache) {
		srv_answer_free(&ans);
	}
}

static void lookup_fail(struct discovery *d, int status)
{
	char text[SRV_ERR_MAX];
	char reason[SRV_NAME_MAX + SRV_ERR_MAX + 8];

	failure_text(d, status, text, sizeof(text));
	snprintf(reason, sizeof(reason), "%s: %s", d->cands[d->lk.cand], text);
	lookup_end(d, RES_ERROR, reason);
}

static void lookup_addresses_done(struct discovery *d)
{
	lookup_end(d, RES_PEERS, NULL);
}

static void addr_cb(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
	struct addr_ctx *c = arg;
	struct discovery *d = c->d;
	struct srv_peer *p = &d->lk.ans.peers[c->idx];
	const struct ares_addrinfo_node *n = NULL;

	(void)timeouts;
	if (status == ARES_SUCCESS && res != NULL) {
		/* c-ares 1.18 sorts the addresses (RFC 6724); the first is the one to use. */
		n = res->nodes;
	}
	if (n != NULL && n->ai_addr != NULL && n->ai_family == AF_INET &&
	    n->ai_addrlen >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *sin =
			(const struct sockaddr_in *)(const void *)n->ai_addr;

		p->family = AF_INET;
		memcpy(p->addr, &sin->sin_addr, 4);
	} else if (n != NULL && n->ai_addr != NULL && n->ai_family == AF_INET6 &&
		   n->ai_addrlen >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *sin6 =
			(const struct sockaddr_in6 *)(const void *)n->ai_addr;

		p->family = AF_INET6;
		memcpy(p->addr, &sin6->sin6_addr, 16);
	} else if (status == ARES_SUCCESS) {
		snprintf(p->err, sizeof(p->err), "no address records");
	} else {
		failure_text(d, status, p->err, sizeof(p->err));
	}
	if (p->family != 0 && n != NULL && n->ai_ttl >= 0 && (uint32_t)n->ai_ttl < d->lk.ans.ttl) {
		d->lk.ans.ttl = (uint32_t)n->ai_ttl;
	}
	if (res != NULL) {
		ares_freeaddrinfo(res);
	}
	if (--d->lk.addr_pending == 0) {
		lookup_addresses_done(d);
	}
}

/* Resolves the targets that the reply gave no address for (not this pod's own: it is
 * read locally). A callback may run before ares_getaddrinfo() returns, so one extra
 * count holds the lookup open until every query has been started. */
static void lookup_resolve(struct discovery *d)
{
	struct lookup *lk = &d->lk;
	struct ares_addrinfo_hints hints;
	size_t hostlen = d->hostname != NULL ? strcspn(d->hostname, ".") : 0;

	lk->actx = calloc(lk->ans.npeers, sizeof(*lk->actx));
	if (lk->actx == NULL) {
		lookup_fail(d, ARES_ENOMEM);
		return;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	lk->addr_pending = 1;
	for (size_t i = 0; i < lk->ans.npeers; i++) {
		struct srv_peer *p = &lk->ans.peers[i];
		char fqdn[SRV_NAME_MAX + 2];

		if (p->family != 0 || (hostlen > 0 && strcspn(p->name, ".") == hostlen &&
				       strncasecmp(p->name, d->hostname, hostlen) == 0)) {
			continue;
		}
		/* The trailing dot keeps c-ares from walking the search list for it. */
		snprintf(fqdn, sizeof(fqdn), "%s.", p->name);
		lk->actx[i].d = d;
		lk->actx[i].idx = i;
		lk->addr_pending++;
		ares_getaddrinfo(d->channel, fqdn, NULL, &hints, addr_cb, &lk->actx[i]);
	}
	if (--lk->addr_pending == 0) {
		lookup_addresses_done(d);
	}
}

static void lookup_query(struct discovery *d);

static void srv_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct discovery *d = arg;
	struct lookup *lk = &d->lk;
	char perr[SRV_ERR_MAX];
	char reason[SRV_NAME_MAX + SRV_ERR_MAX + 32];

	(void)timeouts;
	if (!lk->active) {
		return;
	}
	if (lk->cancelling) {
		lookup_fail(d, status);
		return;
	}
	if (status == ARES_SUCCESS) {
		if (abuf == NULL || alen < 0 ||
		    srv_parse(abuf, (size_t)alen, d->max_peers, &lk->ans, perr, sizeof(perr)) < 0) {
			snprintf(reason, sizeof(reason), "%s: malformed reply (%s)",
				 d->cands[lk->cand], abuf == NULL ? "empty" : perr);
			lookup_end(d, RES_ERROR, reason);
			return;
		}
		if (lk->ans.npeers > 0) {
			lookup_resolve(d);
			return;
		}
		/* Answers, but no usable SRV record: as good as NODATA. */
		status = ARES_ENODATA;
	}
	if (status == ARES_ENOTFOUND || status == ARES_ENODATA) {
		if (lk->cand + 1 < d->ncands) {
			lk->cand++;
			lookup_query(d);
			return;
		}
		lookup_end(d, RES_EMPTY, NULL);
		return;
	}
	lookup_fail(d, status);
}

static void lookup_query(struct discovery *d)
{
	/* Plain ares_query(), not ares_search(): c-ares 1.18's search goes on to the next
	 * domain after SERVFAIL, which would turn a failing server into "no peers". */
	ares_query(d->channel, d->cands[d->lk.cand], DNS_CLASS_IN, DNS_TYPE_SRV, srv_cb, d);
}

static void lookup_start(struct discovery *d)
{
	memset(&d->lk, 0, sizeof(d->lk));
	d->lk.active = true;
	d->lk.start = now_ns();
	d->lk.deadline = d->lk.start + (uint64_t)d->dns_timeout_ms * NS_PER_MS;
	d->lk.ans.ttl = UINT32_MAX;
	lookup_query(d);
}

/* Ends the lookup now (deadline or shutdown). ares_cancel() runs every outstanding
 * callback before it returns, and they start nothing new while cancelling is set. */
static void lookup_cancel(struct discovery *d, bool timed_out)
{
	if (!d->lk.active) {
		return;
	}
	d->lk.cancelling = true;
	d->lk.timed_out = timed_out;
	ares_cancel(d->channel);
	if (d->lk.active) {
		/* No query was outstanding (cannot happen); do not wait forever. */
		lookup_fail(d, ARES_ECANCELLED);
	}
}

/* ---- the loop ---------------------------------------------------------------- */

static void start_request(struct discovery *d, struct request *r)
{
	if (d->cache_kind != RES_NONE && now_ns() < d->cache_expiry) {
		serve(d, r, d->cache_kind, &d->cache_ans, NULL);
		return;
	}
	if (d->loop_stopping) {
		request_dns_error(d, r, SHUTDOWN_TEXT);
		return;
	}
	r->next = NULL;
	if (d->waiters_tail != NULL) {
		d->waiters_tail->next = r;
	} else {
		d->waiters = r;
	}
	d->waiters_tail = r;
	if (!d->lk.active) {
		lookup_start(d);
	}
}

/* Takes the submitted requests; returns whether the loop is asked to stop. */
static bool take_submissions(struct discovery *d)
{
	struct request *r;
	bool stop;
	uint64_t v;

	while (read(d->evfd, &v, sizeof(v)) < 0 && errno == EINTR) {
	}
	pthread_mutex_lock(&d->mu);
	r = d->q_head;
	d->q_head = NULL;
	d->q_tail = NULL;
	stop = d->stopping;
	pthread_mutex_unlock(&d->mu);
	if (stop) {
		d->loop_stopping = true;
	}
	while (r != NULL) {
		struct request *next = r->next;

		start_request(d, r);
		r = next;
	}
	return stop;
}

static void ares_sock_cb(void *data, ares_socket_t s, int readable, int writable)
{
	struct discovery *d = data;
	uint32_t ev = 0;

	if (!readable && !writable) {
		unwatch_fd(d, s);
		return;
	}
	if (readable) {
		ev |= EPOLLIN;
	}
	if (writable) {
		ev |= EPOLLOUT;
	}
	watch_fd(d, TAG_ARES, s, ev);
}

static uint64_t ares_due(struct discovery *d, uint64_t now)
{
	struct timeval tv;
	struct timeval *t = ares_timeout(d->channel, NULL, &tv);

	if (t == NULL) {
		return NEVER;
	}
	return now + (uint64_t)t->tv_sec * 1000000000ull + (uint64_t)t->tv_usec * 1000ull;
}

static void run_timers(struct discovery *d)
{
	uint64_t now = now_ns();

	if (d->curl_due != NEVER && now >= d->curl_due) {
		int running = 0;

		d->curl_due = NEVER;
		curl_multi_socket_action(d->multi, CURL_SOCKET_TIMEOUT, 0, &running);
		check_multi(d);
	}
	if (ares_due(d, now) <= now) {
		/* Without sockets ares_process_fd() handles only time-outs (retries). */
		ares_process_fd(d->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	}
	if (d->lk.active && now >= d->lk.deadline) {
		lookup_cancel(d, true);
	}
}

static void arm_timer(struct discovery *d)
{
	uint64_t now = now_ns();
	uint64_t due = ares_due(d, now);
	struct itimerspec its;

	if (d->curl_due < due) {
		due = d->curl_due;
	}
	if (d->lk.active && d->lk.deadline < due) {
		due = d->lk.deadline;
	}
	memset(&its, 0, sizeof(its));
	if (due != NEVER) {
		/* An absolute time in the past fires at once, but zero would disarm. */
		if (due == 0) {
			due = 1;
		}
		its.it_value.tv_sec = (time_t)(due / 1000000000ull);
		its.it_value.tv_nsec = (long)(due % 1000000000ull);
	}
	(void)timerfd_settime(d->tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static void handle_event(struct discovery *d, const struct epoll_event *ev, bool *stop)
{
	enum tag t = (enum tag)(ev->data.u64 >> 32);
	int fd = (int)(uint32_t)ev->data.u64;
	uint64_t v;

	switch (t) {
	case TAG_WAKE:
		if (take_submissions(d)) {
			*stop = true;
		}
		break;
	case TAG_TIMER:
		while (read(d->tfd, &v, sizeof(v)) < 0 && errno == EINTR) {
		}
		break;
	case TAG_ARES: {
		bool err = (ev->events & (EPOLLERR | EPOLLHUP)) != 0;
		ares_socket_t rfd = (ev->events & EPOLLIN) || err ? fd : ARES_SOCKET_BAD;
		ares_socket_t wfd = (ev->events & EPOLLOUT) ? fd : ARES_SOCKET_BAD;

		ares_process_fd(d->channel, rfd, wfd);
		break;
	}
	case TAG_CURL: {
		int flags = 0;
		int running = 0;

		if (ev->events & EPOLLIN) {
			flags |= CURL_CSELECT_IN;
		}
		if (ev->events & EPOLLOUT) {
			flags |= CURL_CSELECT_OUT;
		}
		if (ev->events & (EPOLLERR | EPOLLHUP)) {
			flags |= CURL_CSELECT_ERR;
		}
		curl_multi_socket_action(d->multi, fd, flags, &running);
		check_multi(d);
		break;
	}
	default:
		break;
	}
}

/* Answers everything still open, so that every done callback has run when the thread
 * ends: the lookup's waiters, late submissions, then the transfers in flight. */
static void shutdown_all(struct discovery *d)
{
	d->loop_stopping = true;
	pthread_mutex_lock(&d->mu);
	d->stopping = true;
	pthread_mutex_unlock(&d->mu);

	lookup_cancel(d, false);
	take_submissions(d);
	while (d->inflight != NULL) {
		struct request *r = d->inflight;

		for (size_t i = 0; i < r->nlines; i++) {
			struct xfer *x = r->lines[i].xfer;

			if (x == NULL) {
				continue;
			}
			xfer_detach(d, x);
			xfer_free(x);
			fanout_line_error(&r->lines[i], SHUTDOWN_TEXT);
			r->nleft--;
		}
		request_complete(d, r);
	}
}

static void *loop_main(void *arg)
{
	struct discovery *d = arg;
	struct epoll_event evs[32];
	bool stop = false;

	while (!stop) {
		int n;

		run_timers(d);
		arm_timer(d);
		n = epoll_wait(d->epfd, evs, (int)(sizeof(evs) / sizeof(evs[0])), -1);
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			/* Cannot wait any more: answer everyone and refuse new requests. */
			break;
		}
		for (int i = 0; i < n; i++) {
			handle_event(d, &evs[i], &stop);
		}
	}
	shutdown_all(d);
	return NULL;
}

/* ---- set-up ------------------------------------------------------------------ */

/* "host", "host:port", "[v6]:port", "[v6]" or a bare IPv6 address; IP literals only,
 * since c-ares needs addresses for its servers. */
static bool parse_dns_server(const char *s, struct ares_addr_port_node *node, char *err,
			     size_t errlen)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *port = NULL;
	size_t hl;

	memset(node, 0, sizeof(*node));
	if (s[0] == '[') {
		const char *end = strchr(s, ']');

		if (end == NULL) {
			goto bad;
		}
		hl = (size_t)(end - s - 1);
		if (end[1] == ':') {
			port = end + 2;
		} else if (end[1] != '\0') {
			goto bad;
		}
		s++;
	} else if (strchr(s, ':') != NULL && strchr(s, ':') == strrchr(s, ':')) {
		hl = (size_t)(strchr(s, ':') - s);
		port = strchr(s, ':') + 1;
	} else {
		hl = strlen(s);
	}
	if (hl == 0 || hl >= sizeof(host)) {
		goto bad;
	}
	memcpy(host, s, hl);
	host[hl] = '\0';
	if (inet_pton(AF_INET, host, &node->addr.addr4) == 1) {
		node->family = AF_INET;
	} else if (inet_pton(AF_INET6, host, &node->addr.addr6) == 1) {
		node->family = AF_INET6;
	} else {
		discovery_set_err(err, errlen,
				  "DNS server '%s': '%s' is not an IPv4 or IPv6 address", s, host);
		return false;
	}
	node->udp_port = 53;
	node->tcp_port = 53;
	if (port != NULL) {
		char *end = NULL;
		unsigned long v;

		errno = 0;
		v = strtoul(port, &end, 10);
		if (port[0] < '0' || port[0] > '9' || errno != 0 || end == NULL || *end != '\0' ||
		    v == 0 || v > 65535) {
			discovery_set_err(err, errlen, "DNS server '%s': port must be 1-65535", s);
			return false;
		}
		node->udp_port = (int)v;
		node->tcp_port = (int)v;
	}
	return true;

bad:
	discovery_set_err(err, errlen, "DNS server '%s': expected host[:port], [IPv6]:port or IPv6",
			  s);
	return false;
}

static bool add_cand(struct discovery *d, const char *base, const char *domain)
{
	size_t bl = strlen(base);
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
	if (domain != NULL) {
		s[bl] = '.';
		memcpy(s + bl + 1, domain, dl);
		s[bl + 1 + dl] = '\0';
	} else {
		s[bl] = '\0';
	}
	d->cands[d->ncands++] = s;
	return true;
}

/* The names to ask, in order: a name with a trailing dot as it is; a dotless name
 * through the search list (as it is when the list is empty); another name as given,
 * then through the search list. */
static bool build_cands(struct discovery *d, char *err, size_t errlen)
{
	struct ares_options o;
	int mask = 0;
	size_t sl = strlen(d->service);
	bool fqdn = sl > 0 && d->service[sl - 1] == '.';
	bool dotted = strchr(d->service, '.') != NULL;
	size_t nd = 0;
	bool ok = false;

	memset(&o, 0, sizeof(o));
	if (ares_save_options(d->channel, &o, &mask) != ARES_SUCCESS) {
		discovery_set_err(err, errlen, "DNS: could not read the resolver options");
		return false;
	}
	if (!fqdn && o.ndomains > 0 && o.domains != NULL) {
		nd = (size_t)o.ndomains;
	}
	d->cands = calloc(nd + 1, sizeof(*d->cands));
	if (d->cands == NULL) {
		goto out;
	}
	if (fqdn) {
		d->service[sl - 1] = '\0';
	}
	if (fqdn || dotted || nd == 0) {
		if (!add_cand(d, d->service, NULL)) {
			goto out;
		}
	}
	for (size_t i = 0; i < nd; i++) {
		if (o.domains[i] != NULL && !add_cand(d, d->service, o.domains[i])) {
			goto out;
		}
	}
	if (d->ncands == 0 && !add_cand(d, d->service, NULL)) {
		goto out;
	}
	ok = true;
out:
	ares_destroy_options(&o);
	if (!ok) {
		discovery_set_err(err, errlen, "DNS: out of memory");
	}
	return ok;
}

static bool setup_ares(struct discovery *d, const struct discovery_config *cfg, char *err,
		       size_t errlen)
{
	struct ares_options o;
	int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS;
	int st;

	memset(&o, 0, sizeof(o));
	o.sock_state_cb = ares_sock_cb;
	o.sock_state_cb_data = d;
	/* c-ares doubles the time-out on each round over the servers: t + 2t + 4t spends
	 * the whole budget on one server; our own deadline bounds it in any case. */
	o.timeout = (int)(d->dns_timeout_ms / 7 > 0 ? d->dns_timeout_ms / 7 : 1);
	o.tries = DNS_TRIES;
	/* Hand SERVFAIL/REFUSED replies to us: otherwise c-ares 1.18 retries them and, once
	 * out of tries, reports "connection refused", hiding what the server said. */
	o.flags = ARES_FLAG_NOCHECKRESP;
	if (d->resolv_conf != NULL) {
		mask |= ARES_OPT_RESOLVCONF;
		o.resolvconf_path = d->resolv_conf;
	}
	st = ares_init_options(&d->channel, &o, mask);
	if (st != ARES_SUCCESS) {
		discovery_set_err(err, errlen, "DNS: could not set up the resolver%s%s: %s",
				  d->resolv_conf != NULL ? " from " : "",
				  d->resolv_conf != NULL ? d->resolv_conf : "", ares_strerror(st));
		return false;
	}
	d->channel_ok = true;
	if (cfg->dns_server != NULL && cfg->dns_server[0] != '\0') {
		struct ares_addr_port_node node;

		if (!parse_dns_server(cfg->dns_server, &node, err, errlen)) {
			return false;
		}
		st = ares_set_servers_ports(d->channel, &node);
		if (st != ARES_SUCCESS) {
			discovery_set_err(err, errlen, "DNS server '%s': %s", cfg->dns_server,
					  ares_strerror(st));
			return false;
		}
	}
	return build_cands(d, err, errlen);
}

static bool setup_curl(struct discovery *d, char *err, size_t errlen)
{
	long maxconn = (long)d->max_peers * 2;

	if (maxconn < 8) {
		maxconn = 8;
	}
	d->multi = curl_multi_init();
	if (d->multi == NULL) {
		discovery_set_err(err, errlen, "HTTP client: could not create the multi handle");
		return false;
	}
	/* One multi handle for the whole life keeps idle keep-alive connections to the
	 * peers in its cache, so repeated cluster views reuse them. */
	if (curl_multi_setopt(d->multi, CURLMOPT_SOCKETFUNCTION, curl_sock_cb) != CURLM_OK ||
	    curl_multi_setopt(d->multi, CURLMOPT_SOCKETDATA, d) != CURLM_OK ||
	    curl_multi_setopt(d->multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb) != CURLM_OK ||
	    curl_multi_setopt(d->multi, CURLMOPT_TIMERDATA, d) != CURLM_OK ||
	    curl_multi_setopt(d->multi, CURLMOPT_MAXCONNECTS, maxconn) != CURLM_OK) {
		discovery_set_err(err, errlen, "HTTP client: could not configure the multi handle");
		return false;
	}
	return true;
}

static bool setup_fds(struct discovery *d, char *err, size_t errlen)
{
	struct epoll_event ev;

	d->epfd = epoll_create1(EPOLL_CLOEXEC);
	d->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	d->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (d->epfd < 0 || d->evfd < 0 || d->tfd < 0) {
		discovery_set_err(err, errlen, "discovery: could not create the event loop: %s",
				  strerror(errno));
		return false;
	}
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.u64 = tag_fd(TAG_WAKE, d->evfd);
	if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->evfd, &ev) < 0) {
		goto fail;
	}
	ev.data.u64 = tag_fd(TAG_TIMER, d->tfd);
	if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->tfd, &ev) < 0) {
		goto fail;
	}
	return true;
fail:
	discovery_set_err(err, errlen, "discovery: epoll: %s", strerror(errno));
	return false;
}

static char *dup_or_null(const char *s, bool *ok)
{
	char *c;

	if (s == NULL) {
		return NULL;
	}
	c = strdup(s);
	if (c == NULL) {
		*ok = false;
	}
	return c;
}

static bool check_config(const struct discovery_config *cfg, char *err, size_t errlen)
{
	if (cfg->service == NULL || cfg->service[0] == '\0' || strcmp(cfg->service, ".") == 0) {
		discovery_set_err(err, errlen, "service name is empty");
		return false;
	}
	if (strlen(cfg->service) > 253) {
		discovery_set_err(err, errlen,
				  "service name '%.40s...' is longer than 253 characters",
				  cfg->service);
		return false;
	}
	if (cfg->dns_timeout_ms == 0) {
		discovery_set_err(err, errlen, "DNS time-out must be at least 1 ms");
		return false;
	}
	if (cfg->peer_timeout_ms == 0) {
		discovery_set_err(err, errlen, "peer time-out must be at least 1 ms");
		return false;
	}
	if (cfg->peer_port > 65535) {
		discovery_set_err(err, errlen, "peer port %u is not in 0-65535", cfg->peer_port);
		return false;
	}
	if (cfg->max_peers == 0 || cfg->max_pending == 0) {
		discovery_set_err(err, errlen,
				  "max peers and max pending requests must be at least 1");
		return false;
	}
	return true;
}

struct discovery *discovery_create(const struct discovery_config *cfg, discovery_local_fn local,
				   void *local_ctx, char *err, size_t errlen)
{
	struct discovery *d;
	bool ok = true;
	int rc;

	if (cfg == NULL || local == NULL) {
		discovery_set_err(err, errlen, "discovery: no configuration");
		return NULL;
	}
	if (!check_config(cfg, err, errlen)) {
		return NULL;
	}
	pthread_once(&global_once, global_init);
	if (!global_ok) {
		discovery_set_err(err, errlen, "discovery: could not initialise libcurl or c-ares");
		return NULL;
	}
	d = calloc(1, sizeof(*d));
	if (d == NULL) {
		discovery_set_err(err, errlen, "discovery: out of memory");
		return NULL;
	}
	d->epfd = -1;
	d->evfd = -1;
	d->tfd = -1;
	d->curl_due = NEVER;
	if (pthread_mutex_init(&d->mu, NULL) != 0) {
		free(d);
		discovery_set_err(err, errlen, "discovery: could not create a mutex");
		return NULL;
	}
	if (pthread_mutex_init(&d->stop_mu, NULL) != 0) {
		pthread_mutex_destroy(&d->mu);
		free(d);
		discovery_set_err(err, errlen, "discovery: could not create a mutex");
		return NULL;
	}
	/* Nothing to stop yet: destroy must not try to join a thread. */
	d->joined = true;
	d->stopping = true;

	d->service = dup_or_null(cfg->service, &ok);
	d->hostname = dup_or_null(cfg->hostname, &ok);
	d->resolv_conf = dup_or_null(cfg->resolv_conf, &ok);
	if (!ok) {
		discovery_set_err(err, errlen, "discovery: out of memory");
		goto fail;
	}
	d->dns_timeout_ms = cfg->dns_timeout_ms;
	d->cache_ms = cfg->cache_ms;
	d->peer_port = cfg->peer_port;
	d->peer_timeout_ms = cfg->peer_timeout_ms;
	d->peer_connect_timeout_ms = cfg->peer_connect_timeout_ms;
	d->peer_max_bytes = cfg->peer_max_bytes;
	d->max_peers = cfg->max_peers;
	d->max_pending = cfg->max_pending;
	d->local = local;
	d->local_ctx = local_ctx;

	if (!setup_fds(d, err, errlen) || !setup_ares(d, cfg, err, errlen) ||
	    !setup_curl(d, err, errlen)) {
		goto fail;
	}
	d->stopping = false;
	d->joined = false;
	rc = pthread_create(&d->thread, NULL, loop_main, d);
	if (rc != 0) {
		d->stopping = true;
		d->joined = true;
		discovery_set_err(err, errlen, "discovery: could not start the loop thread: %s",
				  strerror(rc));
		goto fail;
	}
	d->thread_started = true;
	return d;

fail:
	discovery_destroy(d);
	return NULL;
}

bool discovery_request(struct discovery *d, discovery_done_fn done, void *ctx)
{
	struct request *r;
	uint64_t one = 1;
	bool ok = false;

	if (d == NULL || done == NULL) {
		return false;
	}
	r = calloc(1, sizeof(*r));
	if (r == NULL) {
		return false;
	}
	r->done = done;
	r->ctx = ctx;
	pthread_mutex_lock(&d->mu);
	if (!d->stopping && d->pending < d->max_pending) {
		if (d->q_tail != NULL) {
			d->q_tail->next = r;
		} else {
			d->q_head = r;
		}
		d->q_tail = r;
		d->pending++;
		ok = true;
	}
	pthread_mutex_unlock(&d->mu);
	if (!ok) {
		free(r);
		return false;
	}
	/* EAGAIN would mean the counter is saturated: the loop is awake anyway. */
	while (write(d->evfd, &one, sizeof(one)) < 0 && errno == EINTR) {
	}
	return true;
}

void discovery_stop(struct discovery *d)
{
	uint64_t one = 1;

	if (d == NULL) {
		return;
	}
	pthread_mutex_lock(&d->stop_mu);
	if (!d->joined) {
		pthread_mutex_lock(&d->mu);
		d->stopping = true;
		pthread_mutex_unlock(&d->mu);
		while (write(d->evfd, &one, sizeof(one)) < 0 && errno == EINTR) {
		}
		pthread_join(d->thread, NULL);
		d->joined = true;
	}
	pthread_mutex_unlock(&d->stop_mu);
}

void discovery_destroy(struct discovery *d)
{
	if (d == NULL) {
		return;
	}
	discovery_stop(d);
	/* The libraries may tell their socket callbacks about closing sockets, so the
	 * epoll fd outlives them. */
	if (d->multi != NULL) {
		curl_multi_cleanup(d->multi);
	}
	if (d->channel_ok) {
		ares_destroy(d->channel);
	}
	srv_answer_free(&d->cache_ans);
	srv_answer_free(&d->lk.ans);
	free(d->lk.actx);
	for (size_t i = 0; i < d->ncands; i++) {
		free(d->cands[i]);
	}
	free(d->cands);
	if (d->epfd >= 0) {
		close(d->epfd);
	}
	if (d->evfd >= 0) {
		close(d->evfd);
	}
	if (d->tfd >= 0) {
		close(d->tfd);
	}
	free(d->service);
	free(d->hostname);
	free(d->resolv_conf);
	pthread_mutex_destroy(&d->stop_mu);
	pthread_mutex_destroy(&d->mu);
	free(d);
}
