# SPDX-License-Identifier: MIT
"""HTTP edge cases and data safety: body limits, methods, full and read-only volumes,
the data-directory lock, restarts, stale temporary files, concurrent writers."""

import concurrent.futures
import os
import random
import socket
import subprocess
import tempfile
import time

import pytest

from harness import CT, is_root, run_kubia
from kubiatest.ports import free_port
from kubiatest.waits import wait_until


def pet(factory, **kw):
    kw.setdefault("mode", "pet")
    return factory.kubia("kubia-0", **kw)


def raw_connect(k, timeout=5):
    s = socket.create_connection((k.host, k.port), timeout=timeout)
    return s


def read_response(s, timeout=5):
    """Reads one HTTP/1.1 response from a raw socket, skipping 1xx interim ones:
    (status, headers dict, body)."""
    s.settimeout(timeout)
    buf = b""
    deadline = time.monotonic() + timeout
    while True:
        while b"\r\n\r\n" not in buf:
            assert time.monotonic() < deadline, "no complete response head: %r" % buf
            chunk = s.recv(65536)
            if not chunk:
                raise AssertionError("connection closed before a response head: %r" % buf)
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        if 100 <= status < 200:
            buf = rest
            continue
        break
    headers = {}
    for ln in lines[1:]:
        name, _, value = ln.partition(":")
        headers[name.strip().lower()] = value.strip()
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        assert time.monotonic() < deadline, "incomplete body"
        chunk = s.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:n]


def post_too_big(k, length, expect=False):
    """Sends only the head of a POST announcing length bytes and reads the answer,
    which must come without the body being sent."""
    s = raw_connect(k)
    try:
        s.sendall(b"POST / HTTP/1.1\r\nHost: kubia\r\nContent-Length: %d\r\n" % length +
                  (b"Expect: 100-continue\r\n" if expect else b"") +
                  b"Content-Type: application/octet-stream\r\n\r\n")
        t0 = time.monotonic()
        status, headers, body = read_response(s, timeout=5)
        assert time.monotonic() - t0 < 2
        return status, headers, body
    finally:
        s.close()


def post_raw(k, body):
    """POSTs body with a Content-Length from a raw socket that sends everything before
    it reads, as a proxy does: (status, headers, body)."""
    s = raw_connect(k)
    try:
        s.sendall(b"POST / HTTP/1.1\r\nHost: kubia\r\nContent-Length: %d\r\n\r\n" % len(body))
        s.sendall(body)
        return read_response(s, timeout=5)
    finally:
        s.close()


def data_is(k, expected):
    r = k.get("/data")
    assert r.status == 200
    assert r.body == expected
    with open(k.data_file, "rb") as f:
        assert f.read() == expected


# ---------------------------------------------------------------------------
# body limits


def test_413_by_content_length_before_body(factory):
    k = pet(factory)
    k.post("/", b"original")
    # only the head: the server must answer without waiting for 100 MB (a body this far
    # over the limit is not read at all)
    status, headers, _ = post_too_big(k, 100000000)
    assert status == 413
    assert headers.get("content-type") == CT
    data_is(k, b"original")


def test_413_reaches_a_client_that_sends_the_whole_body(factory):
    # Proxies (nginx, the API server's) send the body before they read the answer: the
    # 413 must not be lost to a reset of the connection.
    k = pet(factory, args=["--max-body", "1024"])
    k.post("/", b"original")
    status, _, text = post_raw(k, b"x" * (8 << 20))  # more than the socket buffers hold
    assert status == 413
    assert text == b"Request body too large: the limit is 1024 bytes; data unchanged\n"
    data_is(k, b"original")


def test_413_by_content_length_with_expect_continue(factory):
    k = pet(factory)
    k.post("/", b"original")
    status, _, _ = post_too_big(k, 2000000, expect=True)
    assert status == 413
    data_is(k, b"original")


def chunked(body, size):
    out = b""
    for i in range(0, len(body), size):
        part = body[i:i + size]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
    return out + b"0\r\n\r\n"


def test_413_chunked_over_limit(factory):
    k = pet(factory, args=["--max-body", "1024"])
    k.post("/", b"original")
    s = raw_connect(k)
    try:
        s.sendall(b"POST / HTTP/1.1\r\nHost: kubia\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            s.sendall(chunked(b"z" * 3000, 500))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading everything
        status, headers, _ = read_response(s, timeout=5)
        assert status == 413
        assert headers.get("content-type") == CT
    finally:
        s.close()
    data_is(k, b"original")


def test_chunked_within_limit_stored(factory):
    k = pet(factory, args=["--max-body", "1024"])
    s = raw_connect(k)
    try:
        body = bytes(random.Random(3).randrange(256) for _ in range(1000))
        s.sendall(b"POST / HTTP/1.1\r\nHost: kubia\r\nTransfer-Encoding: chunked\r\n\r\n"
                  + chunked(body, 300))
        status, _, rbody = read_response(s, timeout=5)
        assert status == 200
        assert rbody == b"Data stored on pod kubia-0\n"
    finally:
        s.close()
    data_is(k, body)


def test_max_body_configurable(factory):
    k = pet(factory, args=["--max-body", "1024"])
    r = k.post("/", b"a" * 1024)
    assert r.status == 200 and r.body == b"Data stored on pod kubia-0\n"
    status, headers, _ = post_raw(k, b"a" * 1025)
    assert status == 413
    assert headers.get("content-type") == CT
    data_is(k, b"a" * 1024)


def test_default_max_body_is_1mib(factory):
    k = pet(factory)
    r = k.post("/", b"m" * 1048576)
    assert r.status == 200
    status, _, _ = post_raw(k, b"n" * 1048577)
    assert status == 413
    data_is(k, b"m" * 1048576)


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS"])
def test_405_with_allow(factory, method):
    k = pet(factory)
    k.post("/", b"keep")
    r = k.request(method, "/data", body=b"replace" if method in ("PUT", "PATCH") else None)
    assert r.status == 405
    allow = r.header("Allow")
    assert allow is not None
    assert [m.strip() for m in allow.split(",")] == ["GET", "HEAD", "POST"]
    assert r.header("Content-Type") == CT
    data_is(k, b"keep")


# ---------------------------------------------------------------------------
# round trips


def test_binary_body_round_trip(factory):
    k = pet(factory)
    body = bytes(range(256)) * 4 + b"\r\n\r\n\x00tail"
    r = k.post("/", body, headers={"Content-Type": "application/octet-stream"})
    assert r.status == 200
    data_is(k, body)


def test_empty_body_round_trip(factory):
    k = pet(factory)
    k.post("/", b"something")
    r = k.post("/", b"")
    assert r.status == 200 and r.body == b"Data stored on pod kubia-0\n"
    data_is(k, b"")
    # an empty body is data, not "nothing posted"
    r = k.get("/")
    assert r.body == b"You've hit kubia-0\nData stored on this pod: \n"
    k.restart()
    data_is(k, b"")


def test_restart_keeps_data(factory):
    k = pet(factory)
    body = b"persist me \xff\x00"
    k.post("/", body)
    k.restart()
    data_is(k, body)
    r = k.get("/")
    assert r.body == b"You've hit kubia-0\nData stored on this pod: " + body + b"\n"


def test_existing_file_read_at_start(factory, workdir):
    d = tempfile.mkdtemp(dir=workdir)
    with open(os.path.join(d, "kubia.txt"), "wb") as f:
        f.write(b"written before start")
    k = pet(factory, data_dir=d)
    data_is(k, b"written before start")


def test_stale_temp_files_removed_at_start(factory, workdir):
    d = tempfile.mkdtemp(dir=workdir)
    with open(os.path.join(d, "kubia.txt"), "wb") as f:
        f.write(b"good")
    stale = [".kubia.txt.tmp.AbC123", ".kubia.txt.tmp.zzzzzz"]
    for n in stale:
        with open(os.path.join(d, n), "wb") as f:
            f.write(b"torn")
    with open(os.path.join(d, "unrelated.txt"), "wb") as f:
        f.write(b"not ours")
    k = pet(factory, data_dir=d)
    names = os.listdir(d)
    for n in stale:
        assert n not in names, "stale temporary file %s not removed" % n
    assert "unrelated.txt" in names
    data_is(k, b"good")


def test_no_temp_files_left_after_posts(factory):
    k = pet(factory)
    for i in range(5):
        assert k.post("/", b"x%d" % i).status == 200
    assert not [n for n in os.listdir(k.data_dir) if ".tmp." in n]


# ---------------------------------------------------------------------------
# at-most-one


def test_directory_lock(factory, workdir):
    k = pet(factory)
    k.post("/", b"first owner")
    # a second process on the same directory, even through another file name
    for data_file in (k.data_file, os.path.join(k.data_dir, "other.txt")):
        p = run_kubia(["--port", str(free_port()), "--data-file", data_file,
                       "--hostname", "kubia-0b", "--mode", "pet"])
        assert p.returncode == 1, (p.returncode, p.stderr)
        assert b"locked" in p.stderr, p.stderr
    r = k.get("/data")
    assert r.status == 200 and r.body == b"first owner"
    assert k.post("/", b"still mine").status == 200
    data_is(k, b"still mine")


def test_lock_released_after_exit(factory):
    k = pet(factory)
    k.post("/", b"v1")
    assert k.stop() == 0
    k2 = factory.kubia("kubia-0", mode="pet", data_dir=k.data_dir)
    data_is(k2, b"v1")


# ---------------------------------------------------------------------------
# concurrent writers


def test_concurrent_posts_last_writer_wins_whole(factory):
    k = pet(factory)
    rnd = random.Random(42)
    bodies = []
    for i in range(8):
        unit = bytes(rnd.randrange(256) for _ in range(64)) + b"<%d>" % i
        bodies.append((unit * (200 * 1024 // len(unit) + 1))[:200 * 1024])
    assert len(set(bodies)) == 8

    def post(b):
        return k.post("/", b, timeout=30)

    for _round in range(3):
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            results = list(ex.map(post, bodies))
        for r in results:
            assert r.status == 200 and r.body == b"Data stored on pod kubia-0\n"
        got = k.get("/data").body
        assert got in bodies, "GET /data is not one of the bodies (len %d)" % len(got)
        with open(k.data_file, "rb") as f:
            assert f.read() == got
    k.restart()
    data_is(k, got)


# ---------------------------------------------------------------------------
# full and read-only volumes (root: a small tmpfs)


@pytest.fixture
def tmpfs(workdir, procs):
    if not is_root():
        pytest.skip("needs root to mount a tmpfs")
    mnt = os.path.join(workdir, "vol")
    os.mkdir(mnt)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", mnt],
                       capture_output=True, timeout=10)
    if p.returncode != 0:
        pytest.skip("cannot mount tmpfs: %s" % p.stderr.decode(errors="replace").strip())
    try:
        yield mnt
    finally:
        procs.cleanup()  # nothing may keep the mount busy
        subprocess.run(["mount", "-o", "remount,rw", mnt], capture_output=True, timeout=10)
        r = subprocess.run(["umount", mnt], capture_output=True, timeout=10)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", mnt], capture_output=True, timeout=10)


def test_507_on_full_volume(factory, tmpfs):
    k = pet(factory, data_dir=tmpfs)
    assert k.post("/", b"small and safe").status == 200
    r = k.post("/", os.urandom(100 * 1024))
    assert r.status == 507, r
    assert r.header("Content-Type") == CT
    assert r.body.endswith(b"\n") and r.body.count(b"\n") == 1 and len(r.body) > 1, r.body
    data_is(k, b"small and safe")
    assert not [n for n in os.listdir(tmpfs) if ".tmp." in n], os.listdir(tmpfs)
    # a body that fits still works afterwards (the failed write freed its space)
    assert k.post("/", b"fits").status == 200
    data_is(k, b"fits")
    assert k.post("/", os.urandom(100 * 1024)).status == 507
    k.restart()
    data_is(k, b"fits")


def test_500_on_read_only_volume(factory, tmpfs):
    k = pet(factory, data_dir=tmpfs)
    assert k.post("/", b"before ro").status == 200
    p = subprocess.run(["mount", "-o", "remount,ro", tmpfs], capture_output=True, timeout=10)
    if p.returncode != 0:
        pytest.skip("cannot remount read-only: %s" % p.stderr.decode(errors="replace"))
    r = k.post("/", b"must not land")
    assert r.status == 500, r
    assert r.header("Content-Type") == CT
    assert r.body.endswith(b"\n") and len(r.body) > 1
    data_is(k, b"before ro")
    # readiness reflects the unusable volume
    wait_until(lambda: k.get("/readyz").status == 503, 5, "readyz 503 on ro volume", interval=0.05)
    r = k.get("/readyz")
    assert r.body.startswith(b"not ready: ") and r.body.endswith(b"\n"), r.body
    assert k.get("/healthz").body == b"ok\n"
    subprocess.run(["mount", "-o", "remount,rw", tmpfs], check=True, timeout=10)
    wait_until(lambda: k.get("/readyz").status == 200, 5, "readyz 200 again", interval=0.05)
    assert k.post("/", b"after rw").status == 200
    data_is(k, b"after rw")


def test_stale_temp_files_removed_for_custom_file_name(factory, workdir):
    d = tempfile.mkdtemp(dir=workdir)
    stale = os.path.join(d, ".store.bin.tmp.Q1w2E3")
    with open(stale, "wb") as f:
        f.write(b"torn")
    k = factory.kubia("kubia-0", mode="pet", args=["--data-file", os.path.join(d,
                                                                                "store.bin")])
    assert not os.path.exists(stale)
    assert k.post("/", b"custom").status == 200
    with open(os.path.join(d, "store.bin"), "rb") as f:
        assert f.read() == b"custom"
    assert k.get("/data").body == b"custom"


def test_sigkill_during_posts_leaves_one_whole_body(factory):
    """A crash at any instant leaves exactly one complete body some client sent."""
    k = pet(factory)
    rnd = random.Random(7)
    bodies = [bytes(rnd.randrange(256) for _ in range(97)) * (300 * 1024 // 97)
              for _ in range(4)]
    k.post("/", b"initial")
    sent = {b"initial"}
    stop = False

    def writer(b):
        n = 0
        while not stop:
            try:
                sent.add(b)
                k.post("/", b, timeout=5)
                n += 1
            except OSError:
                return n
            except Exception:  # http.client errors when the server dies mid-reply
                return n
        return n

    for _round in range(3):
        stop = False
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            futs = [ex.submit(writer, b) for b in bodies]
            # let some writes complete, then crash in the middle of the stream
            wait_until(lambda: os.path.exists(k.data_file) and
                       os.path.getsize(k.data_file) > 1000, 10, "a body on disk", interval=0.01)
            time.sleep(random.uniform(0.0, 0.05))
            k.proc.kill()
            k.proc.wait(5)
            stop = True
            for f in futs:
                f.result(timeout=15)
        with open(k.data_file, "rb") as f:
            on_disk = f.read()
        assert on_disk in sent, "torn or mixed file after SIGKILL (%d bytes)" % len(on_disk)
        k.start()
        assert not [n for n in os.listdir(k.data_dir) if ".tmp." in n]
        data_is(k, on_disk)


def test_expect_100_continue_post(factory):
    # curl sends "Expect: 100-continue" for bodies over 1 KiB
    k = pet(factory)
    body = b"e" * 5000
    s = raw_connect(k)
    try:
        s.sendall(b"POST / HTTP/1.1\r\nHost: kubia\r\nContent-Length: %d\r\n"
                  b"Expect: 100-continue\r\n\r\n" % len(body))
        s.settimeout(5)
        interim = s.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100"), interim
        s.sendall(body)
        status, headers, rbody = read_response(s, timeout=5)
        assert status == 200 and rbody == b"Data stored on pod kubia-0\n"
    finally:
        s.close()
    data_is(k, body)


def test_readers_never_see_torn_data(factory):
    k = pet(factory)
    bodies = [bytes([i]) * (256 * 1024) for i in range(1, 5)]
    k.post("/", bodies[0])
    stop = time.monotonic() + 1.5

    def writer(b):
        n = 0
        while time.monotonic() < stop:
            assert k.post("/", b, timeout=10).status == 200
            n += 1
        return n

    def reader(_):
        seen = 0
        while time.monotonic() < stop:
            r = k.get("/data", timeout=10)
            assert r.status == 200
            assert r.body in bodies, "torn read of %d bytes" % len(r.body)
            seen += 1
        return seen

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        ws = [ex.submit(writer, b) for b in bodies]
        rs = [ex.submit(reader, i) for i in range(4)]
        assert sum(f.result(timeout=30) for f in ws) > 0
        assert sum(f.result(timeout=30) for f in rs) > 0
