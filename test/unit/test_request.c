/* SPDX-License-Identifier: MIT */
/* The request record (server/request.c): made per connection, cleared between the
 * requests the connection serves. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "server/request.h"

static void test_new_record_is_clear(void **state)
{
	struct http_server *srv = (struct http_server *)(uintptr_t)0x1000;
	struct MHD_Connection *conn = (struct MHD_Connection *)(uintptr_t)0x2000;
	struct request *rq = request_new(srv, conn);

	(void)state;
	assert_non_null(rq);
	assert_ptr_equal(rq->srv, srv);
	assert_ptr_equal(rq->conn, conn);
	assert_int_equal(atomic_load(&rq->state), WAIT_NEW);
	assert_int_equal(rq->start_ns, 0);
	assert_null(rq->body);
	assert_null(rq->view);
	free(rq);
}

/* What a POST or a view left is gone for the next request on the same connection; the
 * connection's own fields stay. */
static void test_reset_clears_the_previous_request(void **state)
{
	struct http_server *srv = (struct http_server *)(uintptr_t)0x1000;
	struct MHD_Connection *conn = (struct MHD_Connection *)(uintptr_t)0x2000;
	struct request *rq = request_new(srv, conn);

	(void)state;
	assert_non_null(rq);
	rq->route = ROUTE_CLUSTER;
	rq->len = 5;
	rq->cap = 8;
	rq->too_large = true;
	rq->over_budget = true;
	rq->charged = 9;
	rq->discarded = 7;
	atomic_store(&rq->state, WAIT_DONE);
	rq->view = (struct view_response *)(uintptr_t)0x3000;
	rq->peer_errors = 2;
	rq->json = true;
	request_reset(rq);
	assert_null(rq->body);
	assert_int_equal(rq->len, 0);
	assert_int_equal(rq->cap, 0);
	assert_false(rq->too_large);
	assert_false(rq->over_budget);
	assert_int_equal(rq->charged, 0);
	assert_int_equal(rq->discarded, 0);
	assert_int_equal(atomic_load(&rq->state), WAIT_NEW);
	assert_null(rq->view);
	assert_int_equal(rq->peer_errors, 0);
	assert_false(rq->json);
	assert_ptr_equal(rq->srv, srv);
	assert_ptr_equal(rq->conn, conn);
	free(rq);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new_record_is_clear),
		cmocka_unit_test(test_reset_clears_the_previous_request),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
