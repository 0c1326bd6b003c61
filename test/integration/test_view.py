# SPDX-License-Identifier: MIT
"""The cluster view as JSON (Accept: application/json or ?format=json), the missing
pods of the view (docs/view-json.md, docs/contract.md), and one body for the views of
the same bytes, with a real kubia and a real dnsmasq on loopback. Every JSON answer is validated against docs/view.schema.json, and
its values are checked against what dnsmasq serves and what the pods hold."""

import base64
import json
import os
import re
import socket
import threading

import pytest

from harness import CT, DOMAIN, pod_fqdn, run_kubia
from kubiatest.ports import free_port
from kubiatest.servers import FakeDNS, SlowDNS
from kubiatest.waits import wait_until

try:
    import jsonschema
except ImportError:  # test/setup.sh installs python3-jsonschema
    jsonschema = None

SCHEMA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs",
                           "view.schema.json")
JSON_CT = "application/json"
MISSING = b"Error: not ready (not in DNS)"
TTL = 42  # dnsmasq's --local-ttl: the TTL of every record it serves here
BINARY = b"\xff\xfe\x00 not UTF-8 \x80!"  # 16 bytes: base64 with padding


@pytest.fixture(scope="module")
def validator():
    if jsonschema is None:
        pytest.fail("python3-jsonschema is not installed (test/setup.sh installs it)")
    with open(SCHEMA_PATH) as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def get_json(k, validator, path="/", headers=None):
    r = k.get(path, headers=headers if headers is not None else {"Accept": JSON_CT})
    assert r.status == 200, r
    assert r.header("Content-Type") == JSON_CT, r.header("Content-Type")
    assert r.body.endswith(b"\n")
    doc = json.loads(r.body)
    errors = sorted(validator.iter_errors(doc), key=str)
    assert not errors, "not valid against the schema: %s\n%s" % (
        "; ".join(e.message for e in errors), r.body.decode())
    return doc


def cluster(factory, pods, dead=(), args=(), querier="kubia-0", replicas=None):
    """dnsmasq (TTL 42) listing the given pods as the SRV records of kubia (pod i with
    priority i and weight 10 + i), plus dead ones whose port nobody listens on; one kubia
    per listed pod on 127.0.0.(i+1), and the querier among them or apart (not in DNS)."""
    names = list(pods) + list(dead)
    ports = {n: free_port() for n in names}
    srv = [(DOMAIN, pod_fqdn(n), ports[n], i, 10 + i)
           for i, n in enumerate(names)]
    hosts = [(pod_fqdn(n), "127.0.0.%d" % (i + 1), None) for i, n in enumerate(names)]
    dns = factory.dns(srv, hosts, extra=["--local-ttl=%d" % TTL])
    rc = factory.resolv()
    extra = list(args) + (["--replicas", str(replicas)] if replicas is not None else [])
    ks = {}
    for i, n in enumerate(pods):
        ks[n] = factory.kubia(n, port=ports[n], dns=dns.port, resolv=rc, args=extra,
                              host="127.0.0.%d" % (i + 1))
    if querier not in ks:
        ks[querier] = factory.kubia(querier, dns=dns.port, resolv=rc, args=extra)
    return dns, ks, ports, srv, hosts


def test_json_view_of_a_cluster(factory, validator):
    """kubia-0 (this pod, text data), kubia-1 (binary data), kubia-2 missing from DNS,
    kubia-3 listed but dead: the JSON view holds each, the SRV answer as dnsmasq gave
    it, and the same lines as the text view."""
    dns, ks, ports, srv, hosts = cluster(factory, ["kubia-0", "kubia-1"], dead=["kubia-3"])
    assert ks["kubia-0"].post("/", b"hello \xc3\xa9 \x00 nul").status == 200
    assert ks["kubia-1"].post("/", BINARY).status == 200

    doc = get_json(ks["kubia-0"], validator)
    assert doc["pod"] == {"name": "kubia-0", "data": "hello \u00e9 \u0000 nul",
                          "data_base64": False}
    s = doc["srv"]
    assert s["result"] == "peers" and "error" not in s
    assert s["name"] == DOMAIN  # "kubia" completed by the first search domain
    assert s["ttl"] == TTL
    by_target = {r["target"]: r for r in s["records"]}
    assert sorted(by_target) == sorted(pod_fqdn(n) for n in ("kubia-0", "kubia-1", "kubia-3"))
    for (_, target, port, prio, weight), (_, v4, _) in zip(srv, hosts):
        r = by_target[target]
        assert (r["port"], r["priority"], r["weight"]) == (port, prio, weight), r
        assert r["addresses"] == [v4], r

    peers = doc["peers"]
    assert [p["name"] for p in peers] == [pod_fqdn("kubia-%d" % i) for i in range(4)]
    me, binary, missing, dead = peers
    assert me["self"] and me["in_dns"] and not me["missing"]
    assert me["data"] == doc["pod"]["data"] and "fetch_ms" not in me
    assert not binary["self"] and binary["data_base64"] is True
    assert base64.b64decode(binary["data"], validate=True) == BINARY
    assert binary["address"] == "127.0.0.2" and binary["port"] == ports["kubia-1"]
    assert 0 <= binary["fetch_ms"] < 10000
    assert missing == {"name": pod_fqdn("kubia-2"), "self": False, "in_dns": False,
                       "missing": True, "address": None, "port": None,
                       "error": "not ready (not in DNS)"}
    assert "data" not in dead and dead["error"] == "could not connect: Connection refused", dead
    assert dead["address"] == "127.0.0.3" and dead["port"] == ports["kubia-3"]
    assert dead["fetch_ms"] >= 0

    # the text view of the same cluster: the same lines, the book's format
    t = ks["kubia-0"].get("/")
    assert t.status == 200 and t.header("Content-Type") == CT
    lines = t.body.split(b"\n")
    assert lines[:2] == [b"You've hit kubia-0", b"Data stored in the cluster:"]
    assert lines[2] == b"- " + pod_fqdn("kubia-0").encode() + b": hello \xc3\xa9 \x00 nul"
    assert lines[3] == b"- " + pod_fqdn("kubia-1").encode() + b": " + BINARY
    assert lines[4] == b"- " + pod_fqdn("kubia-2").encode() + b": " + MISSING
    assert lines[5] == (b"- " + pod_fqdn("kubia-3").encode() +
                        b": Error: could not connect: Connection refused")
    assert lines[6:] == [b""]


def test_json_view_without_peers_and_after_a_failed_lookup(factory, validator):
    """NXDOMAIN: no peers at all, the SRV part says none. SERVFAIL: the lookup's error."""
    dns = factory.dns()
    k = factory.kubia("kubia-0", dns=dns.port, resolv=factory.resolv())
    assert k.post("/", b"alone").status == 200
    doc = get_json(k, validator, "/?format=json", headers={})
    assert doc == {"pod": {"name": "kubia-0", "data": "alone", "data_base64": False},
                   "srv": {"result": "none", "name": None, "ttl": None,
                           "from_cache": doc["srv"]["from_cache"], "records": []},
                   "peers": []}
    assert k.get("/").body == b"You've hit kubia-0\nData stored in the cluster:\n" \
                              b"No peers discovered.\n"

    bad = FakeDNS(2)
    factory.on_close(bad.close)
    k2 = factory.kubia("kubia-5", dns=bad.port, resolv=factory.resolv(name="r2.conf"))
    doc = get_json(k2, validator)
    assert doc["pod"] == {"name": "kubia-5", "data": "No data posted yet", "data_base64": False}
    assert doc["srv"]["result"] == "error" and doc["peers"] == []
    text = k2.get("/").body.decode()
    assert text.endswith("Could not look up DNS SRV records: %s\n" % doc["srv"]["error"])
    assert "server failure (SERVFAIL)" in doc["srv"]["error"]


NEGOTIATION = [
    # (Accept, JSON?)
    (None, False),
    ("*/*", False),
    ("application/json", True),
    ("Application/JSON", True),
    ("application/*", True),
    ("text/plain", False),
    ("text/*, application/json", False),  # equal weights keep the text
    ("application/json, text/plain;q=0.9", True),
    ("text/plain;q=0.5, application/json;q=0.6", True),
    ("application/json;q=0.5, text/plain", False),
    ("application/json;q=0, */*", False),
    ("*/*;q=0.1, application/json", True),
    ("text/*;q=0.1, */*;q=0.5", True),  # text/plain weighs what text/* says
    ("text/html, application/json;q=0.9, */*;q=0.8", True),
    ("application/json;q=2", False),  # a malformed weight: the range is ignored
    ("image/png", False),
]


@pytest.mark.parametrize("accept,want_json", NEGOTIATION,
                         ids=[repr(a) for a, _ in NEGOTIATION])
def test_accept_chooses_the_format(factory, validator, accept, want_json):
    dns, ks, _, _, _ = cluster(factory, ["kubia-0"])
    k = ks["kubia-0"]
    plain = k.get("/", headers={})
    r = k.get("/", headers={} if accept is None else {"Accept": accept})
    assert r.status == 200
    if want_json:
        assert r.header("Content-Type") == JSON_CT
        json.loads(r.body)
    else:
        assert r.header("Content-Type") == CT and r.body == plain.body


def test_format_parameter_wins_and_unknown_formats_are_refused(factory, validator):
    dns, ks, _, _, _ = cluster(factory, ["kubia-0", "kubia-1"])
    k = ks["kubia-0"]
    text = k.get("/", headers={})
    assert k.get("/?format=text", headers={"Accept": JSON_CT}).body == text.body
    get_json(k, validator, "/any/path?format=json", headers={"Accept": "text/plain"})
    # HEAD: the same headers as the GET, no body
    r = k.request("HEAD", "/", headers={"Accept": JSON_CT})
    assert r.status == 200 and r.header("Content-Type") == JSON_CT and r.body == b""
    for value in ("xml", "JSON", ""):
        r = k.get("/?format=%s" % value)
        assert r.status == 400 and r.header("Content-Type") == CT, r
        assert r.body == b'Unknown format "%s": use format=json or format=text\n' % (
            value.encode()), r.body
    # the data routes and the pet view are not views: no format there
    assert k.get("/data?format=xml").status == 200
    pet = factory.kubia("kubia-9", mode="pet")
    r = pet.get("/?format=json", headers={"Accept": JSON_CT})
    assert r.status == 200 and r.header("Content-Type") == CT
    assert r.body == b"You've hit kubia-9\nData stored on this pod: No data posted yet\n"


def test_json_view_counts_against_the_memory_budget(factory, validator):
    """A peer's 700 KiB of binary data under a 3 MiB budget: the text view fits (the
    peer's answer, at most 1 MiB, the text and its copy for the answer); the JSON view
    (933 KiB of base64, twice that while the document is made, then the document and its
    copy) does not: 503 with Retry-After, and the process goes on."""
    big = bytes(range(256)) * 2800
    dns, ks, _, _, _ = cluster(factory, ["kubia-0", "kubia-1"],
                               args=["--max-memory", str(3 << 20)])
    assert ks["kubia-1"].post("/", big).status == 200
    r = ks["kubia-0"].get("/", headers={"Accept": JSON_CT})
    assert r.status == 503 and r.header("Retry-After") == "1", r
    # the text view of the same data fits: the JSON one is charged for what it needs
    assert ks["kubia-0"].get("/").status == 200
    assert ks["kubia-1"].post("/", b"small").status == 200
    doc = get_json(ks["kubia-0"], validator)
    assert doc["peers"][1]["data"] == "small"


# ---------------------------------------------------------------------------
# missing pods


def view_lines(k):
    r = k.get("/")
    assert r.status == 200, r
    head, _, rest = r.body.partition(b"Data stored in the cluster:\n")
    return rest.decode().splitlines()


def line(i, text):
    return "- %s: %s" % (pod_fqdn("kubia-%d" % i), text)


def test_gap_and_own_ordinal_above_the_highest_listed(factory, validator):
    """DNS lists kubia-0 and kubia-2; kubia-4, not ready itself, asks: kubia-1 and kubia-3
    are missing, in order among the others."""
    dns, ks, _, _, _ = cluster(factory, ["kubia-0", "kubia-2"], querier="kubia-4")
    for n, k in ks.items():
        assert k.post("/", n.encode()).status == 200
    assert view_lines(ks["kubia-4"]) == [
        line(0, "kubia-0"), line(1, MISSING.decode()), line(2, "kubia-2"),
        line(3, MISSING.decode()), line(4, "kubia-4")]
    assert view_lines(ks["kubia-0"]) == [
        line(0, "kubia-0"), line(1, MISSING.decode()), line(2, "kubia-2")]
    doc = get_json(ks["kubia-4"], validator)
    assert [(p["missing"], p["in_dns"], p["self"]) for p in doc["peers"]] == [
        (False, True, False), (True, False, False), (False, True, False),
        (True, False, False), (False, False, True)]


def test_replicas_adds_the_tail(factory, validator):
    dns, ks, _, _, _ = cluster(factory, ["kubia-0", "kubia-1"], replicas=4)
    assert view_lines(ks["kubia-1"])[2:] == [line(2, MISSING.decode()),
                                             line(3, MISSING.decode())]
    # fewer replicas than listed pods add nothing; the variable works as the flag
    k = factory.kubia("kubia-1", dns=dns.port, resolv=factory.resolv(name="r3.conf"),
                      env={"KUBIA_REPLICAS": "1"})
    assert len(view_lines(k)) == 2
    k = factory.kubia("kubia-1", dns=dns.port, resolv=factory.resolv(name="r4.conf"),
                      env={"KUBIA_REPLICAS": "3"})
    assert view_lines(k)[2:] == [line(2, MISSING.decode())]


def test_all_pods_ready_changes_nothing(factory):
    dns, ks, _, _, _ = cluster(factory, ["kubia-0", "kubia-1", "kubia-2"], replicas=3)
    assert ks["kubia-1"].get("/").body == (
        b"You've hit kubia-1\nData stored in the cluster:\n"
        b"- %s: No data posted yet\n- %s: No data posted yet\n- %s: No data posted yet\n"
        % tuple(pod_fqdn("kubia-%d" % i).encode() for i in range(3)))


@pytest.mark.parametrize("pods,querier", [
    (["web-0", "web-2"], "db-1"),  # two bases: this pod's and the listed ones'
    (["kubia-0", "kubia-2"], "web-5"),  # the same, in ordinal order
    (["alpha", "beta"], "alpha"),  # no ordinals at all
    (["kubia-00", "kubia-2"], "kubia-2"),  # a leading zero is no StatefulSet ordinal
], ids=["two-bases", "two-bases-in-order", "no-ordinals", "leading-zero"])
def test_names_that_are_not_one_statefulset_take_no_part(factory, pods, querier):
    ports = {n: free_port() for n in pods}
    srv = [(DOMAIN, pod_fqdn(n), ports[n]) for n in pods]
    hosts = [(pod_fqdn(n), "127.0.0.%d" % (i + 1), None) for i, n in enumerate(pods)]
    dns = factory.dns(srv, hosts)
    k = factory.kubia(querier, dns=dns.port, resolv=factory.resolv(),
                      args=["--replicas", "5"])
    lines = view_lines(k)
    assert not [ln for ln in lines if "not in DNS" in ln], lines
    assert len(lines) == len(set(pods) | {querier}), lines


@pytest.mark.parametrize("args,env", [
    (["--replicas", "-1"], None), (["--replicas", "65536"], None),
    (["--replicas", "three"], None), (["--replicas="], None),
    ([], {"KUBIA_REPLICAS": "2x"}),
], ids=["negative", "too-many", "word", "empty", "variable"])
def test_bad_replicas_are_refused(workdir, args, env):
    p = run_kubia(["--port", str(free_port()), "--data-file",
                   os.path.join(workdir, "d", "kubia.txt")] + args, env=env, timeout=5)
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 2, (p.returncode, err)
    assert ("--replicas" if env is None else "KUBIA_REPLICAS") in err, err


def test_help_names_replicas():
    out = run_kubia(["--help"]).stdout.decode()
    assert "--replicas" in out and "KUBIA_REPLICAS" in out


# ---------------------------------------------------------------------------
# one body for the views of the same bytes

MIB = 1 << 20


def metrics_of(k):
    """kubia's /metrics as {series: value}, labels included in the series."""
    r = k.get("/metrics")
    assert r.status == 200, r
    return {ln.rsplit(" ", 1)[0]: float(ln.rsplit(" ", 1)[1])
            for ln in r.body.decode().splitlines() if ln and not ln.startswith("#")}


def bodies(k):
    m = metrics_of(k)
    return (m['kubia_view_bodies_total{how="rendered"}'],
            m['kubia_view_bodies_total{how="shared"}'])


def raw_view(port, fmt="text"):
    """A connection that has asked for the cluster view and read nothing yet. Its
    receive buffer is small, so that the kernel takes little of an answer off kubia's
    hands while the client does not read."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(30)
    s.connect(("127.0.0.1", port))
    path = "/?format=json" if fmt == "json" else "/"
    s.sendall(b"GET %s HTTP/1.1\r\nHost: kubia-0\r\n\r\n" % path.encode())
    return s


def read_answer(s):
    """(status, body) of the one answer on s."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(1 << 16)
        assert chunk, "closed before an answer: %r" % data[:200]
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head).group(1))
    while len(body) < length:
        chunk = s.recv(1 << 16)
        assert chunk, "closed %d bytes into a %d-byte answer" % (len(body), length)
        body += chunk
    return int(head.split(b" ", 2)[1]), body


class GatedDNS(SlowDNS):
    """A relay to a DNS server that holds every query until gate is set."""

    def __init__(self, upstream):
        self.gate = threading.Event()
        super().__init__(upstream, 0)

    def _relay(self, data, addr, received):
        while not self.gate.wait(0.05):
            if self._stop.is_set():
                return
        super()._relay(data, addr, received)


def test_views_of_one_batch_share_one_rendering(factory):
    """Views that arrive while one SRV lookup is in flight (its name server holds the
    query until they all have; no SRV cache) all wait for it, then join the same fetch
    of each peer: one batch. Its text views get one body, rendered once, and its JSON
    views another; every answer is whole and the same as its format's others."""
    dns, ks, ports, srv, hosts = cluster(factory, ["kubia-1", "kubia-2"], querier="kubia-9")
    for n in ("kubia-1", "kubia-2"):
        assert ks[n].post("/", b"data of " + n.encode()).status == 200
    gated = GatedDNS(dns.port)
    factory.on_close(gated.close)
    k = factory.kubia("kubia-0", dns=gated.port, resolv=factory.resolv(),
                      args=["--dns-cache-ms", "0", "--dns-timeout-ms", "30000"])
    rendered, shared = bodies(k)
    texts, jsons = 12, 4
    socks = [raw_view(k.port) for _ in range(texts)] + \
        [raw_view(k.port, "json") for _ in range(jsons)]
    try:
        # Every view waits for the lookup (/metrics's own request is in flight too).
        wait_until(lambda: metrics_of(k)["kubia_http_requests_in_flight"] > texts + jsons,
                   20, what="%d views in flight" % (texts + jsons))
        gated.gate.set()
        # Nothing is read before every view has its body.
        wait_until(lambda: sum(bodies(k)) - rendered - shared >= texts + jsons, 20,
                   what="%d views answered" % (texts + jsons))
        answers = [read_answer(s) for s in socks]
    finally:
        for s in socks:
            s.close()
    assert [st for st, _ in answers] == [200] * (texts + jsons)
    text = {b for _, b in answers[:texts]}
    assert len(text) == 1, text
    assert text.pop() == (b"You've hit kubia-0\nData stored in the cluster:\n" +
                          b"".join(b"- %s: %s\n" % (pod_fqdn(n).encode(), d) for n, d in (
                              ("kubia-0", b"No data posted yet"),
                              ("kubia-1", b"data of kubia-1"),
                              ("kubia-2", b"data of kubia-2"))))
    assert len({b for _, b in answers[texts:]}) == 1
    r, sh = bodies(k)
    assert (r - rendered, sh - shared) == (2, texts + jsons - 2), (r - rendered, sh - shared)


def test_slow_readers_of_one_view_hold_one_body(factory):
    """Twenty clients ask kubia-0 for a view of 2 MiB (two peers hold 1 MiB each) and do
    not read it, under a memory budget of 16 MiB: twenty bodies would need 40 MiB, one
    body for all of them fits, and every one is served in full."""
    dns, ks, ports, srv, hosts = cluster(
        factory, ["kubia-0", "kubia-1", "kubia-2"],
        args=["--max-memory", str(16 * MIB), "--peer-max-connections", "2"])
    for n in ("kubia-1", "kubia-2"):
        assert ks[n].post("/", n[-1].encode() * MIB).status == 200
    k = ks["kubia-0"]
    rendered, shared = bodies(k)
    # What the budget holds with no view in flight: /metrics's own answers.
    idle = metrics_of(k)["kubia_memory_budget_used_bytes"]
    n = 20
    socks = []
    try:
        for _ in range(n):
            socks.append(raw_view(k.port))
        # Every view has its body (counted as the loop hands it over), and once the
        # peers' answers are given back, with the clients having read nothing, the budget
        # holds one body.
        wait_until(lambda: sum(bodies(k)) - rendered - shared >= n, 20,
                   what="%d views answered" % n)
        r, sh = bodies(k)
        used = wait_until(lambda: (lambda u: u if u < idle + 3 * MIB else None)(
            metrics_of(k)["kubia_memory_budget_used_bytes"]), 10,
            what="the budget to hold one view's body")
        answers = [read_answer(s) for s in socks]
    finally:
        for s in socks:
            s.close()
    assert (r - rendered, sh - shared) == (1, n - 1), (r - rendered, sh - shared)
    assert used > 2 * MIB, (used, idle)  # the body is still held
    want = (b"You've hit kubia-0\nData stored in the cluster:\n" +
            b"- %s: No data posted yet\n" % pod_fqdn("kubia-0").encode() +
            b"- %s: %s\n" % (pod_fqdn("kubia-1").encode(), b"1" * MIB) +
            b"- %s: %s\n" % (pod_fqdn("kubia-2").encode(), b"2" * MIB))
    assert [st for st, _ in answers] == [200] * n
    assert all(b == want for _, b in answers)
    # The readers gone, the body is too.
    wait_until(lambda: metrics_of(k)["kubia_memory_budget_used_bytes"] < MIB, 10,
               what="the body's charge given back")
