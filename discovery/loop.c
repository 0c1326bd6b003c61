/* SPDX-License-Identifier: MIT */
/*
 * The event loop: epoll over registered descriptors, one timerfd armed for the earliest
 * timer, an eventfd for wake-ups from other threads. Level-triggered: an event a source
 * could not act on comes back on the next pass.
 *
 * A descriptor's registration lives in a table indexed by the descriptor, with a
 * generation that changes with every registration: an event read in the same pass as
 * an unwatch (the library closed the socket, and the number may already be another's)
 * is dropped instead of reaching the wrong source.
 */
#include "discovery/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "common/errtext.h"
#include "common/monotonic.h"

struct watch {
	loop_fd_fn cb; /* NULL: not watched */
	void *arg;
	uint32_t gen;
	/* In the epoll set as far as the loop knows: a closed descriptor leaves it without
	 * telling, so this picks which epoll_ctl() is tried first, not which one works. */
	bool added;
};

struct loop {
	int epfd;
	int evfd;
	int tfd;
	bool quit;
	uint32_t gen;
	struct watch *watches; /* indexed by fd */
	size_t nwatches;
	struct loop_timer *timers; /* armed ones, unordered: a source has one or two */
	uint64_t armed_for; /* what the timerfd is set to; LOOP_NEVER: disarmed */
	loop_fn on_wake;
	void *wake_arg;
	loop_error_fn on_error;
	void *error_arg;
};

/* The data of the loop's own descriptors (user descriptors carry fd | gen << 32). */
#define DATA_WAKE UINT64_MAX
#define DATA_TIMER (UINT64_MAX - 1)

static void report(const struct loop *l, const char *call, int err)
{
	if (l->on_error != NULL) {
		l->on_error(l->error_arg, call, err);
	}
}

static bool add_own(struct loop *l, int fd, uint64_t data)
{
	struct epoll_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.u64 = data;
	return epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) == 0;
}

struct loop *loop_create(loop_error_fn on_error, void *arg, char *err, size_t errlen)
{
	struct loop *l = calloc(1, sizeof(*l));

	if (l == NULL) {
		errtext_set(err, errlen, "out of memory");
		return NULL;
	}
	l->on_error = on_error;
	l->error_arg = arg;
	l->armed_for = LOOP_NEVER;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	l->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	l->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (l->epfd < 0 || l->evfd < 0 || l->tfd < 0 || !add_own(l, l->evfd, DATA_WAKE) ||
	    !add_own(l, l->tfd, DATA_TIMER)) {
		errtext_set(err, errlen, "could not create the event loop: %s", strerror(errno));
		loop_destroy(l);
		return NULL;
	}
	return l;
}

void loop_destroy(struct loop *l)
{
	if (l == NULL) {
		return;
	}
	if (l->epfd >= 0) {
		close(l->epfd);
	}
	if (l->evfd >= 0) {
		close(l->evfd);
	}
	if (l->tfd >= 0) {
		close(l->tfd);
	}
	free(l->watches);
	free(l);
}

/* The table's slot for fd, grown when needed; NULL (errno ENOMEM) when it cannot be. */
static struct watch *slot(struct loop *l, int fd)
{
	if ((size_t)fd >= l->nwatches) {
		size_t n = l->nwatches != 0 ? l->nwatches : 64;
		struct watch *w;

		while (n <= (size_t)fd) {
			n *= 2;
		}
		w = realloc(l->watches, n * sizeof(*w));
		if (w == NULL) {
			errno = ENOMEM;
			return NULL;
		}
		memset(w + l->nwatches, 0, (n - l->nwatches) * sizeof(*w));
		l->watches = w;
		l->nwatches = n;
	}
	return &l->watches[fd];
}

/* Puts fd in the epoll set with ev, or changes its events there. A transfer's socket is
 * watched anew for each request on it and unwatched at its end: the call likely to work
 * is tried first, which saves a failing one per request. */
static bool epoll_set(struct loop *l, const struct watch *w, int fd, struct epoll_event *ev)
{
	if (w->added) {
		return epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, ev) == 0 ||
		       (errno == ENOENT && epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, ev) == 0);
	}
	return epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, ev) == 0 ||
	       (errno == EEXIST && epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, ev) == 0);
}

bool loop_watch(struct loop *l, int fd, uint32_t events, loop_fd_fn cb, void *arg)
{
	struct epoll_event ev;
	struct watch *w;

	if (fd < 0 || (w = slot(l, fd)) == NULL) {
		if (fd < 0) {
			errno = EBADF;
		}
		return false;
	}
	if (w->cb != cb || w->arg != arg) {
		w->gen = ++l->gen;
	}
	memset(&ev, 0, sizeof(ev));
	ev.events = events;
	ev.data.u64 = ((uint64_t)w->gen << 32) | (uint32_t)fd;
	if (!epoll_set(l, w, fd, &ev)) {
		w->cb = NULL;
		w->added = false;
		return false;
	}
	w->added = true;
	w->cb = cb;
	w->arg = arg;
	return true;
}

void loop_unwatch(struct loop *l, int fd)
{
	if (fd >= 0 && (size_t)fd < l->nwatches) {
		l->watches[fd].cb = NULL;
		l->watches[fd].gen = ++l->gen;
		l->watches[fd].added = false;
	}
	/* ENOENT/EBADF are fine: the fd may never have been added, or be closed. */
	(void)epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
}

void loop_timer_init(struct loop_timer *t, loop_fn cb, void *arg)
{
	memset(t, 0, sizeof(*t));
	t->due = LOOP_NEVER;
	t->cb = cb;
	t->arg = arg;
}

static void timer_unlink(struct loop *l, struct loop_timer *t)
{
	for (struct loop_timer **p = &l->timers; *p != NULL; p = &(*p)->next) {
		if (*p == t) {
			*p = t->next;
			break;
		}
	}
	t->next = NULL;
	t->armed = false;
}

void loop_timer_set(struct loop *l, struct loop_timer *t, uint64_t due)
{
	t->due = due;
	if (due == LOOP_NEVER) {
		if (t->armed) {
			timer_unlink(l, t);
		}
		return;
	}
	if (!t->armed) {
		t->next = l->timers;
		l->timers = t;
		t->armed = true;
	}
}

void loop_on_wake(struct loop *l, loop_fn cb, void *arg)
{
	l->on_wake = cb;
	l->wake_arg = arg;
}

void loop_wake(struct loop *l)
{
	uint64_t one = 1;

	/* EAGAIN would mean the counter is saturated: the loop is awake anyway. */
	while (write(l->evfd, &one, sizeof(one)) < 0 && errno == EINTR) {
	}
}

void loop_quit(struct loop *l)
{
	l->quit = true;
}

/* Runs every timer due at now (a callback may arm or disarm any timer, so the list is
 * walked again after each), then returns the earliest due time left. */
static uint64_t run_timers(struct loop *l, uint64_t now)
{
	uint64_t next = LOOP_NEVER;
	struct loop_timer *t;

	do {
		next = LOOP_NEVER;
		for (t = l->timers; t != NULL; t = t->next) {
			if (t->due <= now) {
				break;
			}
			if (t->due < next) {
				next = t->due;
			}
		}
		if (t != NULL) {
			timer_unlink(l, t);
			t->due = LOOP_NEVER;
			t->cb(t->arg);
		}
	} while (t != NULL && !l->quit);
	return next;
}

/* Arms the timerfd for due, when that changed. */
static void arm(struct loop *l, uint64_t due)
{
	struct itimerspec its;

	if (due == l->armed_for) {
		return;
	}
	memset(&its, 0, sizeof(its));
	if (due != LOOP_NEVER) {
		/* An absolute time in the past fires at once, but zero would disarm. */
		if (due == 0) {
			due = 1;
		}
		its.it_value.tv_sec = (time_t)(due / 1000000000ull);
		its.it_value.tv_nsec = (long)(due % 1000000000ull);
	}
	if (timerfd_settime(l->tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0) {
		report(l, "timerfd_settime", errno);
		l->armed_for = LOOP_NEVER;
		return;
	}
	l->armed_for = due;
}

static void drain(int fd)
{
	uint64_t v;

	while (read(fd, &v, sizeof(v)) < 0 && errno == EINTR) {
	}
}

static void dispatch(struct loop *l, const struct epoll_event *ev)
{
	int fd = (int)(uint32_t)ev->data.u64;
	uint32_t gen = (uint32_t)(ev->data.u64 >> 32);
	const struct watch *w;

	if (ev->data.u64 == DATA_WAKE) {
		drain(l->evfd);
		if (l->on_wake != NULL) {
			l->on_wake(l->wake_arg);
		}
		return;
	}
	if (ev->data.u64 == DATA_TIMER) {
		drain(l->tfd);
		l->armed_for = LOOP_NEVER;
		return;
	}
	if ((size_t)fd >= l->nwatches) {
		return;
	}
	w = &l->watches[fd];
	if (w->cb != NULL && w->gen == gen) {
		w->cb(w->arg, fd, ev->events);
	}
}

bool loop_run(struct loop *l)
{
	struct epoll_event evs[32];

	l->quit = false;
	while (!l->quit) {
		uint64_t due = run_timers(l, monotonic_ns());
		int n;

		if (l->quit) {
			break;
		}
		arm(l, due);
		n = epoll_wait(l->epfd, evs, (int)(sizeof(evs) / sizeof(evs[0])), -1);
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			report(l, "epoll_wait", errno);
			return false;
		}
		for (int i = 0; i < n; i++) {
			dispatch(l, &evs[i]);
		}
	}
	return true;
}
