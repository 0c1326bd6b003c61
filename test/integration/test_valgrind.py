# SPDX-License-Identifier: MIT
"""The server itself under valgrind: a peers-mode pod and a pet-mode pod go through
every route and error path (cluster view with a live and a dead peer, the view stream,
POST, 413 by length and chunked, 405, HEAD, probes) and stop on SIGTERM; valgrind must
report no error and no definite or indirect leak (its exit status says so)."""

import http.client
import json
import shutil
import signal

import pytest

from harness import DOMAIN, SANITIZE, pod_fqdn
from kubiatest.ports import free_port
from test_stream import Stream

VALGRIND = shutil.which("valgrind")
WRAPPER = [VALGRIND or "valgrind", "--quiet", "--error-exitcode=99", "--leak-check=full",
           "--errors-for-leak-kinds=definite,indirect",
           "--show-leak-kinds=definite,indirect", "--track-fds=no"]

# test/integration/meson.build does not register this file for a sanitizer build;
# this skips it there when pytest is run by hand too
pytestmark = [pytest.mark.skipif(VALGRIND is None, reason="valgrind not installed"),
              pytest.mark.skipif(SANITIZE != "none",
                                 reason="valgrind cannot run a sanitizer build")]


def exercise_common(k):
    r = k.post("/", b"zero")
    assert r.status == 200 and r.body == b"Data stored on pod kubia-0\n"
    assert k.get("/data").body == b"zero"
    assert k.request("HEAD", "/").status == 200
    r = k.request("PUT", "/", body=b"x")
    assert r.status == 405 and r.headers["Allow"] == "GET, HEAD, POST"
    r = k.post("/", b"y" * 2048)
    assert r.status == 413
    conn = http.client.HTTPConnection(k.host, k.port, timeout=30)
    try:
        conn.request("POST", "/", body=iter([b"z" * 700, b"z" * 700]),
                     encode_chunked=True)
        assert conn.getresponse().status == 413
    finally:
        conn.close()
    assert k.get("/healthz").body == b"ok\n"
    assert k.get("/readyz").body == b"ready\n"
    assert k.get("/data").body == b"zero"


def stop_clean(k):
    rc = k.stop(signal.SIGTERM, timeout=60)
    assert rc == 0, "valgrind/kubia exited %s:\n%s" % (rc, k.stderr())


def test_peers_mode_under_valgrind(factory):
    p0, p1, dead = free_port(), free_port(), free_port()
    srv = [(DOMAIN, pod_fqdn("kubia-0"), p0), (DOMAIN, pod_fqdn("kubia-1"), p1),
           (DOMAIN, pod_fqdn("kubia-2"), dead)]
    hosts = [(pod_fqdn(n), "127.0.0.1", None) for n in ("kubia-0", "kubia-1", "kubia-2")]
    dns = factory.dns(srv=srv, hosts=hosts)
    resolv = factory.resolv()
    k1 = factory.kubia("kubia-1", port=p1, mode="peers", dns=dns.port, resolv=resolv)
    k1.post("/", b"one")
    k0 = factory.kubia("kubia-0", port=p0, mode="peers", dns=dns.port, resolv=resolv,
                       args=["--max-body", "1024", "--dns-cache-ms", "0", "--replicas", "4"],
                       wrapper=WRAPPER, ready_timeout=60)
    exercise_common(k0)
    for _ in range(5):
        r = k0.get("/api/v1/namespaces/default/pods/kubia-0/proxy/", timeout=30)
        lines = r.body.split(b"\n")
        assert lines[0] == b"You've hit kubia-0"
        assert lines[2] == b"- kubia-0.kubia.default.svc.cluster.local: zero", r.body
        assert lines[3] == b"- kubia-1.kubia.default.svc.cluster.local: one", r.body
        assert lines[4].startswith(b"- kubia-2.kubia.default.svc.cluster.local: Error: "), \
            r.body
        assert lines[5] == b"- kubia-3.kubia.default.svc.cluster.local: Error: not ready " \
                           b"(not in DNS)", r.body
    # the same view as JSON (jansson's allocations under valgrind too)
    r = k0.get("/?format=json", timeout=30)
    doc = json.loads(r.body)
    assert [p.get("data", p.get("error")) for p in doc["peers"]][:2] == ["zero", "one"]
    assert doc["peers"][3]["missing"] is True, r.body
    # the view stream: the watcher's rounds, an event per change, SIGTERM with it open
    s = Stream(k0.port)
    factory.on_close(s.close)
    s.wait_events(1, timeout=30)
    start = s.mark()
    assert k1.post("/", b"two").status == 200
    s.wait_for(lambda d: d["peers"][1].get("data") == "two", 30, "the change under valgrind",
               start)
    stop_clean(k0)


def test_pet_mode_under_valgrind(factory):
    k = factory.kubia("kubia-0", mode="pet", args=["--max-body", "1024"], wrapper=WRAPPER,
                      ready_timeout=60)
    exercise_common(k)
    r = k.get("/")
    assert r.body == b"You've hit kubia-0\nData stored on this pod: zero\n"
    stop_clean(k)
