/* SPDX-License-Identifier: MIT */
/*
 * The validating scanner of wire.c: it follows the bytes of one connection far enough to
 * find what RFC 9112 refuses and libmicrohttpd 0.9.75 hides, drops or mis-frames (a
 * field line with an empty name, NUL and other control bytes, obs-fold, a bare CR, a
 * Content-Length or chunk size the library would read differently or refuse itself, a
 * line feed inside a quoted chunk extension). It parses nothing for the library: it keeps
 * only the state to go on (where in a request it is, and the framing of the body) and
 * says when a request ends, so requests pipelined after it are scanned too.
 */
#include <stdint.h>
#include <string.h>

#include "server/http_internal.h"

enum {
	ST_START = 0, /* before a request line; empty lines allowed */
	ST_START_LF,
	ST_METHOD,
	ST_TARGET,
	ST_VERSION,
	ST_LINE_LF, /* the CR of a line seen: LF, then ST_FIELD */
	ST_FIELD, /* the start of a field line, or the empty line ending the head */
	ST_NAME,
	ST_VALUE,
	ST_HEAD_LF, /* the empty line's CR seen */
	ST_BODY,
	ST_CHUNK_SIZE,
	ST_CHUNK_WS, /* whitespace after the size: only before an extension */
	ST_CHUNK_EXT,
	ST_CHUNK_LF,
	ST_CHUNK_DATA,
	ST_CHUNK_CR, /* the CRLF after a chunk's data */
	ST_CHUNK_END_LF,
	ST_OPAQUE, /* framing kubia refuses anyway (strict.c): the connection closes after */
};

/* The value being read: which framing field it is, and how far it got. */
enum {
	VAL_OTHER = 0,
	VAL_CL, /* Content-Length: OWS 1*DIGIT */
	VAL_TE, /* Transfer-Encoding: compared with "chunked" */
};

#define BLANK_LINES_MAX 8 /* RFC 9112 2.2: at least one empty line before a request */
#define CL_DIGITS_MAX 18 /* below 2^63: no overflow, and above any --max-body */
#define CHUNK_DIGITS_MAX 15 /* below 2^60 */

static const char CL_NAME[] = "content-length";
static const char TE_NAME[] = "transfer-encoding";
static const char CHUNKED[] = "chunked";

/* What each byte may be, looked up per byte of every request: */
enum {
	C_TCHAR = 1, /* a token's (RFC 9110 5.6.2) */
	C_FIELD = 2, /* a field value's: HTAB, SP, VCHAR, obs-text (RFC 9110 5.5) */
	C_TARGET = 4, /* the request target's: neither space nor control */
};
static const uint8_t byte_class[256] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 2, 7, 6, 7, 7, 7, 7, 7, 6, 6, 7, 7, 6, 7, 7, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
	6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
	7, 7, 7, 7, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
	7, 7, 7, 7, 7, 7, 7, 6, 7, 6, 7, 0, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
	6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
	6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
	6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
	6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
};

static bool is_tchar(unsigned char c)
{
	return (byte_class[c] & C_TCHAR) != 0;
}

static int hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9') {
		return c - '0';
	}
	c = (unsigned char)(c | 0x20);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static bool is_field_byte(unsigned char c)
{
	return (byte_class[c] & C_FIELD) != 0;
}

/* The name read so far still matches name (lower case) at position pos. */
static uint8_t match_name(uint8_t pos, const char *name, size_t len, unsigned char c)
{
	if (pos == UINT8_MAX || pos >= len ||
	    (unsigned char)(c | 0x20) != (unsigned char)name[pos]) {
		return UINT8_MAX;
	}
	return (uint8_t)(pos + 1);
}

static void start_request(struct wire_scan *sc)
{
	memset(sc, 0, sizeof(*sc));
	sc->state = ST_START;
}

/* The head ended: the state the body starts in, or NULL and *why. */
static const char *head_end(struct wire_scan *sc, bool *ended)
{
	*ended = false;
	if (sc->in_trailer) {
		*ended = true;
		return NULL;
	}
	if (sc->te_count > 0) {
		/* Anything but one "chunked" alone, or with a Content-Length, is refused by
		 * strict.c with the connection closed: what follows is never read as a
		 * request. */
		sc->state = sc->te_count == 1 && sc->te_chunked && !sc->has_cl ? ST_CHUNK_SIZE
									       : ST_OPAQUE;
		sc->num = 0;
		sc->digits = 0;
		return NULL;
	}
	if (sc->has_cl && sc->left > 0) {
		sc->state = ST_BODY;
		return NULL;
	}
	*ended = true;
	return NULL;
}

/* One byte of a field value. */
static const char *value_byte(struct wire_scan *sc, unsigned char c)
{
	if (!is_field_byte(c)) {
		return "a control byte in a field value";
	}
	if (sc->val == VAL_CL) {
		bool ws = c == ' ' || c == '\t';
		if (c >= '0' && c <= '9') {
			sc->sub = 1;
			if (++sc->digits > CL_DIGITS_MAX) {
				return "Content-Length is too large";
			}
			sc->left = sc->left * 10U + (uint64_t)(c - '0');
		} else if (ws && sc->sub == 0) {
			/* leading OWS; trailing OWS is RFC 9110's too, but libmicrohttpd 0.9.75
			 * refuses it itself, with its head twice */
		} else if (ws) {
			return "whitespace after Content-Length's number";
		} else {
			return "Content-Length is not a number";
		}
	} else if (sc->val == VAL_TE) {
		/* sub: the letters of "chunked" matched, UINT8_MAX once it cannot match */
		if (c == ' ' || c == '\t') {
			if (sc->sub != 0 && sc->sub != sizeof(CHUNKED) - 1) {
				sc->sub = UINT8_MAX;
			}
			sc->te_space = sc->sub != 0;
		} else if (sc->te_space || sc->sub >= sizeof(CHUNKED) - 1 ||
			   (unsigned char)(c | 0x20) != (unsigned char)CHUNKED[sc->sub]) {
			sc->sub = UINT8_MAX;
		} else {
			sc->sub++;
		}
	}
	return NULL;
}

/* The end of a field value (its CR). */
static const char *value_end(struct wire_scan *sc)
{
	if (sc->val == VAL_CL) {
		if (sc->sub == 0) {
			return "Content-Length is empty";
		}
	} else if (sc->val == VAL_TE) {
		sc->te_chunked = sc->sub == sizeof(CHUNKED) - 1;
	}
	return NULL;
}

static const char *name_end(struct wire_scan *sc)
{
	if (sc->name_len == 0) {
		return "a field line without a name";
	}
	sc->val = VAL_OTHER;
	sc->sub = 0;
	sc->te_space = false;
	if (sc->in_trailer) {
		return NULL; /* a trailer field frames nothing (strict.c reads none) */
	}
	if (sc->cl_pos == sizeof(CL_NAME) - 1) {
		if (sc->has_cl) {
			return "two Content-Length fields";
		}
		sc->has_cl = true;
		sc->val = VAL_CL;
		sc->left = 0;
		sc->digits = 0;
	} else if (sc->te_pos == sizeof(TE_NAME) - 1) {
		sc->te_count++;
		sc->val = VAL_TE;
	}
	return NULL;
}

/* A byte of the request line, or of the empty lines before it. */
static const char *scan_line(struct wire_scan *sc, unsigned char c)
{
	switch (sc->state) {
	case ST_START:
		if (c == '\n') { /* RFC 9112 2.2: a bare LF may end a line of the head */
			return ++sc->blank > BLANK_LINES_MAX
				       ? "too many empty lines before the request"
				       : NULL;
		}
		if (c == '\r') {
			if (++sc->blank > BLANK_LINES_MAX) {
				return "too many empty lines before the request";
			}
			sc->state = ST_START_LF;
			return NULL;
		}
		if (!is_tchar(c)) {
			return "the request line does not start with a method";
		}
		sc->state = ST_METHOD;
		return NULL;
	case ST_START_LF:
		sc->state = ST_START;
		return c == '\n' ? NULL : "a CR without LF";
	case ST_METHOD:
		if (c == ' ') {
			sc->state = ST_TARGET;
			sc->name_len = 0;
			return NULL;
		}
		return is_tchar(c) ? NULL : "the method is not a token";
	case ST_TARGET:
		if (c == ' ' && sc->name_len > 0) {
			sc->state = ST_VERSION;
			sc->sub = 0;
			return NULL;
		}
		if (c <= 0x20 || c == 0x7f) {
			return "the request target holds a space or a control byte";
		}
		sc->name_len = 1;
		return NULL;
	case ST_VERSION: {
		static const char form[] = "HTTP/0.0";
		bool ok = form[sc->sub] == '0' ? (c >= '0' && c <= '9')
					       : c == (unsigned char)form[sc->sub];

		if (sc->sub == sizeof(form) - 1 && (c == '\r' || c == '\n')) {
			sc->state = c == '\r' ? ST_LINE_LF : ST_FIELD;
			return NULL;
		}
		if (sc->sub == sizeof(form) - 1 || !ok) {
			return "the request line does not end in HTTP/<digit>.<digit>";
		}
		sc->sub++;
		return NULL;
	}
	case ST_LINE_LF:
		if (c != '\n') {
			return "a CR without LF";
		}
		sc->state = ST_FIELD;
		return NULL;
	default:
		return NULL;
	}
}

/* A byte of a field line or of the empty line that ends the head or the trailers. */
static const char *scan_field(struct wire_scan *sc, unsigned char c, bool *ended)
{
	switch (sc->state) {
	case ST_FIELD:
		if (c == '\r') {
			sc->state = ST_HEAD_LF;
			return NULL;
		}
		if (c == '\n') {
			return head_end(sc, ended);
		}
		if (c == ' ' || c == '\t') {
			return "a folded field line (obs-fold)";
		}
		if (c == ':') {
			return "a field line without a name";
		}
		if (!is_tchar(c)) {
			return "a field name that is not a token";
		}
		sc->state = ST_NAME;
		sc->name_len = 1;
		sc->cl_pos = match_name(0, CL_NAME, sizeof(CL_NAME) - 1, c);
		sc->te_pos = match_name(0, TE_NAME, sizeof(TE_NAME) - 1, c);
		return NULL;
	case ST_NAME:
		if (c == ':') {
			sc->state = ST_VALUE;
			return name_end(sc);
		}
		if (!is_tchar(c)) {
			return c == ' ' || c == '\t' ? "whitespace before a field's colon"
						     : "a field name that is not a token";
		}
		sc->cl_pos = match_name(sc->cl_pos, CL_NAME, sizeof(CL_NAME) - 1, c);
		sc->te_pos = match_name(sc->te_pos, TE_NAME, sizeof(TE_NAME) - 1, c);
		return NULL;
	case ST_VALUE:
		if (c == '\r' || c == '\n') {
			sc->state = c == '\r' ? ST_LINE_LF : ST_FIELD;
			return value_end(sc);
		}
		return value_byte(sc, c);
	case ST_HEAD_LF:
		if (c != '\n') {
			return "a CR without LF";
		}
		return head_end(sc, ended);
	default:
		return NULL;
	}
}

/* A byte of a chunk size, or the first after it. */
static const char *chunk_size_byte(struct wire_scan *sc, unsigned char c)
{
	int v = hex_value(c);

	if (v >= 0) {
		if (++sc->digits > CHUNK_DIGITS_MAX) {
			return "a chunk size that overflows";
		}
		sc->num = sc->num * 16U + (uint64_t)v;
		return NULL;
	}
	if (sc->digits == 0) {
		return "a chunk line without a size";
	}
	if (c == '\r') {
		sc->state = ST_CHUNK_LF;
		return NULL;
	}
	if (c == '\n') {
		return "a chunk line ending in a bare LF";
	}
	if (c == ' ' || c == '\t') {
		sc->state = ST_CHUNK_WS;
		return NULL;
	}
	if (c == ';') {
		sc->state = ST_CHUNK_EXT;
		sc->sub = 0;
		return NULL;
	}
	return "a chunk size that is not hexadecimal";
}

/* A byte of a chunk line, or of the CRLF after a chunk's data. */
static const char *scan_chunk(struct wire_scan *sc, unsigned char c)
{
	switch (sc->state) {
	case ST_CHUNK_SIZE:
		return chunk_size_byte(sc, c);
	case ST_CHUNK_WS:
		if (c == ';') {
			sc->state = ST_CHUNK_EXT;
			sc->sub = 0;
			return NULL;
		}
		return c == ' ' || c == '\t' ? NULL : "a chunk size that is not hexadecimal";
	case ST_CHUNK_EXT:
		/* sub: 0 outside quotes, 1 in a quoted string, 2 after its backslash */
		if (sc->sub == 2) {
			sc->sub = 1;
			return is_field_byte(c) ? NULL : "a control byte in a chunk extension";
		}
		if (sc->sub == 1) {
			sc->sub = c == '"' ? 0 : c == '\\' ? 2 : 1;
			return is_field_byte(c) ? NULL : "a control byte in a chunk extension";
		}
		if (c == '\r') {
			sc->state = ST_CHUNK_LF;
			return NULL;
		}
		if (c == '"') {
			sc->sub = 1;
			return NULL;
		}
		return is_tchar(c) || c == ';' || c == '=' || c == ' ' || c == '\t'
			       ? NULL
			       : "a chunk extension that is not tokens";
	case ST_CHUNK_LF:
		if (c != '\n') {
			return "a CR without LF";
		}
		if (sc->num == 0) {
			sc->in_trailer = true;
			sc->state = ST_FIELD;
			return NULL;
		}
		sc->left = sc->num;
		sc->state = ST_CHUNK_DATA;
		return NULL;
	case ST_CHUNK_CR:
		sc->state = ST_CHUNK_END_LF;
		return c == '\r' ? NULL : "chunk data longer than its size";
	case ST_CHUNK_END_LF:
		sc->state = ST_CHUNK_SIZE;
		sc->num = 0;
		sc->digits = 0;
		return c == '\n' ? NULL : "a CR without LF";
	default:
		return NULL;
	}
}

/* One byte. Returns the reason of a fault, else NULL, and *ended when the byte was a
 * request's last. */
static const char *scan_byte(struct wire_scan *sc, unsigned char c, bool *ended)
{
	*ended = false;
	if (sc->state <= ST_LINE_LF) {
		return scan_line(sc, c);
	}
	if (sc->state <= ST_HEAD_LF) {
		return scan_field(sc, c, ended);
	}
	return sc->state == ST_OPAQUE ? NULL : scan_chunk(sc, c);
}

/* Past the run of bytes from i that only need their class checked: a method, a target,
 * a field name that cannot be a framing field, a value that is not one. */
static size_t skip_run(const struct wire_scan *sc, const unsigned char *buf, size_t i, size_t len)
{
	uint8_t want = 0;

	if (sc->state == ST_VALUE && sc->val == VAL_OTHER) {
		want = C_FIELD;
	} else if (sc->state == ST_TARGET && sc->name_len) {
		want = C_TARGET;
	} else if (sc->state == ST_METHOD ||
		   (sc->state == ST_NAME && sc->cl_pos == UINT8_MAX && sc->te_pos == UINT8_MAX)) {
		want = C_TCHAR;
	}
	if (want != 0) {
		while (i < len && (byte_class[buf[i]] & want) != 0) {
			i++;
		}
	}
	return i;
}

void wire_scan_init(struct wire_scan *sc)
{
	start_request(sc);
}

const char *wire_scan(struct wire_scan *sc, const unsigned char *buf, size_t len, size_t *clean,
		      unsigned *ended)
{
	size_t i = 0;
	size_t boundary = wire_scan_between(sc) ? 0 : SIZE_MAX;

	*ended = 0;
	while (i < len) {
		const char *why;
		bool end;

		if (sc->state == ST_OPAQUE) {
			break;
		}
		if (sc->state == ST_BODY || sc->state == ST_CHUNK_DATA) {
			uint64_t n = len - i < sc->left ? len - i : sc->left;

			i += (size_t)n;
			sc->left -= n;
			if (sc->left > 0) {
				break;
			}
			if (sc->state == ST_CHUNK_DATA) {
				sc->state = ST_CHUNK_CR;
				continue;
			}
			end = true;
		} else {
			i = skip_run(sc, buf, i, len);
			if (i == len) {
				break;
			}
			why = scan_byte(sc, buf[i++], &end);
			if (why != NULL) {
				*clean = boundary == SIZE_MAX ? 0 : boundary;
				return why;
			}
		}
		if (end) {
			(*ended)++;
			start_request(sc);
			boundary = i;
		}
	}
	*clean = len;
	return NULL;
}

bool wire_scan_between(const struct wire_scan *sc)
{
	return sc->state == ST_START || sc->state == ST_START_LF;
}
