# SPDX-License-Identifier: MIT
"""Peer discovery and fan-out: the search list, fully qualified names, NXDOMAIN versus
failures, time-outs, dead and hung peers, SRV ports, de-duplication, sorting, the
pod's own line, size caps, the pending-request limit and IPv6."""

import concurrent.futures
import re
import threading
import time

import pytest

from harness import CT, DOMAIN, pod_fqdn
from kubiatest.ports import free_port, ipv6_available
from kubiatest.servers import BacklogFull, FakeDNS, HungPeer, SlowDNS, TricklePeer
from kubiatest.waits import wait_until

HEAD0 = b"You've hit kubia-0\nData stored in the cluster:\n"
NOPEERS = HEAD0 + b"No peers discovered.\n"
LOOKUP_RE = re.compile(rb"\AYou've hit kubia-0\nData stored in the cluster:\n"
                       rb"Could not look up DNS SRV records: [^\n]+\n\Z")


def line(name, data):
    return b"- " + pod_fqdn(name).encode() + b": " + data + b"\n"


def error_line_re(name):
    return re.compile(rb"^- " + re.escape(pod_fqdn(name).encode()) + rb": Error: [^\n]+$",
                      re.M)


def split_lines(body):
    return body.split(b"\n")


def querier(factory, dns_port, hostname="kubia-0", port=None, args=(), resolv=None,
            **kw):
    return factory.kubia(hostname, port=port, mode="peers", dns=dns_port,
                         resolv=resolv or factory.resolv(), args=list(args), **kw)


def timed_get(k, path="/", **kw):
    t0 = time.monotonic()
    r = k.get(path, **kw)
    return r, time.monotonic() - t0


# ---------------------------------------------------------------------------
# names


def test_short_name_uses_search_list_of_own_namespace(factory):
    # The pods live in namespace "prod"; a decoy service of the same name exists in
    # "default". A short name must follow the search list, never hard-code default.
    decoy = [(DOMAIN, pod_fqdn("kubia-7"), free_port())]
    decoy_hosts = [(pod_fqdn("kubia-7"), "127.0.0.1", None)]
    dns, ks = factory.cluster(("kubia-0", "kubia-1"), ns="prod", mode="peers",
                              extra_srv=decoy, extra_hosts=decoy_hosts)
    ks[1].post("/", b"one")
    want = (b"You've hit kubia-0\nData stored in the cluster:\n"
            b"- kubia-0.kubia.prod.svc.cluster.local: No data posted yet\n"
            b"- kubia-1.kubia.prod.svc.cluster.local: one\n")
    r = ks[0].get("/")
    assert r.status == 200 and r.body == want
    assert r.header("Content-Type") == CT


def test_short_custom_service_name(factory):
    dns, ks = factory.cluster(("kubia-0", "kubia-1"), service="store", mode="peers",
                              args=["--service", "store"])
    ks[0].post("/", b"zero")
    r = ks[1].get("/")
    assert r.body == (b"You've hit kubia-1\nData stored in the cluster:\n"
                      b"- kubia-0.store.default.svc.cluster.local: zero\n"
                      b"- kubia-1.store.default.svc.cluster.local: No data posted yet\n")


@pytest.mark.parametrize("service", [DOMAIN, DOMAIN + "."])
def test_names_follow_the_ndots_rule(factory, service):
    """A name ending in a dot is asked as given, and only as given. A name with fewer dots
    than ndots (4 < 5 here, as in a pod) goes through the search list first, as the
    resolver does, and then as given: it still finds the records, at the cost of the
    failing queries before, which is why a fully qualified name should end in a dot."""
    p0, p1 = free_port(), free_port()
    dns = factory.dns(srv=[(DOMAIN, pod_fqdn("kubia-0"), p0),
                           (DOMAIN, pod_fqdn("kubia-1"), p1)],
                      hosts=[(pod_fqdn("kubia-0"), "127.0.0.1", None),
                             (pod_fqdn("kubia-1"), "127.0.0.2", None)],
                      log_queries=True)
    search = ("prod.svc.cluster.local", "svc.cluster.local", "cluster.local")
    rc = factory.resolv(search)
    k0 = querier(factory, dns.port, port=p0, resolv=rc, args=["--service", service,
                                                              "--dns-cache-ms", "0"])
    k1 = querier(factory, dns.port, hostname="kubia-1", port=p1, resolv=rc,
                 args=["--service", service], host="127.0.0.2")
    k1.post("/", b"from one")
    # the fixture's own check of the records comes first in the log
    before = len(re.findall(r"query\[SRV\] (\S+) from", dns.log()))
    r = k0.get("/")
    assert r.body == HEAD0 + line("kubia-0", b"No data posted yet") + line("kubia-1",
                                                                          b"from one")
    if service.endswith("."):
        want = [DOMAIN]
    else:
        want = ["%s.%s" % (DOMAIN, d) for d in search] + [DOMAIN]

    def logged():
        q = re.findall(r"query\[SRV\] (\S+) from", dns.log())[before:]
        return q if len(q) >= len(want) else None
    srv_queries = wait_until(logged, 5, what="dnsmasq to log the queries")
    # one view, one walk through the names, in the resolver's order
    assert srv_queries == want, srv_queries


# ---------------------------------------------------------------------------
# no peers versus lookup failures


def test_nxdomain_means_no_peers(factory):
    dns = factory.dns()
    k = querier(factory, dns.port)
    k.post("/", b"mine")
    r, dt = timed_get(k)
    assert r.status == 200 and r.body == NOPEERS
    assert r.header("Content-Type") == CT
    assert dt < 1.5


def test_no_srv_records_means_no_peers(factory):
    # the name exists (an A record) but has no SRV records: NOERROR, empty answer
    dns = factory.dns(hosts=[(DOMAIN, "127.0.0.1", None)])
    k = querier(factory, dns.port)
    r = k.get("/")
    assert r.status == 200 and r.body == NOPEERS


def test_dns_down(factory):
    dead = free_port(udp=True)
    k = querier(factory, dead, args=["--dns-timeout-ms", "1500"])
    r, dt = timed_get(k)
    assert r.status == 200
    assert LOOKUP_RE.match(r.body), r.body
    assert dt < 1.5 + 1.0


def test_servfail(factory):
    fake = FakeDNS(2)
    try:
        k = querier(factory, fake.port)
        r, dt = timed_get(k)
        assert r.status == 200
        assert LOOKUP_RE.match(r.body), r.body
        # SERVFAIL is named as such, not hidden behind a resolver's generic text.
        assert b"SERVFAIL" in r.body, r.body
        assert fake.queries >= 1
        assert dt < 2.0 + 1.0
    finally:
        fake.close()


def test_dns_timeout_bounded(factory):
    fake = FakeDNS(None)
    try:
        k = querier(factory, fake.port, args=["--dns-timeout-ms", "600"])
        r, dt = timed_get(k)
        assert r.status == 200
        assert LOOKUP_RE.match(r.body), r.body
        assert b"timed out" in r.body, r.body  # a time-out, told apart from NXDOMAIN
        assert fake.queries >= 1, "kubia did not ask the configured DNS server"
        assert dt < 0.6 + 0.9, "lookup took %.2fs with --dns-timeout-ms 600" % dt
        # the server is still fine afterwards
        assert k.get("/data").body == b"No data posted yet"
    finally:
        fake.close()


# ---------------------------------------------------------------------------
# peers that do not answer


def test_dead_peer_gives_error_line_others_listed(factory):
    dead = free_port()
    dns, ks = factory.cluster(("kubia-0", "kubia-1"), mode="peers",
                              extra_srv=[(DOMAIN, pod_fqdn("kubia-2"), dead)],
                              extra_hosts=[(pod_fqdn("kubia-2"), "127.0.0.3", None)])
    ks[0].post("/", b"zero")
    ks[1].post("/", b"one")
    r, dt = timed_get(ks[0])
    assert r.status == 200
    lines = split_lines(r.body)
    assert lines[:4] == [b"You've hit kubia-0", b"Data stored in the cluster:",
                         b"- kubia-0.kubia.default.svc.cluster.local: zero",
                         b"- kubia-1.kubia.default.svc.cluster.local: one"]
    assert error_line_re("kubia-2").match(lines[4]), lines[4]
    assert lines[5:] == [b""]
    assert dt < 2.0


def test_hung_peer_bounded_and_server_stays_responsive(factory):
    hung = HungPeer()
    try:
        dns, ks = factory.cluster(("kubia-0", "kubia-1"), mode="peers",
                                  args=["--peer-timeout-ms", "1500"],
                                  extra_srv=[(DOMAIN, pod_fqdn("kubia-2"), hung.port)],
                                  extra_hosts=[(pod_fqdn("kubia-2"), "127.0.0.1", None)])
        k = ks[0]
        ks[1].post("/", b"one")
        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            t0 = time.monotonic()
            futs = [ex.submit(timed_get, k) for _ in range(3)]
            wait_until(lambda: hung.accepted >= 1, 3, what="kubia to connect to the hung peer")
            # while the cluster GETs wait on the hung peer, everything else is fast
            for method, path, body, want in (
                    ("GET", "/data", None, b"No data posted yet"),
                    ("POST", "/", b"posted meanwhile", b"Data stored on pod kubia-0\n"),
                    ("GET", "/data", None, b"posted meanwhile"),
                    ("GET", "/healthz", None, b"ok\n"),
                    ("GET", "/readyz", None, b"ready\n")):
                t1 = time.monotonic()
                r = k.request(method, path, body=body, timeout=5)
                d = time.monotonic() - t1
                assert r.status == 200 and r.body == want, (method, path, r)
                assert d < 0.5, "%s %s took %.2fs while a peer hung" % (method, path, d)
            results = [f.result(timeout=10) for f in futs]
        for r, dt in results:
            assert r.status == 200
            lines = split_lines(r.body)
            assert lines[:2] == [b"You've hit kubia-0", b"Data stored in the cluster:"]
            assert lines[3] == b"- kubia-1.kubia.default.svc.cluster.local: one"
            assert error_line_re("kubia-2").match(lines[4]), lines[4]
            assert lines[5:] == [b""]
            # bounded by the peer time-out, and the three ran in parallel
            assert dt < 1.5 + 1.0, "cluster GET took %.2fs with --peer-timeout-ms 1500" % dt
        assert time.monotonic() - t0 < 1.5 + 1.5
    finally:
        hung.close()


def test_max_pending_gives_503(factory):
    hung = HungPeer()
    try:
        dns = factory.dns(srv=[(DOMAIN, pod_fqdn("kubia-9"), hung.port)],
                          hosts=[(pod_fqdn("kubia-9"), "127.0.0.1", None)])
        k = querier(factory, dns.port, args=["--max-pending", "2", "--peer-timeout-ms",
                                             "4000"])
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            # One after the other: the second view arrives after the first one's fetch
            # started, so it cannot share it and opens its own connection, which shows
            # that both views are in flight.
            futs = [ex.submit(timed_get, k, "/", timeout=10)]
            wait_until(lambda: hung.accepted >= 1, 3, what="the first fan-out in flight")
            futs.append(ex.submit(timed_get, k, "/", timeout=10))
            wait_until(lambda: hung.accepted >= 2, 3, what="two fan-outs in flight")
            r, dt = timed_get(k)
            assert r.status == 503, r
            assert r.header("Content-Type") == CT
            assert dt < 0.5
            # other routes are not limited
            assert k.get("/data").status == 200
            # let the pending ones end: the hung peer goes away
            hung.close()
            for f in futs:
                r, _ = f.result(timeout=10)
                assert r.status == 200
                assert error_line_re("kubia-9").search(r.body), r.body
        r = k.get("/")
        assert r.status == 200
        assert error_line_re("kubia-9").search(r.body), r.body
    finally:
        hung.close()


# ---------------------------------------------------------------------------
# SRV details


def test_srv_port_is_used(factory):
    # every pod has the same address: only the SRV port tells them apart
    names = ("kubia-0", "kubia-1", "kubia-2")
    ports = [free_port() for _ in names]
    dns = factory.dns(srv=[(DOMAIN, pod_fqdn(n), p) for n, p in zip(names, ports)],
                      hosts=[(pod_fqdn(n), "127.0.0.1", None) for n in names])
    ks = [querier(factory, dns.port, hostname=n, port=p) for n, p in zip(names, ports)]
    for k in ks:
        k.post("/", k.hostname.encode() + b" data")
    for k in ks:
        r = k.get("/")
        assert r.body == (b"You've hit " + k.hostname.encode() +
                          b"\nData stored in the cluster:\n" +
                          b"".join(line(n, n.encode() + b" data") for n in names))


def test_peer_port_override(factory):
    p0, p1 = free_port(), free_port()
    wrong = free_port()
    srv = [(DOMAIN, pod_fqdn("kubia-0"), wrong), (DOMAIN, pod_fqdn("kubia-1"), wrong)]
    hosts = [(pod_fqdn("kubia-0"), "127.0.0.1", None), (pod_fqdn("kubia-1"), "127.0.0.2",
                                                         None)]
    dns = factory.dns(srv=srv, hosts=hosts)
    k1 = querier(factory, dns.port, hostname="kubia-1", port=p1)
    k1.post("/", b"one")
    k0 = querier(factory, dns.port, port=p0, args=["--peer-port", str(p1)])
    r = k0.get("/")
    assert r.body == HEAD0 + line("kubia-0", b"No data posted yet") + line("kubia-1", b"one")
    # and without the override the published (wrong) port is what kubia uses
    r = k1.get("/")
    lines = split_lines(r.body)
    assert error_line_re("kubia-0").match(lines[2]), r.body
    assert lines[3] == b"- kubia-1.kubia.default.svc.cluster.local: one"


def test_duplicate_records_give_one_line(factory):
    p0, p1 = free_port(), free_port()
    srv = [(DOMAIN, pod_fqdn("kubia-0"), p0, 0, 0),
           (DOMAIN, pod_fqdn("kubia-0"), p0, 0, 7),
           (DOMAIN, pod_fqdn("kubia-1"), p1, 0, 0),
           (DOMAIN, pod_fqdn("kubia-1"), p1, 0, 3),
           (DOMAIN, pod_fqdn("kubia-1"), p1, 5, 3)]
    hosts = [(pod_fqdn("kubia-0"), "127.0.0.1", None),
             (pod_fqdn("kubia-1"), "127.0.0.1", None)]
    dns = factory.dns(srv=srv, hosts=hosts)
    k1 = querier(factory, dns.port, hostname="kubia-1", port=p1)
    k0 = querier(factory, dns.port, port=p0)
    k1.post("/", b"one")
    for _ in range(3):
        r = k0.get("/")
        assert r.body == HEAD0 + line("kubia-0", b"No data posted yet") + line("kubia-1",
                                                                              b"one")


def test_duplicate_target_several_ports_one_line(factory):
    # several named ports: one of them is where the pod listens, one goes nowhere
    p0, p1, other = free_port(), free_port(), free_port()
    srv = [(DOMAIN, pod_fqdn("kubia-0"), p0),
           (DOMAIN, pod_fqdn("kubia-1"), p1),
           (DOMAIN, pod_fqdn("kubia-1"), other)]
    hosts = [(pod_fqdn("kubia-0"), "127.0.0.1", None),
             (pod_fqdn("kubia-1"), "127.0.0.1", None)]
    dns = factory.dns(srv=srv, hosts=hosts)
    querier(factory, dns.port, hostname="kubia-1", port=p1)
    k0 = querier(factory, dns.port, port=p0)
    r = k0.get("/")
    lines = split_lines(r.body)
    assert len(lines) == 5 and lines[4] == b"", r.body
    assert lines[2] == b"- kubia-0.kubia.default.svc.cluster.local: No data posted yet"
    assert lines[3].startswith(b"- kubia-1.kubia.default.svc.cluster.local: "), r.body


def test_sorted_naturally(factory):
    names = ["kubia-10", "kubia-2", "kubia-1", "kubia-11", "kubia-9"]
    port = free_port()
    dead = {n: free_port() for n in names if n != "kubia-2"}
    srv = [(DOMAIN, pod_fqdn(n), dead.get(n, port)) for n in names]
    hosts = [(pod_fqdn(n), "127.0.0.1", None) for n in names]
    dns = factory.dns(srv=srv, hosts=hosts)
    k = querier(factory, dns.port, hostname="kubia-2", port=port)
    k.post("/", b"two")
    for _ in range(3):
        r = k.get("/")
        lines = split_lines(r.body)
        assert lines[0] == b"You've hit kubia-2"
        # the ordinals DNS does not list (0, 3-8) are shown as missing pods in between
        order = [ln.split(b":")[0][2:].decode() for ln in lines[2:-1]
                 if not ln.endswith(b": Error: not ready (not in DNS)")]
        assert order == [pod_fqdn(n) for n in ("kubia-1", "kubia-2", "kubia-9", "kubia-10",
                                               "kubia-11")], r.body
        assert len(lines[2:-1]) == 12, r.body
        assert lines[4] == b"- kubia-2.kubia.default.svc.cluster.local: two"


def test_self_not_in_dns_own_line_added(factory):
    p1 = free_port()
    dead = free_port()
    dns = factory.dns(srv=[(DOMAIN, pod_fqdn("kubia-1"), p1),
                           (DOMAIN, pod_fqdn("kubia-2"), dead)],
                      hosts=[(pod_fqdn("kubia-1"), "127.0.0.1", None),
                             (pod_fqdn("kubia-2"), "127.0.0.1", None)])
    k1 = querier(factory, dns.port, hostname="kubia-1", port=p1)
    k1.post("/", b"one")
    k0 = querier(factory, dns.port)
    k0.post("/", b"zero, not ready yet")
    r = k0.get("/")
    lines = split_lines(r.body)
    assert lines[:4] == [b"You've hit kubia-0", b"Data stored in the cluster:",
                         b"- kubia-0.kubia.default.svc.cluster.local: zero, not ready yet",
                         b"- kubia-1.kubia.default.svc.cluster.local: one"], r.body
    assert error_line_re("kubia-2").match(lines[4]), r.body
    assert lines[5:] == [b""]


def test_own_line_read_locally(factory):
    # this pod's record points to a port where nothing listens: its own line must
    # still show its data, read locally rather than over the network
    p1 = free_port()
    dns = factory.dns(srv=[(DOMAIN, pod_fqdn("kubia-0"), free_port()),
                           (DOMAIN, pod_fqdn("kubia-1"), p1)],
                      hosts=[(pod_fqdn("kubia-0"), "127.0.0.1", None),
                             (pod_fqdn("kubia-1"), "127.0.0.1", None)])
    querier(factory, dns.port, hostname="kubia-1", port=p1)
    k0 = querier(factory, dns.port)
    k0.post("/", b"local")
    r = k0.get("/")
    assert r.body == HEAD0 + line("kubia-0", b"local") + line("kubia-1",
                                                              b"No data posted yet")


def test_peer_reply_over_max_bytes(factory):
    p0, p1, p2 = free_port(), free_port(), free_port()
    names = ("kubia-0", "kubia-1", "kubia-2")
    dns = factory.dns(srv=[(DOMAIN, pod_fqdn(n), p) for n, p in zip(names, (p0, p1, p2))],
                      hosts=[(pod_fqdn(n), "127.0.0.1", None) for n in names])
    k1 = querier(factory, dns.port, hostname="kubia-1", port=p1)
    k2 = querier(factory, dns.port, hostname="kubia-2", port=p2)
    k0 = querier(factory, dns.port, port=p0, args=["--peer-max-bytes", "1000"])
    k0.post("/", b"L" * 5000)  # own line is local: not capped
    k1.post("/", b"B" * 5000)
    k2.post("/", b"s" * 500)
    r = k0.get("/")
    lines = split_lines(r.body)
    assert lines[2] == b"- kubia-0.kubia.default.svc.cluster.local: " + b"L" * 5000
    assert error_line_re("kubia-1").match(lines[3]), lines[3][:200]
    assert lines[4] == b"- kubia-2.kubia.default.svc.cluster.local: " + b"s" * 500
    assert lines[5:] == [b""]


def test_ipv6(factory):
    if not ipv6_available():
        pytest.skip("::1 not available")
    p0, p1 = free_port(), free_port()
    dns = factory.dns(srv=[(DOMAIN, pod_fqdn("kubia-0"), p0),
                           (DOMAIN, pod_fqdn("kubia-1"), p1)],
                      hosts=[(pod_fqdn("kubia-0"), "127.0.0.1", None),
                             (pod_fqdn("kubia-1"), None, "::1")])
    k1 = querier(factory, dns.port, hostname="kubia-1", port=p1, host="::1")
    k0 = querier(factory, dns.port, port=p0)
    # both families on the same port
    assert k0.get("/healthz", host="::1").body == b"ok\n"
    assert k0.get("/healthz", host="127.0.0.1").body == b"ok\n"
    assert k1.post("/", b"six", host="::1").status == 200
    want = HEAD0 + line("kubia-0", b"No data posted yet") + line("kubia-1", b"six")
    r = k0.get("/", host="::1")
    assert r.body == want


# ---------------------------------------------------------------------------
# fan-out bounds


def test_peers_asked_in_parallel(factory):
    hung = [HungPeer() for _ in range(3)]
    try:
        names = ["kubia-1", "kubia-2", "kubia-3"]
        dns = factory.dns(srv=[(DOMAIN, pod_fqdn(n), h.port) for n, h in zip(names, hung)],
                          hosts=[(pod_fqdn(n), "127.0.0.1", None) for n in names])
        k = querier(factory, dns.port, args=["--peer-timeout-ms", "1000"])
        r, dt = timed_get(k)
        lines = split_lines(r.body)
        assert lines[2] == b"- kubia-0.kubia.default.svc.cluster.local: No data posted yet"
        for i, n in enumerate(names):
            assert error_line_re(n).match(lines[3 + i]), r.body
        assert dt < 1.0 + 0.8, "three hung peers took %.2fs: not asked in parallel?" % dt
    finally:
        for h in hung:
            h.close()


def test_trickling_peer_bounded_by_total_timeout(factory):
    trickle = TricklePeer(0.05)
    try:
        dns = factory.dns(srv=[(DOMAIN, pod_fqdn("kubia-1"), trickle.port)],
                          hosts=[(pod_fqdn("kubia-1"), "127.0.0.1", None)])
        k = querier(factory, dns.port, args=["--peer-timeout-ms", "800"])
        r, dt = timed_get(k)
        lines = split_lines(r.body)
        assert error_line_re("kubia-1").match(lines[3]), r.body
        assert dt < 0.8 + 0.8, "a trickling peer took %.2fs (--peer-timeout-ms 800)" % dt
    finally:
        trickle.close()


def test_peer_connect_timeout(factory):
    stalled = BacklogFull()
    try:
        dns = factory.dns(srv=[(DOMAIN, pod_fqdn("kubia-1"), stalled.port)],
                          hosts=[(pod_fqdn("kubia-1"), "127.0.0.1", None)])
        k = querier(factory, dns.port, args=["--peer-timeout-ms", "10000",
                                             "--peer-connect-timeout-ms", "300"])
        r, dt = timed_get(k)
        lines = split_lines(r.body)
        assert error_line_re("kubia-1").match(lines[3]), r.body
        assert dt < 0.3 + 0.9, "connect to a stalled peer took %.2fs (connect time-out 300)" % dt
    finally:
        stalled.close()


def test_many_records_large_answer(factory):
    # 40 records do not fit a 512-byte UDP answer: the lookup must still see them all
    names = ["kubia-%d" % i for i in range(40)]
    port = free_port()
    dead = free_port()
    dns = factory.dns(srv=[(DOMAIN, pod_fqdn(n), port if n == "kubia-0" else dead)
                           for n in names],
                      hosts=[(pod_fqdn(n), "127.0.0.1", None) for n in names])
    k = querier(factory, dns.port, port=port)
    k.post("/", b"zero")
    r = k.get("/")
    lines = split_lines(r.body)
    assert len(lines) == 2 + 40 + 1, r.body
    assert lines[2] == b"- kubia-0.kubia.default.svc.cluster.local: zero"
    order = [ln.split(b":")[0][2:].decode() for ln in lines[2:-1]]
    assert order == [pod_fqdn(n) for n in names]
    for n in names[1:]:
        assert error_line_re(n).search(r.body), n


# ---------------------------------------------------------------------------
# SRV cache


def _two_sets(factory, ttl):
    p0, p1 = free_port(), free_port()
    hosts = [(pod_fqdn("kubia-0"), "127.0.0.1", None), (pod_fqdn("kubia-1"), "127.0.0.1",
                                                         None)]
    first = [(DOMAIN, pod_fqdn("kubia-0"), p0)]
    second = first + [(DOMAIN, pod_fqdn("kubia-1"), p1)]
    dns = factory.dns(srv=first, hosts=hosts, extra=["--local-ttl=%d" % ttl])
    return dns, p0, p1, second, hosts


@pytest.mark.parametrize("cache_ms,ttl", [(0, 60), (60000, 0)])
def test_srv_cache_off_or_past_ttl_sees_changes_at_once(factory, cache_ms, ttl):
    dns, p0, p1, second, hosts = _two_sets(factory, ttl)
    k1 = querier(factory, dns.port, hostname="kubia-1", port=p1)
    k1.post("/", b"one")
    k0 = querier(factory, dns.port, port=p0, args=["--dns-cache-ms", str(cache_ms)])
    assert k0.get("/").body == HEAD0 + line("kubia-0", b"No data posted yet")
    dns.restart(srv=second)
    assert k0.get("/").body == HEAD0 + line("kubia-0", b"No data posted yet") + line(
        "kubia-1", b"one")


def test_srv_cache_limited_by_cache_ms(factory):
    dns, p0, p1, second, hosts = _two_sets(factory, 60)
    k1 = querier(factory, dns.port, hostname="kubia-1", port=p1)
    k1.post("/", b"one")
    k0 = querier(factory, dns.port, port=p0, args=["--dns-cache-ms", "300"])
    assert k0.get("/").body == HEAD0 + line("kubia-0", b"No data posted yet")
    dns.restart(srv=second)
    t0 = time.monotonic()
    want = HEAD0 + line("kubia-0", b"No data posted yet") + line("kubia-1", b"one")
    wait_until(lambda: k0.get("/").body == want, 3, "the new SRV set to be seen", interval=0.05)
    assert time.monotonic() - t0 < 0.3 + 0.7


# The tests below count the SRV queries that reach dnsmasq (its query log), so a cache
# that does not hold, outlives its life or TTL, or is not shared fails them.


def _counted(factory, ttl, cache_ms, delay=None):
    """kubia-0 asking a query-logging dnsmasq whose records have the given TTL (two
    pods, kubia-1 running); with delay, through a SlowDNS that holds every query that
    long. Returns (dns, kubia-0, the view kubia-0 must show)."""
    p0, p1 = free_port(), free_port()
    names = ("kubia-0", "kubia-1")
    dns = factory.dns(srv=[(DOMAIN, pod_fqdn(n), p) for n, p in zip(names, (p0, p1))],
                      hosts=[(pod_fqdn(n), "127.0.0.%d" % (i + 1), None)
                             for i, n in enumerate(names)],
                      log_queries=True, extra=["--local-ttl=%d" % ttl])
    port = dns.port
    if delay is not None:
        slow = SlowDNS(dns.port, delay)
        factory.on_close(slow.close)
        port = slow.port
    k1 = querier(factory, dns.port, hostname="kubia-1", port=p1, host="127.0.0.2")
    k1.post("/", b"one")
    # per-try time-out dns-timeout-ms / 7: long enough that c-ares never retries a
    # query the relay holds
    k0 = querier(factory, port, port=p0, args=["--dns-cache-ms", str(cache_ms),
                                               "--dns-timeout-ms", "14000"])
    return dns, k0, HEAD0 + line("kubia-0", b"No data posted yet") + line("kubia-1", b"one")


def _view(k, want):
    r = k.get("/", timeout=20)
    assert r.status == 200 and r.body == want, r
    return time.monotonic()


def test_srv_cache_holds_for_its_life_then_asks_again(factory):
    life = 3.0
    dns, k, want = _counted(factory, ttl=3600, cache_ms=int(life * 1000))
    before = dns.srv_queries()
    t0 = time.monotonic()
    first = _view(k, want)
    for _ in range(4):
        _view(k, want)
    took = time.monotonic() - t0
    assert took < life, "5 views took %.1fs, longer than the cache life" % took
    n = dns.srv_queries() - before
    assert n == 1, "5 views within the cache life made %d SRV queries, not 1" % n
    # the cache was filled before the first view was answered: past this it is stale
    time.sleep(max(0.0, first + life + 0.2 - time.monotonic()))
    _view(k, want)
    n = dns.srv_queries() - before
    assert n == 2, "after the cache life, a view made %d SRV queries, not 1" % (n - 1)
    _view(k, want)
    n = dns.srv_queries() - before
    assert n == 2, "the new answer was not cached: %d SRV queries, not 2" % n


def test_srv_cache_life_capped_by_ttl(factory):
    ttl = 2
    dns, k, want = _counted(factory, ttl=ttl, cache_ms=600000)
    before = dns.srv_queries()
    first = _view(k, want)
    _view(k, want)
    n = dns.srv_queries() - before
    assert n == 1, "2 views within the TTL made %d SRV queries, not 1" % n
    time.sleep(max(0.0, first + ttl + 0.2 - time.monotonic()))
    _view(k, want)
    n = dns.srv_queries() - before
    assert n == 2, ("a view after the records' TTL (%ds) made %d SRV queries, not 1, "
                    "with --dns-cache-ms 600000" % (ttl, n - 1))


def test_srv_cache_off_every_view_asks(factory):
    dns, k, want = _counted(factory, ttl=3600, cache_ms=0)
    before = dns.srv_queries()
    for _ in range(5):
        _view(k, want)
    n = dns.srv_queries() - before
    assert n == 5, "with --dns-cache-ms 0, 5 views made %d SRV queries, not 5" % n


@pytest.mark.parametrize("cache_ms", [0, 600000])
def test_concurrent_views_share_one_lookup(factory, cache_ms):
    # Every query is held 0.8 s on its way to dnsmasq, so the views, started together,
    # all arrive while the first one's lookup is in flight; with or without a cache
    # (empty here), they wait for that lookup instead of starting their own.
    views = 32
    dns, k, want = _counted(factory, ttl=3600, cache_ms=cache_ms, delay=0.8)
    before = dns.srv_queries()
    barrier = threading.Barrier(views)

    def view(_):
        barrier.wait(10)
        return k.get("/", timeout=20)

    with concurrent.futures.ThreadPoolExecutor(views) as ex:
        results = list(ex.map(view, range(views)))
    bad = [r for r in results if r.status != 200 or r.body != want]
    assert not bad, "%d of %d views wrong, e.g. %r" % (len(bad), views, bad[0])
    queries = dns.srv_queries() - before
    assert 1 <= queries <= 3 and queries < views, (
        "%d concurrent views made %d SRV queries: the lookup in flight is not shared"
        % (views, queries))


def test_many_concurrent_cluster_views(factory):
    dns, ks = factory.cluster(("kubia-0", "kubia-1", "kubia-2"), mode="peers")
    for k in ks:
        k.post("/", k.hostname.encode() * 50)
    want = HEAD0 + b"".join(line(n, n.encode() * 50) for n in ("kubia-0", "kubia-1",
                                                               "kubia-2"))
    with concurrent.futures.ThreadPoolExecutor(32) as ex:
        results = list(ex.map(lambda _: ks[0].get("/", timeout=20), range(200)))
    bad = [r for r in results if r.status != 200 or r.body != want]
    assert not bad, "%d of 200 concurrent cluster views wrong, e.g. %r" % (len(bad), bad[0])


def test_peer_restart_between_requests(factory):
    # a kept-alive connection to a peer that restarted must not produce an error line
    dns, ks = factory.cluster(("kubia-0", "kubia-1"), mode="peers")
    ks[1].post("/", b"before")
    want = HEAD0 + line("kubia-0", b"No data posted yet") + line("kubia-1", b"before")
    assert ks[0].get("/").body == want
    ks[1].restart()
    assert ks[0].get("/").body == want
    ks[1].post("/", b"after")
    assert ks[0].get("/").body == HEAD0 + line("kubia-0", b"No data posted yet") + line(
        "kubia-1", b"after")


def test_max_peers_caps_the_list(factory):
    # Five pods in DNS, --max-peers 3: the first three in pod order are listed (the
    # cap is applied after sorting, so it does not depend on the server's order).
    names = ["kubia-4", "kubia-3", "kubia-2", "kubia-1", "kubia-0"]
    port = free_port()
    dead = {n: free_port() for n in names if n != "kubia-0"}
    srv = [(DOMAIN, pod_fqdn(n), dead.get(n, port)) for n in names]
    hosts = [(pod_fqdn(n), "127.0.0.1", None) for n in names]
    dns = factory.dns(srv=srv, hosts=hosts)
    k = querier(factory, dns.port, port=port, args=["--max-peers", "3"])
    r = k.get("/")
    lines = split_lines(r.body)
    order = [ln.split(b":")[0][2:].decode() for ln in lines[2:-1]]
    assert order == [pod_fqdn(n) for n in ("kubia-0", "kubia-1", "kubia-2")], r.body
    k2 = querier(factory, dns.port, hostname="kubia-1", args=["--max-peers", "5"])
    r = k2.get("/")
    assert len(split_lines(r.body)[2:-1]) == 5, r.body
