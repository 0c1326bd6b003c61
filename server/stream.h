/* SPDX-License-Identifier: MIT */
#ifndef KUBIA_STREAM_H
#define KUBIA_STREAM_H

/*
 * The view stream (stream.c): Server-Sent Events of the cluster view for every
 * subscriber of this pod. The pod's one watcher (discovery_watch()) runs while anyone
 * subscribes; each change it reports becomes one event held once and queued to every
 * subscriber; each subscriber's response is read from its queue by libmicrohttpd and the
 * connection is suspended while the queue is empty. A subscriber whose queue outgrows
 * its bounds is dropped, never buffered further. Only server/ includes it.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct budget;
struct discovery;
struct discovery_watch_event;

struct stream_hub;
struct stream_sub;

/* How the hub acts on a subscriber's connection; libmicrohttpd's in the server, fakes in
 * the unit test. suspend is called from the subscriber's read() only; resume and cut
 * from any thread, under the hub's lock. */
struct stream_io {
	void (*suspend)(void *conn);
	void (*resume)(void *conn);
	void (*cut)(void *conn, int fd); /* ends a connection that does not read */
	/* Whether the client has closed its end: libmicrohttpd does not look at a suspended
	 * connection, so a client that left would otherwise be noticed only when a write
	 * to it fails, two heartbeats later. */
	bool (*gone)(void *conn, int fd);
};

struct stream_limits {
	unsigned interval_ms; /* the watcher's period */
	unsigned heartbeat_s; /* a comment after this much silence */
	unsigned max_subscribers;
	unsigned max_pending; /* events queued to one subscriber */
	uint64_t max_pending_bytes; /* bytes queued to one subscriber */
};

/* hostname is shown in every event's "stream" member. NULL when memory ran out. */
struct stream_hub *stream_hub_new(const struct stream_limits *lim, const struct stream_io *io,
				  struct discovery *disc, struct budget *budget,
				  const char *hostname);
/* Every subscriber must be closed, and the watcher stopped (discovery_stop()). */
void stream_hub_free(struct stream_hub *h);

enum stream_open_result {
	STREAM_OPEN_OK = 0,
	STREAM_OPEN_FULL, /* --max-stream-subscribers are open */
	STREAM_OPEN_OVER_BUDGET,
	STREAM_OPEN_STOPPING,
};

/* A new subscriber of connection conn (socket fd): its first event is the last view
 * the watcher reported, or the watcher's next one when it has none yet. */
enum stream_open_result stream_open(struct stream_hub *h, void *conn, int fd,
				    struct stream_sub **out);

/* The subscriber's connection is done with (closed, or its response ended). */
void stream_close(struct stream_sub *s);

/* What the subscriber's response reads next, up to max bytes into buf: > 0 bytes, 0
 * when nothing is queued (the connection was suspended: it is resumed when something
 * is), or -1 for the end of the stream (SIGTERM) and -2 for a dropped subscriber (its
 * connection is to be closed). */
ssize_t stream_read(struct stream_sub *s, char *buf, size_t max);

/* A round of the watcher (discovery_watch_fn, with the hub as ctx): its event queued to
 * every subscriber, or a heartbeat to those quiet long enough; subscribers whose client
 * left are ended. */
void stream_on_round(void *ctx, struct discovery_watch_event *ev);

/* SIGTERM: no subscriber is taken any more, idle ones end at once, and those in the
 * middle of an event are cut (a partial event is dropped by an SSE client anyway). */
void stream_stop_all(struct stream_hub *h);

/* One event's text is these parts in order: "id: <n>\nevent: view\ndata: ", the view's
 * JSON without its closing brace, ",\"stream\":{\"served_by\":<host>,\"seq\":", n,
 * ",\"changed_at_ms\":<ms>}}\n\n". */
#define STREAM_PARTS 5
struct stream_frame {
	const char *part[STREAM_PARTS];
	size_t len[STREAM_PARTS];
};

/* Copies the frame's bytes from off on into buf, at most max; returns how many. */
size_t stream_frame_copy(const struct stream_frame *f, size_t off, char *buf, size_t max);
size_t stream_frame_len(const struct stream_frame *f);

#endif
