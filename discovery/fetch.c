/* SPDX-License-Identifier: MIT */
/*
 * The per-peer fetch table, on the loop thread: for every peer (address, port and name)
 * the GET /data requests running or waiting to start, and the lines of the views that
 * wait for each of them. One fetch answers every line waiting for it, with one shared
 * answer (render.c), so concurrent views cost one request per peer instead of one each.
 *
 * Which fetch may serve a view: a view shows, for each pod, data at least as new as
 * every POST that pod had acknowledged when the view arrived (discovery_request()). A
 * fetch that started before the view arrived may have reached the peer before such a
 * POST was acknowledged, so it never serves the view. One that starts at or after the
 * arrival may: its request leaves after the arrival. Its start is taken before the
 * request is handed to curl, so the recorded time is never later than the real one.
 * Answers are not kept once their fetch has ended.
 *
 * The cap: at most peer_max_connections fetches of one peer run at once. A fetch that
 * would go past it waits, unstarted, as the peer's one queued fetch; every view that
 * needs the peer meanwhile joins it (it will start after they arrived). Under load that
 * is where views coalesce. Each connection carries one request at a time and curl
 * reuses an idle connection to the peer before it opens one, so the peer never sees
 * more connections from this pod than the cap.
 */
#include "discovery/internal.h"

#include "common/monotonic.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* The text of a line whose fetch could not be handed to curl. */
#define START_FAILED "could not start the request (out of memory)"

struct fetch {
	struct fetches *ft;
	struct fetch_peer *peer;
	struct fetch *next; /* the peer's running fetches, in the order they started */
	uint64_t start_ns; /* valid while running */
	struct xfer *xfer; /* while running; NULL while queued */
	struct render_line *head; /* the lines waiting for it, linked by wait_next */
	struct render_line *tail;
};

struct fetch_peer {
	struct fetch_peer *next; /* in its bucket */
	struct peer_key key;
	unsigned running;
	struct fetch *first; /* running, oldest start first */
	struct fetch *last;
	struct fetch *queued; /* not started; only while running is at the cap */
};

static size_t addr_len(int family)
{
	return family == AF_INET6 ? 16 : 4;
}

/* FNV-1a over the name (without regard to case, as DNS compares names), the port and
 * the address. */
static size_t key_bucket(const struct peer_key *k)
{
	uint64_t h = 1469598103934665603ull;
	size_t alen = addr_len(k->family);

	for (const char *p = k->name; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		h = (h ^ (c >= 'A' && c <= 'Z' ? c + 32u : c)) * 1099511628211ull;
	}
	h = (h ^ k->port) * 1099511628211ull;
	for (size_t i = 0; i < alen; i++) {
		h = (h ^ k->addr[i]) * 1099511628211ull;
	}
	return (size_t)(h % FETCH_BUCKETS);
}

static bool key_equal(const struct peer_key *a, const struct peer_key *b)
{
	return a->family == b->family && a->port == b->port &&
	       memcmp(a->addr, b->addr, addr_len(a->family)) == 0 &&
	       strcasecmp(a->name, b->name) == 0;
}

static void key_of(const struct render_line *l, struct peer_key *k)
{
	memset(k, 0, sizeof(*k));
	memcpy(k->name, l->name, sizeof(k->name));
	k->name[sizeof(k->name) - 1] = '\0';
	k->family = l->family;
	memcpy(k->addr, l->addr, addr_len(l->family));
	k->port = l->port;
}

/* The table's entry for k, created when there is none; NULL when memory ran out. */
static struct fetch_peer *peer_get(struct fetches *ft, const struct peer_key *k)
{
	size_t b = key_bucket(k);
	struct fetch_peer *p;

	for (p = ft->peers[b]; p != NULL; p = p->next) {
		if (key_equal(&p->key, k)) {
			return p;
		}
	}
	p = calloc(1, sizeof(*p));
	if (p == NULL) {
		return NULL;
	}
	p->key = *k;
	p->next = ft->peers[b];
	ft->peers[b] = p;
	return p;
}

/* Frees p's entry once nothing runs or waits for the peer: answers are never kept. */
static void peer_put(struct fetches *ft, struct fetch_peer *p)
{
	if (p->running > 0 || p->queued != NULL) {
		return;
	}
	for (struct fetch_peer **pp = &ft->peers[key_bucket(&p->key)]; *pp != NULL;
	     pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			free(p);
			return;
		}
	}
}

static void running_del(struct fetch_peer *p, struct fetch *f)
{
	struct fetch *prev = NULL;

	for (struct fetch *c = p->first; c != NULL; prev = c, c = c->next) {
		if (c != f) {
			continue;
		}
		if (prev != NULL) {
			prev->next = f->next;
		} else {
			p->first = f->next;
		}
		if (p->last == f) {
			p->last = prev;
		}
		f->next = NULL;
		p->running--;
		return;
	}
}

static void fetch_done(void *arg, struct render_answer *a);

/* Hands f to curl. The start is taken first: the request leaves no earlier than this. */
static bool fetch_launch(struct fetches *ft, struct fetch *f)
{
	struct fetch_peer *p = f->peer;

	f->start_ns = monotonic_ns();
	f->xfer = transfer_start(ft->tr, &p->key, fetch_done, f);
	if (f->xfer == NULL) {
		return false;
	}
	if (p->last != NULL) {
		p->last->next = f;
	} else {
		p->first = f;
	}
	p->last = f;
	p->running++;
	return true;
}

/* Gives a to every line waiting for f, then frees f and drops the caller's reference.
 * A view whose last line this was completes (and its callback runs) here. */
static void fetch_answer(struct fetches *ft, struct fetch *f, struct render_answer *a)
{
	struct render_line *l = f->head;

	free(f);
	while (l != NULL) {
		struct render_line *next = l->wait_next;
		struct view *v = l->view;

		l->wait_next = NULL;
		l->view = NULL;
		render_line_share(l, a);
		/* v, and l with it, may be freed here. */
		ft->line_done(ft->arg, v, l);
		l = next;
	}
	render_answer_unref(a);
}

/* Starts the peer's queued fetch when the cap allows it. */
static void fetch_pump(struct fetches *ft, struct fetch_peer *p)
{
	while (!ft->stopping && p->queued != NULL && p->running < ft->cfg->peer_max_connections) {
		struct fetch *q = p->queued;

		p->queued = NULL;
		if (!fetch_launch(ft, q)) {
			fetch_answer(ft, q, render_answer_error(START_FAILED));
		}
	}
}

/* A fetch that may serve a view which arrived at arrival: the earliest started at or
 * after it (it answers first), else the one not started yet. */
static struct fetch *fetch_joinable(const struct fetch_peer *p, uint64_t arrival)
{
	for (struct fetch *f = p->first; f != NULL; f = f->next) {
		if (f->start_ns >= arrival) {
			return f;
		}
	}
	return p->queued;
}

bool fetch_join(struct fetches *ft, struct view *v, size_t idx)
{
	struct render_line *l = &v->lines[idx];
	struct peer_key k;
	struct fetch_peer *p;
	struct fetch *f;

	key_of(l, &k);
	p = peer_get(ft, &k);
	if (p == NULL) {
		return false;
	}
	f = fetch_joinable(p, v->arrival_ns);
	if (f == NULL) {
		f = calloc(1, sizeof(*f));
		if (f == NULL) {
			peer_put(ft, p);
			return false;
		}
		f->ft = ft;
		f->peer = p;
		if (p->running >= ft->cfg->peer_max_connections) {
			p->queued = f;
		} else if (!fetch_launch(ft, f)) {
			free(f);
			peer_put(ft, p);
			return false;
		}
	}
	l->view = v;
	l->wait_next = NULL;
	if (f->tail != NULL) {
		f->tail->wait_next = l;
	} else {
		f->head = l;
	}
	f->tail = l;
	return true;
}

/* f's transfer ended with answer a (NULL: out of memory; the reference is ours). Every
 * waiting line gets a, and the peer's queued fetch may start. */
static void fetch_done(void *arg, struct render_answer *a)
{
	struct fetch *f = arg;
	struct fetches *ft = f->ft;
	struct fetch_peer *p = f->peer;

	f->xfer = NULL;
	if (a != NULL) {
		a->fetched = true;
		a->fetch_ns = monotonic_ns() - f->start_ns;
	}
	running_del(p, f);
	/* The next request goes out before this answer's views are rendered. */
	fetch_pump(ft, p);
	fetch_answer(ft, f, a);
	peer_put(ft, p);
}

void fetch_end_all(struct fetches *ft)
{
	for (size_t b = 0; b < FETCH_BUCKETS; b++) {
		struct fetch_peer *p;

		/* Once the loop stops nothing joins or starts a fetch (views get "shutting
		 * down" lines, submissions are refused), so p stays at its bucket's head
		 * while its views are answered. */
		while ((p = ft->peers[b]) != NULL) {
			struct fetch *f;

			while ((f = p->first) != NULL) {
				running_del(p, f);
				transfer_abort(ft->tr, f->xfer);
				fetch_answer(ft, f, render_answer_error(SHUTDOWN_TEXT));
			}
			if ((f = p->queued) != NULL) {
				p->queued = NULL;
				fetch_answer(ft, f, render_answer_error(SHUTDOWN_TEXT));
			}
			ft->peers[b] = p->next;
			free(p);
		}
	}
}

void fetch_init(struct fetches *ft, const struct discovery_config *cfg, struct transfers *tr,
		fetch_line_fn line_done, void *arg)
{
	memset(ft, 0, sizeof(*ft));
	ft->cfg = cfg;
	ft->tr = tr;
	ft->line_done = line_done;
	ft->arg = arg;
}

void fetch_stop(struct fetches *ft)
{
	ft->stopping = true;
}
