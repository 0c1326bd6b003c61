# SPDX-License-Identifier: MIT
"""Group commit: POSTs wait, suspended, for one writer thread that commits them in
batches (only a batch's last body is written, every POST of the batch is answered once
that commit is durable), and readers see a body only once it is durable.

The commits are slowed down (or made to fail) with the faultfs shim, which reports each
fsync it delays on standard error: a commit is one delayed directory fsync."""

import concurrent.futures
import os
import signal
import threading
import time

import pytest

from harness import DOMAIN, OLD, injected, on_disk, pod_fqdn, preload, start_faulty, temp_files
from kubiatest.http import http_request
from kubiatest.ports import free_port
from kubiatest.waits import wait_until

pytestmark = pytest.mark.usefixtures("faultfs")

NEW = b"new data, not yet durable\n"
# One HTTP thread: a thread that waited for the disk would block everything it serves.
ONE_THREAD = ["--threads", "1"]


def commits(k):
    """Commits begun so far: each makes exactly one directory fsync."""
    return len([ln for ln in injected(k, "fsync") if " of directory " in ln])


def fsyncs_begun(k):
    return len(injected(k, "fsync"))


def reads_before_durable(k, pending, read):
    """Calls read() over and over while the commit is surely not durable (the temporary
    file's fsync is being delayed and the directory's has not begun) and returns what
    each call saw. Later reads prove nothing: the commit may be durable already."""
    seen = []
    while not pending.done():
        body = read()
        if commits(k) > 0:
            break  # the directory fsync began before this read ended
        seen.append(body)
    return seen


def post_all(k, bodies, timeout=60):
    """POSTs every body at once (threads released together); returns the answers in the
    order of bodies."""
    barrier = threading.Barrier(len(bodies))

    def one(body):
        barrier.wait(10)
        return k.post("/", body, timeout=timeout)

    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(one, bodies))


def test_concurrent_posts_share_a_handful_of_commits(factory, workdir):
    """32 POSTs arriving together while fsyncs are slow: a few commits serve them all,
    each answered 200 only after its commit, and the file holds one whole body, the one
    served. Without batching, each POST would make its own commit (32)."""
    k = start_faulty(factory, workdir, {"FAULTFS_FSYNC_DELAY_MS": "150"}, args=ONE_THREAD)
    bodies = [("body %02d " % i).encode() * (i + 1) for i in range(32)]
    answers = post_all(k, bodies)
    assert [r.status for r in answers] == [200] * 32, answers
    n = commits(k)
    assert 1 <= n <= 4, "32 concurrent POSTs took %d commits:\n%s" % (n, k.stderr())
    stored = on_disk(k)
    assert stored in bodies
    assert k.get("/data").body == stored
    assert temp_files(k) == []
    # The last body handed over wins: one POSTed after all of those were answered.
    last = b"the very last body\n"
    assert k.post("/", last, timeout=30).status == 200
    assert on_disk(k) == last and k.get("/data").body == last
    assert commits(k) == n + 1


def test_batch_failure_answers_every_post_of_the_batch(factory, workdir):
    """A batch whose commit fails (a full volume) answers each of its POSTs with that
    error; the body committed before stays, on disk and in memory."""
    k = start_faulty(factory, workdir, {"FAULTFS_FSYNC_DELAY_MS": "400",
                                 "FAULTFS_WRITE_ENOSPC": "1:1000"}, args=ONE_THREAD)
    first = b"first, committed alone\n"
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        pending = pool.submit(k.post, "/", first, timeout=30)
        # The first commit is under way (its file fsync is being delayed): what arrives
        # now waits for the next batch.
        wait_until(lambda: fsyncs_begun(k) >= 1, 10, what="the first commit to start")
        bodies = [("doomed %02d\n" % i).encode() for i in range(16)]
        answers = post_all(k, bodies)
        assert pending.result(30).status == 200
    finally:
        pool.shutdown(wait=True)
    assert [r.status for r in answers] == [507] * 16, answers
    for r in answers:
        assert r.body.startswith(b"Could not store data: volume is full"), r
        assert r.body.endswith(b"; previous data kept\n"), r
    # One batch, so one failed write answered all sixteen.
    assert len(injected(k, "write")) == 1, k.stderr()
    assert on_disk(k) == first
    assert k.get("/data").body == first
    assert temp_files(k) == []


def test_no_dirty_read_while_the_commit_runs(factory, workdir):
    """Until the commit is durable, GET /data and the pet view show the old body, never
    the new one; the moment the POST is answered, they show the new one."""
    k = start_faulty(factory, workdir, {"FAULTFS_FSYNC_DELAY_MS": "700"}, args=ONE_THREAD)
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        pending = pool.submit(k.post, "/", NEW, timeout=30)
        wait_until(lambda: fsyncs_begun(k) >= 1, 10, what="the commit to start")
        seen = reads_before_durable(
            k, pending, lambda: k.get("/data").body + b"|" + k.get("/anything").body)
        r = pending.result(30)
    finally:
        pool.shutdown(wait=True)
    assert r.status == 200, r
    # Reads really ran while the commit did (the file's fsync alone takes 0.7 s).
    assert len(seen) >= 5, len(seen)
    pet_old = b"You've hit kubia-0\nData stored on this pod: " + OLD + b"\n"
    for body in seen:
        assert body == OLD + b"|" + pet_old, body
    assert k.get("/data").body == NEW
    assert on_disk(k) == NEW


def test_no_dirty_read_in_the_cluster_view(factory, workdir):
    """The pod's own line of its cluster view, and what a peer is told by GET /data,
    show only durable data."""
    p0, p1 = free_port(), free_port()
    dns = factory.dns(srv=[(DOMAIN, pod_fqdn("kubia-0"), p0),
                           (DOMAIN, pod_fqdn("kubia-1"), p1)],
                      hosts=[(pod_fqdn("kubia-0"), "127.0.0.1", None),
                             (pod_fqdn("kubia-1"), "127.0.0.2", None)])
    data_dir = os.path.realpath(os.path.join(workdir, "slow-volume"))
    os.makedirs(data_dir)
    with open(os.path.join(data_dir, "kubia.txt"), "wb") as f:
        f.write(OLD)
    env = {"LD_PRELOAD": preload(), "FAULTFS_PATH": data_dir, "FAULTFS_FSYNC_DELAY_MS": "700"}
    k0 = factory.kubia("kubia-0", port=p0, mode="peers", dns=dns.port,
                       resolv=factory.resolv(), data_dir=data_dir, env=env,
                       args=["--dns-cache-ms", "0"] + ONE_THREAD)
    k1 = factory.kubia("kubia-1", port=p1, mode="peers", dns=dns.port,
                       resolv=factory.resolv(), host="127.0.0.2",
                       args=["--dns-cache-ms", "0"])
    own_old = ("- %s: " % pod_fqdn("kubia-0")).encode() + OLD
    own_new = ("- %s: " % pod_fqdn("kubia-0")).encode() + NEW
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        pending = pool.submit(k0.post, "/", NEW, timeout=30)
        wait_until(lambda: fsyncs_begun(k0) >= 1, 10, what="the commit to start")
        views = reads_before_durable(k0, pending,
                                     lambda: k0.get("/").body + b"|" + k1.get("/").body)
        assert pending.result(30).status == 200
    finally:
        pool.shutdown(wait=True)
    assert len(views) >= 2, len(views)
    for v in views:
        assert v.count(own_old) == 2 and own_new not in v, v
    assert own_new in k0.get("/").body
    assert own_new in k1.get("/").body


def test_sigterm_during_a_commit_answers_the_post_and_stores_it(factory, workdir):
    """A POST whose commit is under way when SIGTERM comes is still answered and
    stored: the writer finishes what it was handed before kubia exits."""
    k = start_faulty(factory, workdir, {"FAULTFS_FSYNC_DELAY_MS": "400"}, args=ONE_THREAD)
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        pending = pool.submit(k.post, "/", NEW, timeout=30)
        wait_until(lambda: fsyncs_begun(k) >= 1, 10, what="the commit to start")
        k.proc.send_signal(signal.SIGTERM)
        r = pending.result(30)
    finally:
        pool.shutdown(wait=True)
    assert r.status == 200, r
    assert k.proc.wait(10) == 0
    assert on_disk(k) == NEW


def test_commits_are_made_off_the_http_threads(factory, workdir):
    """With one HTTP thread and a slow commit, probes and reads are still answered at
    once: the HTTP thread does not wait for the disk."""
    k = start_faulty(factory, workdir, {"FAULTFS_FSYNC_DELAY_MS": "1000"}, args=ONE_THREAD)
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        pending = pool.submit(k.post, "/", NEW, timeout=30)
        wait_until(lambda: fsyncs_begun(k) >= 1, 10, what="the commit to start")
        for path in ("/healthz", "/readyz", "/data"):
            t0 = time.monotonic()
            r = http_request("127.0.0.1", k.port, "GET", path, timeout=5)
            dt = time.monotonic() - t0
            assert r.status == 200, (path, r)
            assert dt < 0.1, "%s took %.3f s during a commit" % (path, dt)
        assert not pending.done(), "the commit ended before the probes: nothing was shown"
        assert pending.result(30).status == 200
    finally:
        pool.shutdown(wait=True)
