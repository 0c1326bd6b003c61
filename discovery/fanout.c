/* SPDX-License-Identifier: MIT */
/*
 * The cluster view's lines: which peers to ask (planning) and the text that results
 * (rendering). Pure functions, so the exact output bytes are unit tested; the transfers
 * themselves live in transfer.c.
 */
#include "discovery/internal.h"

#include <stdarg.h>
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

bool fanout_line_set(struct fanout_line *l, const char *data, size_t len)
{
	/* Always allocate (even for an empty body) so that data == NULL means only one
	 * thing: memory ran out, which fanout_render() reports as such. */
	char *copy = malloc(len + 1);

	free(l->data);
	l->data = NULL;
	l->len = 0;
	l->done = true;
	if (copy == NULL) {
		return false;
	}
	if (len > 0) {
		memcpy(copy, data, len);
	}
	copy[len] = '\0';
	l->data = copy;
	l->len = len;
	return true;
}

bool fanout_line_error(struct fanout_line *l, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;
	size_t len;

	memcpy(buf, "Error: ", 7);
	va_start(ap, fmt);
	n = vsnprintf(buf + 7, sizeof(buf) - 7, fmt, ap);
	va_end(ap);
	if (n < 0) {
		n = 0;
		buf[7] = '\0';
	}
	len = 7 + (size_t)n;
	if (len >= sizeof(buf)) {
		len = sizeof(buf) - 1;
	}
	return fanout_line_set(l, buf, len);
}

void fanout_lines_free(struct fanout_line *lines, size_t n)
{
	if (lines == NULL) {
		return;
	}
	for (size_t i = 0; i < n; i++) {
		free(lines[i].data);
	}
	free(lines);
}

int fanout_plan(const struct srv_answer *a, const char *hostname, unsigned peer_port,
		struct fanout_line **out, size_t *n)
{
	struct fanout_line *lines;
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
		struct fanout_line *l;

		if (total > a->npeers && i == self_at) {
			l = &lines[k++];
			memcpy(l->name, selfname, sizeof(selfname));
			l->self = true;
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
		    !fanout_line_error(l, "could not resolve %s: %s", p->name,
				       p->err[0] != '\0' ? p->err : "no address")) {
			fanout_lines_free(lines, total);
			return -1;
		}
	}
	*out = lines;
	*n = total;
	return 0;
}

char *fanout_render(const struct fanout_line *lines, size_t n, size_t *len)
{
	static const char none[] = "No peers discovered.\n";
	size_t total = 0;
	char *body;
	char *p;

	if (n == 0) {
		body = malloc(sizeof(none));
		if (body != NULL) {
			memcpy(body, none, sizeof(none));
			*len = sizeof(none) - 1;
		}
		return body;
	}
	for (size_t i = 0; i < n; i++) {
		size_t dlen = lines[i].data != NULL ? lines[i].len : strlen(OOM_TEXT);

		total += 2 + strlen(lines[i].name) + 2 + dlen + 1;
	}
	body = malloc(total + 1);
	if (body == NULL) {
		return NULL;
	}
	p = body;
	for (size_t i = 0; i < n; i++) {
		size_t nl = strlen(lines[i].name);

		memcpy(p, "- ", 2);
		p += 2;
		memcpy(p, lines[i].name, nl);
		p += nl;
		memcpy(p, ": ", 2);
		p += 2;
		if (lines[i].data != NULL) {
			if (lines[i].len > 0) {
				memcpy(p, lines[i].data, lines[i].len);
			}
			p += lines[i].len;
		} else {
			memcpy(p, OOM_TEXT, strlen(OOM_TEXT));
			p += strlen(OOM_TEXT);
		}
		*p++ = '\n';
	}
	*p = '\0';
	*len = total;
	return body;
}

char *fanout_render_dns_error(const char *reason, size_t *len)
{
	static const char prefix[] = "Could not look up DNS SRV records: ";
	size_t rl = strlen(reason);
	size_t total = sizeof(prefix) - 1 + rl + 1;
	char *body = malloc(total + 1);

	if (body == NULL) {
		return NULL;
	}
	memcpy(body, prefix, sizeof(prefix) - 1);
	memcpy(body + sizeof(prefix) - 1, reason, rl);
	body[total - 1] = '\n';
	body[total] = '\0';
	*len = total;
	return body;
}
