# SPDX-License-Identifier: MIT
"""The crash and power-cut harness shared by test_crash.py and test_powercut.py (and
the reference model's runs): clients POSTing distinct, checksummed bodies, a ledger of
what was sent and acknowledged, and the check of what a restart finds.

What "at least as new" means with concurrent clients and group commit. kubia commits
bodies one batch after the other, each batch the bodies handed over while the previous
commit ran, and the data file then holds the batch's last body. So the commits are
totally ordered, and a POST acknowledged means its commit (and every earlier one) is
durable: after a crash the file must hold the body of that commit or of a later one.
Seen from the clients, a body B of a later commit was handed over after every body of
the acknowledged POST's commit was, so B's POST cannot have been answered before that
POST was even sent. That is what is checked, with one clock for the whole harness:

  * the file holds exactly one body that some client sent, with a valid checksum
    (else it is torn: empty, cut short or mixed);
  * for every acknowledged POST P, the body B in the file was not answered before P
    was sent: answered(B) >= sent(P), where answered(B) is the time B's 200 arrived, or
    the time of the kill (or cut) for a body never answered (it may have been committed
    at any moment before). Else the file is older than an acknowledged POST: lost.
  * no data file at all is lost data once any POST was acknowledged.

With one client the rule is exact: the file holds the last acknowledged body or the
one that was in flight. Bodies are 1 B to 64 KiB; bodies of 64 bytes or more start with
their name and the SHA-256 of the rest, the smaller ones are known by their digest only.
"""

import hashlib
import http.client
import math
import os
import random
import socket
import subprocess
import threading
import time

from kubiatest.http import http_request
from kubiatest.ports import free_port

HEADER = b"kubia-body "
MAX_BODY = 64 * 1024


def make_body(rnd, name):
    """A body of 1 B to 64 KiB (sizes spread evenly on a log scale)."""
    size = int(math.exp(rnd.uniform(0, math.log(MAX_BODY + 1))))
    size = max(1, min(MAX_BODY, size))
    filler = rnd.randbytes(size)
    head = b"%s%s %s\n" % (HEADER, name.encode(), b"0" * 64)
    if size < len(head) + 1:
        return filler
    rest = filler[len(head):]
    return b"%s%s %s\n" % (HEADER, name.encode(),
                           hashlib.sha256(rest).hexdigest().encode()) + rest


def checksum_ok(data):
    """None for a body too small to carry a checksum; else whether it is valid."""
    if not data.startswith(HEADER):
        return None
    nl = data.find(b"\n")
    parts = data[:nl].split(b" ") if nl > 0 else []
    if len(parts) != 3:
        return False
    return hashlib.sha256(data[nl + 1:]).hexdigest().encode() == parts[2]


class Ledger:
    """Every body sent, when, and which were acknowledged; the check of a restart."""

    INF = float("inf")

    def __init__(self):
        self.mu = threading.Lock()
        self.bodies = {}  # digest -> [name, answered-at (INF while unknown)]
        self.pending = []  # digests sent this round and not answered
        self.newest_acked = None  # (sent-at, name) of the acknowledged POST sent last
        self.acked = 0
        self.sent = 0
        self.failed = []  # (received-at, status, text) of non-200 answers

    def send(self, body, name):
        d = hashlib.sha256(body).digest()
        with self.mu:
            rec = self.bodies.setdefault(d, [name, -self.INF])
            rec[0] = name
            self.pending.append(d)
            self.sent += 1
        return d

    def answered(self, d, name, t_sent, status, text):
        t = time.monotonic()
        with self.mu:
            if status != 200:
                self.failed.append((t, status, text))
                return
            self.acked += 1
            self.bodies[d][1] = max(self.bodies[d][1], t)
            if self.newest_acked is None or t_sent > self.newest_acked[0]:
                self.newest_acked = (t_sent, name)

    def end_round(self, t_down):
        """Bodies still unanswered when the server went down may have been committed at
        any moment until then."""
        with self.mu:
            for d in self.pending:
                self.bodies[d][1] = max(self.bodies[d][1], t_down)
            self.pending = []

    def check(self, data):
        """The faults of what a restart found (None: no data file): a list of
        (kind, text), kind "torn" or "lost"; empty when all is well."""
        with self.mu:
            newest = self.newest_acked
            if data is None:
                if newest is not None:
                    return [("lost", "no data file, but POST %s was acknowledged" %
                             newest[1])]
                return []
            rec = self.bodies.get(hashlib.sha256(data).digest())
            if rec is None:
                ok = checksum_ok(data)
                why = {None: "not one any client sent", False: "its checksum is wrong",
                       True: "not one any client sent"}[ok]
                return [("torn", "the data file holds %d bytes (%r...): %s" % (
                    len(data), data[:40], why))]
            if newest is not None and rec[1] < newest[0]:
                return [("lost", "the data file holds %s, answered %.3f s before POST %s "
                         "(acknowledged) was sent" % (rec[0], newest[0] - rec[1],
                                                      newest[1]))]
            return []


def post(host, port, body, timeout=10):
    r = http_request(host, port, "POST", "/", body, timeout=timeout)
    return r.status, r.body


class Clients:
    """n threads POSTing new bodies to host:port until stopped or refused."""

    def __init__(self, ledger, host, port, n, tag, seed):
        self.ledger, self.host, self.port = ledger, host, port
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(
            "%s-c%d" % (tag, i), random.Random("%s-%d-%d" % (tag, seed, i))), daemon=True)
            for i in range(n)]
        for t in self.threads:
            t.start()

    def _run(self, who, rnd):
        seq = 0
        while not self.stop.is_set():
            name = "%s-%d" % (who, seq)
            seq += 1
            body = make_body(rnd, name)
            t_sent = time.monotonic()
            d = self.ledger.send(body, name)
            try:
                status, text = post(self.host, self.port, body)
            except (OSError, http.client.HTTPException):
                return  # the server is gone: the round is ending
            self.ledger.answered(d, name, t_sent, status, text)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(20)
            if t.is_alive():
                raise AssertionError("a client did not end within 20 s")


def read_file(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def get_data(host, port):
    r = http_request(host, port, "GET", "/data")
    return r.status, r.body


def wait_listening(host, port, proc, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError("the server exited with %s before answering" %
                                 proc.returncode)
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError("the server did not listen within %d s" % timeout)
            time.sleep(0.005)


class Campaign:
    """Rounds of: start the server, clients POST, the server goes down at a random
    moment (down(): SIGKILL, or a power cut then SIGKILL), check what is left.

    server: an object with start() (returns once it serves), kill(), host, port,
    data_file, no_data (what GET /data answers with no data), and the hooks
    before_start() and after_kill() (the power cut's file system); down_file, when
    it has one, is where the data file is read after the crash."""

    def __init__(self, server, seed, down, clients=(1, 32), max_delay=(0.02, 0.2)):
        self.server, self.down = server, down
        self.rnd = random.Random(seed)
        self.seed = seed
        self.clients, self.max_delay = clients, max_delay
        self.ledger = Ledger()
        self.faults = []  # (round, kind, text)
        self.rounds = 0
        self.stats = {"torn": 0, "lost": 0, "acked": 0, "sent": 0}

    def fault(self, kind, text):
        self.faults.append((self.rounds, kind, text))
        self.stats[kind] = self.stats.get(kind, 0) + 1

    def verify_down(self):
        """What the crash left on the volume."""
        path = getattr(self.server, "down_file", self.server.data_file)
        for kind, text in self.ledger.check(read_file(path)):
            self.fault(kind, text)

    def verify_up(self):
        """The restarted server serves what the file holds and left no temporary file."""
        data = read_file(self.server.data_file)
        status, served = get_data(self.server.host, self.server.port)
        want = data if data is not None else self.server.no_data
        if status != 200 or served != want:
            self.fault("memory", "GET /data answered %d, %d bytes; the file holds %s "
                       "bytes" % (status, len(served), None if data is None else len(data)))
        d = os.path.dirname(self.server.data_file)
        left = [n for n in os.listdir(d) if ".tmp." in n] if os.path.isdir(d) else []
        if left:
            self.fault("temporary", "temporary files left after the restart: %s" % left)

    def round(self):
        n = self.clients[self.rounds % len(self.clients)]
        delay = self.rnd.uniform(0, self.max_delay[self.rounds // len(self.clients) %
                                                    len(self.max_delay)])
        self.server.before_start()
        self.server.start()
        self.verify_up()
        c = Clients(self.ledger, self.server.host, self.server.port, n,
                    "r%d" % self.rounds, self.seed)
        time.sleep(delay)
        t_before, t_down = self.down(self.server)
        c.finish()
        self.ledger.end_round(t_down)
        for t, status, text in self.ledger.failed:
            if t < t_before:
                self.fault("error", "a POST was answered %d before the crash: %r" % (
                    status, text[:200]))
        self.ledger.failed = []
        self.server.after_kill()
        self.verify_down()
        self.rounds += 1

    def run(self, rounds, stop_at_first=True):
        for _ in range(rounds):
            self.round()
            if stop_at_first and self.faults:
                break
        self.stats["acked"], self.stats["sent"] = self.ledger.acked, self.ledger.sent
        return self.faults

    def summary(self):
        others = ", ".join("%s: %d" % (k, v) for k, v in sorted(self.stats.items())
                           if k not in ("torn", "lost", "acked", "sent"))
        return ("%d rounds, %d POSTs sent, %d acknowledged; rounds that lost acknowledged "
                "data: %d, that left a torn file: %d%s (seed %d)" % (
                    self.rounds, self.stats["sent"], self.stats["acked"],
                    self.stats["lost"], self.stats["torn"],
                    "; other faults: " + others if others else "", self.seed))


def kill(server):
    """The crash: SIGKILL at once. Returns the times just before it and when the
    server was certainly gone."""
    t_before = time.monotonic()
    server.kill()
    return t_before, time.monotonic()


def rounds_from_env(var, default):
    v = os.environ.get(var)
    return int(v) if v else default


def seed():
    """KUBIA_CRASH_SEED, to replay the choices (delays, body sizes) of a run; else a
    new one, which every summary names."""
    return rounds_from_env("KUBIA_CRASH_SEED", random.SystemRandom().randrange(1 << 31))


def _port_taken(e):
    return "Address already in use" in str(e)


class KubiaServer:
    """A conftest Kubia (pet mode) as the campaign's server. Should its port be taken
    between two of a thousand restarts, it moves to another."""

    no_data = b"No data posted yet"

    def __init__(self, kubia):
        self.k = kubia
        self.host, self.data_file = kubia.host, kubia.data_file

    @property
    def port(self):
        return self.k.port

    def before_start(self):
        pass

    def start(self):
        if self.k.proc is not None and self.k.proc.poll() is None:
            self.k.wait_ready()  # started by the fixture
            return
        for attempt in range(3):
            try:
                self.k.start()
                return
            except AssertionError as e:
                if attempt == 2 or not _port_taken(e):
                    raise
            self.k.port = free_port()
            self.k.argv[self.k.argv.index("--port") + 1] = str(self.k.port)

    def kill(self):
        self.k.proc.kill()
        self.k.proc.wait(10)

    def after_kill(self):
        pass


REFERENCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench",
                         "reference", "kubia-pet-peers.js")


class ReferenceServer:
    """The reference model of the book's app (test/bench/reference), run with node."""

    no_data = b"No data posted yet"

    def __init__(self, procs, data_file, port, env):
        self.procs, self.data_file, self.port, self.host = procs, data_file, port, "127.0.0.1"
        self.env = dict(env, KUBIA_REF_PORT=str(port), KUBIA_REF_HOST=self.host,
                        KUBIA_REF_DATA_FILE=data_file, KUBIA_REF_HOSTNAME="kubia-0",
                        KUBIA_REF_MODE="pet")
        self.proc = None

    def before_start(self):
        pass

    def start(self):
        for attempt in range(3):
            self.proc = self.procs.add(subprocess.Popen(
                ["node", REFERENCE], env=self.env, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            try:
                wait_listening(self.host, self.port, self.proc)
                return
            except AssertionError:
                # node exits when its port was taken meanwhile (see KubiaServer)
                if attempt == 2 or self.proc.poll() is None:
                    raise
            self.port = free_port()
            self.env["KUBIA_REF_PORT"] = str(self.port)

    def kill(self):
        self.proc.kill()
        self.proc.wait(10)

    def after_kill(self):
        pass
