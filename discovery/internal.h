/* SPDX-License-Identifier: MIT */
#ifndef KUBIA_DISCOVERY_INTERNAL_H
#define KUBIA_DISCOVERY_INTERNAL_H

/*
 * Private to discovery/ and its tests: what the files of the module share, each file's
 * state and functions. The files form a tree (discovery.c -> view.c -> lookup.c,
 * fetch.c -> transfer.c, render.c; all on loop.c); later events come back up through
 * callbacks handed down. docs/discovery.md ("The code, file by file") tells a view's path
 * through them.
 */

#include <ares.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#include "common/errtext.h"
#include "discovery/discovery.h"
#include "discovery/loop.h"

/* ---- DNS ------------------------------------------------------------------------ */

#define DNS_CLASS_IN 1
#define DNS_TYPE_A 1
#define DNS_TYPE_AAAA 28
#define DNS_TYPE_SRV 33
#define DNS_RCODE_NOERROR 0
#define DNS_RCODE_NXDOMAIN 3

/* A DNS name in presentation form is at most 253 characters; c-ares escapes unusual
 * bytes (\DDD), so names that do not fit here are dropped rather than truncated. */
#define SRV_NAME_MAX 256
/* A line's name: a target's, or this pod's inserted one, its first label (of a host name
 * of at most DISCOVERY_HOSTNAME_MAX bytes) followed by what follows the first label of
 * a target's name. */
#define LINE_NAME_MAX (DISCOVERY_HOSTNAME_MAX + SRV_NAME_MAX)
#define SRV_ERR_MAX 128

#define DISCOVERY_PRINTF(fmt, first) ERRTEXT_PRINTF(fmt, first)

/* The text every request still open at shutdown is ended with. */
#define SHUTDOWN_TEXT "shutting down"

#define NS_PER_MS 1000000ull

/* ---- names.c: what to ask ---------------------------------------------------------- */

/* The names to query for service, in the resolver's order (resolv.conf(5)): a name
 * ending in a dot exactly as given (without the dot); a name with at least ndots dots
 * as given, then with each search domain appended; a name with fewer dots with each
 * search domain appended first, then as given. A name without any dot is never asked
 * bare while there is a search list: a single label is not a name in the root zone, and
 * asking one would turn "no peers" into whatever the upstream server says. Empty
 * domains are skipped. Returns 0 with a malloc()ed array of malloc()ed names, or -1
 * when memory ran out. */
int names_build(const char *service, const char *const *domains, size_t ndomains, unsigned ndots,
		char ***out, size_t *n);

/* Frees what names_build() returned. */
void names_free(char **names, size_t n);

/* ---- srv.c: the SRV answer ---------------------------------------------------------- */

struct srv_peer {
	char name[SRV_NAME_MAX]; /* target without the trailing dot */
	uint16_t priority;
	uint16_t weight;
	uint16_t port;
	int family; /* AF_INET, AF_INET6, or 0 while no address is known */
	unsigned char addr[16]; /* network order; 4 bytes used for AF_INET */
	char err[SRV_ERR_MAX]; /* why the address could not be found ("" = no error) */
};

struct srv_answer {
	int rcode; /* the reply's RCODE; peers are parsed only for NOERROR */
	/* The name whose query gave these records (set by the lookup, not by srv_parse()). */
	char qname[SRV_NAME_MAX + 80];
	uint32_t ttl; /* least TTL of the records used; UINT32_MAX when none */
	size_t npeers;
	struct srv_peer *peers; /* malloc()ed, sorted by srv_name_cmp(), unique names */
};

/* Parses a DNS reply to an SRV query. Records are de-duplicated by target
 * (case-insensitive; the record with the lowest priority, then highest weight, then
 * lowest port wins), sorted by srv_name_cmp(), and cut to max_peers after sorting so
 * the result does not depend on the server's record order. A and AAAA records of the
 * additional section give each target its first listed address. Targets "." (RFC 2782:
 * no service) and records of other types or classes are skipped. Returns 0, or -1 with
 * a line in err for a malformed reply or lack of memory; out is then empty. */
int srv_parse(const unsigned char *msg, size_t len, unsigned max_peers, struct srv_answer *out,
	      char *err, size_t errlen);

/* Frees out->peers and empties *out. Safe on an already empty answer. */
void srv_answer_free(struct srv_answer *a);

/* Natural, case-insensitive order of names: runs of digits compare by numeric value, so
 * "kubia-2" sorts before "kubia-10" (the pod ordinal order of a StatefulSet); other
 * bytes compare as lower case. Names equal in this order (e.g. "a-01" and "a-1") are
 * then ordered by strcasecmp() and finally strcmp(), so the order is total. */
int srv_name_cmp(const char *a, const char *b);

/* True when the record named name is this pod's own: its first label equals the first
 * label of hostname, ignoring case (a StatefulSet pod's name is the first label of its
 * DNS name). False for an empty hostname. */
bool srv_is_self(const char *name, const char *hostname);

/* ---- cache.c: reuse of an SRV outcome ---------------------------------------------- */

enum srv_outcome { SRV_NONE = 0, SRV_PEERS, SRV_EMPTY, SRV_ERROR };

struct srv_cache {
	enum srv_outcome kind; /* SRV_NONE: nothing cached */
	struct srv_answer ans;
	uint64_t expiry_ns;
};

/* How long an outcome may be served again, in ms: never an error; "no peers" for
 * cache_ms; peers for cache_ms but never past the answer's TTL, and not at all when a
 * target's address could not be found (the next view asks again). */
uint64_t cache_life_ms(enum srv_outcome kind, const struct srv_answer *a, unsigned cache_ms);

/* Keeps *a (ownership moves to the cache, *a is emptied) when its life is not zero;
 * returns whether it was kept. */
bool cache_put(struct srv_cache *c, enum srv_outcome kind, struct srv_answer *a, unsigned cache_ms,
	       uint64_t now_ns);

/* The cached outcome if it is still alive at now_ns, else NULL (kind SRV_NONE). */
const struct srv_cache *cache_get(const struct srv_cache *c, uint64_t now_ns);

void cache_clear(struct srv_cache *c);

/* ---- render.c: the view's lines ---------------------------------------------------- */

/* A peer's answer: its /data body verbatim, or "Error: <reason>". One answer serves the
 * lines of every view that waited for the same fetch, so it is reference-counted instead
 * of copied. Lines live and die on the loop thread only, hence a plain count. */
struct render_answer {
	size_t refs;
	size_t len;
	bool error; /* the text says why the peer could not be read */
	char *data; /* malloc()ed; NUL-terminated when made by a copy, not when adopted */
	/* A borrowed answer (this pod's own data) is given back, not freed. */
	void (*release)(void *ctx, void *hold);
	void *release_ctx;
	void *hold;
	/* What the answer's bytes hold of the memory budget, given back when it is freed. */
	struct budget *budget;
	size_t charged;
	bool fetched; /* a GET /data made it; fetch_ns is how long it took */
	uint64_t fetch_ns;
};

/* A new answer owning data (malloc()ed, or NULL when len is 0), one reference. NULL when
 * memory ran out; data is freed then, so the caller never keeps it. */
struct render_answer *render_answer_take(char *data, size_t len);

/* A new answer pointing at data owned elsewhere, given back with release(ctx, hold)
 * when the last reference goes (also when memory runs out here: NULL then). */
struct render_answer *render_answer_borrow(const char *data, size_t len,
					   void (*release)(void *ctx, void *hold), void *ctx,
					   void *hold);

/* A new answer holding a copy of data, NUL-terminated; NULL when memory ran out. */
struct render_answer *render_answer_copy(const char *data, size_t len);

/* A new answer "Error: <printf>" (cut at 1 KiB); NULL when memory ran out. */
struct render_answer *render_answer_error(const char *fmt, ...) DISCOVERY_PRINTF(1, 2);

/* Drops one reference; the last frees the answer. NULL is a no-op. */
void render_answer_unref(struct render_answer *a);

struct view;

/* One line of the cluster view. */
struct render_line {
	char name[LINE_NAME_MAX];
	bool self; /* this pod: read locally, never over the network */
	bool done; /* ans holds the final text */
	bool unlisted; /* not in the SRV answer: this pod's own line, or a missing pod */
	bool missing; /* a missing pod's line (missing.c) */
	int family;
	unsigned char addr[16];
	uint16_t port;
	/* The text once done, one reference held by the line; NULL then means memory ran
	 * out, which render_text() shows as "Error: out of memory". */
	struct render_answer *ans;
	/* While the line waits for its peer (fetch.c): its view, and the next line waiting
	 * for the same fetch. */
	struct view *view;
	struct render_line *wait_next;
};

/* Plans the lines for a parsed answer: one per peer in order; the peer for which
 * srv_is_self() holds is marked self. When other peers exist but none is self, a self
 * line "<hostname>.<rest>" is inserted in order, rest being what follows the first
 * label of the first other peer's name. Peers whose address is unknown get their
 * "Error: could not resolve ..." text now. Port is peer_port when nonzero, else the
 * record's. hostname is at most DISCOVERY_HOSTNAME_MAX bytes. Returns 0 (*out NULL and
 * *n 0 when there are no peers) or -1 when memory ran out. */
int render_plan(const struct srv_answer *a, const char *hostname, unsigned peer_port,
		struct render_line **out, size_t *n);

/* Frees the lines, dropping their references to their answers. */
void render_lines_free(struct render_line *lines, size_t n);

/* Gives the line a reference to a (NULL: out of memory), dropping the one it held, and
 * marks it done. The caller keeps its own reference. */
void render_line_share(struct render_line *l, struct render_answer *a);

/* Sets a line's text (copied into an answer of its own) and marks it done. false when
 * memory ran out (ans is then NULL). */
bool render_line_set(struct render_line *l, const char *data, size_t len);

/* Sets "Error: <printf>" on a line (cut at 1 KiB) and marks it done; false when memory
 * ran out (ans is then NULL). */
bool render_line_error(struct render_line *l, const char *fmt, ...) DISCOVERY_PRINTF(2, 3);

/* The text view's head, "You've hit <host>\nData stored in the cluster:\n", in buf;
 * returns its length. */
#define RENDER_HEAD_MAX (DISCOVERY_HOSTNAME_MAX + 48)
size_t render_head(const char *hostname, char buf[RENDER_HEAD_MAX]);

/* The length of the lines render_text() makes after the head. */
size_t render_text_len(const struct render_line *lines, size_t n);

/* A view's body: size bytes, malloc()ed behind a small header that remembers what it
 * holds of budget (size, charged here before it is taken) and counts its references
 * (one now), so that every view whose bytes these are gets the same body, and whoever
 * holds it lets go with render_body_free() alone. NULL when the budget or memory ran
 * out. */
char *render_body_alloc(struct budget *budget, size_t size);

/* One more reference to a body of render_body_alloc(). Any thread. */
void render_body_ref(char *body);

/* Drops a reference to a body of render_body_alloc(); the last frees it and gives its
 * charge back. NULL is a no-op. Any thread. */
void render_body_free(char *body);

/* The kinds of body a shelf keeps: enum discovery_format's values. */
#define RENDER_KINDS 2

/* A shelf with the latest body of each kind, kept without holding it: a later view
 * whose bytes would be the same takes it instead of rendering its own, for as long as
 * anyone still holds it. Reference-counted by its owner and by the bodies on it, so a
 * body may outlive the owner's release. */
struct render_recent;

/* An empty shelf, one reference; NULL when memory ran out (views then render alone). */
struct render_recent *render_recent_new(void);

/* Drops a reference to rc; NULL is a no-op. */
void render_recent_unref(struct render_recent *rc);

/* The latest body of kind on rc, with a new reference and its length in *len, or NULL
 * when there is none or it is being freed. NULL rc: NULL. */
char *render_recent_get(struct render_recent *rc, unsigned kind, size_t *len);

/* Makes body (len bytes) the latest of kind on rc when it was just made (not yet handed
 * out, on no shelf); returns false when it was on a shelf already (a body shared, not
 * made). NULL rc: nothing is put; NULL body: false. */
bool render_recent_put(struct render_recent *rc, unsigned kind, char *body, size_t len);

/* The whole text view: head, then "- <name>: <data>\n" per line, or "No peers
 * discovered.\n" when n is 0. The one copy of the answers' bytes a view makes, into a
 * body of render_body_alloc(budget, *len + 1), NUL-terminated for convenience; NULL when
 * the budget or memory ran out. */
char *render_text(const char *head, size_t headlen, const struct render_line *lines, size_t n,
		  struct budget *budget, size_t *len);

/* Whether render_text() would make exactly the len bytes at body (NULL: false), told
 * without making them. */
bool render_text_same(const char *body, size_t len, const char *head, size_t headlen,
		      const struct render_line *lines, size_t n);

/* The text view of a failed lookup: head, then "Could not look up DNS SRV records:
 * <reason>\n", as render_text() makes its body. */
char *render_dns_error(const char *head, size_t headlen, const char *reason, struct budget *budget,
		       size_t *len);

/* ---- missing.c: the pods DNS does not list ------------------------------------------ */

/* The reason a missing pod's line shows. */
#define MISSING_TEXT "not ready (not in DNS)"

/* Adds the lines of the StatefulSet's pods that the planned lines (sorted, as
 * render_plan() makes them) leave out, when every line's first label is
 * "<base>-<ordinal>" with one base (compared without regard to case) and ordinals
 * without leading zeros: each ordinal below the highest one listed that no line has,
 * and, when replicas is not 0, each from the highest + 1 to replicas - 1. A missing
 * line is named "<base>-<ordinal><rest>", rest being what follows the first label of
 * the first line, and is done with "Error: " MISSING_TEXT. At most limit lines are
 * added (the lowest ordinals first). *lines is replaced by a new array when lines are
 * added. Returns the number added, or -1 when memory ran out (*lines untouched). */
int missing_add(struct render_line **lines, size_t *n, unsigned replicas, size_t limit);

/* ---- viewjson.c: the cluster view as JSON ------------------------------------------- */

struct viewjson; /* the SRV part of a JSON view, made when the outcome is known */

/* The "srv" member for an outcome: kind SRV_PEERS (ans), SRV_EMPTY or SRV_ERROR
 * (reason). NULL when memory ran out. */
struct viewjson *viewjson_begin(enum srv_outcome kind, const struct srv_answer *ans,
				const char *reason, bool from_cache);

void viewjson_free(struct viewjson *vj);

/* What the document says of this pod. */
struct viewjson_pod {
	const char *name;
	const char *data;
	size_t len;
};

/* The whole document (pod, srv, peers), newline-terminated, in a body of
 * render_body_alloc(budget, *len + 1). What building it needs meanwhile is charged to
 * budget (NULL: none) too. NULL when the budget or memory ran out. like is a body
 * (like_len bytes) whose reference the caller hands over, or NULL: when the document's
 * bytes are exactly like's, like itself is returned instead of a new body; otherwise its
 * reference is dropped. */
char *viewjson_render(const struct viewjson *vj, const struct viewjson_pod *pod,
		      const struct render_line *lines, size_t n, struct budget *budget, size_t *len,
		      char *like, size_t like_len);

/* Standard base64 (RFC 4648, padded) of data, NUL-terminated in a buffer of at least
 * viewjson_base64_len(len) + 1 bytes. */
size_t viewjson_base64_len(size_t len);
void viewjson_base64_encode(const unsigned char *data, size_t len, char *out);

/* ---- the view's path --------------------------------------------------------------- */

/* One line to the configured log callback, if any. */
static inline void discovery_logf(const struct discovery_config *cfg,
				  enum discovery_log_level level, const char *fmt, ...)
	DISCOVERY_PRINTF(3, 4);

static inline void discovery_logf(const struct discovery_config *cfg,
				  enum discovery_log_level level, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	if (cfg->log == NULL) {
		return;
	}
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	cfg->log(cfg->log_ctx, level, line);
}

/* A cluster-view request, from discovery_request() until its done callback. */
struct view {
	struct view *next; /* in the submission queue or the lookup's waiters */
	discovery_done_fn done;
	void *ctx;
	/* CLOCK_MONOTONIC when discovery_request() took it: a fetch that started earlier
	 * must not serve this view (fetch.c). */
	uint64_t arrival_ns;
	struct render_line *lines;
	size_t nlines;
	size_t nleft; /* lines still waiting for their peer */
	enum discovery_format format;
	struct viewjson *json; /* DISCOVERY_FORMAT_JSON: the SRV part, once known */
};

/* ---- lookup.c: the SRV lookup on the loop ------------------------------------------ */

/* The lookup's outcome: kind SRV_PEERS (ans), SRV_EMPTY or SRV_ERROR (reason). ans lives
 * only during the call. */
typedef void (*lookup_done_fn)(void *arg, enum srv_outcome kind, const struct srv_answer *ans,
			       const char *reason);

struct addr_query;

/* The walk through the names of the one lookup in flight. */
struct lookup_walk {
	bool active;
	bool cancelling; /* deadline or shutdown: callbacks must not start new queries */
	bool timed_out;
	size_t name; /* index into names of the name being asked */
	/* The named-port form of names[name] ("_<port>._tcp.<name>"), being asked because
	 * names[name] exists without SRV records of its own (a DNS that follows only the
	 * Kubernetes DNS specification). */
	bool named_port;
	char named_port_name[SRV_NAME_MAX + 80];
	uint64_t start;
	struct srv_answer ans;
	struct addr_query *aq; /* one per peer whose address is being looked up */
	size_t addr_pending;
};

struct lookup {
	const struct discovery_config *cfg;
	struct loop *loop;
	ares_channel channel;
	bool channel_ok;
	bool told_named_port; /* the named-port fallback was logged once */
	char **names; /* the names to ask, in order (names_build()) */
	size_t nnames;
	struct loop_timer retry; /* c-ares's retransmissions */
	struct loop_timer deadline; /* the walk's whole budget */
	struct srv_cache cache;
	lookup_done_fn on_done;
	void *arg;
	struct lookup_walk lk;
};

/* Sets up the c-ares channel (cfg must outlive lu); false with a line in err. */
bool lookup_init(struct lookup *lu, const struct discovery_config *cfg, struct loop *loop,
		 char *err, size_t errlen);
/* The cached outcome if it is still alive at now, else NULL. */
const struct srv_cache *lookup_cached(const struct lookup *lu, uint64_t now);
/* Starts a lookup whose end calls on_done(arg, ...) once, on the loop thread, never
 * inside this call. While one is in flight the call does nothing: its end serves all. */
void lookup_begin(struct lookup *lu, lookup_done_fn on_done, void *arg);
/* Ends the lookup in flight now (its callback runs inside this call). */
void lookup_cancel(struct lookup *lu, bool timed_out);
void lookup_destroy(struct lookup *lu);

/* ---- transfer.c: GET /data on the loop ---------------------------------------------- */

/* Which peer a fetch asks: lines with the same key may share one fetch. */
struct peer_key {
	char name[LINE_NAME_MAX];
	int family;
	unsigned char addr[16];
	uint16_t port;
};

/* A transfer ended with answer a (NULL: out of memory; the reference passes to the
 * callee). Called from the loop, never inside transfer_start(). */
typedef void (*transfer_done_fn)(void *arg, struct render_answer *a);

struct xfer;

struct transfers {
	const struct discovery_config *cfg;
	struct loop *loop;
	CURLM *multi;
	struct loop_timer timer; /* curl's */
	struct xfer *xfers; /* every transfer on the multi handle */
	/* Easy handles of finished transfers, kept for the next ones: a handle set up once
	 * saves its allocation, its buffers and its constant options per fetch. */
	CURL **idle;
	size_t nidle;
	size_t idle_max;
};

bool transfer_init(struct transfers *tr, const struct discovery_config *cfg, struct loop *loop,
		   char *err, size_t errlen);
/* Starts GET /data from peer k (alive until the end); when it ends, on_done(arg, answer).
 * NULL when it could not be started. */
struct xfer *transfer_start(struct transfers *tr, const struct peer_key *k,
			    transfer_done_fn on_done, void *arg);
/* Ends a running transfer without calling its on_done (shutdown). */
void transfer_abort(struct transfers *tr, struct xfer *x);
void transfer_destroy(struct transfers *tr);

/* ---- fetch.c: the per-peer fetch table ---------------------------------------------- */

/* Line l of view v, which waited for its peer, got its text. */
typedef void (*fetch_line_fn)(void *arg, struct view *v, struct render_line *l);

/* Buckets of the per-peer fetch table (chained; entries exist only while a peer has a
 * fetch running or queued). */
#define FETCH_BUCKETS 256

struct fetch_peer;

struct fetches {
	const struct discovery_config *cfg;
	struct transfers *tr;
	bool stopping; /* nothing starts any more */
	fetch_line_fn line_done;
	void *arg;
	struct fetch_peer *peers[FETCH_BUCKETS];
};

void fetch_init(struct fetches *ft, const struct discovery_config *cfg, struct transfers *tr,
		fetch_line_fn line_done, void *arg);
/* Puts line idx of v (not self, not done) on a fetch of its peer: one running that
 * started at or after v's arrival, else the peer's queued one, else a new one, started
 * at once while fewer than peer_max_connections run, queued otherwise. The line is
 * answered through line_done later, never inside this call. false when no fetch could
 * be had (memory, or curl refused the transfer): the line is untouched. */
bool fetch_join(struct fetches *ft, struct view *v, size_t idx);
/* From now on no queued fetch starts. */
void fetch_stop(struct fetches *ft);
/* Ends every fetch, running or queued, with "Error: shutting down". */
void fetch_end_all(struct fetches *ft);

/* ---- view.c: a view from its submission to its callback ----------------------------- */

/* A view is about to be handed to its callback (the facade gives back its slot). */
typedef void (*view_finished_fn)(void *arg);

struct views {
	const struct discovery_config *cfg;
	const struct discovery_local *local;
	struct lookup *lu;
	struct fetches *ft;
	struct view *waiters; /* views waiting for the lookup, in arrival order */
	struct view *waiters_tail;
	bool stopping;
	view_finished_fn finished;
	void *arg;
	char head[RENDER_HEAD_MAX]; /* the text view's head */
	size_t headlen;
	struct render_recent *recent; /* the latest body of each format; NULL: none kept */
	/* The latest body of each format, held until the pass that made it ends (NULL
	 * loop: not held). */
	struct loop *loop;
	struct loop_timer release;
	char *held[RENDER_KINDS];
};

/* Sets vs up, and ft (fetch_init()) with vs's line callback. */
void view_init(struct views *vs, const struct discovery_config *cfg,
	       const struct discovery_local *local, struct loop *loop, struct lookup *lu,
	       struct fetches *ft, struct transfers *tr, view_finished_fn finished, void *arg);
/* Serves v from the cached SRV outcome, or queues it for the lookup. */
void view_start(struct views *vs, struct view *v);
/* From now on views end at once: lines not yet asked say "shutting down", and so does a
 * view that would wait for DNS. */
void view_stop(struct views *vs);
/* Ends every view still open: the lookup's waiters and the lines waiting for peers. */
void view_end_all(struct views *vs);
/* Lets go of what view_init() made; bodies still held keep what they need. */
void view_destroy(struct views *vs);

/* ---- watch.c: the watcher ---------------------------------------------------------- */

struct json_t;

/* Asks one JSON view whose outcome goes to done(ctx, ...) (the facade's
 * discovery_request_as()); false when it was refused. */
typedef bool (*watch_submit_fn)(void *arg, discovery_done_fn done, void *ctx);

struct watch {
	struct loop *loop;
	struct budget *budget;
	struct loop_timer timer; /* the next round */
	watch_submit_fn submit;
	void *submit_arg;
	unsigned interval_ms;
	discovery_watch_fn report;
	void *report_ctx;
	bool active;
	bool in_flight; /* a round's view is being assembled */
	struct json_t *last; /* the last view reported, normalised (watch_normalise()) */
	size_t last_charge; /* what last holds of the budget */
};

void watch_init(struct watch *w, struct loop *loop, struct budget *budget, watch_submit_fn submit,
		void *submit_arg);
/* Starts rounds every interval_ms, the first at once, each reported to report(ctx), or
 * stops them (forgetting the last view: the first round after a start reports one). */
void watch_set(struct watch *w, bool on, unsigned interval_ms, discovery_watch_fn report,
	       void *ctx);
/* Removes what tells two views apart without their saying anything different: the SRV
 * answer's from_cache and every peer's fetch_ms. */
void watch_normalise(struct json_t *doc);
void watch_destroy(struct watch *w);

#endif
