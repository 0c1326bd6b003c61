/* SPDX-License-Identifier: MIT */
/*
 * The pods a StatefulSet should have but DNS does not list. A StatefulSet's pods are
 * ordinals 0..N-1 of one base name; a pod that is not ready is left out of its
 * headless Service's records, so without this a starting or failing pod would only
 * make the view silently shorter. Pure: no threads, sockets or clock.
 */
#include "discovery/internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Ordinals above this are not a StatefulSet's (and could not be counted up to). */
#define ORDINAL_MAX 999999999ul

/* Splits a name's first label "<base>-<ordinal>": false when it is not of that form
 * (no dash, an empty base, no digits, other bytes after the dash, a leading zero, or
 * an ordinal too large). */
static bool parse_ordinal(const char *name, size_t *baselen, unsigned long *ordinal)
{
	const char *dot = strchr(name, '.');
	size_t label = dot != NULL ? (size_t)(dot - name) : strlen(name);
	size_t digits = 0;
	unsigned long v = 0;

	while (digits < label && name[label - 1 - digits] >= '0' &&
	       name[label - 1 - digits] <= '9') {
		digits++;
	}
	if (digits == 0 || digits > 9 || digits + 2 > label || name[label - digits - 1] != '-') {
		return false;
	}
	if (digits > 1 && name[label - digits] == '0') {
		return false;
	}
	for (size_t i = label - digits; i < label; i++) {
		v = v * 10 + (unsigned long)(name[i] - '0');
	}
	if (v > ORDINAL_MAX) {
		return false;
	}
	*baselen = label - digits - 1;
	*ordinal = v;
	return true;
}

/* The lines' ordinals, in order; false when a line does not take part (see
 * missing_add()). */
static bool line_ordinals(const struct render_line *lines, size_t n, unsigned long *ords)
{
	size_t base0 = 0;

	for (size_t i = 0; i < n; i++) {
		size_t base = 0;

		if (!parse_ordinal(lines[i].name, &base, &ords[i])) {
			return false;
		}
		if (i == 0) {
			base0 = base;
		} else if (base != base0 || strncasecmp(lines[i].name, lines[0].name, base) != 0) {
			return false;
		}
		if (i > 0 && ords[i] < ords[i - 1]) {
			return false; /* not in ordinal order: not what render_plan() makes */
		}
	}
	return true;
}

/* Makes line l the missing pod ordinal: "<base>-<ordinal><rest>" after first, whose
 * name the caller made sure leaves room for any ordinal. Memory running out leaves the
 * line without its answer, which renders as "Error: out of memory" like any other. */
static void missing_line(struct render_line *l, const char *first, size_t base,
			 unsigned long ordinal)
{
	const char *rest = strchr(first, '.');

	memset(l, 0, sizeof(*l));
	snprintf(l->name, sizeof(l->name), "%.*s-%lu%s", (int)base, first, ordinal,
		 rest != NULL ? rest : "");
	l->unlisted = true;
	l->missing = true;
	(void)render_line_error(l, "%s", MISSING_TEXT);
}

/* How many ordinals are missing below the highest and up to replicas, at most limit. */
static size_t count_missing(const unsigned long *ords, size_t n, unsigned replicas, size_t limit)
{
	size_t count = 0;
	unsigned long next = 0;

	for (size_t i = 0; i < n && count < limit; i++) {
		if (ords[i] > next) {
			unsigned long gap = ords[i] - next;

			count = gap > limit - count ? limit : count + gap;
		}
		next = ords[i] + 1;
	}
	if (replicas > next && count < limit) {
		unsigned long tail = replicas - next;

		count = tail > limit - count ? limit : count + tail;
	}
	return count;
}

int missing_add(struct render_line **lines, size_t *n, unsigned replicas, size_t limit)
{
	struct render_line *in = *lines;
	struct render_line *out;
	unsigned long *ords;
	size_t add;
	size_t base = 0;
	size_t k = 0;
	size_t added = 0;
	unsigned long next = 0;

	/* A name too long to take any ordinal in the room a line has: the rule stays out. */
	if (*n == 0 || limit == 0 || strlen(in[0].name) + 10 >= sizeof(in[0].name) ||
	    !parse_ordinal(in[0].name, &base, &next)) {
		return 0;
	}
	next = 0;
	ords = calloc(*n, sizeof(*ords));
	if (ords == NULL) {
		return -1;
	}
	add = line_ordinals(in, *n, ords) ? count_missing(ords, *n, replicas, limit) : 0;
	out = add > 0 ? calloc(*n + add, sizeof(*out)) : NULL;
	if (add == 0 || out == NULL) {
		free(ords);
		return add == 0 ? 0 : -1;
	}
	/* Every line moves over whole (its answer reference with it); the missing ones
	 * are made in the gaps, and after the last up to replicas. */
	for (size_t i = 0; i <= *n; i++) {
		unsigned long upto = i < *n ? ords[i] : (replicas > next ? replicas : next);

		while (next < upto && added < add) {
			missing_line(&out[k++], in[0].name, base, next++);
			added++;
		}
		if (i < *n) {
			out[k++] = in[i];
			next = ords[i] + 1;
		}
	}
	free(ords);
	free(in);
	*lines = out;
	*n = k;
	return (int)added;
}
