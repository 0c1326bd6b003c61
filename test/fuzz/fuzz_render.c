/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the cluster view's assembly (discovery/render.c): planning the
 * lines of an SRV answer, giving them their answers (copied, errors, shared by
 * reference, borrowed, out of memory) and rendering the text.
 *
 * The rendered body is compared byte for byte with the view built here on its own from
 * the contract (README "What it answers"): one "- <name>: <text>\n" line per pod in the
 * answer's order, this pod's line inserted among them when the answer lacks it, never a
 * line for a pod the answer does not name, "No peers discovered.\n" for none. Borrowed
 * data are given back exactly once, after the last line lets go of them.
 *
 * Missing pods (missing.c) are added as the view does, and checked against the rule
 * stated on its own here: their names, their place, their text. The JSON view
 * (viewjson.c) of the same lines must parse and say the same.
 *
 * Input: the peer count, flags (1: a hostname, 2: a fixed peer port, 4: at most 3
 * missing pods, else 64; the high five bits: the StatefulSet's replicas), the peer port,
 * then NUL-separated fields: hostname, this pod's data, a DNS error reason, the shared
 * answer; then per peer four bytes (family, port, port, answer kind) and two fields (its
 * name, its data or error).
 */
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <jansson.h>

#include "discovery/internal.h"

#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_PEERS 12
#define MAX_MISSING 64
#define FIELD_MAX 2048
#define OOM "Error: out of memory"

enum kind { SET, ERROR, NOMEM, SHARED, KINDS };

struct spec {
	struct srv_peer p;
	enum kind kind;
	char *data;
};

struct text {
	char *s;
	size_t len;
};

static size_t releases;
static size_t borrows;

/* Names as kubia gets them: c-ares writes a DNS name's other bytes as \DDD, and a host
 * name is printable ASCII without '/' (config.c): anything else becomes 'x' here. */
static void printable(char *s)
{
	for (; *s != '\0'; s++) {
		if (*s < 0x21 || *s > 0x7e || *s == '/') {
			*s = 'x';
		}
	}
}

/* Error texts as kubia makes them: printable ASCII. */
static void ascii(char *s)
{
	for (; *s != '\0'; s++) {
		if (*s < 0x20 || *s > 0x7e) {
			*s = '?';
		}
	}
}

static void release(void *ctx, void *hold)
{
	if (ctx != &releases || hold != &releases) {
		abort();
	}
	releases++;
}

/* The order srv_parse() gives (the documented precondition of render_plan()). */
static int spec_cmp(const void *a, const void *b)
{
	return srv_name_cmp(((const struct spec *)a)->p.name, ((const struct spec *)b)->p.name);
}

/* "Error: " and printf-like text, cut as render.c documents (1 KiB with the NUL). */
static struct text error_text(const char *a, const char *b, const char *c)
{
	struct text t;
	char *s = NULL;
	int n = asprintf(&s, "Error: %s%s%s", a, b, c);

	if (n < 0) {
		abort();
	}
	t.s = s;
	t.len = (size_t)n < 1023 ? (size_t)n : 1023;
	return t;
}

/* Reads the peers into specs, in the answer's order, unique by name ignoring case. */
static size_t read_peers(const uint8_t **p, const uint8_t *end, size_t want, struct spec *specs)
{
	size_t n = 0;

	for (size_t i = 0; i < want && end - *p >= 4; i++) {
		struct spec *s = &specs[n];
		const uint8_t *b = *p;
		char *name;

		memset(s, 0, sizeof(*s));
		*p += 4;
		name = fuzz_field(p, end, FIELD_MAX);
		printable(name);
		s->data = fuzz_field(p, end, FIELD_MAX);
		s->kind = (enum kind)(b[3] % KINDS);
		if (s->kind == ERROR || (b[0] % 3 == 0 && (b[0] & 0x80) != 0)) {
			ascii(s->data); /* error texts are kubia's, curl's and c-ares' own */
		}
		s->p.port = (uint16_t)(b[1] << 8 | b[2]);
		s->p.family = b[0] % 3 == 0 ? 0 : (b[0] % 3 == 1 ? AF_INET : AF_INET6);
		memset(s->p.addr, b[0], sizeof(s->p.addr));
		if (s->p.family == 0 && (b[0] & 0x80) != 0) {
			snprintf(s->p.err, sizeof(s->p.err), "%s", s->data);
		}
		/* srv_parse() never keeps an empty target, nor one that does not fit. */
		if (name[0] == '\0' || strlen(name) >= sizeof(s->p.name)) {
			free(name);
			free(s->data);
			continue;
		}
		memcpy(s->p.name, name, strlen(name) + 1);
		free(name);
		n++;
	}
	qsort(specs, n, sizeof(*specs), spec_cmp);
	for (size_t r = 1, w = 1; r <= n; r++) {
		if (r == n) {
			n = w;
			break;
		}
		if (strcasecmp(specs[w - 1].p.name, specs[r].p.name) == 0) {
			free(specs[r].data);
			continue;
		}
		specs[w++] = specs[r];
	}
	return n;
}

/* Gives every line that waits its answer, as the loop would (this pod's own line
 * borrowed, never fetched, whatever its address); returns the text each line must show. */
static void answer_lines(struct render_line *lines, size_t nl, const struct spec *specs, size_t np,
			 const char *local, const char *shared_text, struct text *want)
{
	struct render_answer *shared = render_answer_copy(shared_text, strlen(shared_text));
	size_t k = 0;

	if (shared == NULL) {
		abort();
	}
	for (size_t i = 0; i < nl; i++) {
		struct render_line *l = &lines[i];
		const struct spec *s =
			k < np && strcmp(l->name, specs[k].p.name) == 0 ? &specs[k++] : NULL;
		struct render_answer *a;

		if (s == NULL && !l->self && !l->missing) {
			abort(); /* a line for a pod the answer does not name */
		}
		if (l->missing) {
			/* A pod of the StatefulSet that DNS does not list (checked in
			 * check_missing()). */
			if (!l->done || !l->unlisted || l->self) {
				abort();
			}
			want[i] = error_text(MISSING_TEXT, "", "");
		} else if (l->self) {
			if (l->done) {
				abort();
			}
			a = render_answer_borrow(local, strlen(local), release, &releases,
						 &releases);
			borrows++;
			render_line_share(l, a);
			render_answer_unref(a);
			want[i] = (struct text){strdup(local), strlen(local)};
		} else if (s->p.family == 0) {
			if (!l->done) {
				abort(); /* nothing to fetch from */
			}
			char tail[SRV_ERR_MAX + 8];

			snprintf(tail, sizeof(tail), ": %s",
				 s->p.err[0] != '\0' ? s->p.err : "no address");
			want[i] = error_text("could not resolve ", s->p.name, tail);
		} else {
			if (l->done) {
				abort();
			}
			switch (s->kind) {
			case SET:
				if (!render_line_set(l, s->data, strlen(s->data))) {
					abort();
				}
				want[i] = (struct text){strdup(s->data), strlen(s->data)};
				break;
			case ERROR:
				if (!render_line_error(l, "%s", s->data)) {
					abort();
				}
				want[i] = error_text(s->data, "", "");
				break;
			case NOMEM:
				render_line_share(l, NULL);
				want[i] = (struct text){strdup(OOM), strlen(OOM)};
				break;
			default:
				render_line_share(l, shared);
				want[i] = (struct text){strdup(shared_text), strlen(shared_text)};
				break;
			}
		}
		if (!l->done || want[i].s == NULL) {
			abort();
		}
	}
	if (k != np) {
		abort(); /* a pod of the answer without its line */
	}
	render_answer_unref(shared);
}

/* The planned lines: the answer's pods in order, each with its port, and this pod's own
 * line where the answer lacks it. */
static void check_plan(const struct srv_answer *a, const char *host, unsigned peer_port,
		       const struct render_line *lines, size_t nl)
{
	size_t self_inserted = 0;
	bool have_self = false;

	if (nl < a->npeers || nl > a->npeers + 1 || (a->npeers == 0) != (nl == 0)) {
		abort();
	}
	for (size_t j = 0; j < a->npeers; j++) {
		have_self = have_self || (host != NULL && srv_is_self(a->peers[j].name, host));
	}
	for (size_t i = 0; i < nl; i++) {
		const struct srv_peer *pe = NULL;

		for (size_t j = 0; j < a->npeers; j++) {
			pe = strcmp(a->peers[j].name, lines[i].name) == 0 ? &a->peers[j] : pe;
		}
		if (pe == NULL && (host == NULL || !lines[i].self)) {
			abort(); /* a line for a pod the answer does not name */
		}
		if (pe == NULL) {
			/* Named like the others: this pod's first label, then what follows the
			 * first label of the answer's first pod. */
			const char *rest = strchr(a->peers[0].name, '.');
			size_t hl = strcspn(host, ".");

			if (strncmp(lines[i].name, host, hl) != 0 ||
			    strcmp(lines[i].name + hl, rest != NULL ? rest : "") != 0) {
				abort();
			}
			self_inserted++;
		}
		if (lines[i].self != (host != NULL && srv_is_self(lines[i].name, host)) ||
		    (pe == NULL && !lines[i].self) ||
		    (i > 0 && srv_name_cmp(lines[i - 1].name, lines[i].name) >= 0)) {
			abort();
		}
		if (pe != NULL && lines[i].port != (peer_port != 0 ? peer_port : pe->port)) {
			abort();
		}
	}
	/* This pod's line is inserted exactly when the answer lacks it. */
	if (self_inserted !=
	    (size_t)(host != NULL && strcspn(host, ".") > 0 && !have_self && a->npeers > 0)) {
		abort();
	}
}

/* "<base>-<ordinal>" as a StatefulSet names its pods: the first label, a base, a dash,
 * an ordinal of 1-9 digits without a leading zero. */
static bool ordinal_of(const char *name, size_t *base, unsigned long *ord)
{
	size_t label = strcspn(name, ".");
	size_t d = 0;

	while (d < label && name[label - 1 - d] >= '0' && name[label - 1 - d] <= '9') {
		d++;
	}
	if (d == 0 || d > 9 || d + 2 > label || name[label - d - 1] != '-' ||
	    (d > 1 && name[label - d] == '0')) {
		return false;
	}
	*base = label - d - 1;
	*ord = strtoul(name + label - d, NULL, 10);
	return true;
}

/* The nth (from 0) ordinal that none of ords has. */
static unsigned long nth_missing(const unsigned long *ords, size_t n, size_t nth)
{
	for (unsigned long o = 0;; o++) {
		bool listed = false;

		for (size_t j = 0; j < n; j++) {
			listed = listed || ords[j] == o;
		}
		if (!listed && nth-- == 0) {
			return o;
		}
	}
}

/* The missing pods' lines: with every planned line "<base>-<ordinal>" of one base in
 * ordinal order, each ordinal below the highest (and below replicas) that no line has,
 * the lowest first, at most limit, named after the first line; the planned lines keep
 * their order. */
static void check_missing(struct render_line **lines, size_t *nl, unsigned replicas, size_t limit)
{
	size_t n0 = *nl;
	char(*names)[LINE_NAME_MAX] = calloc(n0 + 1, sizeof(*names));
	unsigned long *ords = calloc(n0 + 1, sizeof(*ords));
	bool rule = n0 > 0 && limit > 0 && strlen((*lines)[0].name) + 10 < LINE_NAME_MAX;
	size_t base = 0;
	unsigned long end = 0;
	size_t want = 0;
	size_t k = 0, nth = 0;
	int added;

	if (names == NULL || ords == NULL) {
		abort();
	}
	for (size_t i = 0; i < n0; i++) {
		size_t b = 0;

		memcpy(names[i], (*lines)[i].name, LINE_NAME_MAX);
		rule = rule && ordinal_of(names[i], &b, &ords[i]) &&
		       (i == 0 || (b == base && strncasecmp(names[i], names[0], b) == 0 &&
				   ords[i] >= ords[i - 1]));
		base = i == 0 ? b : base;
	}
	if (rule) {
		end = ords[n0 - 1] + 1 > replicas ? ords[n0 - 1] + 1 : replicas;
		for (unsigned long o = 0, i = 0; o < end && want < limit; o++) {
			while (i < n0 && ords[i] < o) {
				i++;
			}
			want += i >= n0 || ords[i] != o;
		}
	}
	added = missing_add(lines, nl, replicas, limit);
	if (added < 0 || (size_t)added != want || *nl != n0 + want) {
		abort();
	}
	for (size_t i = 0; i < *nl; i++) {
		const struct render_line *l = &(*lines)[i];

		if (!l->missing) {
			if (k >= n0 || strcmp(l->name, names[k++]) != 0) {
				abort(); /* a planned line lost or moved */
			}
		} else {
			char expect[LINE_NAME_MAX];
			const char *rest = strchr(names[0], '.');
			unsigned long o = nth_missing(ords, n0, nth++);
			size_t b = 0;
			unsigned long got = 0;

			snprintf(expect, sizeof(expect), "%.*s-%lu%s", (int)base, names[0], o,
				 rest != NULL ? rest : "");
			if (strcmp(l->name, expect) != 0 || !ordinal_of(l->name, &b, &got)) {
				abort();
			}
		}
		/* In ordinal order with the planned lines around it. */
		if (i > 0 && (*lines)[i - 1].missing != l->missing) {
			size_t b = 0;
			unsigned long prev = 0, cur = 0;

			if (!ordinal_of((*lines)[i - 1].name, &b, &prev) ||
			    !ordinal_of(l->name, &b, &cur) || prev >= cur) {
				abort();
			}
		}
	}
	free(names);
	free(ords);
}

static int unb64(char c)
{
	const char *abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *p = c != '\0' ? strchr(abc, c) : NULL;

	return p != NULL ? (int)(p - abc) : -1;
}

/* Does the JSON "data" of o (a string, or base64 when "data_base64" is true) hold
 * exactly want? */
static bool same_data(json_t *o, const char *want, size_t wlen)
{
	json_t *d = json_object_get(o, "data");
	const char *s = json_string_value(d);
	size_t n = json_string_length(d);
	unsigned char *out;
	size_t k = 0;
	bool same;

	if (s == NULL || !json_is_boolean(json_object_get(o, "data_base64"))) {
		return false;
	}
	if (!json_is_true(json_object_get(o, "data_base64"))) {
		return n == wlen && memcmp(s, want, n) == 0;
	}
	if (n % 4 != 0 || (out = malloc(n / 4 * 3 + 1)) == NULL) {
		return false;
	}
	for (size_t i = 0; i < n; i += 4) {
		int v[4];

		for (int j = 0; j < 4; j++) {
			v[j] = s[i + j] == '=' && i + 4 == n && j >= 2 ? 0 : unb64(s[i + j]);
			if (v[j] < 0) {
				free(out);
				return false;
			}
		}
		out[k++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
		if (s[i + 2] != '=') {
			out[k++] = (unsigned char)((v[1] & 15) << 4 | v[2] >> 2);
		}
		if (s[i + 3] != '=') {
			out[k++] = (unsigned char)((v[2] & 3) << 6 | v[3]);
		}
	}
	same = k == wlen && memcmp(out, want, k) == 0;
	free(out);
	return same;
}

/* The same view as JSON (viewjson.c): a well-formed document, newline-terminated, whose
 * "peers" are the text view's lines in order, each with its name, flags and the same
 * bytes (data, or the error's reason), and whose "pod" is this pod and its data. */
static void check_json(const struct srv_answer *a, const struct render_line *lines, size_t nl,
		       const struct text *want, const char *host, const char *local)
{
	struct viewjson *vj = viewjson_begin(SRV_PEERS, a, NULL, false);
	struct viewjson_pod pod = {host != NULL ? host : "pod", local, strlen(local)};
	size_t len = 0;
	char *body = vj != NULL ? viewjson_render(vj, &pod, lines, nl, NULL, &len, NULL, 0) : NULL;
	json_error_t jerr;
	json_t *doc, *peers;

	if (body == NULL || len == 0 || body[len - 1] != '\n' || strlen(body) != len) {
		abort();
	}
	doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	peers = json_object_get(doc, "peers");
	if (doc == NULL || json_array_size(peers) != nl ||
	    !same_data(json_object_get(doc, "pod"), local, strlen(local)) ||
	    !json_is_object(json_object_get(doc, "srv"))) {
		abort();
	}
	for (size_t i = 0; i < nl; i++) {
		json_t *o = json_array_get(peers, i);
		const char *err = json_string_value(json_object_get(o, "error"));
		bool is_error = want[i].len >= 7 && memcmp(want[i].s, "Error: ", 7) == 0 &&
				lines[i].ans != NULL && lines[i].ans->error;

		if (strcmp(json_string_value(json_object_get(o, "name")), lines[i].name) != 0 ||
		    json_is_true(json_object_get(o, "self")) != lines[i].self ||
		    json_is_true(json_object_get(o, "missing")) != lines[i].missing ||
		    json_is_true(json_object_get(o, "in_dns")) == lines[i].unlisted) {
			abort();
		}
		if (lines[i].ans == NULL ? err == NULL || strcmp(err, "out of memory") != 0
		    : is_error           ? err == NULL ||
					 json_string_length(json_object_get(o, "error")) !=
						 want[i].len - 7 ||
					 memcmp(err, want[i].s + 7, want[i].len - 7) != 0
			       : !same_data(o, want[i].s, want[i].len)) {
			abort();
		}
	}
	json_decref(doc);
	render_body_free(body);
	viewjson_free(vj);
}

static void check_view(const struct srv_answer *a, const struct spec *specs, const char *host,
		       unsigned peer_port, unsigned replicas, size_t limit, const char *local,
		       const char *shared)
{
	struct render_line *lines = NULL;
	struct text want[MAX_PEERS + 1 + MAX_MISSING];
	size_t nl = 0;
	size_t len = 0;
	char head[RENDER_HEAD_MAX];
	size_t hl = render_head(host, head);
	char *body;
	char *p;

	if (render_plan(a, host, peer_port, &lines, &nl) < 0) {
		abort(); /* only when memory runs out */
	}
	check_plan(a, host, peer_port, lines, nl);
	check_missing(&lines, &nl, replicas, limit);
	answer_lines(lines, nl, specs, a->npeers, local, shared, want);
	body = render_text(head, hl, lines, nl, NULL, &len);
	if (body == NULL || len != hl + render_text_len(lines, nl) || body[len] != '\0' ||
	    memcmp(body, head, hl) != 0) {
		abort();
	}
	if (nl == 0 && strcmp(body + hl, "No peers discovered.\n") != 0) {
		abort();
	}
	check_json(a, lines, nl, want, host, local);
	p = body + hl;
	for (size_t i = 0; i < nl; i++) {
		size_t n = strlen(lines[i].name);

		if (memcmp(p, "- ", 2) != 0 || memcmp(p + 2, lines[i].name, n) != 0 ||
		    memcmp(p + 2 + n, ": ", 2) != 0 || memcmp(p + 4 + n, want[i].s, want[i].len) ||
		    p[4 + n + want[i].len] != '\n') {
			abort();
		}
		p += 4 + n + want[i].len + 1;
		free(want[i].s);
	}
	if (nl > 0 && (size_t)(p - body) != len) {
		abort();
	}
	render_body_free(body);
	if (releases != 0) {
		abort(); /* this pod's data given back while a line still shows them */
	}
	render_lines_free(lines, nl);
	if (releases != borrows) {
		abort();
	}
}

static void check_dns_error(const char *reason)
{
	size_t len = 0;
	char *body = render_dns_error("", 0, reason, NULL, &len);
	const char prefix[] = "Could not look up DNS SRV records: ";
	size_t rl = strlen(reason);

	if (body == NULL || len != sizeof(prefix) - 1 + rl + 1 ||
	    memcmp(body, prefix, sizeof(prefix) - 1) != 0 ||
	    memcmp(body + sizeof(prefix) - 1, reason, rl) != 0 || body[len - 1] != '\n' ||
	    body[len] != '\0') {
		abort();
	}
	render_body_free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data + 4;
	const uint8_t *end = data + size;
	struct spec specs[MAX_PEERS];
	struct srv_answer a = {0};
	char *host, *local, *reason, *shared;
	unsigned peer_port;

	if (size < 4) {
		return 0;
	}
	peer_port = (data[1] & 2) != 0 ? (unsigned)(data[2] << 8 | data[3]) : 0;
	host = fuzz_field(&p, end, FIELD_MAX);
	host[strnlen(host, DISCOVERY_HOSTNAME_MAX)] = '\0'; /* discovery's own limit */
	printable(host);
	local = fuzz_field(&p, end, FIELD_MAX);
	reason = fuzz_field(&p, end, FIELD_MAX);
	shared = fuzz_field(&p, end, FIELD_MAX);
	a.npeers = read_peers(&p, end, data[0] % (MAX_PEERS + 1), specs);
	a.peers = calloc(a.npeers + 1, sizeof(*a.peers));
	if (a.peers == NULL) {
		abort();
	}
	for (size_t i = 0; i < a.npeers; i++) {
		a.peers[i] = specs[i].p;
	}
	releases = 0;
	borrows = 0;
	/* The StatefulSet's size, and at most how many missing pods are shown. */
	check_view(&a, specs, (data[1] & 1) != 0 ? host : NULL, peer_port, data[1] >> 3,
		   (data[1] & 4) != 0 ? 3 : MAX_MISSING, local, shared);
	check_dns_error(reason);
	for (size_t i = 0; i < a.npeers; i++) {
		free(specs[i].data);
	}
	srv_answer_free(&a);
	free(host);
	free(local);
	free(reason);
	free(shared);
	return 0;
}
