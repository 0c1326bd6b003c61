/* SPDX-License-Identifier: MIT */
#ifndef KUBIA_BUDGET_H
#define KUBIA_BUDGET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * budget: one memory budget for everything a client can make kubia hold (request
 * bodies, peer answers, responses in flight). A buffer's size is charged before it is
 * allocated and credited when it is freed; a charge that does not fit is refused, and
 * the request that wanted it is turned away instead of the process growing. Lock-free:
 * charged from every thread.
 */
struct budget {
	_Atomic uint64_t used;
	uint64_t limit;
};

void budget_init(struct budget *b, uint64_t limit);

/* Takes n bytes if they fit under the limit; false (nothing taken) otherwise. A NULL
 * budget takes anything. */
bool budget_charge(struct budget *b, uint64_t n);

/* Gives back n bytes taken by budget_charge(). */
void budget_credit(struct budget *b, uint64_t n);

uint64_t budget_used(const struct budget *b);

#endif
