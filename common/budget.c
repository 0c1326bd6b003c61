/* SPDX-License-Identifier: MIT */
#include "common/budget.h"

#include <stddef.h>

void budget_init(struct budget *b, uint64_t limit)
{
	atomic_init(&b->used, 0);
	b->limit = limit;
}

bool budget_charge(struct budget *b, uint64_t n)
{
	uint64_t used;

	if (b == NULL || n == 0) {
		return true;
	}
	used = atomic_load_explicit(&b->used, memory_order_relaxed);
	do {
		if (n > b->limit || used > b->limit - n) {
			return false;
		}
	} while (!atomic_compare_exchange_weak_explicit(
		&b->used, &used, used + n, memory_order_relaxed, memory_order_relaxed));
	return true;
}

void budget_credit(struct budget *b, uint64_t n)
{
	if (b != NULL && n != 0) {
		atomic_fetch_sub_explicit(&b->used, n, memory_order_relaxed);
	}
}

uint64_t budget_used(const struct budget *b)
{
	return b != NULL ? atomic_load_explicit(&b->used, memory_order_relaxed) : 0;
}
