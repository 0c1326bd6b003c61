/* SPDX-License-Identifier: MIT */
#ifndef KUBIA_DISCOVERY_LOOP_H
#define KUBIA_DISCOVERY_LOOP_H

/*
 * An event loop that knows nothing of its users (private to discovery/): epoll over the
 * descriptors sources register, one timerfd for the earliest of their timers, and an
 * eventfd through which other threads wake it. Every callback runs on the thread inside
 * loop_run(); only loop_wake() may be called from another thread.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LOOP_NEVER UINT64_MAX

struct loop;

/* fd is ready for events (EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP). */
typedef void (*loop_fd_fn)(void *arg, int fd, uint32_t events);
typedef void (*loop_fn)(void *arg);
/* A system call of the loop failed (call names it); the loop goes on. */
typedef void (*loop_error_fn)(void *arg, const char *call, int err);

/* A timer a source embeds in its own state: loop_timer_set() arms it, its callback runs
 * once when it is due (and may arm it again). */
struct loop_timer {
	uint64_t due; /* CLOCK_MONOTONIC ns; LOOP_NEVER while disarmed */
	loop_fn cb;
	void *arg;
	struct loop_timer *next; /* in the loop's list while armed */
	bool armed;
};

/* NULL with the reason in err. on_error may be NULL. */
struct loop *loop_create(loop_error_fn on_error, void *arg, char *err, size_t errlen);

/* Closes the loop's descriptors and frees it; sources must be gone. NULL is a no-op. */
void loop_destroy(struct loop *l);

/* Watches fd for events with cb, registered or not yet (libraries reuse and close
 * sockets). false with errno when epoll refused it. */
bool loop_watch(struct loop *l, int fd, uint32_t events, loop_fd_fn cb, void *arg);

/* Stops watching fd; an event of it still pending in this pass is dropped. */
void loop_unwatch(struct loop *l, int fd);

/* Sets t up, disarmed; never on an armed timer. */
void loop_timer_init(struct loop_timer *t, loop_fn cb, void *arg);

/* Arms t for due (LOOP_NEVER disarms it); a time already past runs it on the next pass. */
void loop_timer_set(struct loop *l, struct loop_timer *t, uint64_t due);

/* What runs on the loop thread after loop_wake(): once per wake-up, however many
 * loop_wake() calls it gathered. */
void loop_on_wake(struct loop *l, loop_fn cb, void *arg);

/* Wakes the loop; thread-safe. */
void loop_wake(struct loop *l);

/* Runs the loop until loop_quit() (from a callback). false when epoll_wait() failed:
 * the loop cannot wait any more. */
bool loop_run(struct loop *l);

/* Makes loop_run() return after the current callback. */
void loop_quit(struct loop *l);

#endif
