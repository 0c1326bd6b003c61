/* SPDX-License-Identifier: MIT */
#include "server/request.h"

#include <stdlib.h>

struct request *request_new(struct http_server *s, struct MHD_Connection *conn)
{
	struct request *rq = calloc(1, sizeof(*rq));

	if (rq != NULL) {
		rq->srv = s;
		rq->conn = conn;
		atomic_init(&rq->state, WAIT_NEW);
	}
	return rq;
}

struct request *request_of(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return ci != NULL ? ci->socket_context : NULL;
}

void request_reset(struct request *rq)
{
	/* Field by field: the outcome is written before it is read, and clearing it too
	 * would write some 300 bytes more for every POST. */
	rq->body = NULL;
	rq->len = 0;
	rq->cap = 0;
	rq->too_large = false;
	rq->over_budget = false;
	rq->charged = 0;
	rq->discarded = 0;
	atomic_store_explicit(&rq->state, WAIT_NEW, memory_order_relaxed);
	rq->view = NULL;
	rq->peer_errors = 0;
	rq->json = false;
	rq->stream = NULL;
}
