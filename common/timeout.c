/* SPDX-License-Identifier: MIT */
#include "common/timeout.h"

unsigned timeout_connect_ms(unsigned connect_ms, unsigned total_ms)
{
	return connect_ms == 0 || connect_ms > total_ms ? total_ms : connect_ms;
}
