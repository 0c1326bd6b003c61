/* SPDX-License-Identifier: MIT */
/*
 * The view stream's subscribers (stream.h). Everything of the hub is under its one lock:
 * the watcher's rounds come from the discovery loop thread, each subscriber's reads and
 * its close from the libmicrohttpd thread of its connection.
 *
 * An event's JSON is held once, with a count of the queues it is in; each subscriber's
 * text of it differs only in its number, which is written as the event is read, so 100
 * subscribers cost 100 queue entries, not 100 copies.
 */
#include "server/stream.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/budget.h"
#include "common/metrics.h"
#include "common/monotonic.h"
#include "discovery/discovery.h"

#define HEARTBEAT ": hb\n\n"
#define HEARTBEAT_LEN (sizeof(HEARTBEAT) - 1)
/* ",\"stream\":{\"served_by\":\"" + an escaped host name + "\",\"seq\":" */
#define MID_MAX (2 * DISCOVERY_HOSTNAME_MAX + 48)

struct stream_event {
	size_t refs; /* the hub's latest, and every queue it is in */
	char *body; /* the watcher's line (discovery_body_free()) */
	size_t body_len; /* without its closing brace */
	char tail[64];
	size_t tail_len;
};

struct stream_item {
	struct stream_event *ev;
	uint64_t id;
};

struct stream_sub {
	struct stream_hub *hub;
	void *conn;
	int fd;
	struct stream_sub *prev, *next;
	struct stream_item *ring; /* max_pending entries */
	unsigned head, count;
	uint64_t pending_bytes; /* of the queued events, less what was read of the first */
	size_t off; /* read of the first queued event */
	bool hb; /* a heartbeat is due before the next event */
	size_t hb_off;
	uint64_t next_id;
	uint64_t last_ns; /* when something was last queued */
	bool suspended;
	bool dropped;
	bool gone; /* the client closed its end */
	size_t charged;
};

struct stream_hub {
	pthread_mutex_t mu;
	struct stream_limits lim;
	struct stream_io io;
	struct discovery *disc;
	struct budget *budget;
	char mid[MID_MAX];
	size_t mid_len;
	struct stream_event *latest;
	struct stream_sub *subs;
	unsigned nsubs;
	bool stopping;
};

size_t stream_frame_len(const struct stream_frame *f)
{
	size_t n = 0;

	for (size_t i = 0; i < STREAM_PARTS; i++) {
		n += f->len[i];
	}
	return n;
}

size_t stream_frame_copy(const struct stream_frame *f, size_t off, char *buf, size_t max)
{
	size_t done = 0;

	for (size_t i = 0; i < STREAM_PARTS && done < max; i++) {
		size_t take;

		if (off >= f->len[i]) {
			off -= f->len[i];
			continue;
		}
		take = f->len[i] - off;
		if (take > max - done) {
			take = max - done;
		}
		memcpy(buf + done, f->part[i] + off, take);
		done += take;
		off = 0;
	}
	return done;
}

/* The frame of item it; hdr and seq are the caller's room for its number's parts. */
static void frame_of(const struct stream_hub *h, const struct stream_item *it, char hdr[48],
		     char seq[24], struct stream_frame *f)
{
	int hl = snprintf(hdr, 48, "id: %" PRIu64 "\nevent: view\ndata: ", it->id);
	int sl = snprintf(seq, 24, "%" PRIu64, it->id);

	f->part[0] = hdr;
	f->len[0] = (size_t)hl;
	f->part[1] = it->ev->body;
	f->len[1] = it->ev->body_len;
	f->part[2] = h->mid;
	f->len[2] = h->mid_len;
	f->part[3] = seq;
	f->len[3] = (size_t)sl;
	f->part[4] = it->ev->tail;
	f->len[4] = it->ev->tail_len;
}

static void event_unref(struct stream_event *e)
{
	if (e != NULL && --e->refs == 0) {
		discovery_body_free(e->body);
		free(e);
	}
}

static void wake(struct stream_hub *h, struct stream_sub *s)
{
	if (s->suspended) {
		s->suspended = false;
		h->io.resume(s->conn);
	}
}

/* Too slow: ended now, whatever it still had queued. */
static void drop(struct stream_hub *h, struct stream_sub *s)
{
	if (s->dropped) {
		return;
	}
	s->dropped = true;
	metrics_add(&metrics.stream_drops, 1);
	if (s->suspended) {
		wake(h, s); /* its read ends the connection */
	} else {
		h->io.cut(s->conn, s->fd);
	}
}

static void enqueue(struct stream_hub *h, struct stream_sub *s, struct stream_event *e,
		    uint64_t now)
{
	struct stream_item it = {e, s->next_id};
	struct stream_frame f;
	char hdr[48], seq[24];
	size_t len;

	if (s->dropped) {
		return;
	}
	frame_of(h, &it, hdr, seq, &f);
	len = stream_frame_len(&f);
	/* One event is always taken, however large: a view larger than the bound would
	 * otherwise drop every subscriber. */
	if (s->count == h->lim.max_pending ||
	    (s->count > 0 && s->pending_bytes + len > h->lim.max_pending_bytes)) {
		drop(h, s);
		return;
	}
	s->ring[(s->head + s->count) % h->lim.max_pending] = it;
	s->count++;
	s->next_id++;
	s->pending_bytes += len;
	e->refs++;
	s->last_ns = now;
	wake(h, s);
}

/* The watcher's line as an event: the "stream" member goes before its closing brace. */
static struct stream_event *event_new(char *body, size_t len, uint64_t changed_at_ms)
{
	struct stream_event *e;

	if (len < 2 || body[0] != '{' || body[len - 1] != '}') {
		discovery_body_free(body);
		return NULL;
	}
	e = calloc(1, sizeof(*e));
	if (e == NULL) {
		discovery_body_free(body);
		return NULL;
	}
	e->refs = 1;
	e->body = body;
	e->body_len = len - 1;
	e->tail_len = (size_t)snprintf(e->tail, sizeof(e->tail),
				       ",\"changed_at_ms\":%" PRIu64 "}}\n\n", changed_at_ms);
	return e;
}

void stream_on_round(void *ctx, struct discovery_watch_event *ev)
{
	struct stream_hub *h = ctx;
	uint64_t now = monotonic_ns();
	uint64_t quiet = (uint64_t)h->lim.heartbeat_s * 1000000000u;
	struct stream_event *e = NULL;

	pthread_mutex_lock(&h->mu);
	if (h->stopping || h->nsubs == 0) {
		pthread_mutex_unlock(&h->mu);
		discovery_body_free(ev->body);
		return;
	}
	if (ev->body != NULL) {
		e = event_new(ev->body, ev->len, ev->changed_at_ms);
		ev->body = NULL;
	}
	if (e != NULL) {
		event_unref(h->latest);
		h->latest = e;
	}
	for (struct stream_sub *s = h->subs; s != NULL; s = s->next) {
		if (s->suspended && h->io.gone(s->conn, s->fd)) {
			s->gone = true;
			wake(h, s); /* its read closes the connection */
			continue;
		}
		if (e != NULL) {
			enqueue(h, s, e, now);
		} else if (!s->dropped && s->count == 0 && !s->hb && now - s->last_ns >= quiet) {
			s->hb = true;
			s->hb_off = 0;
			s->last_ns = now;
			metrics_add(&metrics.stream_heartbeats, 1);
			wake(h, s);
		}
	}
	pthread_mutex_unlock(&h->mu);
}

enum stream_open_result stream_open(struct stream_hub *h, void *conn, int fd,
				    struct stream_sub **out)
{
	size_t size = sizeof(struct stream_sub) + h->lim.max_pending * sizeof(struct stream_item);
	struct stream_sub *s;

	pthread_mutex_lock(&h->mu);
	if (h->stopping) {
		pthread_mutex_unlock(&h->mu);
		return STREAM_OPEN_STOPPING;
	}
	if (h->nsubs >= h->lim.max_subscribers) {
		pthread_mutex_unlock(&h->mu);
		return STREAM_OPEN_FULL;
	}
	if (!budget_charge(h->budget, size)) {
		pthread_mutex_unlock(&h->mu);
		return STREAM_OPEN_OVER_BUDGET;
	}
	s = calloc(1, size);
	if (s == NULL) {
		budget_credit(h->budget, size);
		pthread_mutex_unlock(&h->mu);
		return STREAM_OPEN_OVER_BUDGET;
	}
	s->hub = h;
	s->conn = conn;
	s->fd = fd;
	s->charged = size;
	s->ring = (struct stream_item *)(void *)(s + 1);
	s->next_id = 1;
	s->last_ns = monotonic_ns();
	s->next = h->subs;
	if (h->subs != NULL) {
		h->subs->prev = s;
	}
	h->subs = s;
	if (++h->nsubs == 1) {
		/* Under the lock, so that a last close and a first open cannot turn the
		 * watcher on and off in the wrong order. */
		discovery_watch(h->disc, true, h->lim.interval_ms, stream_on_round, h);
	}
	metrics_set(&metrics.stream_subscribers, h->nsubs);
	if (h->latest != NULL) {
		enqueue(h, s, h->latest, s->last_ns);
	}
	pthread_mutex_unlock(&h->mu);
	*out = s;
	return STREAM_OPEN_OK;
}

void stream_close(struct stream_sub *s)
{
	struct stream_hub *h = s->hub;

	pthread_mutex_lock(&h->mu);
	if (s->prev != NULL) {
		s->prev->next = s->next;
	} else {
		h->subs = s->next;
	}
	if (s->next != NULL) {
		s->next->prev = s->prev;
	}
	for (unsigned i = 0; i < s->count; i++) {
		event_unref(s->ring[(s->head + i) % h->lim.max_pending].ev);
	}
	if (--h->nsubs == 0) {
		/* Nobody watches: no more rounds, and the last view would be stale by the
		 * time someone does again. */
		discovery_watch(h->disc, false, 0, NULL, NULL);
		event_unref(h->latest);
		h->latest = NULL;
	}
	metrics_set(&metrics.stream_subscribers, h->nsubs);
	budget_credit(h->budget, s->charged);
	pthread_mutex_unlock(&h->mu);
	free(s);
}

/* Reads the first queued event on into buf; returns the bytes read. */
static size_t read_event(struct stream_hub *h, struct stream_sub *s, char *buf, size_t max)
{
	struct stream_item *it = &s->ring[s->head];
	struct stream_frame f;
	char hdr[48], seq[24];
	size_t n;

	frame_of(h, it, hdr, seq, &f);
	n = stream_frame_copy(&f, s->off, buf, max);
	s->off += n;
	s->pending_bytes -= n;
	if (s->off == stream_frame_len(&f)) {
		event_unref(it->ev);
		s->head = (s->head + 1) % h->lim.max_pending;
		s->count--;
		s->off = 0;
		metrics_add(&metrics.stream_events, 1);
	}
	return n;
}

ssize_t stream_read(struct stream_sub *s, char *buf, size_t max)
{
	struct stream_hub *h = s->hub;
	size_t n = 0;

	pthread_mutex_lock(&h->mu);
	if (s->dropped || s->gone) {
		pthread_mutex_unlock(&h->mu);
		return -2;
	}
	while (n < max) {
		if (s->hb && s->off == 0) {
			size_t take = HEARTBEAT_LEN - s->hb_off;

			take = take < max - n ? take : max - n;
			memcpy(buf + n, &HEARTBEAT[s->hb_off], take);
			s->hb_off += take;
			n += take;
			s->hb = s->hb_off < HEARTBEAT_LEN;
			continue;
		}
		if (s->count == 0) {
			break;
		}
		n += read_event(h, s, buf + n, max - n);
	}
	if (n == 0) {
		if (h->stopping) {
			pthread_mutex_unlock(&h->mu);
			return -1;
		}
		s->suspended = true;
		h->io.suspend(s->conn);
	}
	pthread_mutex_unlock(&h->mu);
	return (ssize_t)n;
}

void stream_stop_all(struct stream_hub *h)
{
	pthread_mutex_lock(&h->mu);
	h->stopping = true;
	for (struct stream_sub *s = h->subs; s != NULL; s = s->next) {
		if (s->suspended) {
			wake(h, s); /* nothing queued: its read ends the stream */
		} else {
			h->io.cut(s->conn, s->fd);
		}
	}
	discovery_watch(h->disc, false, 0, NULL, NULL);
	pthread_mutex_unlock(&h->mu);
}

/* The host name as the inside of a JSON string: a host name has no control bytes
 * (--hostname refuses them), but may have quotes and backslashes. */
static size_t escape(const char *in, char *out)
{
	size_t n = 0;

	for (; *in != '\0'; in++) {
		if (*in == '"' || *in == '\\') {
			out[n++] = '\\';
		}
		out[n++] = *in;
	}
	return n;
}

struct stream_hub *stream_hub_new(const struct stream_limits *lim, const struct stream_io *io,
				  struct discovery *disc, struct budget *budget,
				  const char *hostname)
{
	static const char head[] = ",\"stream\":{\"served_by\":\"";
	static const char foot[] = "\",\"seq\":";
	struct stream_hub *h;

	if (strlen(hostname) > DISCOVERY_HOSTNAME_MAX || lim->max_pending == 0) {
		return NULL;
	}
	h = calloc(1, sizeof(*h));
	if (h == NULL) {
		return NULL;
	}
	if (pthread_mutex_init(&h->mu, NULL) != 0) {
		free(h);
		return NULL;
	}
	h->lim = *lim;
	h->io = *io;
	h->disc = disc;
	h->budget = budget;
	memcpy(h->mid, head, sizeof(head) - 1);
	h->mid_len = sizeof(head) - 1;
	h->mid_len += escape(hostname, h->mid + h->mid_len);
	memcpy(h->mid + h->mid_len, foot, sizeof(foot) - 1);
	h->mid_len += sizeof(foot) - 1;
	return h;
}

void stream_hub_free(struct stream_hub *h)
{
	if (h == NULL) {
		return;
	}
	event_unref(h->latest);
	pthread_mutex_destroy(&h->mu);
	free(h);
}
