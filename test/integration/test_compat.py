# SPDX-License-Identifier: MIT
"""The book's walk-through (Kubernetes in Action, ch. 10), byte for byte, in both
modes, against three kubia processes published through dnsmasq like a StatefulSet
behind its headless Service."""

import http.client

import pytest

from harness import CT, pod_fqdn

NAMES = ("kubia-0", "kubia-1", "kubia-2")
PROXY = "/api/v1/namespaces/default/pods/%s/proxy/"
# what `curl -X POST -d ...` sends
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
GREETING0 = "Hey there! This greeting was submitted to kubia-0."
GREETING1 = "Hey there! This greeting was submitted to kubia-1."


def check_ok(r, body):
    assert r.status == 200, r
    assert r.header("Content-Type") == CT
    assert r.body == body
    assert int(r.header("Content-Length")) == len(body)


@pytest.fixture(params=["pet", "peers"])
def cluster(request, factory):
    mode = request.param
    dns, ks = factory.cluster(NAMES, mode=mode)
    return mode, dns, ks


def test_get_data_before_any_post(cluster):
    _, _, ks = cluster
    for k in ks:
        check_ok(k.get("/data"), b"No data posted yet")


def test_post_reply_and_data(cluster):
    _, _, ks = cluster
    k0 = ks[0]
    check_ok(k0.post("/", GREETING0.encode(), headers=FORM), b"Data stored on pod kubia-0\n")
    check_ok(k0.get("/data"), GREETING0.encode())
    # the others are untouched
    check_ok(ks[1].get("/data"), b"No data posted yet")
    # POST to any path, as through kubectl proxy
    check_ok(ks[1].post(PROXY % "kubia-1", GREETING1.encode(), headers=FORM),
             b"Data stored on pod kubia-1\n")
    check_ok(ks[1].get("/data"), GREETING1.encode())
    # a second POST replaces the data
    check_ok(k0.post("/some/other/path", b"second", headers=FORM),
             b"Data stored on pod kubia-0\n")
    check_ok(k0.get("/data"), b"second")


def expected_root(mode, k, data):
    """data: dict hostname -> bytes or None (nothing posted)."""
    head = b"You've hit " + k.hostname.encode() + b"\n"
    if mode == "pet":
        d = data[k.hostname]
        return head + b"Data stored on this pod: " + (
            d if d is not None else b"No data posted yet") + b"\n"
    body = head + b"Data stored in the cluster:\n"
    for n in NAMES:
        d = data[n]
        body += b"- " + pod_fqdn(n).encode() + b": " + (
            d if d is not None else b"No data posted yet") + b"\n"
    return body


def test_root_and_proxy_paths(cluster):
    mode, _, ks = cluster
    data = {n: None for n in NAMES}
    for k in ks:
        check_ok(k.get("/"), expected_root(mode, k, data))
        check_ok(k.get(PROXY % k.hostname), expected_root(mode, k, data))
    # the book: POST through kubectl proxy to kubia-0, then to the public service
    check_ok(ks[0].post(PROXY % "kubia-0", GREETING0.encode(), headers=FORM),
             b"Data stored on pod kubia-0\n")
    data["kubia-0"] = GREETING0.encode()
    check_ok(ks[2].post("/", b"The sun is shining", headers=FORM),
             b"Data stored on pod kubia-2\n")
    data["kubia-2"] = b"The sun is shining"
    for k in ks:
        check_ok(k.get("/"), expected_root(mode, k, data))
        check_ok(k.get(PROXY % k.hostname), expected_root(mode, k, data))
        check_ok(k.get("/anything/else?x=1"), expected_root(mode, k, data))


def test_root_peers_exact_text(factory):
    """The cluster view spelled out literally, so a bug in the helper above cannot
    hide a wrong text."""
    _, ks = factory.cluster(NAMES, mode="peers")
    ks[0].post("/", b"a")
    ks[2].post("/", b"c c c")
    r = ks[1].get("/")
    check_ok(r, b"You've hit kubia-1\n"
                b"Data stored in the cluster:\n"
                b"- kubia-0.kubia.default.svc.cluster.local: a\n"
                b"- kubia-1.kubia.default.svc.cluster.local: No data posted yet\n"
                b"- kubia-2.kubia.default.svc.cluster.local: c c c\n")


def test_default_mode_is_peers(factory):
    dns, _ = factory.cluster(("kubia-0",), mode=None)
    k = factory.kubias[0]
    check_ok(k.get("/"), b"You've hit kubia-0\nData stored in the cluster:\n"
                         b"- kubia-0.kubia.default.svc.cluster.local: No data posted yet\n")


def test_pet_exact_text(factory):
    _, ks = factory.cluster(("kubia-0",), mode="pet")
    check_ok(ks[0].get("/"), b"You've hit kubia-0\nData stored on this pod: No data posted yet\n")
    ks[0].post("/", b"Hey there! This greeting was submitted to kubia-0.")
    check_ok(ks[0].get("/"), b"You've hit kubia-0\nData stored on this pod: "
                             b"Hey there! This greeting was submitted to kubia-0.\n")


def test_head(cluster):
    mode, _, ks = cluster
    k = ks[0]
    k.post("/", b"head test")
    for path in ("/data", "/", PROXY % "kubia-0", "/healthz"):
        g = k.get(path)
        assert g.status == 200
        h = k.request("HEAD", path)
        assert h.status == 200, h
        assert h.body == b""
        assert h.header("Content-Type") == CT
        assert int(h.header("Content-Length")) == len(g.body), path


def test_keep_alive(cluster):
    _, _, ks = cluster
    k = ks[0]
    conn = http.client.HTTPConnection(k.host, k.port, timeout=10)
    try:
        conn.request("POST", "/", body=b"ka")
        r1 = conn.getresponse()
        assert r1.read() == b"Data stored on pod kubia-0\n"
        assert (r1.getheader("Connection") or "").lower() != "close"
        sock = conn.sock
        assert sock is not None
        conn.request("GET", "/data")
        r2 = conn.getresponse()
        assert r2.status == 200
        assert r2.read() == b"ka"
        assert conn.sock is sock, "second request needed a new connection"
        conn.request("GET", "/")
        r3 = conn.getresponse()
        assert r3.status == 200
        assert r3.read().startswith(b"You've hit kubia-0\n")
        assert conn.sock is sock, "third request needed a new connection"
    finally:
        conn.close()


def test_content_type_everywhere(cluster):
    _, _, ks = cluster
    k = ks[0]
    for method, path, body in (("GET", "/", None), ("GET", "/data", None),
                               ("POST", "/", b"x"), ("GET", "/healthz", None),
                               ("GET", "/readyz", None)):
        r = k.request(method, path, body=body)
        assert r.status == 200, (method, path, r)
        assert r.header("Content-Type") == CT, (method, path)


def test_data_verbatim_with_newlines_and_nul(factory):
    _, ks = factory.cluster(NAMES, mode="peers")
    odd = b"line1\nline2\n\x00after nul\n"
    ks[1].post("/", odd)
    ks[0].post("/", b"\x00")
    check_ok(ks[1].get("/data"), odd)
    check_ok(ks[2].get("/"), b"You've hit kubia-2\nData stored in the cluster:\n"
                             b"- kubia-0.kubia.default.svc.cluster.local: \x00\n"
                             b"- kubia-1.kubia.default.svc.cluster.local: " + odd + b"\n"
                             b"- kubia-2.kubia.default.svc.cluster.local: No data posted yet\n")
    # the own line, read locally
    check_ok(ks[0].get("/"), b"You've hit kubia-0\nData stored in the cluster:\n"
                             b"- kubia-0.kubia.default.svc.cluster.local: \x00\n"
                             b"- kubia-1.kubia.default.svc.cluster.local: " + odd + b"\n"
                             b"- kubia-2.kubia.default.svc.cluster.local: No data posted yet\n")


def test_pet_data_verbatim(factory):
    _, ks = factory.cluster(("kubia-0",), mode="pet")
    odd = b"a\x00b\r\n"
    ks[0].post("/", odd)
    check_ok(ks[0].get("/"), b"You've hit kubia-0\nData stored on this pod: " + odd + b"\n")


def test_data_with_trailing_slash_is_another_path(factory):
    _, ks = factory.cluster(("kubia-0",), mode="pet")
    ks[0].post("/", b"d")
    check_ok(ks[0].get("/data/"), b"You've hit kubia-0\nData stored on this pod: d\n")
    check_ok(ks[0].get("/datafile"), b"You've hit kubia-0\nData stored on this pod: d\n")


def test_large_peer_data_in_cluster_view(factory):
    _, ks = factory.cluster(NAMES, mode="peers")
    big = bytes(range(256)) * 4096  # 1 MiB, the default limit
    ks[2].post("/", big)
    ks[1].post("/", b"small")
    check_ok(ks[0].get("/"), b"You've hit kubia-0\nData stored in the cluster:\n"
                             b"- kubia-0.kubia.default.svc.cluster.local: No data posted yet\n"
                             b"- kubia-1.kubia.default.svc.cluster.local: small\n"
                             b"- kubia-2.kubia.default.svc.cluster.local: " + big + b"\n")
