/* SPDX-License-Identifier: MIT */
/*
 * The watcher: one per pod, on the loop thread, while someone watches. Every interval it
 * asks for the view as JSON through the facade (the way any client's view is asked, so
 * it shares fetches and counts against max_pending like one), compares it with the last
 * one it saw, and reports each round to the callback it was given: the view as one line
 * of compact JSON when it changed, nothing when it did not. A round still in flight when
 * the next is due makes that one wait: rounds never overlap, so a pod costs at most one
 * fan-out per interval however many watch it.
 */
#include "discovery/internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/budget.h"
#include "common/monotonic.h"

/* What parsing a document may hold at once, charged meanwhile: jansson's tree takes a
 * few times the text. */
#define WATCH_TREE_FACTOR 4

static uint64_t unix_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void watch_normalise(json_t *doc)
{
	json_t *srv = json_object_get(doc, "srv");
	json_t *peers = json_object_get(doc, "peers");
	size_t i;
	json_t *p;

	/* How the view was got, not what it says: a round served from the SRV cache, or a
	 * peer that answered a little slower, is the same view. */
	(void)json_object_del(srv, "from_cache");
	json_array_foreach(peers, i, p)
	{
		(void)json_object_del(p, "fetch_ms");
	}
}

static void watch_report(struct watch *w, char *body, size_t len, uint64_t changed_at_ms)
{
	struct discovery_watch_event ev = {
		.body = body, .len = len, .changed_at_ms = changed_at_ms};

	w->report(w->report_ctx, &ev);
}

static void watch_forget(struct watch *w)
{
	json_decref(w->last);
	w->last = NULL;
	budget_credit(w->budget, w->last_charge);
	w->last_charge = 0;
}

/* The view as one line of compact JSON, in a body of render_body_alloc(); NULL when the
 * budget or memory ran out. */
static char *watch_line(struct watch *w, const json_t *doc, size_t *len)
{
	size_t size = json_dumpb(doc, NULL, 0, JSON_COMPACT | JSON_REAL_PRECISION(12));
	char *body = size > 0 ? render_body_alloc(w->budget, size + 1) : NULL;

	if (body == NULL) {
		return NULL;
	}
	if (json_dumpb(doc, body, size, JSON_COMPACT | JSON_REAL_PRECISION(12)) != size) {
		render_body_free(body);
		return NULL;
	}
	body[size] = '\0';
	*len = size;
	return body;
}

/* A round's view, compared with the last one. */
static void watch_compare(struct watch *w, const char *text, size_t textlen)
{
	size_t charge = textlen * WATCH_TREE_FACTOR;
	char *line = NULL;
	size_t len = 0;
	json_t *doc;

	if (!budget_charge(w->budget, charge)) {
		watch_report(w, NULL, 0, 0);
		return;
	}
	doc = json_loadb(text, textlen, 0, NULL);
	if (doc == NULL) {
		budget_credit(w->budget, charge);
		watch_report(w, NULL, 0, 0);
		return;
	}
	line = watch_line(w, doc, &len);
	watch_normalise(doc);
	if (w->last != NULL && json_equal(w->last, doc)) {
		json_decref(doc);
		budget_credit(w->budget, charge);
		render_body_free(line);
		watch_report(w, NULL, 0, 0);
		return;
	}
	if (line == NULL) {
		/* Not kept as the last view: the next round reports the change again. */
		json_decref(doc);
		budget_credit(w->budget, charge);
		watch_report(w, NULL, 0, 0);
		return;
	}
	watch_forget(w);
	w->last = doc;
	w->last_charge = charge;
	watch_report(w, line, len, unix_ms());
}

static void watch_view_done(void *ctx, const struct discovery_view *view)
{
	struct watch *w = ctx;

	w->in_flight = false;
	if (!w->active || view->body == NULL) {
		render_body_free(view->body);
		if (w->active) {
			watch_report(w, NULL, 0, 0);
		}
		return;
	}
	watch_compare(w, view->body, view->len);
	render_body_free(view->body);
}

static void watch_tick(void *arg)
{
	struct watch *w = arg;

	if (!w->active) {
		return;
	}
	loop_timer_set(w->loop, &w->timer, monotonic_ns() + (uint64_t)w->interval_ms * NS_PER_MS);
	if (w->in_flight) {
		return;
	}
	w->in_flight = true;
	if (!w->submit(w->submit_arg, watch_view_done, w)) {
		/* Too many views in flight, or stopping: this round is skipped. */
		w->in_flight = false;
		watch_report(w, NULL, 0, 0);
	}
}

void watch_init(struct watch *w, struct loop *loop, struct budget *budget, watch_submit_fn submit,
		void *submit_arg)
{
	memset(w, 0, sizeof(*w));
	w->loop = loop;
	w->budget = budget;
	w->submit = submit;
	w->submit_arg = submit_arg;
	loop_timer_init(&w->timer, watch_tick, w);
}

void watch_set(struct watch *w, bool on, unsigned interval_ms, discovery_watch_fn report, void *ctx)
{
	if (on == w->active) {
		return;
	}
	w->active = on && report != NULL && interval_ms > 0;
	if (!w->active) {
		loop_timer_set(w->loop, &w->timer, LOOP_NEVER);
		watch_forget(w);
		return;
	}
	w->interval_ms = interval_ms;
	w->report = report;
	w->report_ctx = ctx;
	/* The first round at once: a new watcher has a view to send. */
	loop_timer_set(w->loop, &w->timer, monotonic_ns());
}

void watch_destroy(struct watch *w)
{
	w->active = false;
	loop_timer_set(w->loop, &w->timer, LOOP_NEVER);
	watch_forget(w);
}
