# SPDX-License-Identifier: MIT
"""The memory budget (--max-memory): request bodies and responses in flight together
stay within it, whatever the clients do. A request that does not fit is turned away
with 503 and Retry-After, never by the process growing (or, in a container, being
killed for it)."""

import socket

from harness import SANITIZE, run_kubia
from kubiatest.http import http_request
from kubiatest.waits import wait_until

MIB = 1 << 20


def vm_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s in /proc/%d/status" % (field, pid))


def read_answer(sock, timeout=30):
    """One HTTP/1.1 answer (headers and a Content-Length body) from sock."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("connection closed before an answer: %r" % data)
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in
               (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


def start_upload(port, size, first_part):
    """A POST of size bytes of which only first_part are sent for now."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"POST / HTTP/1.1\r\nHost: kubia\r\nContent-Length: %d\r\n\r\n" % size)
    s.sendall(b"u" * first_part)
    return s


def test_uploads_past_the_budget_are_turned_away_and_memory_stays_bounded(factory):
    """Eight 1 MiB uploads at once, sent slowly, against a budget of three: two are
    taken (each holds its whole body), six are answered 503 with Retry-After once sent,
    a client that waits for "100 Continue" is answered at once, and the process does
    not grow by the six bodies it turned away."""
    k = factory.kubia("kubia-0", mode="pet",
                      args=["--max-memory", str(3 * MIB), "--max-body", str(MIB)])
    base = vm_kib(k.proc.pid, "VmRSS")
    socks = [start_upload(k.port, MIB, MIB // 2) for _ in range(8)]
    try:
        # Every upload's headers have been read by now (a GET on another connection is
        # answered after them only because the server is not stuck).
        wait_until(lambda: http_request("127.0.0.1", k.port, "GET", "/healthz").status == 200,
                   5, what="kubia to answer")
        probe = socket.create_connection(("127.0.0.1", k.port), timeout=10)
        try:
            probe.sendall(b"POST / HTTP/1.1\r\nHost: kubia\r\nContent-Length: %d\r\n"
                          b"Expect: 100-continue\r\n\r\n" % MIB)
            status, headers, body = read_answer(probe, timeout=5)
        finally:
            probe.close()
        assert status == 503, (status, body)
        assert headers.get("retry-after") == "1", headers
        for s in socks:
            s.sendall(b"u" * (MIB - MIB // 2))
        answers = [read_answer(s) for s in socks]
    finally:
        for s in socks:
            s.close()
    statuses = sorted(a[0] for a in answers)
    assert statuses == [200] * 2 + [503] * 6, statuses
    for status, headers, body in answers:
        if status == 503:
            assert headers.get("retry-after") == "1", headers
            assert body.startswith(b"Busy: the memory for requests in flight"), body
    # Two bodies held at once, not eight (the peak, measured by the kernel). A
    # sanitizer's own shadow memory grows with every byte touched, so only a plain build
    # can be measured this way; the answers above hold for every build.
    if SANITIZE == "none":
        grown = vm_kib(k.proc.pid, "VmHWM") - base
        assert grown < 5 * 1024, "resident memory grew by %d KiB" % grown
    # The budget is given back: a new upload is taken.
    assert k.post("/", b"after the rush").status == 200
    assert k.get("/data").body == b"after the rush"


def test_chunked_uploads_are_charged_as_they_grow(factory):
    """Without Content-Length the body is charged as it grows: uploads that outgrow
    what is left are turned away, the others stored."""
    k = factory.kubia("kubia-0", mode="pet",
                      args=["--max-memory", str(2 * MIB + MIB // 2), "--max-body", str(MIB)])
    socks = []
    chunk = b"c" * (64 * 1024)
    try:
        for _ in range(4):
            s = socket.create_connection(("127.0.0.1", k.port), timeout=10)
            s.sendall(b"POST / HTTP/1.1\r\nHost: kubia\r\nTransfer-Encoding: chunked\r\n\r\n")
            socks.append(s)
        # All four grow together, 64 KiB at a time, up to 1 MiB - 64 KiB each.
        for _ in range(15):
            for s in socks:
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        for s in socks:
            s.sendall(b"0\r\n\r\n")
        answers = [read_answer(s) for s in socks]
    finally:
        for s in socks:
            s.close()
    statuses = [a[0] for a in answers]
    assert 200 in statuses and 503 in statuses, statuses
    assert set(statuses) <= {200, 503}, statuses
    assert k.get("/data").body == chunk * 15


def test_a_cluster_view_larger_than_the_budget_is_turned_away(factory):
    """The response in flight is charged too: a view that cannot fit gets 503 with
    Retry-After instead of being built."""
    dns, ks = factory.cluster(args=["--max-body", "1000", "--max-memory", "2000"])
    for k in ks:
        assert k.post("/", b"x" * 1000).status == 200
    r = ks[0].get("/")
    assert r.status == 503, r
    assert r.headers.get("Retry-After") == "1", r.headers
    # A view that fits is still answered.
    for k in ks:
        assert k.post("/", b"small").status == 200
    assert ks[0].get("/").status == 200


def test_memory_budget_must_leave_room_for_a_body(factory):
    """A budget that could never hold one body is a configuration error."""
    p = run_kubia(["--max-memory", "1000", "--max-body", "1000", "--mode", "pet"], timeout=5)
    assert p.returncode == 2, p
    assert b"--max-memory" in p.stderr, p.stderr
