/* SPDX-License-Identifier: MIT */
/*
 * The event loop on its own: pipes as the sources' descriptors, timers, wake-ups from
 * another thread, and a source that goes away while its event is pending. Every wait is
 * bounded by a timer of the loop that fails the test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "discovery/loop.h"

#include "common/monotonic.h"

#define MS 1000000ull
/* The longest any test waits for what it expects. */
#define GUARD_MS 5000

struct source {
	struct loop *loop;
	int fds[2];
	int reads;
	char last;
	bool quit_after_read;
};

static void on_readable(void *arg, int fd, uint32_t events)
{
	struct source *s = arg;
	char c;

	assert_int_equal(fd, s->fds[0]);
	assert_true(events & EPOLLIN);
	assert_int_equal(read(fd, &c, 1), 1);
	s->last = c;
	s->reads++;
	if (s->quit_after_read) {
		loop_quit(s->loop);
	}
}

static void on_guard(void *arg)
{
	(void)arg;
	fail_msg("the loop did not get what the test waited for within %d ms", GUARD_MS);
}

static struct loop *make_loop(struct loop_timer *guard)
{
	char err[128] = "";
	struct loop *l = loop_create(NULL, NULL, err, sizeof(err));

	assert_non_null(l);
	loop_timer_init(guard, on_guard, NULL);
	loop_timer_set(l, guard, monotonic_ns() + GUARD_MS * MS);
	return l;
}

static void test_a_watched_pipe_calls_back(void **state)
{
	struct loop_timer guard;
	struct loop *l = make_loop(&guard);
	struct source s = {.loop = l, .quit_after_read = true};

	(void)state;
	assert_int_equal(pipe(s.fds), 0);
	assert_true(loop_watch(l, s.fds[0], EPOLLIN, on_readable, &s));
	/* Watching again only changes the events (a library asks for the same twice). */
	assert_true(loop_watch(l, s.fds[0], EPOLLIN, on_readable, &s));
	assert_int_equal(write(s.fds[1], "x", 1), 1);
	assert_true(loop_run(l));
	assert_int_equal(s.reads, 1);
	assert_int_equal(s.last, 'x');
	loop_unwatch(l, s.fds[0]);
	loop_timer_set(l, &guard, LOOP_NEVER);
	close(s.fds[0]);
	close(s.fds[1]);
	loop_destroy(l);
}

static void test_a_bad_descriptor_is_refused(void **state)
{
	struct loop_timer guard;
	struct loop *l = make_loop(&guard);
	struct source s = {.loop = l};

	(void)state;
	assert_false(loop_watch(l, -1, EPOLLIN, on_readable, &s));
	assert_int_equal(errno, EBADF);
	assert_int_equal(pipe(s.fds), 0);
	close(s.fds[0]);
	assert_false(loop_watch(l, s.fds[0], EPOLLIN, on_readable, &s));
	close(s.fds[1]);
	loop_timer_set(l, &guard, LOOP_NEVER);
	loop_destroy(l);
}

struct order {
	struct loop *loop;
	int seen[4];
	int n;
	struct loop_timer *rearm; /* armed again by the first timer to run */
};

struct tick {
	struct order *o;
	int id;
};

static void on_tick(void *arg)
{
	struct tick *t = arg;

	t->o->seen[t->o->n++] = t->id;
	if (t->o->rearm != NULL) {
		loop_timer_set(t->o->loop, t->o->rearm, monotonic_ns() + MS);
		t->o->rearm = NULL;
	}
	if (t->o->n == 3) {
		loop_quit(t->o->loop);
	}
}

/* Timers run in the order they are due, a disarmed one never, and one armed again from a
 * callback runs again. */
static void test_timers_run_when_due(void **state)
{
	struct loop_timer guard;
	struct loop *l = make_loop(&guard);
	struct order o = {.loop = l};
	struct tick ta = {&o, 1};
	struct tick tb = {&o, 2};
	struct tick tc = {&o, 3};
	struct loop_timer a;
	struct loop_timer b;
	struct loop_timer c;
	uint64_t start = monotonic_ns();

	(void)state;
	loop_timer_init(&a, on_tick, &ta);
	loop_timer_init(&b, on_tick, &tb);
	loop_timer_init(&c, on_tick, &tc);
	loop_timer_set(l, &b, start + 40 * MS);
	loop_timer_set(l, &a, start + 20 * MS);
	loop_timer_set(l, &c, start + 30 * MS);
	loop_timer_set(l, &c, LOOP_NEVER);
	o.rearm = &a;
	assert_true(loop_run(l));
	assert_int_equal(o.n, 3);
	assert_int_equal(o.seen[0], 1);
	assert_int_equal(o.seen[1], 1); /* armed again 1 ms after its first run */
	assert_int_equal(o.seen[2], 2);
	assert_true(monotonic_ns() - start >= 40 * MS);
	assert_false(c.armed);
	loop_timer_set(l, &guard, LOOP_NEVER);
	loop_destroy(l);
}

/* A time already past runs on the next pass, not never. */
static void test_a_past_timer_runs_at_once(void **state)
{
	struct loop_timer guard;
	struct loop *l = make_loop(&guard);
	struct order o = {.loop = l, .n = 2};
	struct tick ta = {&o, 7};
	struct loop_timer a;

	(void)state;
	loop_timer_init(&a, on_tick, &ta);
	loop_timer_set(l, &a, 0);
	assert_true(loop_run(l));
	assert_int_equal(o.seen[2], 7);
	loop_timer_set(l, &guard, LOOP_NEVER);
	loop_destroy(l);
}

static void quit_cb(void *arg)
{
	loop_quit(arg);
}

struct waker {
	struct loop *loop;
	int wakes;
	int want;
};

static void on_wake(void *arg)
{
	struct waker *w = arg;

	w->wakes++;
	if (w->wakes >= w->want) {
		loop_quit(w->loop);
	}
}

static void *wake_from_thread(void *arg)
{
	struct waker *w = arg;

	loop_wake(w->loop);
	return NULL;
}

static void test_wake_from_another_thread(void **state)
{
	struct loop_timer guard;
	struct loop *l = make_loop(&guard);
	struct waker w = {.loop = l, .want = 1};
	pthread_t t;

	(void)state;
	loop_on_wake(l, on_wake, &w);
	assert_int_equal(pthread_create(&t, NULL, wake_from_thread, &w), 0);
	assert_true(loop_run(l));
	pthread_join(t, NULL);
	assert_int_equal(w.wakes, 1);
	/* Wake-ups gathered before the loop runs call back once. */
	w.want = 2;
	loop_wake(l);
	loop_wake(l);
	loop_wake(l);
	loop_timer_set(l, &guard, LOOP_NEVER);
	loop_timer_init(&guard, quit_cb, l);
	loop_timer_set(l, &guard, monotonic_ns() + 50 * MS);
	assert_true(loop_run(l));
	assert_int_equal(w.wakes, 2);
	loop_destroy(l);
}

/* Two pipes ready in the same pass: whichever callback runs first unwatches the other,
 * whose pending event must then reach nobody. */
struct pair {
	struct loop *loop;
	int fds[2][2];
	int calls;
};

static void on_first(void *arg, int fd, uint32_t events)
{
	struct pair *p = arg;
	char c;

	assert_true(events & EPOLLIN);
	assert_int_equal(read(fd, &c, 1), 1);
	p->calls++;
	loop_unwatch(p->loop, fd == p->fds[0][0] ? p->fds[1][0] : p->fds[0][0]);
	loop_quit(p->loop);
}

static void test_an_unwatched_source_gets_no_pending_event(void **state)
{
	struct loop_timer guard;
	struct loop *l = make_loop(&guard);
	struct pair p = {.loop = l};

	(void)state;
	for (int i = 0; i < 2; i++) {
		assert_int_equal(pipe(p.fds[i]), 0);
		assert_true(loop_watch(l, p.fds[i][0], EPOLLIN, on_first, &p));
		assert_int_equal(write(p.fds[i][1], "x", 1), 1);
	}
	assert_true(loop_run(l));
	assert_int_equal(p.calls, 1);
	/* The unwatched pipe's byte stays unread: a level-triggered event would come
	 * again, and must not. */
	loop_timer_set(l, &guard, LOOP_NEVER);
	loop_timer_init(&guard, quit_cb, l);
	loop_timer_set(l, &guard, monotonic_ns() + 50 * MS);
	assert_true(loop_run(l));
	assert_int_equal(p.calls, 1);
	for (int i = 0; i < 2; i++) {
		loop_unwatch(l, p.fds[i][0]);
		close(p.fds[i][0]);
		close(p.fds[i][1]);
	}
	loop_destroy(l);
}

/* epoll_ctl() as the loop calls it: this definition stands in for libc's in the test
 * program, counting the calls on the way to the kernel. */
static int ctl_calls;

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	ctl_calls++;
	return (int)syscall(SYS_epoll_ctl, epfd, op, fd, ev);
}

/* Each watch, change and unwatch of a socket is one epoll_ctl(), the first watch of a
 * descriptor too; a descriptor closed while watched (the kernel dropped it from the set
 * unseen) and reused is still watched right. */
static void test_a_watch_is_one_system_call(void **state)
{
	struct loop_timer guard;
	struct loop *l = make_loop(&guard);
	struct source s = {.loop = l, .quit_after_read = true};
	int fd;

	(void)state;
	assert_int_equal(pipe(s.fds), 0);
	for (int round = 0; round < 2; round++) {
		ctl_calls = 0;
		assert_true(loop_watch(l, s.fds[0], EPOLLIN, on_readable, &s));
		assert_int_equal(ctl_calls, 1);
		assert_true(loop_watch(l, s.fds[0], EPOLLIN | EPOLLOUT, on_readable, &s));
		assert_int_equal(ctl_calls, 2);
		loop_unwatch(l, s.fds[0]);
		assert_int_equal(ctl_calls, 3);
	}
	assert_true(loop_watch(l, s.fds[0], EPOLLIN, on_readable, &s));
	fd = s.fds[0];
	close(s.fds[0]);
	close(s.fds[1]);
	assert_int_equal(pipe(s.fds), 0);
	assert_int_equal(s.fds[0], fd); /* the lowest free number: the one just closed */
	assert_true(loop_watch(l, s.fds[0], EPOLLIN, on_readable, &s));
	assert_int_equal(write(s.fds[1], "y", 1), 1);
	assert_true(loop_run(l));
	assert_int_equal(s.reads, 1);
	assert_int_equal(s.last, 'y');
	loop_unwatch(l, s.fds[0]);
	loop_timer_set(l, &guard, LOOP_NEVER);
	close(s.fds[0]);
	close(s.fds[1]);
	loop_destroy(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_watched_pipe_calls_back),
		cmocka_unit_test(test_a_bad_descriptor_is_refused),
		cmocka_unit_test(test_a_watch_is_one_system_call),
		cmocka_unit_test(test_timers_run_when_due),
		cmocka_unit_test(test_a_past_timer_runs_at_once),
		cmocka_unit_test(test_wake_from_another_thread),
		cmocka_unit_test(test_an_unwatched_source_gets_no_pending_event),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
