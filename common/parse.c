/* SPDX-License-Identifier: MIT */
#include "common/parse.h"

#include <errno.h>
#include <stdlib.h>

bool parse_u64(const char *s, uint64_t *out)
{
	char *end = NULL;
	unsigned long long v;

	/* strtoull() would take leading spaces and a sign, and wrap a minus around. */
	if (s[0] < '0' || s[0] > '9') {
		return false;
	}
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0') {
		return false;
	}
	*out = (uint64_t)v;
	return true;
}
