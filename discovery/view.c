/* SPDX-License-Identifier: MIT */
/*
 * Cluster views on the loop thread, from the moment the loop takes one from the
 * submission queue to its done callback: served from the cached SRV outcome or queued
 * for the lookup (lookup.c); once the outcome is known, its lines are planned
 * (render.c), this pod's own line is read locally and every other line waits for a
 * fetch of its peer (fetch.c), which it may share with other views; the last line to
 * finish renders the text and hands it over.
 */
#include "discovery/internal.h"

#include <stdlib.h>

#include "common/budget.h"

/* Hands body (charged to the budget, or NULL) to the view's callback and frees the view.
 * The slot is released first so that a callback which submits again is not refused for
 * its own view. */
/* The peers of the view being handed over that could not be read (see
 * discovery_view_errors()). */
static _Thread_local unsigned finishing_errors;

unsigned discovery_view_errors(void)
{
	return finishing_errors;
}

static void view_finish(struct discovery *d, struct view *v, char *body, size_t len)
{
	pthread_mutex_lock(&d->mu);
	d->pending--;
	pthread_mutex_unlock(&d->mu);
	finishing_errors = 0;
	for (size_t i = 0; i < v->nlines; i++) {
		const struct render_line *l = &v->lines[i];

		finishing_errors += !l->self && (l->ans == NULL || l->ans->error);
	}
	v->done(v->ctx, body, body != NULL ? len : 0);
	render_lines_free(v->lines, v->nlines);
	viewjson_free(v->json);
	free(v);
}

/* Charges a short body made already (a line or two); NULL when it does not fit. */
static char *charge_short(struct discovery *d, char *body, size_t len)
{
	if (body != NULL && !budget_charge(d->cfg.budget, len + 1)) {
		free(body);
		return NULL;
	}
	return body;
}

/* The JSON document of a view whose SRV part is known (v->json; NULL: memory ran out),
 * with this pod's data read now. */
static char *view_json(struct discovery *d, struct view *v, size_t *len)
{
	struct viewjson_pod pod = {.name = d->hostname, .data = NULL, .len = 0};
	void *hold = NULL;
	char *body;

	d->local.get(d->local.ctx, &pod.data, &pod.len, &hold);
	body = viewjson_render(v->json, &pod, v->lines, v->nlines, d->cfg.budget, len);
	d->local.release(d->local.ctx, hold);
	return body;
}

void view_dns_error(struct discovery *d, struct view *v, const char *reason)
{
	size_t len = 0;
	char *body;

	if (v->format == DISCOVERY_FORMAT_JSON) {
		v->json = viewjson_begin(SRV_ERROR, NULL, reason, false);
		body = view_json(d, v, &len);
		view_finish(d, v, body, len);
		return;
	}
	body = render_dns_error(reason, &len);
	view_finish(d, v, charge_short(d, body, len), len);
}

/* Renders the view's text, charged before it is made: it may be as large as every
 * peer's answer together. */
static void view_complete(struct discovery *d, struct view *v)
{
	size_t len = render_text_len(v->lines, v->nlines);
	char *body = NULL;

	if (v->format == DISCOVERY_FORMAT_JSON) {
		body = view_json(d, v, &len);
	} else if (budget_charge(d->cfg.budget, len + 1)) {
		body = render_text(v->lines, v->nlines, &len);
		if (body == NULL) {
			budget_credit(d->cfg.budget, len + 1);
		}
	}
	view_finish(d, v, body, len);
}

void view_line_done(struct discovery *d, struct view *v)
{
	if (--v->nleft == 0) {
		view_complete(d, v);
	}
}

/* This pod's line: its data as storage has it, never over the network and never
 * copied: the line borrows it until the view is rendered. */
static void read_local(struct discovery *d, struct render_line *l)
{
	const char *data = NULL;
	size_t len = 0;
	void *hold = NULL;
	struct render_answer *a;

	d->local.get(d->local.ctx, &data, &len, &hold);
	a = render_answer_borrow(data, len, d->local.release, d->local.ctx, hold);
	render_line_share(l, a);
	render_answer_unref(a);
}

/* Gives every line its text or a fetch to wait for. */
static void view_ask(struct discovery *d, struct view *v)
{
	v->nleft = v->nlines;
	for (size_t i = 0; i < v->nlines; i++) {
		struct render_line *l = &v->lines[i];

		if (l->done) {
			v->nleft--;
		} else if (l->self) {
			read_local(d, l);
			v->nleft--;
		} else if (d->loop_stopping) {
			render_line_error(l, SHUTDOWN_TEXT);
			v->nleft--;
		} else if (!fetch_join(d, v, i)) {
			render_line_error(l, "could not start the request (out of memory)");
			v->nleft--;
		}
	}
	/* Fetches answer only from the loop, never inside fetch_join(), so v is still
	 * ours here. */
	if (v->nleft == 0) {
		view_complete(d, v);
	}
}

/* The lines for a parsed answer: its records, this pod, the missing pods. */
static bool view_plan(struct discovery *d, struct view *v, const struct srv_answer *ans)
{
	return render_plan(ans, d->hostname, d->cfg.peer_port, &v->lines, &v->nlines) == 0 &&
	       missing_add(&v->lines, &v->nlines, d->cfg.replicas, d->cfg.max_peers) >= 0;
}

static void view_serve(struct discovery *d, struct view *v, enum srv_outcome kind,
		       const struct srv_answer *ans, const char *reason, bool from_cache)
{
	size_t len = 0;
	char *body;

	if (kind == SRV_ERROR) {
		view_dns_error(d, v, reason != NULL ? reason : "unknown error");
		return;
	}
	if (kind == SRV_PEERS && !view_plan(d, v, ans)) {
		disc_log(d, DISCOVERY_LOG_ERROR, "out of memory planning a cluster view");
		view_finish(d, v, NULL, 0);
		return;
	}
	if (v->format == DISCOVERY_FORMAT_JSON) {
		v->json = viewjson_begin(kind, ans, NULL, from_cache);
	}
	if (v->nlines == 0 && v->format == DISCOVERY_FORMAT_JSON) {
		view_complete(d, v);
		return;
	}
	if (v->nlines == 0) {
		body = render_text(NULL, 0, &len);
		view_finish(d, v, charge_short(d, body, len), len);
		return;
	}
	view_ask(d, v);
}

void views_serve(struct discovery *d, struct view *waiters, enum srv_outcome kind,
		 const struct srv_answer *ans, const char *reason)
{
	while (waiters != NULL) {
		struct view *next = waiters->next;

		waiters->next = NULL;
		view_serve(d, waiters, kind, ans, reason, false);
		waiters = next;
	}
}

void view_start(struct discovery *d, struct view *v)
{
	const struct srv_cache *c = cache_get(&d->cache, now_ns());

	if (c != NULL) {
		view_serve(d, v, c->kind, &c->ans, NULL, true);
		return;
	}
	if (d->loop_stopping) {
		view_dns_error(d, v, SHUTDOWN_TEXT);
		return;
	}
	v->next = NULL;
	if (d->waiters_tail != NULL) {
		d->waiters_tail->next = v;
	} else {
		d->waiters = v;
	}
	d->waiters_tail = v;
	lookup_begin(d);
}

void views_shutdown(struct discovery *d)
{
	/* Every line still waiting waits in a fetch, running or queued: ending them all
	 * completes every view in flight. */
	fetch_shutdown(d);
}
