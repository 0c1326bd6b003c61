# SPDX-License-Identifier: MIT
"""A DNS server of the tests' own on 127.0.0.1 (UDP and TCP on one port) that misbehaves
on purpose: it answers SRV and A queries from its records, or SERVFAIL, REFUSED, late,
truncated over UDP (the records only over TCP), and it shuffles the records of every
answer, so a client that depends on their order shows it.

Names are never compressed in what it writes except the owner of each SRV record, which
points to the question: 500 SRV records then fit well inside TCP's 64 KiB."""

import random
import socket
import struct
import threading

from kubiatest.dnswire import (NOERROR, NXDOMAIN, QTYPE_A, QTYPE_SRV, REFUSED, SERVFAIL,
                               encode_name, parse_question, reply_head)


class FaultDNS:
    """srv: {service name: [(target, port)]}; hosts: {name: IPv4 address, or None for
    a name that exists without one}. mode:
    "ok", "servfail", "refused", "slow" (answer after delay s), "truncate" (over UDP
    only the header with TC set; the answer over TCP)."""

    def __init__(self, srv=None, hosts=None, mode="ok", delay=0.0, ttl=5):
        self.srv = {k.rstrip(".").lower(): list(v) for k, v in (srv or {}).items()}
        self.hosts = {k.rstrip(".").lower(): v for k, v in (hosts or {}).items()}
        self.mode = mode
        self.delay = delay
        self.ttl = ttl
        self.queries = {"udp": 0, "tcp": 0}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        for _ in range(100):  # a port free for both UDP and TCP
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.udp.bind(("127.0.0.1", 0))
            self.port = self.udp.getsockname()[1]
            self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                self.tcp.bind(("127.0.0.1", self.port))
                break
            except OSError:
                self.udp.close()
                self.tcp.close()
        else:
            raise RuntimeError("no port free for both UDP and TCP")
        self.tcp.listen(64)
        self.threads = [threading.Thread(target=f, daemon=True)
                        for f in (self._serve_udp, self._serve_tcp)]
        for t in self.threads:
            t.start()

    def answer(self, msg, over_tcp):
        q = parse_question(msg)
        if q is None:
            return None
        qid, flags, qname, qtype, qend = q
        rcode, records = NOERROR, []
        if self.mode == "servfail":
            rcode = SERVFAIL
        elif self.mode == "refused":
            rcode = REFUSED
        elif qtype == QTYPE_SRV and qname in self.srv:
            records = [self._srv_rr(t, p) for t, p in self.srv[qname]]
        elif qtype == QTYPE_A and self.hosts.get(qname):
            records = [encode_name(qname) + struct.pack(">HHIH", QTYPE_A, 1, self.ttl, 4) +
                       socket.inet_aton(self.hosts[qname])]
        elif qname not in self.srv and qname not in self.hosts:
            rcode = NXDOMAIN
        random.shuffle(records)
        rflags = 0x8000 | 0x0400 | (flags & 0x0100) | rcode  # QR, AA, RD copied
        if self.mode == "truncate" and not over_tcp and records:
            return reply_head(qid, rflags | 0x0200, 0, msg, qend)
        return reply_head(qid, rflags, len(records), msg, qend) + b"".join(records)

    def _srv_rr(self, target, port):
        rdata = struct.pack(">HHH", 0, 0, port) + encode_name(target)
        return b"\xc0\x0c" + struct.pack(">HHIH", QTYPE_SRV, 1, self.ttl, len(rdata)) + rdata

    def _late(self):
        return self.mode == "slow" and self._stop.wait(self.delay)

    def _serve_udp(self):
        self.udp.settimeout(0.1)
        while not self._stop.is_set():
            try:
                msg, addr = self.udp.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.queries["udp"] += 1
            threading.Thread(target=self._reply_udp, args=(msg, addr), daemon=True).start()

    def _reply_udp(self, msg, addr):
        if self._late():
            return
        out = self.answer(msg, False)
        if out is not None:
            try:
                self.udp.sendto(out, addr)
            except OSError:
                pass

    def _serve_tcp(self):
        self.tcp.settimeout(0.1)
        while not self._stop.is_set():
            try:
                c, _ = self.tcp.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._reply_tcp, args=(c,), daemon=True).start()

    def _reply_tcp(self, c):
        c.settimeout(5)
        try:
            while not self._stop.is_set():
                head = c.recv(2, socket.MSG_WAITALL)
                if len(head) < 2:
                    return
                msg = c.recv(struct.unpack(">H", head)[0], socket.MSG_WAITALL)
                with self._lock:
                    self.queries["tcp"] += 1
                if self._late():
                    return
                out = self.answer(msg, True)
                if out is None:
                    return
                c.sendall(struct.pack(">H", len(out)) + out)
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self._stop.set()
        for t in self.threads:
            t.join(2)
        self.udp.close()
        self.tcp.close()
