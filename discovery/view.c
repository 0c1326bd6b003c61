/* SPDX-License-Identifier: MIT */
/*
 * A cluster view on the loop thread, from the moment the facade hands it over to its
 * done callback. docs/discovery.md ("The code, file by file") tells its path.
 */
#include "discovery/internal.h"

#include <stdlib.h>
#include <string.h>

#include "common/budget.h"
#include "common/metrics.h"
#include "common/monotonic.h"

/* Hands the view's outcome to its callback and frees the view. The facade's slot is
 * given back first, so that a callback which submits again is not refused for its own
 * view. */
static void view_finish(struct views *vs, struct view *v, char *body, size_t len)
{
	struct discovery_view out = {.body = body, .len = body != NULL ? len : 0};

	for (size_t i = 0; i < v->nlines; i++) {
		const struct render_line *l = &v->lines[i];

		out.peer_errors += !l->self && (l->ans == NULL || l->ans->error);
	}
	vs->finished(vs->arg);
	v->done(v->ctx, &out);
	render_lines_free(v->lines, v->nlines);
	viewjson_free(v->json);
	free(v);
}

/* The JSON document of a view whose SRV part is known (v->json; NULL: memory ran out),
 * with this pod's data read now: like (whose reference it takes) when its bytes are
 * the same. */
static char *view_json(struct views *vs, struct view *v, size_t *len, char *like, size_t like_len)
{
	struct viewjson_pod pod = {.name = vs->cfg->hostname, .data = NULL, .len = 0};
	void *hold = NULL;
	char *body;

	vs->local->get(vs->local->ctx, &pod.data, &pod.len, &hold);
	body = viewjson_render(v->json, &pod, v->lines, v->nlines, vs->cfg->budget, len, like,
			       like_len);
	vs->local->release(vs->local->ctx, hold);
	return body;
}

static void view_dns_error(struct views *vs, struct view *v, const char *reason)
{
	size_t len = 0;
	char *body;

	if (v->format == DISCOVERY_FORMAT_JSON) {
		v->json = viewjson_begin(SRV_ERROR, NULL, reason, false);
		body = view_json(vs, v, &len, NULL, 0);
	} else {
		body = render_dns_error(vs->head, vs->headlen, reason, vs->cfg->budget, &len);
	}
	if (body != NULL) {
		metrics_view_body(false);
	}
	view_finish(vs, v, body, len);
}

/* Lets go of the bodies held through the pass that made them. */
static void view_release(void *arg)
{
	struct views *vs = arg;

	for (size_t k = 0; k < RENDER_KINDS; k++) {
		render_body_free(vs->held[k]);
		vs->held[k] = NULL;
	}
}

/* Keeps body alive until the loop's current pass ends: the views of one batch are
 * answered in one pass, and a reader that is done with its copy before the next view
 * of the batch is handed over must not take the body with it. */
static void view_hold(struct views *vs, enum discovery_format format, char *body)
{
	if (vs->loop == NULL || vs->held[format] == body) {
		return;
	}
	render_body_ref(body);
	render_body_free(vs->held[format]);
	vs->held[format] = body;
	if (!vs->release.armed) {
		loop_timer_set(vs->loop, &vs->release, 0); /* past: the next pass */
	}
}

/* The view's body: the latest one of its format when a rendering would make the same
 * bytes (the views of one batch, and any later view of the same answers while the body
 * is still held), else a new one, which becomes the latest. */
static void view_complete(struct views *vs, struct view *v)
{
	size_t len = 0;
	size_t like_len = 0;
	char *like = render_recent_get(vs->recent, v->format, &like_len);
	char *body;

	if (v->format == DISCOVERY_FORMAT_JSON) {
		body = view_json(vs, v, &len, like, like_len);
	} else if (render_text_same(like, like_len, vs->head, vs->headlen, v->lines, v->nlines)) {
		body = like;
		len = like_len;
	} else {
		render_body_free(like);
		body = render_text(vs->head, vs->headlen, v->lines, v->nlines, vs->cfg->budget,
				   &len);
	}
	if (body != NULL) {
		metrics_view_body(!render_recent_put(vs->recent, v->format, body, len));
		view_hold(vs, v->format, body);
	}
	view_finish(vs, v, body, len);
}

/* A line that waited for its peer got its text (fetch.c). */
static void view_line_done(void *arg, struct view *v, struct render_line *l)
{
	(void)l;
	if (--v->nleft == 0) {
		view_complete(arg, v);
	}
}

/* This pod's line: its data as storage has it, never over the network and never
 * copied: the line borrows it until the view is rendered. */
static void read_local(struct views *vs, struct render_line *l)
{
	const struct discovery_local *local = vs->local;
	const char *data = NULL;
	size_t len = 0;
	void *hold = NULL;
	struct render_answer *a;

	local->get(local->ctx, &data, &len, &hold);
	a = render_answer_borrow(data, len, local->release, local->ctx, hold);
	render_line_share(l, a);
	render_answer_unref(a);
}

/* Gives every line its text or a fetch to wait for. */
static void view_ask(struct views *vs, struct view *v)
{
	v->nleft = v->nlines;
	for (size_t i = 0; i < v->nlines; i++) {
		struct render_line *l = &v->lines[i];

		if (l->done) {
			v->nleft--;
		} else if (l->self) {
			read_local(vs, l);
			v->nleft--;
		} else if (vs->stopping) {
			render_line_error(l, SHUTDOWN_TEXT);
			v->nleft--;
		} else if (!fetch_join(vs->ft, v, i)) {
			render_line_error(l, "could not start the request (out of memory)");
			v->nleft--;
		}
	}
	/* Fetches answer only from the loop, never inside fetch_join(), so v is still
	 * ours here. */
	if (v->nleft == 0) {
		view_complete(vs, v);
	}
}

/* The lines for a parsed answer: its records, this pod, the missing pods. */
static bool view_plan(struct views *vs, struct view *v, const struct srv_answer *ans)
{
	const struct discovery_config *cfg = vs->cfg;

	return render_plan(ans, cfg->hostname, cfg->peer_port, &v->lines, &v->nlines) == 0 &&
	       missing_add(&v->lines, &v->nlines, cfg->replicas, cfg->max_peers) >= 0;
}

static void view_serve(struct views *vs, struct view *v, enum srv_outcome kind,
		       const struct srv_answer *ans, const char *reason, bool from_cache)
{
	if (kind == SRV_ERROR) {
		view_dns_error(vs, v, reason != NULL ? reason : "unknown error");
		return;
	}
	if (kind == SRV_PEERS && !view_plan(vs, v, ans)) {
		discovery_logf(vs->cfg, DISCOVERY_LOG_ERROR,
			       "out of memory planning a cluster view");
		view_finish(vs, v, NULL, 0);
		return;
	}
	if (v->format == DISCOVERY_FORMAT_JSON) {
		v->json = viewjson_begin(kind, ans, NULL, from_cache);
	}
	if (v->nlines == 0) {
		view_complete(vs, v);
		return;
	}
	view_ask(vs, v);
}

/* The lookup ended: it serves every view that waited for it. */
static void view_lookup_done(void *arg, enum srv_outcome kind, const struct srv_answer *ans,
			     const char *reason)
{
	struct views *vs = arg;
	struct view *w = vs->waiters;

	vs->waiters = NULL;
	vs->waiters_tail = NULL;
	while (w != NULL) {
		struct view *next = w->next;

		w->next = NULL;
		view_serve(vs, w, kind, ans, reason, false);
		w = next;
	}
}

void view_start(struct views *vs, struct view *v)
{
	const struct srv_cache *c = lookup_cached(vs->lu, monotonic_ns());

	if (c != NULL) {
		view_serve(vs, v, c->kind, &c->ans, NULL, true);
		return;
	}
	if (vs->stopping) {
		view_dns_error(vs, v, SHUTDOWN_TEXT);
		return;
	}
	v->next = NULL;
	if (vs->waiters_tail != NULL) {
		vs->waiters_tail->next = v;
	} else {
		vs->waiters = v;
	}
	vs->waiters_tail = v;
	lookup_begin(vs->lu, view_lookup_done, vs);
}

void view_stop(struct views *vs)
{
	vs->stopping = true;
	fetch_stop(vs->ft);
}

void view_end_all(struct views *vs)
{
	view_stop(vs);
	/* The lookup's waiters get its end now; every line still waiting after that waits
	 * in a fetch, running or queued. */
	lookup_cancel(vs->lu, false);
	fetch_end_all(vs->ft);
}

void view_init(struct views *vs, const struct discovery_config *cfg,
	       const struct discovery_local *local, struct loop *loop, struct lookup *lu,
	       struct fetches *ft, struct transfers *tr, view_finished_fn finished, void *arg)
{
	memset(vs, 0, sizeof(*vs));
	vs->cfg = cfg;
	vs->loop = loop;
	loop_timer_init(&vs->release, view_release, vs);
	vs->local = local;
	vs->lu = lu;
	vs->ft = ft;
	vs->finished = finished;
	vs->arg = arg;
	vs->headlen = render_head(cfg->hostname, vs->head);
	vs->recent = render_recent_new();
	fetch_init(ft, cfg, tr, view_line_done, vs);
}

void view_destroy(struct views *vs)
{
	if (vs->loop != NULL) {
		loop_timer_set(vs->loop, &vs->release, LOOP_NEVER);
	}
	view_release(vs);
	render_recent_unref(vs->recent);
	vs->recent = NULL;
}
