/* SPDX-License-Identifier: MIT */
/*
 * The cluster view as JSON (docs/view-json.md, docs/view.schema.json): this pod, the
 * SRV answer as the view saw it, and one object per line of the text view. Made with
 * jansson; the bytes of a peer's data go in as a string when they are valid UTF-8,
 * else as base64 with "data_base64": true. Pure: no threads, sockets or clock.
 */
#include "discovery/internal.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/budget.h"

/* What the tree of one line costs beyond its data, at most (keys, numbers, the name and
 * the error text, jansson's own allocations). */
#define LINE_OVERHEAD 2048
#define DOC_OVERHEAD 4096

struct viewjson {
	json_t *srv;
};

size_t viewjson_base64_len(size_t len)
{
	return (len + 2) / 3 * 4;
}

void viewjson_base64_encode(const unsigned char *data, size_t len, char *out)
{
	static const char abc[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i = 0;
	char *p = out;

	for (; i + 2 < len; i += 3) {
		unsigned v = (unsigned)data[i] << 16 | (unsigned)data[i + 1] << 8 | data[i + 2];

		*p++ = abc[v >> 18 & 63];
		*p++ = abc[v >> 12 & 63];
		*p++ = abc[v >> 6 & 63];
		*p++ = abc[v & 63];
	}
	if (i < len) {
		unsigned v =
			(unsigned)data[i] << 16 | (i + 1 < len ? (unsigned)data[i + 1] << 8 : 0);

		*p++ = abc[v >> 18 & 63];
		*p++ = abc[v >> 12 & 63];
		*p++ = i + 1 < len ? abc[v >> 6 & 63] : '=';
		*p++ = '=';
	}
	*p = '\0';
}

/* An address as text, or JSON null when there is none. */
static json_t *address_json(int family, const unsigned char *addr)
{
	char text[INET6_ADDRSTRLEN];

	if ((family != AF_INET && family != AF_INET6) ||
	    inet_ntop(family, addr, text, sizeof(text)) == NULL) {
		return json_null();
	}
	return json_string(text);
}

static json_t *record_json(const struct srv_peer *p)
{
	json_t *r = json_object();
	json_t *addrs = json_array();
	int bad = 0;

	if (r == NULL || addrs == NULL) {
		json_decref(r);
		json_decref(addrs);
		return NULL;
	}
	if (p->family != 0) {
		bad |= json_array_append_new(addrs, address_json(p->family, p->addr));
	}
	bad |= json_object_set_new(r, "target", json_string(p->name));
	bad |= json_object_set_new(r, "port", json_integer(p->port));
	bad |= json_object_set_new(r, "priority", json_integer(p->priority));
	bad |= json_object_set_new(r, "weight", json_integer(p->weight));
	bad |= json_object_set_new(r, "addresses", addrs);
	if (bad != 0) {
		json_decref(r);
		return NULL;
	}
	return r;
}

static const char *result_name(enum srv_outcome kind)
{
	switch (kind) {
	case SRV_PEERS:
		return "peers";
	case SRV_EMPTY:
		return "none";
	default:
		return "error";
	}
}

struct viewjson *viewjson_begin(enum srv_outcome kind, const struct srv_answer *ans,
				const char *reason, bool from_cache)
{
	struct viewjson *vj = calloc(1, sizeof(*vj));
	json_t *records = json_array();
	bool peers = kind == SRV_PEERS && ans != NULL;
	int bad = 0;

	if (vj == NULL || records == NULL || (vj->srv = json_object()) == NULL) {
		goto fail;
	}
	for (size_t i = 0; peers && i < ans->npeers; i++) {
		bad |= json_array_append_new(records, record_json(&ans->peers[i]));
	}
	bad |= json_object_set_new(vj->srv, "result", json_string(result_name(kind)));
	bad |= json_object_set_new(vj->srv, "name", peers ? json_string(ans->qname) : json_null());
	bad |= json_object_set_new(vj->srv, "ttl",
				   peers && ans->ttl != UINT32_MAX ? json_integer(ans->ttl)
								   : json_null());
	bad |= json_object_set_new(vj->srv, "from_cache", json_boolean(from_cache));
	bad |= json_object_set_new(vj->srv, "records", records);
	records = NULL;
	if (kind == SRV_ERROR) {
		bad |= json_object_set_new(vj->srv, "error",
					   json_string(reason != NULL ? reason : "unknown error"));
	}
	if (bad == 0) {
		return vj;
	}
fail:
	json_decref(records);
	viewjson_free(vj);
	return NULL;
}

void viewjson_free(struct viewjson *vj)
{
	if (vj != NULL) {
		json_decref(vj->srv);
		free(vj);
	}
}

/* Sets "data" (and "data_base64") on o: a string when the bytes are valid UTF-8
 * (NUL bytes included), else their base64. */
static int set_data(json_t *o, const char *data, size_t len)
{
	json_t *s = json_stringn(data, len);
	char *b64;

	if (s != NULL) {
		return json_object_set_new(o, "data", s) |
		       json_object_set_new(o, "data_base64", json_false());
	}
	b64 = malloc(viewjson_base64_len(len) + 1);
	if (b64 == NULL) {
		return -1;
	}
	viewjson_base64_encode((const unsigned char *)data, len, b64);
	s = json_stringn_nocheck(b64, viewjson_base64_len(len));
	free(b64);
	return json_object_set_new(o, "data", s) |
	       json_object_set_new(o, "data_base64", json_true());
}

static json_t *line_json(const struct render_line *l)
{
	const struct render_answer *a = l->ans;
	json_t *o = json_object();
	int bad = 0;

	if (o == NULL) {
		return NULL;
	}
	bad |= json_object_set_new(o, "name", json_string(l->name));
	bad |= json_object_set_new(o, "self", json_boolean(l->self));
	bad |= json_object_set_new(o, "in_dns", json_boolean(!l->unlisted));
	bad |= json_object_set_new(o, "missing", json_boolean(l->missing));
	bad |= json_object_set_new(o, "address", address_json(l->family, l->addr));
	bad |= json_object_set_new(o, "port", l->port != 0 ? json_integer(l->port) : json_null());
	if (a == NULL) {
		bad |= json_object_set_new(o, "error", json_string("out of memory"));
	} else if (a->error) {
		/* The text view's "Error: <reason>": the reason alone. */
		size_t skip = a->len >= 7 ? 7 : a->len;

		bad |= json_object_set_new(o, "error", json_stringn(a->data + skip, a->len - skip));
	} else {
		bad |= set_data(o, a->data, a->len);
	}
	if (a != NULL && a->fetched) {
		/* Milliseconds, to the microsecond (whole microseconds first). */
		uint64_t us = a->fetch_ns / 1000u;

		bad |= json_object_set_new(o, "fetch_ms", json_real((double)us / 1000.0));
	}
	if (bad != 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *doc_json(const struct viewjson *vj, const struct viewjson_pod *pod,
			const struct render_line *lines, size_t n)
{
	json_t *doc = json_object();
	json_t *me = json_object();
	json_t *peers = json_array();
	int bad = doc == NULL || me == NULL || peers == NULL ? -1 : 0;

	for (size_t i = 0; bad == 0 && i < n; i++) {
		bad |= json_array_append_new(peers, line_json(&lines[i]));
	}
	if (bad == 0) {
		bad |= json_object_set_new(me, "name", json_string(pod->name));
		bad |= set_data(me, pod->data, pod->len);
		bad |= json_object_set_new(doc, "pod", me);
		me = NULL;
		bad |= json_object_set_new(doc, "srv", json_incref(vj->srv));
		bad |= json_object_set_new(doc, "peers", peers);
		peers = NULL;
	}
	json_decref(me);
	json_decref(peers);
	if (bad != 0) {
		json_decref(doc);
		return NULL;
	}
	return doc;
}

/* What building the tree may hold at once: a copy of every datum, or its base64 twice
 * (the encoding and the string made of it), plus the fixed parts. */
static size_t tree_bound(const struct viewjson_pod *pod, const struct render_line *lines, size_t n)
{
	size_t total = DOC_OVERHEAD + 2 * viewjson_base64_len(pod->len);

	for (size_t i = 0; i < n; i++) {
		size_t len = lines[i].ans != NULL ? lines[i].ans->len : 0;

		total += LINE_OVERHEAD + 2 * viewjson_base64_len(len);
	}
	return total;
}

#define DUMP_FLAGS (JSON_INDENT(2) | JSON_REAL_PRECISION(12))

/* json_dump_callback()'s sink that compares the text with a body's bytes. */
struct same_as {
	const char *p;
	size_t left;
};

static int compare_chunk(const char *buffer, size_t size, void *data)
{
	struct same_as *c = data;

	if (size > c->left || memcmp(c->p, buffer, size) != 0) {
		return -1; /* stops the dump: not the same */
	}
	c->p += size;
	c->left -= size;
	return 0;
}

/* Whether doc, dumped, is like's first size bytes followed by the newline. */
static bool same_doc(const json_t *doc, size_t size, const char *like, size_t like_len)
{
	struct same_as c = {.p = like, .left = size};

	return like != NULL && like_len == size + 1 && like[size] == '\n' &&
	       json_dump_callback(doc, compare_chunk, &c, DUMP_FLAGS) == 0 && c.left == 0;
}

char *viewjson_render(const struct viewjson *vj, const struct viewjson_pod *pod,
		      const struct render_line *lines, size_t n, struct budget *budget, size_t *len,
		      char *like, size_t like_len)
{
	size_t bound = tree_bound(pod, lines, n);
	json_t *doc;
	size_t size;
	char *body = NULL;

	if (vj == NULL || !budget_charge(budget, bound)) {
		render_body_free(like);
		return NULL;
	}
	doc = doc_json(vj, pod, lines, n);
	size = doc != NULL ? json_dumpb(doc, NULL, 0, DUMP_FLAGS) : 0;
	if (size > 0 && same_doc(doc, size, like, like_len)) {
		json_decref(doc);
		budget_credit(budget, bound);
		*len = like_len;
		return like;
	}
	render_body_free(like);
	/* The text, its newline and the NUL after it. */
	if (size > 0) {
		body = render_body_alloc(budget, size + 2);
	}
	if (body != NULL && json_dumpb(doc, body, size, DUMP_FLAGS) == size) {
		body[size] = '\n';
		body[size + 1] = '\0';
		*len = size + 1;
	} else {
		render_body_free(body);
		body = NULL;
	}
	json_decref(doc);
	budget_credit(budget, bound);
	return body;
}
