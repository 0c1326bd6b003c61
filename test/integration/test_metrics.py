# SPDX-License-Identifier: MIT
"""GET /metrics: the Prometheus text exposition format 0.0.4 as Debian's promtool reads
it, and counters that move by exactly what known traffic makes them move: requests by
route and status, the duration histograms, POST bytes, commits, SRV lookups and peer
fetches (against the suite's dnsmasq), connections, the memory budget."""

import http.client
import os
import re
import shutil
import subprocess

from harness import DOMAIN, pod_fqdn
from kubiatest.ports import free_port
from kubiatest.waits import wait_until

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
EXPOSITION_CT = "text/plain; version=0.0.4; charset=utf-8"
DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs",
                    "metrics.md")

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')


def unescape(v):
    return re.sub(r'\\(.)', lambda m: "\n" if m.group(1) == "n" else m.group(1), v)


def parse(text):
    """{(name, ((label, value), ...)): float} and {family: type}, checking the layout:
    HELP then TYPE before a family's samples, every sample of a declared family."""
    samples, types = {}, {}
    current = None
    for ln in text.split("\n")[:-1]:
        if ln.startswith("# HELP "):
            current = ln.split(" ")[2]
            continue
        if ln.startswith("# TYPE "):
            _, _, name, typ = ln.split(" ")
            assert name == current, "TYPE of %s after HELP of %s" % (name, current)
            types[name] = typ
            continue
        m = SAMPLE_RE.match(ln)
        assert m, "not a sample line: %r" % ln
        name, labels, value = m.groups()
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert current in (name, base), "%s outside its family (%s)" % (name, current)
        pairs = []
        if labels:
            consumed = "".join(x.group(0) for x in LABEL_RE.finditer(labels))
            assert consumed == labels, "bad labels: %r" % labels
            pairs = [(k, unescape(v)) for k, v in LABEL_RE.findall(labels)]
        samples[(name, tuple(pairs))] = float(value)
    assert text.endswith("\n")
    return samples, types


def scrape(k):
    r = k.get("/metrics")
    assert r.status == 200, r
    assert r.header("Content-Type") == EXPOSITION_CT, r.header("Content-Type")
    return r.body.decode()


def served(samples):
    """Requests counted on every route but /metrics and /readyz (the probes)."""
    return sum(v for (n, p), v in samples.items()
               if n == "kubia_http_requests_total"
               and dict(p)["route"] not in ("/metrics", "/readyz"))


def scrape_after(k, before, n):
    """The exposition once n more requests than in before are counted: a request is
    counted when it completes, which may be just after its client read the answer."""
    want = served(before) + n
    got = wait_until(lambda: (lambda s: s if served(s) >= want else None)(parse(scrape(k))[0]),
                     5, what="%d requests counted" % n)
    return got


def value(samples, name, **labels):
    return samples.get((name, tuple(labels.items())), 0.0)


def histogram(samples, name, **labels):
    """(buckets [(le, cumulative)], sum, count) of one histogram series."""
    buckets = []
    for (n, pairs), v in samples.items():
        d = dict(pairs)
        le = d.pop("le", None)
        if n == name + "_bucket" and d == labels:
            buckets.append((float("inf") if le == "+Inf" else float(le), v))
    buckets.sort()
    lab = tuple(labels.items())
    return buckets, samples[(name + "_sum", lab)], samples[(name + "_count", lab)]


def check_histogram(samples, name, **labels):
    buckets, _, count = histogram(samples, name, **labels)
    assert buckets and buckets[-1][0] == float("inf"), buckets
    counts = [c for _, c in buckets]
    assert counts == sorted(counts), "%s buckets not monotone: %s" % (name, buckets)
    assert counts[-1] == count, "%s: +Inf bucket %s, count %s" % (name, counts[-1], count)
    return count


def promtool(text):
    assert os.access(PROMTOOL, os.X_OK), "promtool not installed (package prometheus)"
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(),
                       capture_output=True, timeout=30)
    assert p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(), (
        p.returncode, p.stdout, p.stderr)


def test_exposition_is_valid_and_documented(factory):
    # A host name with a quote and a backslash: both escaped in the build_info label.
    k = factory.kubia('kubia"0\\x', mode="pet")
    k.get("/data")
    k.post("/", b"x")
    k.get("/nowhere")
    text = scrape(k)
    promtool(text)
    samples, types = parse(text)
    assert value(samples, "kubia_build_info", version=re.search(
        r"version: '([^']+)'", open(os.path.join(os.path.dirname(DOCS), "..",
                                                  "meson.build")).read()).group(1),
        hostname='kubia"0\\x', mode="pet") == 1
    for name, typ in types.items():
        if typ == "counter":
            assert name.endswith("_total"), name
        if typ == "histogram":
            series = [dict(p) for n, p in samples if n == name + "_count"]
            assert series, name
            for labels in series:
                check_histogram(samples, name, **labels)
    with open(DOCS) as f:
        documented = set(re.findall(r"^\| `(kubia_[a-z_]+)` \| (\w+) \|", f.read(), re.M))
    assert documented == set(types.items()), (
        "docs/metrics.md differs from /metrics: missing %s, stale %s" % (
            set(types.items()) - documented, documented - set(types.items())))


def test_requests_counted_by_route_and_status(factory):
    k = factory.kubia("kubia-0", mode="pet", args=["--max-body", "100"])
    before, _ = parse(scrape(k))
    n = 25
    for _ in range(n):
        assert k.get("/data").status == 200
    assert k.post("/", b"y" * 200).status == 413
    assert k.get("/healthz").status == 200
    r = k.request("DELETE", "/data")
    assert r.status == 405
    # Refused before routing (no Host header): still counted, with its status.
    c = http.client.HTTPConnection(k.host, k.port, timeout=10)
    c.putrequest("GET", "/healthz", skip_host=True)
    c.endheaders()
    assert c.getresponse().status == 400
    c.close()
    after = scrape_after(k, before, n + 4)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("kubia_http_requests_total", route="/data", code="200") == n
    assert delta("kubia_http_requests_total", route="/", code="413") == 1
    assert delta("kubia_http_requests_total", route="/healthz", code="200") == 1
    assert delta("kubia_http_requests_total", route="/healthz", code="400") == 1
    assert delta("kubia_http_requests_total", route="/data", code="405") == 1
    # The scrapes before this one (one, or more while waiting), counted once done.
    assert delta("kubia_http_requests_total", route="/metrics", code="200") >= 1
    d0 = check_histogram(before, "kubia_http_request_duration_seconds", route="/data")
    d1 = check_histogram(after, "kubia_http_request_duration_seconds", route="/data")
    assert d1 - d0 == n + 1, (d0, d1)  # the 25 GETs and the DELETE
    _, s, _ = histogram(after, "kubia_http_request_duration_seconds", route="/data")
    assert 0 < s < 10 * (n + 1), s


def test_route_label_is_bounded(factory):
    k = factory.kubia("kubia-0", mode="pet")
    before, _ = parse(scrape(k))
    for i in range(40):
        k.get("/path-%d?q=%d" % (i, i))
    samples = scrape_after(k, before, 40)
    routes = {dict(p).get("route") for n, p in samples if n == "kubia_http_requests_total"}
    assert routes <= {"/", "/data", "/healthz", "/readyz", "/metrics", "other"}, routes
    assert value(samples, "kubia_http_requests_total", route="other", code="200") == 40


def test_post_bytes_and_commits(factory):
    k = factory.kubia("kubia-0", mode="pet")
    before, _ = parse(scrape(k))
    body = b"z" * 37
    assert k.post("/", body).status == 200
    after = scrape_after(k, before, 1)
    assert (value(after, "kubia_http_request_body_bytes_total")
            - value(before, "kubia_http_request_body_bytes_total")) == len(body)
    assert (value(after, "kubia_storage_commits_total", result="ok")
            - value(before, "kubia_storage_commits_total", result="ok")) == 1
    assert value(after, "kubia_storage_commits_total", result="failed") == 0
    for name in ("kubia_storage_commit_duration_seconds", "kubia_storage_commit_batch_posts"):
        assert check_histogram(after, name) - check_histogram(before, name) == 1, name
    _, s, _ = histogram(after, "kubia_storage_commit_batch_posts")
    assert s == 1  # one POST in that commit


def test_view_counts_srv_lookup_and_peer_fetches(factory):
    dead = free_port()
    dns, ks = factory.cluster(("kubia-0", "kubia-1"), mode="peers",
                              args=["--dns-cache-ms", "0"],
                              extra_srv=[(DOMAIN, pod_fqdn("kubia-2"), dead)],
                              extra_hosts=[(pod_fqdn("kubia-2"), "127.0.0.3", None)])
    before, _ = parse(scrape(ks[0]))
    r = ks[0].get("/")
    assert r.status == 200 and b"kubia-2" in r.body and b"Error: " in r.body, r
    after = scrape_after(ks[0], before, 1)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("kubia_dns_srv_lookups_total", result="ok") == 1
    assert delta("kubia_dns_srv_lookups_total", result="error") == 0
    assert value(after, "kubia_discovery_peers") == 3
    assert delta("kubia_peer_fetches_total", result="ok") == 1
    assert delta("kubia_peer_fetches_total", result="connect_error") == 1
    assert (check_histogram(after, "kubia_peer_fetch_duration_seconds")
            - check_histogram(before, "kubia_peer_fetch_duration_seconds")) == 2
    assert (check_histogram(after, "kubia_dns_srv_lookup_duration_seconds")
            - check_histogram(before, "kubia_dns_srv_lookup_duration_seconds")) == 1
    assert delta("kubia_http_requests_total", route="/", code="200") == 1


def test_connections_open_gauge(factory):
    k = factory.kubia("kubia-0", mode="pet")
    conns = []
    try:
        for _ in range(3):
            c = http.client.HTTPConnection(k.host, k.port, timeout=10)
            c.request("GET", "/healthz")
            c.getresponse().read()
            conns.append(c)
        samples, _ = parse(scrape(k))
        # The three kept alive, and the scrape's own.
        assert value(samples, "kubia_http_connections_open") == 4
    finally:
        for c in conns:
            c.close()
    wait_until(lambda: value(parse(scrape(k))[0], "kubia_http_connections_open") == 1, 10,
               what="connections_open back to the scrape's own")


def test_memory_budget_gauges_and_metrics_within_budget(factory):
    k = factory.kubia("kubia-0", mode="pet", args=["--max-memory", "2000000"])
    samples, _ = parse(scrape(k))
    assert value(samples, "kubia_memory_budget_limit_bytes") == 2000000
    # The page being sent is charged: it is counted in what it shows.
    assert value(samples, "kubia_memory_budget_used_bytes") >= 65536
    small = factory.kubia("kubia-1", mode="pet",
                          args=["--max-memory", "60000", "--max-body", "1000"])
    r = small.get("/metrics")
    assert r.status == 503 and r.header("Retry-After") == "1", r
