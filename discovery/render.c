/* SPDX-License-Identifier: MIT */
/*
 * The cluster view's lines: which peers to ask (planning), the answers they show, and
 * the text that results (rendering). Pure functions, so the exact output bytes are unit
 * tested; the fetches live in fetch.c and transfer.c.
 *
 * A peer's answer is one reference-counted buffer that the lines of every view it
 * serves point to; rendering a view is the one copy of its bytes, into a body that is
 * reference-counted too, so that every view of the same bytes is given it. The shelf
 * (render_recent_*()) is the one piece shared with other threads: a body's last
 * reference may go on an HTTP thread while the loop looks for it.
 */
#include "discovery/internal.h"

#include "common/budget.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define OOM_TEXT "Error: out of memory"

static size_t first_label_len(const char *name)
{
	const char *dot = strchr(name, '.');

	return dot != NULL ? (size_t)(dot - name) : strlen(name);
}

struct render_answer *render_answer_take(char *data, size_t len)
{
	struct render_answer *a = calloc(1, sizeof(*a));

	if (a == NULL) {
		free(data);
		return NULL;
	}
	a->refs = 1;
	a->len = len;
	a->data = data;
	return a;
}

struct render_answer *render_answer_borrow(const char *data, size_t len,
					   void (*release)(void *ctx, void *hold), void *ctx,
					   void *hold)
{
	struct render_answer *a = calloc(1, sizeof(*a));

	if (a == NULL) {
		release(ctx, hold);
		return NULL;
	}
	a->refs = 1;
	a->len = len;
	/* Never written through: a borrowed answer is only read, then given back. */
	a->data = (char *)(uintptr_t)data;
	a->release = release;
	a->release_ctx = ctx;
	a->hold = hold;
	return a;
}

struct render_answer *render_answer_copy(const char *data, size_t len)
{
	/* Always allocate (even for an empty body) so that every answer has its bytes. */
	char *copy = malloc(len + 1);

	if (copy == NULL) {
		return NULL;
	}
	if (len > 0) {
		memcpy(copy, data, len);
	}
	copy[len] = '\0';
	return render_answer_take(copy, len);
}

/* fmt is the caller's, checked where the caller is (DISCOVERY_PRINTF). */
static struct render_answer *answer_verror(const char *fmt, va_list ap) DISCOVERY_PRINTF(1, 0);

static struct render_answer *answer_verror(const char *fmt, va_list ap)
{
	char buf[1024];
	struct render_answer *a;
	int n;
	size_t len;

	memcpy(buf, "Error: ", 7);
	n = vsnprintf(buf + 7, sizeof(buf) - 7, fmt, ap);
	if (n < 0) {
		n = 0;
		buf[7] = '\0';
	}
	len = 7 + (size_t)n;
	if (len >= sizeof(buf)) {
		len = sizeof(buf) - 1;
	}
	/* A reason is one line of printable ASCII, whatever its source put in it (a
	 * library's text can quote a peer's bytes): the text view keeps one line per pod
	 * and the JSON view a valid string. */
	for (size_t i = 7; i < len; i++) {
		if (buf[i] < 0x20 || buf[i] > 0x7e) {
			buf[i] = '?';
		}
	}
	a = render_answer_copy(buf, len);
	if (a != NULL) {
		a->error = true;
	}
	return a;
}

struct render_answer *render_answer_error(const char *fmt, ...)
{
	struct render_answer *a;
	va_list ap;

	va_start(ap, fmt);
	a = answer_verror(fmt, ap);
	va_end(ap);
	return a;
}

void render_answer_unref(struct render_answer *a)
{
	if (a == NULL || --a->refs > 0) {
		return;
	}
	if (a->release != NULL) {
		a->release(a->release_ctx, a->hold);
	} else {
		free(a->data);
	}
	budget_credit(a->budget, a->charged);
	free(a);
}

void render_line_share(struct render_line *l, struct render_answer *a)
{
	struct render_answer *old = l->ans;

	if (a != NULL) {
		a->refs++;
	}
	l->ans = a;
	l->done = true;
	render_answer_unref(old);
}

bool render_line_set(struct render_line *l, const char *data, size_t len)
{
	struct render_answer *a = render_answer_copy(data, len);

	render_line_share(l, a);
	render_answer_unref(a);
	return a != NULL;
}

bool render_line_error(struct render_line *l, const char *fmt, ...)
{
	struct render_answer *a;
	va_list ap;

	va_start(ap, fmt);
	a = answer_verror(fmt, ap);
	va_end(ap);
	render_line_share(l, a);
	render_answer_unref(a);
	return a != NULL;
}

void render_lines_free(struct render_line *lines, size_t n)
{
	if (lines == NULL) {
		return;
	}
	for (size_t i = 0; i < n; i++) {
		render_answer_unref(lines[i].ans);
	}
	free(lines);
}

int render_plan(const struct srv_answer *a, const char *hostname, unsigned peer_port,
		struct render_line **out, size_t *n)
{
	struct render_line *lines;
	size_t hostlen = hostname != NULL ? first_label_len(hostname) : 0;
	bool have_self = false;
	size_t total;
	size_t k = 0;
	size_t self_at = 0;
	char selfname[sizeof(lines->name)];

	*out = NULL;
	*n = 0;
	if (a->npeers == 0) {
		return 0;
	}
	for (size_t i = 0; i < a->npeers; i++) {
		if (srv_is_self(a->peers[i].name, hostname)) {
			have_self = true;
		}
	}
	total = a->npeers;
	if (!have_self && hostlen > 0) {
		/* Named like the others so that it sorts among them by pod name. */
		const char *rest = strchr(a->peers[0].name, '.');
		int w = snprintf(selfname, sizeof(selfname), "%.*s%s", (int)hostlen, hostname,
				 rest != NULL ? rest : "");

		if (w < 0 || (size_t)w >= sizeof(selfname)) {
			return -1;
		}
		while (self_at < a->npeers && srv_name_cmp(a->peers[self_at].name, selfname) < 0) {
			self_at++;
		}
		total++;
	}
	lines = calloc(total, sizeof(*lines));
	if (lines == NULL) {
		return -1;
	}
	for (size_t i = 0; i <= a->npeers; i++) {
		const struct srv_peer *p;
		struct render_line *l;

		if (total > a->npeers && i == self_at) {
			l = &lines[k++];
			memcpy(l->name, selfname, sizeof(selfname));
			l->self = true;
			l->unlisted = true;
		}
		if (i == a->npeers) {
			break;
		}
		p = &a->peers[i];
		l = &lines[k++];
		memcpy(l->name, p->name, sizeof(p->name));
		l->self = srv_is_self(p->name, hostname);
		l->family = p->family;
		memcpy(l->addr, p->addr, sizeof(l->addr));
		l->port = peer_port != 0 ? (uint16_t)peer_port : p->port;
		if (!l->self && p->family == 0 &&
		    !render_line_error(l, "could not resolve %s: %s", p->name,
				       p->err[0] != '\0' ? p->err : "no address")) {
			render_lines_free(lines, total);
			return -1;
		}
	}
	*out = lines;
	*n = total;
	return 0;
}

static const char none[] = "No peers discovered.\n";

size_t render_head(const char *hostname, char buf[RENDER_HEAD_MAX])
{
	int n = snprintf(buf, RENDER_HEAD_MAX, "You've hit %s\nData stored in the cluster:\n",
			 hostname != NULL ? hostname : "");

	/* A host name is at most DISCOVERY_HOSTNAME_MAX bytes: it always fits. */
	return n < 0 ? 0 : (size_t)n < RENDER_HEAD_MAX ? (size_t)n : RENDER_HEAD_MAX - 1;
}

/* What a body's bytes hold of the memory budget and who holds them, kept in front of
 * them. */
struct body_header {
	atomic_size_t refs;
	struct budget *budget;
	size_t charged;
	/* The shelf where the body is the latest of its kind (set once, before the body is
	 * handed out); NULL: none. */
	struct render_recent *home;
	unsigned kind;
	size_t len;
};

static struct body_header *header_of(const char *body)
{
	return (struct body_header *)(void *)(uintptr_t)body - 1;
}

char *render_body_alloc(struct budget *budget, size_t size)
{
	struct body_header *h;

	if (size > SIZE_MAX - sizeof(*h) || !budget_charge(budget, size)) {
		return NULL;
	}
	h = malloc(sizeof(*h) + size);
	if (h == NULL) {
		budget_credit(budget, size);
		return NULL;
	}
	atomic_init(&h->refs, 1);
	h->budget = budget;
	h->charged = size;
	h->home = NULL;
	h->kind = 0;
	h->len = 0;
	return (char *)(h + 1);
}

void render_body_ref(char *body)
{
	atomic_fetch_add_explicit(&header_of(body)->refs, 1, memory_order_relaxed);
}

/* The latest body of each kind, kept without a reference: a body lives only as long as
 * its readers, and the shelf only tells where it is while it does. The lock orders a
 * lookup against the last reference's going (render_body_free()). */
struct render_recent {
	pthread_mutex_t mu;
	atomic_size_t refs; /* the owner's, and one per body that has it as home */
	char *latest[RENDER_KINDS];
};

struct render_recent *render_recent_new(void)
{
	struct render_recent *rc = calloc(1, sizeof(*rc));

	if (rc == NULL) {
		return NULL;
	}
	if (pthread_mutex_init(&rc->mu, NULL) != 0) {
		free(rc);
		return NULL;
	}
	atomic_init(&rc->refs, 1);
	return rc;
}

void render_recent_unref(struct render_recent *rc)
{
	if (rc == NULL || atomic_fetch_sub_explicit(&rc->refs, 1, memory_order_acq_rel) != 1) {
		return;
	}
	pthread_mutex_destroy(&rc->mu);
	free(rc);
}

void render_body_free(char *body)
{
	struct body_header *h;
	struct render_recent *rc;

	if (body == NULL) {
		return;
	}
	h = header_of(body);
	if (atomic_fetch_sub_explicit(&h->refs, 1, memory_order_acq_rel) != 1) {
		return;
	}
	rc = h->home;
	if (rc != NULL) {
		pthread_mutex_lock(&rc->mu);
		if (rc->latest[h->kind] == body) {
			rc->latest[h->kind] = NULL;
		}
		pthread_mutex_unlock(&rc->mu);
		render_recent_unref(rc);
	}
	budget_credit(h->budget, h->charged);
	free(h);
}

char *render_recent_get(struct render_recent *rc, unsigned kind, size_t *len)
{
	char *body;

	if (rc == NULL || kind >= RENDER_KINDS) {
		return NULL;
	}
	pthread_mutex_lock(&rc->mu);
	body = rc->latest[kind];
	if (body != NULL) {
		struct body_header *h = header_of(body);
		size_t n = atomic_load_explicit(&h->refs, memory_order_relaxed);

		/* A body whose last reference is going is gone: its freeing waits for the
		 * lock to take it off the shelf. */
		while (n > 0 && !atomic_compare_exchange_weak_explicit(&h->refs, &n, n + 1,
								       memory_order_acquire,
								       memory_order_relaxed)) {
		}
		if (n == 0) {
			body = NULL;
		} else {
			*len = h->len;
		}
	}
	pthread_mutex_unlock(&rc->mu);
	return body;
}

bool render_recent_put(struct render_recent *rc, unsigned kind, char *body, size_t len)
{
	struct body_header *h;

	if (body == NULL) {
		return false;
	}
	h = header_of(body);
	if (h->home != NULL) {
		return false; /* on a shelf already: bodies are put once, when made */
	}
	if (rc == NULL || kind >= RENDER_KINDS) {
		return true;
	}
	atomic_fetch_add_explicit(&rc->refs, 1, memory_order_relaxed);
	h->home = rc;
	h->kind = kind;
	h->len = len;
	pthread_mutex_lock(&rc->mu);
	rc->latest[kind] = body;
	pthread_mutex_unlock(&rc->mu);
	return true;
}

size_t render_text_len(const struct render_line *lines, size_t n)
{
	size_t total = 0;

	if (n == 0) {
		return sizeof(none) - 1;
	}
	for (size_t i = 0; i < n; i++) {
		size_t dlen = lines[i].ans != NULL ? lines[i].ans->len : strlen(OOM_TEXT);

		total += 2 + strlen(lines[i].name) + 2 + dlen + 1;
	}
	return total;
}

/* Where the text view's bytes go: written at w, or, with w NULL, compared with the
 * bytes at r (same stays true while they match). One walk makes both, so a body is
 * reused only for exactly the bytes a rendering would make. */
struct text_out {
	char *w;
	const char *r;
	bool same;
};

static void out(struct text_out *o, const char *s, size_t n)
{
	if (n == 0) {
		return;
	}
	if (o->w != NULL) {
		memcpy(o->w, s, n);
		o->w += n;
		return;
	}
	o->same = o->same && memcmp(o->r, s, n) == 0;
	o->r += n;
}

/* The head, then "- <name>: <data>\n" per line, or "No peers discovered.\n". */
static void out_text(struct text_out *o, const char *head, size_t headlen,
		     const struct render_line *lines, size_t n)
{
	out(o, head, headlen);
	if (n == 0) {
		out(o, none, sizeof(none) - 1);
	}
	for (size_t i = 0; i < n && (o->w != NULL || o->same); i++) {
		const struct render_line *l = &lines[i];

		out(o, "- ", 2);
		out(o, l->name, strlen(l->name));
		out(o, ": ", 2);
		if (l->ans != NULL) {
			out(o, l->ans->data, l->ans->len);
		} else {
			out(o, OOM_TEXT, strlen(OOM_TEXT));
		}
		out(o, "\n", 1);
	}
}

char *render_text(const char *head, size_t headlen, const struct render_line *lines, size_t n,
		  struct budget *budget, size_t *len)
{
	size_t total = headlen + render_text_len(lines, n);
	char *body = render_body_alloc(budget, total + 1);
	struct text_out o = {.w = body};

	if (body == NULL) {
		return NULL;
	}
	out_text(&o, head, headlen, lines, n);
	*o.w = '\0';
	*len = total;
	return body;
}

bool render_text_same(const char *body, size_t len, const char *head, size_t headlen,
		      const struct render_line *lines, size_t n)
{
	struct text_out o = {.r = body, .same = true};

	if (body == NULL || len != headlen + render_text_len(lines, n)) {
		return false;
	}
	out_text(&o, head, headlen, lines, n);
	return o.same;
}

/* Copies n bytes (no NUL) to p; returns the end. */
static char *put(char *p, const char *s, size_t n)
{
	if (n > 0) {
		memcpy(p, s, n);
	}
	return p + n;
}

char *render_dns_error(const char *head, size_t headlen, const char *reason, struct budget *budget,
		       size_t *len)
{
	static const char prefix[] = "Could not look up DNS SRV records: ";
	size_t rl = strlen(reason);
	size_t total = headlen + sizeof(prefix) - 1 + rl + 1;
	char *body = render_body_alloc(budget, total + 1);
	char *p;

	if (body == NULL) {
		return NULL;
	}
	p = put(body, head, headlen);
	p = put(p, prefix, sizeof(prefix) - 1);
	p = put(p, reason, rl);
	p[0] = '\n';
	p[1] = '\0';
	*len = total;
	return body;
}
