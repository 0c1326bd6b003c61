/* SPDX-License-Identifier: MIT */
#include "common/errtext.h"

#include <stdarg.h>
#include <stdio.h>

void errtext_set(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0) {
		return;
	}
	va_start(ap, fmt);
	(void)vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	/* Messages repeat what a user or a peer sent: a control byte in it must not break
	 * the line or drive a terminal. */
	for (char *p = err; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			*p = '?';
		}
	}
}
