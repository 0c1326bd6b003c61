/* SPDX-License-Identifier: MIT */
/*
 * Asking the peers: one libcurl easy handle per transfer, all on one multi handle driven
 * by the loop (curl's multi-socket API: its sockets and its timer are registered with
 * the loop). The multi handle lives as long as the loop, so idle keep-alive connections
 * to the peers are reused across transfers; so are the easy handles of finished
 * transfers, set up once (a new handle and its options per transfer were a sixth of the
 * instructions of a 30-pod view). A finished transfer becomes one answer, the body or
 * the reason it failed, handed to the callback transfer_start() was given.
 *
 * Finished transfers are reaped from curl_multi_info_read() only, never inside a curl
 * callback: a view may complete (and its done callback run) only where the loop expects
 * it.
 */
#include "discovery/internal.h"

#include "common/budget.h"
#include "common/metrics.h"
#include "common/monotonic.h"
#include "common/timeout.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

/* How soon curl's timer is tried again after curl failed to act on it. */
#define TIMER_RETRY_MS 10

struct xfer {
	struct transfers *tr;
	transfer_done_fn on_done;
	void *arg;
	const struct peer_key *key; /* the caller's, alive while the transfer runs */
	struct xfer *next; /* tr->xfers */
	struct xfer *prev;
	CURL *easy;
	struct curl_slist *hdrs;
	char *buf;
	size_t len;
	size_t cap;
	size_t charged; /* of the memory budget, for buf */
	bool too_large;
	bool over_budget;
	char errbuf[CURL_ERROR_SIZE];
};

static size_t xfer_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct xfer *x = userdata;
	size_t n = size * nmemb;
	size_t max = x->tr->cfg->peer_max_bytes;

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
		/* Charged before it is taken; returning short ends the transfer. */
		if (!budget_charge(x->tr->cfg->budget, cap - x->cap)) {
			x->over_budget = true;
			return 0;
		}
		nb = realloc(x->buf, cap);
		if (nb == NULL) {
			budget_credit(x->tr->cfg->budget, cap - x->cap);
			return 0;
		}
		x->charged += cap - x->cap;
		x->buf = nb;
		x->cap = cap;
	}
	memcpy(x->buf + x->len, ptr, n);
	x->len += n;
	return n;
}

/* Keeps a finished transfer's easy handle for the next transfer, or frees it. */
static void easy_put(struct transfers *tr, CURL *e)
{
	/* Nothing of the finished transfer may be reached through the kept handle. */
	if (tr->nidle < tr->idle_max && curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL) == CURLE_OK &&
	    curl_easy_setopt(e, CURLOPT_WRITEDATA, NULL) == CURLE_OK &&
	    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, NULL) == CURLE_OK &&
	    curl_easy_setopt(e, CURLOPT_PRIVATE, NULL) == CURLE_OK) {
		tr->idle[tr->nidle++] = e;
	} else {
		curl_easy_cleanup(e);
	}
}

static void xfer_free(struct xfer *x)
{
	if (x == NULL) {
		return;
	}
	if (x->easy != NULL) {
		easy_put(x->tr, x->easy);
	}
	curl_slist_free_all(x->hdrs);
	free(x->buf);
	budget_credit(x->tr->cfg->budget, x->charged);
	free(x);
}

/* Detaches a transfer from curl and from the list of transfers. */
static void xfer_detach(struct transfers *tr, struct xfer *x)
{
	CURLMcode rc = curl_multi_remove_handle(tr->multi, x->easy);

	if (rc != CURLM_OK) {
		discovery_logf(tr->cfg, DISCOVERY_LOG_WARN, "peer %s: curl_multi_remove_handle: %s",
			       x->key->name, curl_multi_strerror(rc));
	}
	if (x->prev != NULL) {
		x->prev->next = x->next;
	} else {
		tr->xfers = x->next;
	}
	if (x->next != NULL) {
		x->next->prev = x->prev;
	}
	x->next = NULL;
	x->prev = NULL;
}

static bool xfer_headers(struct xfer *x, const struct peer_key *k)
{
	char host[sizeof(k->name) + 16];
	struct curl_slist *h;

	/* The peer is reached by address (no second DNS lookup inside curl) but told its
	 * own name, as a client that had resolved it would. */
	snprintf(host, sizeof(host), "Host: %s:%u", k->name, (unsigned)k->port);
	h = curl_slist_append(NULL, host);
	if (h == NULL) {
		return false;
	}
	x->hdrs = h;
	h = curl_slist_append(x->hdrs, "Accept: text/plain, */*");
	if (h == NULL) {
		return false;
	}
	x->hdrs = h;
	return true;
}

/* The options every transfer has, set once on a new easy handle. */
static bool easy_constant_options(const struct discovery_config *c, CURL *e)
{
	long connect_ms = (long)timeout_connect_ms(c->peer_connect_timeout_ms, c->peer_timeout_ms);

	if (curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http") != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_PROXY, "") != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)c->peer_timeout_ms) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, connect_ms) != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_USERAGENT, "kubia") != CURLE_OK ||
	    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, xfer_write) != CURLE_OK) {
		return false;
	}
	return c->peer_max_bytes == 0 ||
	       curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->peer_max_bytes) ==
		       CURLE_OK;
}

/* An easy handle with the constant options: a kept one, else a new one. NULL when memory
 * ran out. */
static CURL *easy_get(struct transfers *tr)
{
	CURL *e;

	if (tr->nidle > 0) {
		return tr->idle[--tr->nidle];
	}
	e = curl_easy_init();
	if (e != NULL && !easy_constant_options(tr->cfg, e)) {
		curl_easy_cleanup(e);
		return NULL;
	}
	return e;
}

/* The options of this transfer; a kept handle still points at the previous one's. */
static bool xfer_options(struct xfer *x, const char *url)
{
	CURL *e = x->easy;

	return curl_easy_setopt(e, CURLOPT_URL, url) == CURLE_OK &&
	       curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs) == CURLE_OK &&
	       curl_easy_setopt(e, CURLOPT_WRITEDATA, x) == CURLE_OK &&
	       curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf) == CURLE_OK &&
	       curl_easy_setopt(e, CURLOPT_PRIVATE, x) == CURLE_OK;
}

struct xfer *transfer_start(struct transfers *tr, const struct peer_key *k,
			    transfer_done_fn on_done, void *arg)
{
	char ip[INET6_ADDRSTRLEN];
	char url[INET6_ADDRSTRLEN + 32];
	struct xfer *x;
	CURLMcode rc;

	if (inet_ntop(k->family, k->addr, ip, sizeof(ip)) == NULL) {
		return NULL;
	}
	snprintf(url, sizeof(url),
		 k->family == AF_INET6 ? "http://[%s]:%u/data" : "http://%s:%u/data", ip,
		 (unsigned)k->port);
	x = calloc(1, sizeof(*x));
	if (x == NULL) {
		return NULL;
	}
	x->tr = tr;
	x->on_done = on_done;
	x->arg = arg;
	x->key = k;
	x->easy = easy_get(tr);
	if (x->easy == NULL || !xfer_headers(x, k) || !xfer_options(x, url)) {
		goto fail;
	}
	rc = curl_multi_add_handle(tr->multi, x->easy);
	if (rc != CURLM_OK) {
		discovery_logf(tr->cfg, DISCOVERY_LOG_ERROR, "peer %s: curl_multi_add_handle: %s",
			       k->name, curl_multi_strerror(rc));
		goto fail;
	}
	x->next = tr->xfers;
	if (tr->xfers != NULL) {
		tr->xfers->prev = x;
	}
	tr->xfers = x;
	return x;

fail:
	xfer_free(x);
	return NULL;
}

void transfer_abort(struct transfers *tr, struct xfer *x)
{
	xfer_detach(tr, x);
	xfer_free(x);
}

/* The transfer that owns easy handle e. Normally its private pointer; should curl not
 * give that back, the running transfers are searched, so that no view is left waiting
 * (and its client's connection suspended) for a transfer nobody will finish. */
static struct xfer *xfer_of(struct transfers *tr, CURL *e)
{
	char *priv = NULL;

	if (curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv) == CURLE_OK && priv != NULL) {
		return (struct xfer *)(void *)priv;
	}
	discovery_logf(tr->cfg, DISCOVERY_LOG_WARN,
		       "a finished transfer has no private pointer; searching");
	for (struct xfer *x = tr->xfers; x != NULL; x = x->next) {
		if (x->easy == e) {
			return x;
		}
	}
	return NULL;
}

/*
 * Why a transfer failed, in words of kubia's own that stay the same from one view to the
 * next: curl's messages carry the milliseconds and bytes of each try ("Failed to connect
 * to ... after 2 ms"), so the same fault would read differently every time.
 */
static struct render_answer *peer_failure(struct transfers *tr, struct xfer *x, CURLcode res)
{
	curl_off_t connected = 0;
	long os_errno = 0;
	unsigned connect_ms =
		timeout_connect_ms(tr->cfg->peer_connect_timeout_ms, tr->cfg->peer_timeout_ms);

	(void)curl_easy_getinfo(x->easy, CURLINFO_CONNECT_TIME_T, &connected);
	(void)curl_easy_getinfo(x->easy, CURLINFO_OS_ERRNO, &os_errno);
	switch (res) {
	case CURLE_COULDNT_CONNECT:
		return render_answer_error("could not connect: %s",
					   os_errno != 0 ? strerror((int)os_errno)
							 : "no address answered");
	case CURLE_OPERATION_TIMEDOUT:
		if (connected == 0) {
			return render_answer_error("connect timed out after %u ms", connect_ms);
		}
		return render_answer_error("timed out after %u ms without a complete answer",
					   tr->cfg->peer_timeout_ms);
	case CURLE_GOT_NOTHING:
		return render_answer_error("closed the connection without answering");
	case CURLE_PARTIAL_FILE:
		return render_answer_error("closed the connection in the middle of its answer");
	case CURLE_RECV_ERROR:
		return render_answer_error("the connection broke while reading its answer");
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_UNSUPPORTED_PROTOCOL:
		return render_answer_error("its answer is not HTTP");
	default:
		break;
	}
	if (x->errbuf[0] != '\0') {
		return render_answer_error("%s", x->errbuf);
	}
	return render_answer_error("%s", curl_easy_strerror(res));
}

/* The answer of a finished transfer: the peer's bytes as they are, or the reason it
 * failed. NULL when memory ran out. */
static struct render_answer *xfer_answer(struct transfers *tr, struct xfer *x, CURLcode res)
{
	long code = 0;

	if (res == CURLE_OK &&
	    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code) != CURLE_OK) {
		code = 0;
	}
	if (res == CURLE_OK && code == 200) {
		struct render_answer *a;

		if (x->buf == NULL) {
			return render_answer_copy("", 0);
		}
		/* The buffer becomes the answer's, with its charge: no copy. */
		a = render_answer_take(x->buf, x->len);
		x->buf = NULL;
		if (a != NULL) {
			a->budget = tr->cfg->budget;
			a->charged = x->charged;
		} else {
			budget_credit(tr->cfg->budget, x->charged);
		}
		x->charged = 0;
		return a;
	}
	if (res == CURLE_OK) {
		return render_answer_error("HTTP %ld", code);
	}
	if (x->over_budget) {
		return render_answer_error("not enough memory for its reply now (the memory "
					   "budget is in use); try again");
	}
	if (x->too_large || res == CURLE_FILESIZE_EXCEEDED) {
		return render_answer_error("reply larger than %zu bytes", tr->cfg->peer_max_bytes);
	}
	return peer_failure(tr, x, res);
}

/* What a finished transfer counts as (common/metrics.h). */
static enum metrics_fetch_result xfer_result(const struct xfer *x, CURLcode res, long code)
{
	if (res == CURLE_OK) {
		return code == 200 ? METRICS_FETCH_OK : METRICS_FETCH_HTTP_ERROR;
	}
	if (x->over_budget) {
		return METRICS_FETCH_OVER_BUDGET;
	}
	if (x->too_large || res == CURLE_FILESIZE_EXCEEDED) {
		return METRICS_FETCH_TOO_LARGE;
	}
	switch (res) {
	case CURLE_OPERATION_TIMEDOUT:
		return METRICS_FETCH_TIMEOUT;
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
		return METRICS_FETCH_CONNECT_ERROR;
	default:
		return METRICS_FETCH_ERROR;
	}
}

static void xfer_count(const struct xfer *x, CURLcode res)
{
	long code = 0;
	curl_off_t us = 0;

	if (res == CURLE_OK &&
	    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code) != CURLE_OK) {
		code = 0;
	}
	if (curl_easy_getinfo(x->easy, CURLINFO_TOTAL_TIME_T, &us) != CURLE_OK || us < 0) {
		us = 0;
	}
	metrics_peer_fetch(xfer_result(x, res, code), (uint64_t)us * 1000U);
}

static void xfer_done(struct transfers *tr, CURL *e, CURLcode res)
{
	struct xfer *x = xfer_of(tr, e);
	struct render_answer *a;
	transfer_done_fn on_done;
	void *arg;

	if (x == NULL) {
		/* Not one of ours: take it off the multi handle so it cannot come back. */
		discovery_logf(tr->cfg, DISCOVERY_LOG_ERROR,
			       "a finished transfer is not one of ours");
		(void)curl_multi_remove_handle(tr->multi, e);
		return;
	}
	on_done = x->on_done;
	arg = x->arg;
	xfer_detach(tr, x);
	if (METRICS_ENABLED) {
		xfer_count(x, res);
	}
	a = xfer_answer(tr, x, res);
	xfer_free(x);
	on_done(arg, a);
}

static void check_multi(struct transfers *tr)
{
	CURLMsg *m;
	int left;

	while ((m = curl_multi_info_read(tr->multi, &left)) != NULL) {
		if (m->msg == CURLMSG_DONE) {
			/* Copy out first: the message is invalid once the handle is removed. */
			CURL *e = m->easy_handle;
			CURLcode res = m->data.result;

			xfer_done(tr, e, res);
		}
	}
}

/* Lets curl act on fd (or on its timers) and reaps what finished. A failure is logged
 * and returned; the caller makes sure curl is asked again. */
static bool socket_action(struct transfers *tr, curl_socket_t fd, int flags)
{
	int running = 0;
	CURLMcode rc = curl_multi_socket_action(tr->multi, fd, flags, &running);

	if (rc != CURLM_OK) {
		discovery_logf(tr->cfg, DISCOVERY_LOG_ERROR, "curl_multi_socket_action: %s",
			       curl_multi_strerror(rc));
	}
	check_multi(tr);
	return rc == CURLM_OK;
}

static void transfer_on_event(void *arg, int fd, uint32_t events)
{
	struct transfers *tr = arg;
	int flags = 0;

	if (events & EPOLLIN) {
		flags |= CURL_CSELECT_IN;
	}
	if (events & EPOLLOUT) {
		flags |= CURL_CSELECT_OUT;
	}
	if (events & (EPOLLERR | EPOLLHUP)) {
		flags |= CURL_CSELECT_ERR;
	}
	/* On failure the level-triggered event comes back on the next pass. */
	(void)socket_action(tr, fd, flags);
}

static void transfer_on_timer(void *arg)
{
	struct transfers *tr = arg;

	if (!socket_action(tr, CURL_SOCKET_TIMEOUT, 0) && !tr->timer.armed) {
		/* curl thinks its timer was served and would not ask again: without a
		 * retry, its transfers (and their own time-outs) would stall. */
		loop_timer_set(tr->loop, &tr->timer, monotonic_ns() + TIMER_RETRY_MS * NS_PER_MS);
	}
}

static int curl_sock_cb(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct transfers *tr = userp;
	uint32_t ev = 0;

	(void)e;
	(void)socketp;
	if (what == CURL_POLL_REMOVE) {
		loop_unwatch(tr->loop, s);
		return 0;
	}
	if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) {
		ev |= EPOLLIN;
	}
	if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) {
		ev |= EPOLLOUT;
	}
	/* A socket left unwatched is ended by its transfer's time-out: nothing waits forever. */
	if (!loop_watch(tr->loop, s, ev, transfer_on_event, tr)) {
		discovery_logf(tr->cfg, DISCOVERY_LOG_ERROR, "epoll_ctl on fd %d: %s", s,
			       strerror(errno));
	}
	return 0;
}

static int curl_timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	struct transfers *tr = userp;

	(void)m;
	/* Never act from inside the callback: the loop runs due timers on its next pass. */
	loop_timer_set(tr->loop, &tr->timer,
		       timeout_ms < 0 ? LOOP_NEVER
				      : monotonic_ns() + (uint64_t)timeout_ms * NS_PER_MS);
	return 0;
}

bool transfer_init(struct transfers *tr, const struct discovery_config *cfg, struct loop *loop,
		   char *err, size_t errlen)
{
	long cap = (long)cfg->peer_max_connections;
	/* Room to keep every peer's connections alive between fetches, within reason. */
	long maxconn = (long)cfg->max_peers * cap;
	size_t idle_max;

	if (maxconn < 8) {
		maxconn = 8;
	}
	if (maxconn > 4096) {
		maxconn = 4096;
	}
	memset(tr, 0, sizeof(*tr));
	tr->cfg = cfg;
	tr->loop = loop;
	loop_timer_init(&tr->timer, transfer_on_timer, tr);
	/* One kept handle per peer a view may list: a view's fetches find theirs set up,
	 * and a burst past that (several views' fetches at once) frees its extra ones. */
	idle_max = cfg->max_peers > 8 ? cfg->max_peers : 8;
	tr->idle = calloc(idle_max, sizeof(*tr->idle));
	tr->idle_max = tr->idle != NULL ? idle_max : 0;
	tr->multi = curl_multi_init();
	if (tr->multi == NULL) {
		errtext_set(err, errlen, "HTTP client: could not create the multi handle");
		return false;
	}
	/* fetch.c keeps the cap per peer itself (it must know what has started). curl's own
	 * limit, per address and port, is a second guard that acts only should two peer
	 * names share both; a transfer it holds back waits with its time-outs running. */
	if (curl_multi_setopt(tr->multi, CURLMOPT_SOCKETFUNCTION, curl_sock_cb) != CURLM_OK ||
	    curl_multi_setopt(tr->multi, CURLMOPT_SOCKETDATA, tr) != CURLM_OK ||
	    curl_multi_setopt(tr->multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb) != CURLM_OK ||
	    curl_multi_setopt(tr->multi, CURLMOPT_TIMERDATA, tr) != CURLM_OK ||
	    curl_multi_setopt(tr->multi, CURLMOPT_MAXCONNECTS, maxconn) != CURLM_OK ||
	    curl_multi_setopt(tr->multi, CURLMOPT_MAX_HOST_CONNECTIONS, cap) != CURLM_OK) {
		errtext_set(err, errlen, "HTTP client: could not configure the multi handle");
		return false;
	}
	return true;
}

void transfer_destroy(struct transfers *tr)
{
	loop_timer_set(tr->loop, &tr->timer, LOOP_NEVER);
	while (tr->nidle > 0) {
		curl_easy_cleanup(tr->idle[--tr->nidle]);
	}
	free(tr->idle);
	tr->idle = NULL;
	if (tr->multi != NULL) {
		curl_multi_cleanup(tr->multi);
		tr->multi = NULL;
	}
}
