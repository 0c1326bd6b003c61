/* SPDX-License-Identifier: MIT */
#include <microhttpd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/budget.h"
#include "server/http_internal.h"
#include "server/request.h"
#include "storage/storage.h"

struct MHD_Response *response_text(const char *text, size_t len)
{
	struct MHD_Response *r;

	r = MHD_create_response_from_buffer(len, (void *)(uintptr_t)text, MHD_RESPMEM_MUST_COPY);
	if (r == NULL) {
		return NULL;
	}
	if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, CONTENT_TYPE) != MHD_YES) {
		MHD_destroy_response(r);
		return NULL;
	}
	return r;
}

struct MHD_Response *response_owned(char *buf, size_t len)
{
	struct MHD_Response *r;

	r = MHD_create_response_from_buffer(len, buf, MHD_RESPMEM_MUST_FREE);
	if (r == NULL) {
		free(buf);
		return NULL;
	}
	if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, CONTENT_TYPE) != MHD_YES) {
		MHD_destroy_response(r);
		return NULL;
	}
	return r;
}

enum MHD_Result queue_response(struct MHD_Connection *conn, unsigned status, struct MHD_Response *r,
			       size_t len)
{
	struct request *rq = request_of(conn);

	if (rq != NULL) {
		rq->resp_len = len;
	}
	return MHD_queue_response(conn, status, r);
}

enum MHD_Result queue_fixed(struct MHD_Connection *conn, unsigned status,
			    const struct fixed_response *f)
{
	return queue_response(conn, status, f->r, f->len);
}

/* Queues r, which it takes over, or fails when r is NULL. */
static enum MHD_Result queue_made(struct MHD_Connection *conn, unsigned status,
				  struct MHD_Response *r, size_t len)
{
	enum MHD_Result ret;

	if (r == NULL) {
		return MHD_NO;
	}
	ret = queue_response(conn, status, r, len);
	MHD_destroy_response(r);
	return ret;
}

enum MHD_Result queue_owned(struct MHD_Connection *conn, unsigned status, char *buf, size_t len)
{
	return queue_made(conn, status, response_owned(buf, len), len);
}

/* What a charged buffer carries in front of its bytes, to give its charge back. */
struct charge {
	struct budget *budget;
	size_t size;
	max_align_t align; /* the bytes that follow are aligned for anything */
};

char *charged_alloc(struct budget *budget, size_t size)
{
	struct charge *c;

	if (size > SIZE_MAX - sizeof(*c) || !budget_charge(budget, size)) {
		return NULL;
	}
	c = malloc(sizeof(*c) + size);
	if (c == NULL) {
		budget_credit(budget, size);
		return NULL;
	}
	c->budget = budget;
	c->size = size;
	return (char *)(c + 1);
}

static struct charge *charge_of(char *buf)
{
	return (struct charge *)(void *)buf - 1;
}

void charged_free(char *buf)
{
	struct charge *c;

	if (buf == NULL) {
		return;
	}
	c = charge_of(buf);
	budget_credit(c->budget, c->size);
	free(c);
}

static void charged_release(void *cls)
{
	charged_free(cls);
}

enum MHD_Result queue_charged_as(struct MHD_Connection *conn, unsigned status, char *buf,
				 size_t len, const char *content_type)
{
	struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback_cls(
		len, buf, charged_release, buf);

	if (r == NULL) {
		charged_free(buf);
		return MHD_NO;
	}
	if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) != MHD_YES) {
		MHD_destroy_response(r);
		return MHD_NO;
	}
	return queue_made(conn, status, r, len);
}

enum MHD_Result queue_fmt(struct MHD_Connection *conn, unsigned status, const char *fmt, ...)
{
	va_list ap;
	char *buf = NULL;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&buf, fmt, ap);
	va_end(ap);
	if (n < 0) {
		return MHD_NO;
	}
	return queue_owned(conn, status, buf, (size_t)n);
}

bool response_cache_refresh_locked(struct http_server *s)
{
	const struct storage_blob *b;
	struct MHD_Response *data = NULL, *pet = NULL;
	const char *text;
	size_t len;
	char *buf = NULL;
	size_t pet_len = 0;
	int n;

	if (s->data_resp.r != NULL && s->cache_gen == storage_generation(s->st)) {
		return true;
	}
	b = storage_acquire(s->st);
	text = b->present ? b->data : HTTP_NO_DATA;
	len = b->present ? b->len : strlen(HTTP_NO_DATA);
	data = response_text(text, len);
	if (data == NULL) {
		goto fail;
	}
	/* %.*s cannot carry NUL bytes or more than INT_MAX; build by hand. */
	{
		static const char mid[] = "\nData stored on this pod: ";
		size_t hl = strlen(s->cfg->hostname);
		size_t total = strlen("You've hit ") + hl + strlen(mid) + len + 1;
		char *p;

		buf = malloc(total);
		if (buf == NULL) {
			goto fail;
		}
		p = buf;
		n = snprintf(p, total, "You've hit %s%s", s->cfg->hostname, mid);
		if (n < 0) {
			goto fail;
		}
		p += n;
		memcpy(p, text, len);
		p[len] = '\n';
		pet = response_owned(buf, total);
		pet_len = total;
		buf = NULL;
		if (pet == NULL) {
			goto fail;
		}
	}
	if (s->data_resp.r != NULL) {
		MHD_destroy_response(s->data_resp.r);
	}
	if (s->pet_resp.r != NULL) {
		MHD_destroy_response(s->pet_resp.r);
	}
	s->data_resp = (struct fixed_response){data, len};
	s->pet_resp = (struct fixed_response){pet, pet_len};
	s->cache_gen = b->generation;
	storage_release(b);
	return true;
fail:
	free(buf);
	if (data != NULL) {
		MHD_destroy_response(data);
	}
	storage_release(b);
	return false;
}
