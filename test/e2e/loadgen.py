"""Client load through the API server's proxy, counted as a client sees it.

Each client is a thread that sends one request after another, each on a new connection
(as a loop of curl commands does), and never retries: every answer that is not what the
request should get is a failure, with what came back. What the requests are:

* view: GET / through kubia-public. Should get 200 and a cluster view (its first two
  lines) that shows each pod's data at least as new as the last POST that pod had
  acknowledged when the view was asked (so a lost POST fails the next view); lines that
  show a peer as unreachable or not ready are counted, not failed: a view taken while
  a pod is replaced shows it so, by design.
* data: GET /data through kubia-public. Should get 200.
* post: POST of a new, unique body through kubia-public. Should get 200 and
  "Data stored on pod <pod>"; the body acknowledged last by each pod is kept, so a test
  can check that the pod still serves it. Only one client posts, one POST at a time, so
  "last" is well defined: the store's order is the order of the acknowledgements.
"""

import http.client
import random
import re
import threading
import time

VIEW_HEAD = re.compile(r"You've hit (kubia-\d+)\nData stored in the cluster:\n")
STORED = re.compile(r"Data stored on pod (kubia-\d+)\n")
BODY = re.compile(r"load 0-(\d+) ")
VIEW_LINE = re.compile(r"- (kubia-\d+)\.[^:]*: (.*)")
ERROR_LINE = re.compile(r"^- kubia-\d+\.[^:]*: Error: ([^\n]*)", re.M)


def seq_of(body):
    """The number of a POST's body: the poster numbers them in the order it sends them
    (None for a body that is not one of the load's)."""
    m = BODY.match(body)
    return int(m.group(1)) if m else None


class Load:
    def __init__(self, sim, clients=2, post=True, timeout=15.0, sizes=(16, 200, 4096)):
        self.sim = sim
        self.timeout = timeout
        self.sizes = sizes
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.ok = {"view": 0, "data": 0, "post": 0}
        self.failures = []  # (seconds since start, kind, what came back)
        self.degraded_lines = 0  # view lines with "Error:" (a peer being replaced)
        self.degraded = {}  # the reasons of those lines, and how often each came
        self.acked = {}  # pod -> the body it acknowledged last
        self.acked_seq = {}  # pod -> that body's number (see seq_of)
        self.started = None
        self.threads = [threading.Thread(target=self.client, args=(i, post and i == 0),
                                         daemon=True) for i in range(clients)]

    def __enter__(self):
        self.started = time.monotonic()
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(self.timeout + 5)
        assert not any(t.is_alive() for t in self.threads), "a load client hangs"

    def total(self):
        with self.lock:
            return sum(self.ok.values()) + len(self.failures)

    def acked_now(self):
        """pod -> the number of the body it acknowledged last, so far."""
        with self.lock:
            return dict(self.acked_seq)

    def summary(self):
        with self.lock:
            return "%d requests (%d views, %d GET /data, %d POSTs), %d failed" % (
                sum(self.ok.values()) + len(self.failures), self.ok["view"],
                self.ok["data"], self.ok["post"], len(self.failures))

    def client(self, n, poster):
        kinds = ["view", "data"] + (["post"] if poster else [])
        seq = 0
        while not self.stopping.is_set():
            kind = kinds[seq % len(kinds)]
            seq += 1
            body = None
            if kind == "post":
                body = "load %d-%d %s" % (n, seq, "x" * random.choice(self.sizes))
            path = self.sim.svc_path("/data" if kind == "data" else "/")
            acked = self.acked_now()  # what each pod had acknowledged before this request
            try:
                status, text = self.send("POST" if body else "GET", path, body)
            except (OSError, http.client.HTTPException) as e:
                self.fail(kind, "%s: %s" % (type(e).__name__, e))
                continue
            self.check(kind, status, text, body, acked)

    def send(self, method, path, body):
        conn = http.client.HTTPConnection("127.0.0.1", self.sim.api_port,
                                          timeout=self.timeout)
        try:
            conn.request(method, path, body=body)
            r = conn.getresponse()
            return r.status, r.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def check(self, kind, status, text, body, acked):
        if status != 200:
            return self.fail(kind, "%d %s" % (status, text[:200]))
        if kind == "view":
            if not VIEW_HEAD.match(text):
                return self.fail(kind, "not a cluster view: %r" % text[:200])
            older = self.older_than_acked(text, acked)
            if older:
                return self.fail(kind, older)
            with self.lock:
                for m in ERROR_LINE.finditer(text):
                    self.degraded_lines += 1
                    self.degraded[m.group(1)] = self.degraded.get(m.group(1), 0) + 1
        elif kind == "post":
            m = STORED.fullmatch(text)
            if not m:
                return self.fail(kind, "200 %r" % text[:200])
            with self.lock:
                self.acked[m.group(1)] = body
                self.acked_seq[m.group(1)] = seq_of(body)
        with self.lock:
            self.ok[kind] += 1

    @staticmethod
    def older_than_acked(view, acked):
        """Why the view shows a pod's data older than a POST that pod had acknowledged
        before the view was asked, or "" (a lost POST shows so: the view is never older
        than what the pods had acknowledged when it arrived)."""
        for line in view.splitlines()[2:]:
            m = VIEW_LINE.match(line)
            if not m or m.group(1) not in acked or m.group(2).startswith("Error: "):
                continue
            seq = seq_of(m.group(2))
            if seq is None or seq < acked[m.group(1)]:
                return "%s shows %r, older than its acknowledged POST number %d" % (
                    m.group(1), m.group(2)[:40], acked[m.group(1)])
        return ""

    def fail(self, kind, what):
        with self.lock:
            self.failures.append((round(time.monotonic() - self.started, 2), kind, what))
