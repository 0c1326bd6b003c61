#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A minimal authoritative DNS server for the benchmark's large clusters: the SRV
records of one headless Service, with the pods' A records in the additional section, as
cluster DNS answers them; and the A record of each pod by name.

dnsmasq serves the small clusters. It cannot serve a large one: past 16 KiB of answer
(about 268 pods with the book's names) it writes name-compression pointers to offsets
that 14 bits cannot hold, and resolvers reject the reply as malformed. This server never
compresses a name whose target lies past offset 16383, and otherwise only points to the
question, as RFC 2782 asks (SRV targets are never compressed).

Over UDP an answer longer than 512 bytes is sent truncated (TC, no records), so the
client asks again over TCP, as it would of cluster DNS.

Usage: srvdns.py PORT TTL SERVICE TARGET,PORT,ADDRESS...
Listens on 127.0.0.1:PORT, UDP and TCP, until SIGTERM.
"""
import os
import signal
import socket
import socketserver
import struct
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from kubiatest.dnswire import (QTYPE_A, QTYPE_ANY, QTYPE_SRV, encode_name,  # noqa: E402
                               parse_question, reply_head)

UDP_LIMIT = 512


class Zone:
    def __init__(self, ttl, service, records):
        self.ttl = ttl
        self.service = service.rstrip(".").lower()
        self.records = records  # [(target, port, address)]
        self.address_of = {t.lower(): a for t, _, a in records}

    def answer(self, msg):
        """The reply to one query, or None when it cannot be parsed."""
        q = parse_question(msg)
        if q is None:
            return None
        qid, flags, qname, qtype, qend = q
        rcode, answers, additional = 0, [], []
        if qname == self.service and qtype in (QTYPE_SRV, QTYPE_ANY):
            answers = [("srv", t, p, a) for t, p, a in self.records]
            additional = [("a", t, 0, a) for t, _, a in self.records]
        elif qname in self.address_of:
            if qtype in (QTYPE_A, QTYPE_ANY):
                answers = [("a", qname, 0, self.address_of[qname])]
        elif qname != self.service:
            rcode = 3  # NXDOMAIN
        out = bytearray(reply_head(qid, 0x8400 | (flags & 0x0100) | rcode, len(answers),
                                   msg, qend, len(additional)))
        where = {}  # name -> offset of its uncompressed copy
        for kind, name, port, address in answers + additional:
            out += self.owner(kind, name, where, len(out))
            if kind == "srv":
                target = encode_name(name)
                rdata_at = len(out) + 10 + 6
                out += struct.pack(">HHIH", QTYPE_SRV, 1, self.ttl, 6 + len(target))
                out += struct.pack(">HHH", 0, 0, port) + target
                where.setdefault(name.lower(), rdata_at)
            else:
                out += struct.pack(">HHIH", QTYPE_A, 1, self.ttl, 4)
                out += socket.inet_aton(address)
        return bytes(out)

    def owner(self, kind, name, where, here):
        """The owner name of a record: a pointer when one can be written, else in full."""
        if kind == "srv" or name.lower() == self.service:
            return struct.pack(">H", 0xC000 | 12)
        at = where.get(name.lower())
        if at is not None and at < 0x4000:
            return struct.pack(">H", 0xC000 | at)
        where.setdefault(name.lower(), here)
        return encode_name(name)


def truncated(reply):
    """Header and question only, with TC set: 'ask again over TCP'."""
    qid, flags = struct.unpack(">HH", reply[:4])
    return reply_head(qid, flags | 0x0200, 0, reply, parse_question(reply)[4])


def main(argv):
    port, ttl, service = int(argv[1]), int(argv[2]), argv[3]
    records = []
    for spec in argv[4:]:
        target, tport, address = spec.split(",")
        records.append((target, int(tport), address))
    zone = Zone(ttl, service, records)

    class UDP(socketserver.BaseRequestHandler):
        def handle(self):
            data, sock = self.request
            reply = zone.answer(data)
            if reply is not None:
                sock.sendto(reply if len(reply) <= UDP_LIMIT else truncated(reply),
                            self.client_address)

    class TCP(socketserver.StreamRequestHandler):
        def handle(self):
            while True:
                head = self.rfile.read(2)
                if len(head) < 2:
                    return
                data = self.rfile.read(struct.unpack(">H", head)[0])
                reply = zone.answer(data)
                if reply is None:
                    return
                self.wfile.write(struct.pack(">H", len(reply)) + reply)
                self.wfile.flush()

    socketserver.ThreadingUDPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    servers = [socketserver.ThreadingUDPServer(("127.0.0.1", port), UDP),
               socketserver.ThreadingTCPServer(("127.0.0.1", port), TCP)]
    for s in servers:
        s.daemon_threads = True
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print("srvdns: %d records for %s on 127.0.0.1:%d" % (len(records), service, port),
          flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    sys.exit(main(sys.argv))
