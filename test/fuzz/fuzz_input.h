/* SPDX-License-Identifier: MIT */
/*
 * What the libFuzzer targets share: taking their input apart.
 */
#ifndef KUBIA_FUZZ_INPUT_H
#define KUBIA_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*
 * The next NUL-terminated field of the input from *p (the rest of it when there is no
 * NUL), at most max bytes of it, copied into its own allocation so that a read past its
 * end is caught; *p moves past the field and its NUL. The caller frees it.
 */
static inline char *fuzz_field(const uint8_t **p, const uint8_t *end, size_t max)
{
	const uint8_t *nul = memchr(*p, '\0', (size_t)(end - *p));
	size_t n = nul != NULL ? (size_t)(nul - *p) : (size_t)(end - *p);
	char *s;

	if (n > max) {
		n = max;
	}
	s = malloc(n + 1);
	if (s == NULL) {
		abort();
	}
	memcpy(s, *p, n);
	s[n] = '\0';
	*p = nul != NULL ? nul + 1 : end;
	return s;
}

#endif
