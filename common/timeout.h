/* SPDX-License-Identifier: MIT */
#ifndef KUBIA_TIMEOUT_H
#define KUBIA_TIMEOUT_H

/* The time allowed to connect to a peer: connect_ms, but never more than total_ms, the
 * time allowed for the whole request (which would end it first anyway), and total_ms
 * when connect_ms is 0 (not set). */
unsigned timeout_connect_ms(unsigned connect_ms, unsigned total_ms);

#endif
